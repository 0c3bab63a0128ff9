"""The embedded models under test, opened one at a time through the project's own path
(`bot.llm.llm_session` with `LLMSettings(LOCAL_LLM_MODEL=name)`), and the peak RSS of the llama.cpp
server process each one ran in. Shared by bench/answer_eval.py and bench/summary_eval.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common import ROOT

if TYPE_CHECKING:
    from bot.core.config import LLMSettings
    from bot.llm import LLMClient

DEFAULT_MODELS = ("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m")
MODELS_DIR = ROOT / "data" / "models"


def parse_models(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def model_settings(name: str) -> LLMSettings:
    """LLMSettings for the embedded model `name` (a known name or a .gguf path), with the model's
    recommended prompt/answer limits, as `open_services` resolves them. OPENAI_BASE_URL is cleared so
    that an environment pointing at a remote server cannot turn the bench into a remote one."""
    from bot.core.config import LLMSettings
    from bot.llm.models import resolve_llm_settings

    return resolve_llm_settings(LLMSettings(OPENAI_BASE_URL=None, LOCAL_LLM_MODEL=name))


def llama_server_pids() -> list[int]:
    """This process's children running llama_cpp.server (LocalLLMServer starts it as
    `python -c <bootstrap> <parent pid> llama_cpp.server …`, the server running in that process)."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == me and b"llama_cpp.server" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def status_kib(pid: int, field: str) -> int | None:
    """A `VmHWM:`/`VmRSS:` figure of /proc/<pid>/status in KiB, None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class ModelRun:
    name: str
    title: str
    settings: LLMSettings  # resolved: the model's recommended prompt and answer limits
    client: LLMClient
    server_pid: int | None
    start_seconds: float
    peak_rss_kib: int | None = None  # VmHWM of the server process, read just before it is stopped


@asynccontextmanager
async def embedded_model(name: str, models_dir: Path = MODELS_DIR) -> AsyncIterator[ModelRun]:
    """Start the embedded server for `name` through `llm_session`, yield the client, read the
    server's VmHWM at the end and stop it (llm_session stops it, also on errors)."""
    import time

    from bot.llm import llm_session
    from bot.llm.models import embedded_model as known_model

    settings = model_settings(name)
    started = time.perf_counter()
    async with llm_session(settings, models_dir) as client:
        pids = llama_server_pids()
        run = ModelRun(
            name=name,
            title=known_model(name).title,
            settings=settings,
            client=client,
            server_pid=pids[0] if len(pids) == 1 else None,
            start_seconds=time.perf_counter() - started,
        )
        try:
            yield run
        finally:
            if run.server_pid is not None:
                run.peak_rss_kib = status_kib(run.server_pid, "VmHWM")
