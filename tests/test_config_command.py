"""`python -m bot config [--json]`: each setting's effective value and its source, secrets redacted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.app.cli import main
from bot.core.config import Settings
from tests.conftest import ROOT

TOKEN = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"
OPENAI_KEY = "sk-test-0123456789abcdefghij"
DB_PASSWORD = "hunter2-db-password"

DOTENV = f"""\
# what an operator's .env looks like: some values, many empty (= default)
RAG_TOP_K=7
LLM_MODEL=from-dotenv
RAG_ITERATIONS=4
DISCORD_SHARD_COUNT=4
DISCORD_TOKEN={TOKEN}
QDRANT_URL=
EMBEDDING_API_KEY=
"""


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(DOTENV)
    monkeypatch.setenv("RAG_ITERATIONS", "3")  # the environment beats .env
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "")  # empty: ignored, so .env's value holds
    monkeypatch.setenv("OPENAI_BASE_URL", "http://llm.internal:8000/v1")  # an alias, no prefix
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://paperbot:{DB_PASSWORD}@db/paperbot")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["config", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    code, out, _ = run(capsys, "--json")
    assert code == 0
    return {item["variable"]: item for item in json.loads(out)}


def test_each_setting_reports_where_its_value_came_from(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = as_json(capsys)
    expected = {
        "RAG_ITERATIONS": (3, "environment"),
        "RAG_TOP_K": (7, ".env"),
        "LLM_MODEL": ("from-dotenv", ".env"),
        "DISCORD_SHARD_COUNT": (4, ".env"),
        "OPENAI_BASE_URL": ("http://llm.internal:8000/v1", "environment"),
        "QDRANT_URL": (None, "default"),  # empty in .env: the default
        "RAG_HISTORY_TOKENS": (1024, "default"),
        "DISCORD_ALLOW_DMS": (False, "default"),
        "PAPERBOT_DATA_DIR": (str(configured / "data"), "environment"),  # the test fixture sets it
    }
    for variable, (value, source) in expected.items():
        assert (settings[variable]["value"], settings[variable]["source"]) == (value, source), variable
    assert settings["RAG_TOP_K"]["concern"] == "rag" and settings["LLM_MODEL"]["concern"] == "llm"


def test_every_setting_is_listed_once_by_its_variable(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--json")
    items = json.loads(out)
    fields = sum(len(type(getattr(Settings(), name)).model_fields) for name in Settings.model_fields)
    assert code == 0 and len(items) == fields == len({item["variable"] for item in items})
    documented = {
        line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line
    }
    assert {item["variable"] for item in items} <= documented  # the names an operator actually sets


def test_secrets_never_appear_in_either_output(configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = as_json(capsys)
    for variable, source in (("DISCORD_TOKEN", ".env"), ("OPENAI_API_KEY", "environment"),
                             ("DATABASE_URL", "environment")):  # fmt: skip
        assert settings[variable] | {"concern": None} == {
            "concern": None, "variable": variable, "value": "********", "source": source, "secret": True
        }  # fmt: skip
    assert settings["EMBEDDING_API_KEY"]["value"] is None and settings["EMBEDDING_API_KEY"]["secret"]
    assert settings["QDRANT_API_KEY"]["value"] is None and settings["QDRANT_API_KEY"]["source"] == "default"
    _, json_out, json_err = run(capsys, "--json")
    _, table_out, table_err = run(capsys)
    for secret in (TOKEN, OPENAI_KEY, DB_PASSWORD):
        for text in (json_out, json_err, table_out, table_err):
            assert secret not in text


def test_a_secret_inside_a_plain_setting_is_redacted_too(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QDRANT_URL", f"http://paperbot:{DB_PASSWORD}@qdrant:6333")  # password reused
    assert as_json(capsys)["QDRANT_URL"]["value"] == "http://paperbot:***@qdrant:6333"


def test_the_table_is_grouped_by_concern_and_aligned(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("paperbot config: ") and "from .env (" in lines[0]
    headers = [line for line in lines if line.startswith("[")]
    assert headers == [f"[{name}]" for name in Settings.model_fields]
    rows = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert rows["RAG_TOP_K"].split() == ["RAG_TOP_K", "7", ".env"]
    assert rows["DISCORD_TOKEN"].split() == ["DISCORD_TOKEN", "********", ".env"]
    assert rows["QDRANT_URL"].split() == ["QDRANT_URL", "(unset)", "default"]
    assert rows["DISCORD_ALLOW_DMS"].split() == ["DISCORD_ALLOW_DMS", "false", "default"]
    assert len({re.match(r"  \S+ +", line).end() for line in rows.values()}) == 1  # type: ignore[union-attr]


def test_without_a_dotenv_file_every_value_is_a_default_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = as_json(capsys)  # conftest: cwd is an empty tmp_path, only PAPERBOT_DATA_DIR is set
    assert {v["source"] for k, v in settings.items() if k != "PAPERBOT_DATA_DIR"} == {"default"}
    assert settings["PAPERBOT_DATA_DIR"]["source"] == "environment"


@pytest.mark.parametrize("as_json_flag", [[], ["--json"]])
def test_an_invalid_setting_is_one_clear_line_not_a_traceback(
    configured: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    as_json_flag: list[str],
) -> None:
    (configured / ".env").write_text(DOTENV.replace("RAG_TOP_K=7", "RAG_TOP_K=500"))
    code, out, err = run(capsys, *as_json_flag)
    assert code == 1 and out == ""
    assert (
        err.strip()
        == "error: invalid settings: RAG_TOP_K (from .env): Input should be less than or equal to 50"
    )
    assert TOKEN not in err


def test_python_m_bot_config_runs_as_a_command(configured: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "config", "--json"],
        cwd=configured,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "RAG_TOP_K": "9"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    settings = {item["variable"]: item for item in json.loads(result.stdout)}
    assert settings["RAG_TOP_K"]["value"] == 9 and settings["RAG_TOP_K"]["source"] == "environment"
    assert settings["LLM_MODEL"]["source"] == ".env"
    assert TOKEN not in result.stdout + result.stderr
