"""`python -m bot digest` in-process: the real digest service over the bundled saved Hugging Face day
(samples/), real local embeddings, and the real LLM client against the scripted OpenAI-compatible server.

`main()` runs its own event loop, so it runs in a worker thread while the scripted server answers on
the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from bot.app.cli import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, SAMPLES_DIR, main
from bot.digest.summaries import SUMMARIZER_UNAVAILABLE
from tests.support.digest import summary_responder
from tests.support.scripted_llm import ScriptedError, ScriptedLLMServer

SAMPLE_DAY = SAMPLES_DIR / "hf_daily_2026-08-18.json"
TOPICS = "text-to-image diffusion models, GUI agents"


@pytest.fixture
def llm_env(monkeypatch: pytest.MonkeyPatch, scripted_llm: ScriptedLLMServer) -> ScriptedLLMServer:
    monkeypatch.setenv("OPENAI_BASE_URL", scripted_llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LLM_MAX_RETRIES", "0")
    return scripted_llm


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def paper_blocks(out: str) -> list[str]:
    """The printed papers, one block each (`N. title` up to the next one)."""
    return re.split(r"\n(?=\d+\. )", out.split("\n\n", 1)[1]) if "\n\n" in out else []


async def test_digest_prints_header_and_papers_with_llm_summaries(
    capsys: pytest.CaptureFixture[str], llm_env: ScriptedLLMServer
) -> None:
    llm_env.responder = summary_responder
    code, out, err = await run_cli(
        capsys, "digest", "--date", "2026-08-18", "--topics", TOPICS, "--max-papers", "3", "--dry-run"
    )
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0] == "# Paper digest · Tuesday 18 August 2026 · 3 papers"
    assert lines[1].startswith("Picked 3 of 29 new papers (29 fetched")
    assert lines[1].endswith("Sources: Hugging Face daily")

    titles = {item["paper"]["id"]: item["paper"]["title"] for item in json.loads(SAMPLE_DAY.read_text())}
    blocks = paper_blocks(out)
    assert [b.split(".", 1)[0] for b in blocks] == ["1", "2", "3"]
    for block in blocks:
        title = block.split("\n", 1)[0].split(". ", 1)[1]
        paper_id = next(pid for pid, t in titles.items() if " ".join(t.split()) == title)
        assert f"https://arxiv.org/abs/{paper_id}" in block
        assert "   Why: " in block
        # The scripted LLM names the paper it was asked about: each summary is that paper's.
        assert f"Summary: TL;DR: Summary of {title}." in block, block
        assert f" ({SUMMARIZER_UNAVAILABLE})" not in block
    assert len(llm_env.requests_to("/v1/completions") + llm_env.requests_to("/v1/chat/completions")) == 3


async def test_llm_down_prints_fallback_summaries_marked_as_such(
    capsys: pytest.CaptureFixture[str], llm_env: ScriptedLLMServer
) -> None:
    llm_env.responder = lambda body: ScriptedError(500, message="model crashed")
    code, out, err = await run_cli(
        capsys, "digest", "--date", "2026-08-18", "--topics", TOPICS, "--max-papers", "2"
    )
    assert code == EXIT_OK, err
    blocks = paper_blocks(out)
    assert len(blocks) == 2
    abstracts = [" ".join(item["paper"]["summary"].split()) for item in json.loads(SAMPLE_DAY.read_text())]
    for block in blocks:
        summary = block.split(f"Summary ({SUMMARIZER_UNAVAILABLE}): ", 1)[1].strip()
        assert any(a.startswith(summary.rstrip("…")) for a in abstracts), summary  # the abstract's start


async def test_missing_saved_day_says_which_file_and_exits_unavailable(
    capsys: pytest.CaptureFixture[str], llm_env: ScriptedLLMServer, tmp_path: Path
) -> None:
    code, out, err = await run_cli(
        capsys, "digest", "--date", "2026-08-19", "--topics", "agents", "--from", str(SAMPLES_DIR)
    )
    assert code == EXIT_UNAVAILABLE
    assert "no saved file hf_daily_2026-08-19.json" in err
    assert out.startswith("# Paper digest · Wednesday 19 August 2026\n")

    code, _, err = await run_cli(capsys, "digest", "--topics", "agents", "--from", str(tmp_path / "nope"))
    assert code == EXIT_USAGE and "no such folder" in err
    code, _, err = await run_cli(capsys, "digest", "--max-papers", "0")
    assert code == EXIT_USAGE and "max_papers" not in err and "greater than or equal to 1" in err
