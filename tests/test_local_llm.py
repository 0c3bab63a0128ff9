"""The embedded llama.cpp server: weights assembly, failure reporting, and one real Gemma round trip."""

from __future__ import annotations

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

import pytest

import bot.llm.local_server as local_server
from bot.core.config import LLMSettings
from bot.llm import LLMClient, LocalLLMServer, LocalLLMUnavailable, llm_session
from bot.llm.local_server import ensure_gemma_gguf, orphan_safe_command

EXPECTED_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


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
    return LLMSettings(_env_file=None)  # type: ignore[call-arg]


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_gguf_is_assembled_once_and_verified(models_dir: Path) -> None:
    [gguf] = models_dir.glob("*.gguf")
    assert _sha256(gguf) == EXPECTED_SHA256
    before = gguf.stat().st_mtime_ns

    assert ensure_gemma_gguf(models_dir) == gguf
    assert gguf.stat().st_mtime_ns == before  # a verified copy is not rewritten
    assert not list(models_dir.glob("*.partial"))


def test_corrupt_gguf_is_replaced(tmp_path: Path) -> None:
    gguf = ensure_gemma_gguf(tmp_path)
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
server = ["http.server", ["0", "--bind", "127.0.0.1"]]
safe = subprocess.Popen(orphan_safe_command(sys.executable, *server), stderr=subprocess.DEVNULL)
plain = subprocess.Popen([sys.executable, "-m", server[0], *server[1]], stderr=subprocess.DEVNULL)
print(json.dumps({"safe": safe.pid, "plain": plain.pid}), flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_the_server_child_stops_when_the_bot_is_killed_outright() -> None:
    # A stand-in bot starts two servers, one the way LocalLLMServer does and one plainly, then is
    # SIGKILLed (no chance to stop its children): only the plain one may outlive it.
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
