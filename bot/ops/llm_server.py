"""`python -m bot.ops.llm_server`: the embedded LLM as a standalone OpenAI-compatible server.

The compose profile `llm` runs this in its own container (same image, llama-cpp-python built in), so
the model gets its own CPU and memory limits and several bot processes can share it. Point the bot at
it with `OPENAI_BASE_URL=http://llm:8000/v1` and `LLM_API_MODE=completions` (Gemma 270M is a base
model; llama.cpp's gemma chat format drops system prompts). `--model` serves any other GGUF file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.core.config import CoreSettings, LLMSettings


def server_command(
    settings: LLMSettings, model_path: Path, *, host: str, port: int, python: str = sys.executable
) -> list[str]:
    from bot.llm.local_server import server_args

    return [python, "-m", "llama_cpp.server", *server_args(settings, model_path, host=host, port=port)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.ops.llm_server", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--model", type=Path, help="a GGUF file (default: Gemma 3 270M from its PyPI package)"
    )
    args = parser.parse_args(argv)
    settings = LLMSettings()
    model = args.model
    if model is None:
        from bot.llm.local_server import ensure_gemma_gguf

        model = ensure_gemma_gguf(CoreSettings().models_dir)
    command = server_command(settings, model, host=args.host, port=args.port)
    print(f"serving {model} on http://{args.host}:{args.port}/v1 as {settings.model!r}", file=sys.stderr)
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    os.execv(command[0], command)  # replace this process: signals go straight to the server


if __name__ == "__main__":
    raise SystemExit(main())
