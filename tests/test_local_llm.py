"""The embedded llama.cpp server: weights assembly, failure reporting (a server that dies at start or
later, e.g. killed for memory), and one real Gemma round trip."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import bot.llm.local_server as local_server
from bot.core.config import LLMSettings, RagSettings, TokenizerSettings
from bot.core.papers import Paper
from bot.ingest.pipeline import Ingestor
from bot.llm import LLMClient, LLMUnavailableError, LocalLLMServer, LocalLLMUnavailable, llm_session
from bot.llm.local_server import orphan_safe_command
from bot.llm.models import KNOWN_MODELS
from bot.llm.weights import ensure_model_file
from bot.rag.extractive import EXTRACTIVE_LABEL
from bot.rag.iter_retgen import AnswerService
from bot.retrieval.index.edge import EdgePaperIndex
from bot.retrieval.search import SearchService

GEMMA = KNOWN_MODELS["gemma-3-270m"]  # the fast real model of the tests
EXPECTED_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
POINTER_NETWORKS = Paper(
    paper_id="1506.03134",
    title="Pointer Networks",
    abstract="Pointer networks learn the conditional probability of an output sequence whose elements "
    "are positions in the input sequence. They solve planar convex hulls, Delaunay triangulations and "
    "the travelling salesman problem from examples.",
)


def ensure_gemma_gguf(models_dir: Path) -> Path:
    return ensure_model_file(GEMMA, models_dir)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One assembled copy of the 253 MB GGUF for the whole session."""
    directory = tmp_path_factory.mktemp("models")
    ensure_gemma_gguf(directory)
    return directory


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> LLMSettings:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "LLM_MODEL", "LLM_API_MODE", "LOCAL_LLM_PORT"):
        monkeypatch.delenv(name, raising=False)
    return LLMSettings(_env_file=None, LOCAL_LLM_MODEL=GEMMA.name)  # type: ignore[call-arg]


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_gguf_is_assembled_once_and_verified(models_dir: Path) -> None:
    [gguf] = models_dir.glob("*.gguf")
    assert _sha256(gguf) == EXPECTED_SHA256 == GEMMA.sha256
    before = gguf.stat().st_mtime_ns

    assert ensure_gemma_gguf(models_dir) == gguf
    assert gguf.stat().st_mtime_ns == before  # a verified copy is not rewritten
    assert not list(models_dir.glob("*.partial"))


def test_corrupt_gguf_is_replaced(tmp_path: Path) -> None:
    gguf = ensure_gemma_gguf(tmp_path)
    os.utime(gguf, ns=(0, 0))  # as if assembled long ago …
    ensure_gemma_gguf(tmp_path)  # … and verified then; the write below moves the mtime on
    with gguf.open("r+b") as handle:  # same size, wrong bytes
        handle.seek(1000)
        handle.write(b"\x00" * 64)

    repaired = ensure_gemma_gguf(tmp_path)

    assert repaired == gguf
    assert _sha256(repaired) == EXPECTED_SHA256


async def test_missing_llama_cpp_tells_the_operator_what_to_do(
    settings: LLMSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_server, "_SERVER_MODULES", ("llama_cpp_is_not_installed_here",))

    with pytest.raises(LocalLLMUnavailable, match=r"make llm.*OPENAI_BASE_URL"):
        await LocalLLMServer(settings, tmp_path).start()
    assert os.listdir(tmp_path) == []  # failed before touching the weights


async def test_server_that_dies_reports_its_stderr(
    settings: LLMSettings, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_server, "_SERVER_MODULES", ())
    python = _fake_python(tmp_path, 'echo "llama_model_load: error loading model: boom" >&2\nexit 3')
    server = LocalLLMServer(settings, models_dir, python=python)

    with pytest.raises(LocalLLMUnavailable, match="exited with code 3") as caught:
        await server.start()

    assert "error loading model: boom" in str(caught.value)
    assert not server.running


async def test_server_that_never_answers_times_out_and_is_stopped(
    settings: LLMSettings, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_server, "_SERVER_MODULES", ())
    settings.local_start_timeout_s = 1.0
    pid_file = tmp_path / "pid"
    python = _fake_python(tmp_path, f'echo "loading..." >&2\necho $$ > {pid_file}\nexec sleep 60')
    server = LocalLLMServer(settings, models_dir, python=python)

    with pytest.raises(LocalLLMUnavailable, match="LOCAL_LLM_START_TIMEOUT_S") as caught:
        await server.start()

    assert "loading..." in str(caught.value)
    assert not server.running
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the child was terminated and reaped


FAKE_SERVER = """#!{python}
import http.server, json, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
with open({pid_file!r}, "w") as handle:
    handle.write(str(os.getpid()))

class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"object": "list", "data": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("llama_init_from_model: n_ctx = 4096", file=sys.stderr, flush=True)
http.server.HTTPServer(("127.0.0.1", port), Models).serve_forever()
"""


async def test_a_server_killed_for_memory_is_noticed_and_answers_fall_back_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any
) -> None:
    # A stand-in server (answers /v1/models, so it starts) is SIGKILLed, as the OOM killer does.
    monkeypatch.setattr(local_server, "_SERVER_MODULES", ())
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(32))
    pid_file = tmp_path / "server.pid"
    python = tmp_path / "fake-server"
    python.write_text(FAKE_SERVER.format(python=sys.executable, pid_file=str(pid_file)))
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    settings = LLMSettings(_env_file=None, LOCAL_LLM_MODEL=str(gguf))  # type: ignore[call-arg]
    index = EdgePaperIndex(tmp_path / "qdrant")
    await index.ensure_collection(embedder.dimensions)
    await Ingestor(index, embedder, TokenizerSettings()).ingest([POINTER_NETWORKS])
    server = LocalLLMServer(settings, tmp_path / "models", python=str(python))
    await server.start()
    client = server.client()
    try:
        with capture_logs() as logs:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            for _ in range(200):  # the kernel reports the death to the event loop shortly
                if server.exit_reason() is not None:
                    break
                await asyncio.sleep(0.05)
            with pytest.raises(LLMUnavailableError, match="killed by SIGKILL: most likely") as caught:
                await client.generate(system="s", user="u", max_tokens=4)
            service = AnswerService(SearchService(index, embedder), client, RagSettings(), settings)
            answer = await service.answer("What are pointer networks good for?")
    finally:
        await client.aclose()
        await server.stop()
        await index.close()

    assert not server.running
    assert "out-of-memory killer" in str(caught.value) and "Connection error" not in str(caught.value)
    assert caught.value.attempts == 1  # no retry against a server that is gone
    [exited] = [e for e in logs if e["event"] == "local_llm.exited"]
    assert (exited["returncode"], exited["signal"]) == (-signal.SIGKILL, "SIGKILL")
    assert exited["log_level"] == "error" and "n_ctx = 4096" in exited["last_output"][-1]
    # The question is still answered, from the passages, under the label that says why.
    assert answer.fallback and answer.text.startswith(EXTRACTIVE_LABEL)
    assert [c.paper_id for c in answer.citations] == [POINTER_NETWORKS.paper_id]
    [fell_back] = [e for e in logs if e["event"] == "rag.llm_unavailable"]
    assert "killed by SIGKILL" in fell_back["error"]


def test_orphan_safe_command_runs_the_module_as_main_with_its_arguments(tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text('{"b": 1, "a": [2]}')
    command = orphan_safe_command(sys.executable, "json.tool", ["--sort-keys", "--compact", str(data)])
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout
    assert out.strip() == '{"a":[2],"b":1}'


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status waits to be collected


PARENT = """
import json, subprocess, sys, time
from bot.llm.local_server import orphan_safe_command
server = ["tests.support.busy_server", ["0", "--bind", "127.0.0.1"]]  # ignores SIGTERM, like a busy one
quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # this stdout carries the pids
safe = subprocess.Popen(orphan_safe_command(sys.executable, *server), **quiet)
plain = subprocess.Popen([sys.executable, "-m", server[0], *server[1]], **quiet)


def ignores_sigterm(pid):  # the server is up: its SIGTERM handler is in place
    status = open(f"/proc/{pid}/status").read()
    return int(status.split("SigIgn:")[1].split()[0], 16) & (1 << 14)


deadline = time.monotonic() + 30
while not all(ignores_sigterm(p.pid) for p in (safe, plain)) and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"safe": safe.pid, "plain": plain.pid}), flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_the_server_child_stops_when_the_bot_is_killed_outright() -> None:
    # A stand-in bot starts two servers, one the way LocalLLMServer does and one plainly, then is
    # SIGKILLed (no chance to stop its children): only the plain one may outlive it. The servers
    # ignore SIGTERM, as the real one does while it finishes a generation for the dead client.
    bot = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    assert bot.stdout is not None
    children = json.loads(bot.stdout.readline())
    try:
        assert _alive(children["safe"]) and _alive(children["plain"])
        bot.send_signal(signal.SIGKILL)
        assert bot.wait(30) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while _alive(children["safe"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(children["safe"]), "the embedded server outlived the killed bot"
        assert _alive(children["plain"]), "control: a plainly started child does outlive its parent"
    finally:
        bot.kill()
        for pid in children.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


FEW_SHOT = (
    "Question: What is the capital of France?\nAnswer: Paris.\n\n"
    "Question: How many legs does a spider have?\nAnswer: Eight.\n\n"
    "Question: What colour is the sky on a clear day?\nAnswer:"
)


@pytest.mark.llm
async def test_embedded_gemma_answers(settings: LLMSettings, models_dir: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail("llama-cpp-python is not installed: run `make llm` to build it into the venv")
    settings.local_ctx = 2048

    async with llm_session(settings, models_dir) as client:
        assert isinstance(client, LLMClient)
        assert client.api_mode == "completions"  # `auto` picks raw completions for the base model
        completion = await client.generate(system="", user=FEW_SHOT, max_tokens=16, stop=["\n"])
        streamed = await client.stream(system="", user=FEW_SHOT, max_tokens=16, stop=["\n"]).collect()

    assert completion.text.strip()
    assert completion.prompt_tokens > 20
    assert 0 < completion.completion_tokens <= 16
    assert not completion.usage_estimated
    assert streamed.text.strip()
    assert streamed.completion_tokens > 0
    assert client.usage.calls == 2
