"""`python -m bot digest` in-process: the real digest service over the bundled saved Hugging Face day
(samples/), real local embeddings, and the real LLM client against the scripted OpenAI-compatible server.

`main()` runs its own event loop, so it runs in a worker thread while the scripted server answers on
the test's loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app.cli import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, SAMPLES_DIR, main
from bot.core.config import load_settings
from bot.db import Database, Repository, upgrade_schema
from bot.digest import cron
from bot.digest.records import SubscriptionSettings
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


# ------------------------------------------------------------------ digest subscriptions


async def test_digest_subscriptions_lists_the_state_databases_subscriptions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = await run_cli(capsys, "digest", "subscriptions")
    assert (code, out) == (
        EXIT_OK,
        "no digest subscriptions yet (an admin sets one up with /digest subscribe in a channel)\n",
    ), err
    assert (await run_cli(capsys, "digest", "subscriptions", "--json"))[:2] == (EXIT_OK, "[]\n")

    guild, channel = 2**63 - 1, 1_234_567_890_123_456_789  # snowflakes past JSON's safe integers
    at = f"{dt.datetime.now(ZoneInfo('Asia/Tokyo')) + dt.timedelta(hours=10):%H:%M}"  # no fire time near now
    database = Database.from_settings(load_settings())  # the data dir of this test (PAPERBOT_DATA_DIR)
    await upgrade_schema(database.engine)
    repo = Repository(database)
    active = await repo.save_subscription(SubscriptionSettings(
        guild_id=guild, channel_id=channel, topics=["retrieval", "agents"], arxiv_categories=["cs.IR"],
        post_time=at, timezone="Asia/Tokyo", weekdays=(0, 1, 2, 3, 4),
    ))  # fmt: skip
    paused = await repo.save_subscription(
        SubscriptionSettings(guild_id=guild, channel_id=channel + 1, paused=True)
    )
    await database.close()
    next_run = cron.next_run_time(active, dt.datetime.now(dt.UTC))
    assert next_run is not None

    code, out, err = await run_cli(capsys, "digest", "subscriptions")
    assert code == EXIT_OK, err
    assert out.splitlines() == [
        f"guild {guild} · channel {channel} · {at} Asia/Tokyo on mon,tue,wed,thu,fri · active · "
        f"topics: retrieval, agents · sources: Hugging Face daily, arXiv cs.IR · "
        f"next run: {next_run.astimezone(dt.UTC).isoformat()}",
        f"guild {guild} · channel {channel + 1} · 09:00 UTC on mon,tue,wed,thu,fri · paused · "
        "topics: — · sources: Hugging Face daily · next run: none",
    ]

    code, out, err = await run_cli(capsys, "digest", "subscriptions", "--json")
    assert code == EXIT_OK, err
    listed = json.loads(out)
    assert [item["id"] for item in listed] == [active.id, paused.id]
    assert listed[0] == {
        "id": active.id,
        "guild_id": str(guild),
        "channel_id": str(channel),
        "schedule": f"{at} Asia/Tokyo on mon,tue,wed,thu,fri",
        "paused": False,
        "topics": ["retrieval", "agents"],
        "sources": ["Hugging Face daily", "arXiv cs.IR"],
        "next_run": next_run.astimezone(dt.UTC).isoformat(),
    }
    assert (listed[1]["paused"], listed[1]["next_run"], listed[1]["channel_id"]) == (
        True,
        None,
        str(channel + 1),
    )
    assert dt.datetime.fromisoformat(listed[0]["next_run"]).utcoffset() == dt.timedelta(0)
