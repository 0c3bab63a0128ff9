"""The Discord shell's pure parts: message splitting, embeds within Discord's limits, input parsing,
the progress throttle, cooldowns and the error messages users read."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re

import discord
import pytest
from discord import app_commands

from bot.core.papers import Paper
from bot.db.engine import DatabaseUnavailableError
from bot.discord.cogs.paper import paper_id_from_input
from bot.discord.cogs.search import parse_since
from bot.discord.errors import RateLimited, UserFacingError, describe_failure, user_message
from bot.discord.formatting import (
    answer_messages,
    fit_embeds,
    paper_embed,
    sources_embed,
    split_message,
    web_url,
)
from bot.discord.progress import ThrottledProgress
from bot.limits.ratelimit import RateLimiter
from bot.rag.citations import Citation
from bot.rag.iter_retgen import Answer, QuestionError
from bot.retrieval.embedding import EmbeddingError
from bot.retrieval.index import IndexUnavailableError
from tests.support.paperbot_discord import HOSTILE, LONG, reset_logging


@pytest.fixture(autouse=True)
def _isolated_logging() -> None:
    reset_logging()


# -- split_message --------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize("limit", [2000, 120])
def test_split_keeps_every_word_and_prefers_paragraph_boundaries(limit: int) -> None:
    paragraphs = [f"P{n} " + " ".join(f"w{n}.{i}" for i in range(n * 7 % 90 + 5)) for n in range(40)]
    text = "\n\n".join(paragraphs)
    parts = split_message(text, limit)
    assert all(0 < len(p) <= limit and p.strip() for p in parts)
    assert _words(" ".join(parts)) == _words(text)
    for paragraph in paragraphs:  # a paragraph that fits is never cut
        assert len(paragraph) > limit or any(paragraph in part for part in parts)
    for before, after in itertools.pairwise(parts):  # and parts are as full as they can be
        head = after.split("\n\n", 1)[0]
        if head in paragraphs and before.rsplit("\n\n", 1)[-1] in paragraphs:
            assert len(before) + 2 + len(head) > limit


def test_split_cuts_long_lines_at_words_and_huge_words_hard() -> None:
    text = "intro\n\n" + ("word " * 700) + "\n\n" + "x" * 4500 + "\n\n\n" + "y" * 2500
    parts = split_message(text)
    assert all(0 < len(p) <= 2000 for p in parts)
    assert parts[0] == "intro"
    assert all(not p.endswith("wor") for p in parts)  # cut between words, not inside one
    assert "".join(p for p in parts if set(p) == {"x"}) == "x" * 4500
    assert (
        "".join(p for p in parts if set(p) <= {"y", "\n"}).strip() == "y" * 2500
    )  # no empty part on the way
    assert split_message("   ") == [] and split_message("short") == ["short"]


def test_answer_messages_put_sources_under_the_last_part() -> None:
    citations = [Citation(n=1, paper_id="p", title="A paper", url="https://arxiv.org/abs/2401.00001")]
    answer = Answer(
        question="q",
        standalone_question="q",
        text=("para [1]. " * 150 + "\n\n") * 3,
        citations=citations,
        iterations=2,
    )
    messages = answer_messages(answer)
    assert len(messages) == 3 and [bool(e) for _, e in messages] == [False, False, True]
    empty = Answer(question="q", standalone_question="q", text="", citations=[], iterations=1)
    assert answer_messages(empty) == [("…", [])]


# -- embeds ---------------------------------------------------------------------------------------


def _field(embed: discord.Embed, name: str) -> str | None:
    return next((f.value for f in embed.fields if f.name == name), None)


def test_paper_embed_of_a_huge_paper_stays_within_every_limit() -> None:
    embed = paper_embed(LONG)
    assert len(embed) <= 6000 and len(embed.title or "") <= 256 and (embed.title or "").endswith("…")
    assert len(embed.description or "") <= 300  # a search card shows a one-line gist
    assert all(0 < len(f.value or "") <= 1024 for f in embed.fields)
    assert (_field(embed, "Authors") or "").endswith("et al.")
    links = _field(embed, "Links") or ""
    assert links.count("](") == 2 and "[Project]" not in links  # whole links only
    card = paper_embed(LONG, summary=LONG.ai_summary)
    assert len(card) <= 6000 and 3000 < len(card.description or "") <= 4096
    assert len(paper_embed(LONG, summary="s" * 9000, footer="f" * 3000)) <= 6000


def test_paper_embed_shows_the_card_fields_and_only_web_links() -> None:
    embed = paper_embed(HOSTILE)
    assert embed.title == HOSTILE.title and embed.url == "https://arxiv.org/abs/2609.00001"
    assert _field(embed, "Details") == "2026-08-10 · ▲ 7"
    assert _field(embed, "Authors") == "Mallory <@789>, @here Eve"
    odd = Paper(
        paper_id="x",
        title="T",
        abstract="A.",
        project_url="javascript:alert(1)",
        github_url="https://github.com/a/b(c)",
    )
    embed = paper_embed(odd)
    assert embed.url == "https://github.com/a/b(c)"  # http(s) only: the project link is dropped
    assert _field(embed, "Links") == "[Code](https://github.com/a/b%28c%29)"
    assert web_url("https://a.b/" + "x" * 2048) is None and web_url("https://a b") is None
    assert web_url("http://arxiv.org/abs/1") == "http://arxiv.org/abs/1"


def test_sources_embed_keeps_whole_lines_within_the_description_limit() -> None:
    citations = [
        Citation(n=n, paper_id=str(n), title=f"[{n}] " + "t" * 300, url=f"https://arxiv.org/abs/{n}")
        for n in range(1, 40)
    ]
    embed = sources_embed(citations)
    lines = (embed.description or "").split("\n")
    assert len(embed.description or "") <= 4096 and 10 < len(lines) < 39
    assert all(
        re.fullmatch(r"\*\*\[\d+\]\*\* \[\(\d+\) t+…\]\(https://arxiv\.org/abs/\d+\)", line) for line in lines
    )
    assert sources_embed(citations[:1], cited=False).title == "Sources (retrieved, not cited)"


def test_fit_embeds_respects_ten_per_message_and_6000_characters() -> None:
    embeds = [discord.Embed(title=f"t{n}", description="d" * 1400) for n in range(12)]
    groups = fit_embeds(embeds)
    assert [len(g) for g in groups] == [4, 4, 4]
    small = fit_embeds([discord.Embed(title=str(n)) for n in range(23)])
    assert [len(g) for g in small] == [10, 10, 3]


# -- input parsing --------------------------------------------------------------------------------


def test_parse_since_dates_and_spans() -> None:
    today = dt.date(2026, 8, 20)
    assert parse_since("7d", today) == dt.date(2026, 8, 13)
    assert parse_since(" 2W ", today) == dt.date(2026, 8, 6)
    assert parse_since("1y", today) == dt.date(2025, 8, 20)
    assert parse_since("2026-08-01") == dt.date(2026, 8, 1)
    assert parse_since(None) is None and parse_since("  ") is None
    for bad in ("yesterday", "2026-02-30", "9999y", "-3d"):
        with pytest.raises(UserFacingError, match="`since` must be a date"):
            parse_since(bad, today)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2405.15738", "2405.15738"),
        ("2405.15738v2", "2405.15738"),
        ("arXiv:2405.15738", "2405.15738"),
        ("https://arxiv.org/abs/2405.15738v3", "2405.15738"),
        ("http://export.arxiv.org/pdf/2405.15738.pdf", "2405.15738"),
        ("arxiv.org/pdf/2405.15738", "2405.15738"),
        ("https://huggingface.co/papers/2405.15738", "2405.15738"),
        ("<https://www.huggingface.co/papers/2405.15738/>", "2405.15738"),
        ("hep-th/9901001", "hep-th/9901001"),
    ],
)
def test_paper_ids_and_allowed_links_are_accepted(raw: str, expected: str) -> None:
    assert paper_id_from_input(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "https://evil.example/abs/2405.15738",
        "https://arxiv.org.evil.example/abs/2405.15738",
        "https://arxiv.org@evil.example/abs/2405.15738",
        "ftp://arxiv.org/abs/2405.15738",
        "https://huggingface.co/datasets/x",
        "https://arxiv.org/list/cs.CL",
        "file:///etc/passwd",
        "www.arxiv.org.evil.example/abs/2405.15738",
        "2405",
        "   ",
    ],
)
def test_anything_else_is_refused_with_a_message(raw: str) -> None:
    with pytest.raises(UserFacingError) as refused:
        paper_id_from_input(raw)
    assert "arxiv" in str(refused.value).lower() or "arXiv" in str(refused.value)


# -- progress throttle ----------------------------------------------------------------------------


class Recorder:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.shown: list[tuple[float, str]] = []
        self.delay = delay
        self.fail = fail

    async def __call__(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise discord.HTTPException(_Response(), "boom")  # type: ignore[arg-type]
        self.shown.append((loop.time(), text))


class _Response:
    status = 500
    reason = "Server Error"


async def test_progress_coalesces_updates_and_never_edits_faster_than_the_interval() -> None:
    edits = Recorder()
    progress = ThrottledProgress(edits, interval_s=0.1)
    await progress.stage("searching", 1, 2)
    for n in range(20):
        await progress.partial(f"draft {n}")
        await asyncio.sleep(0.012)
    await asyncio.sleep(0.15)  # the last update is shown once the interval allows
    await progress.aclose()
    texts = [t for _, t in edits.shown]
    assert texts[0] == "🔎 searching the papers… (1/2)" and texts[-1] == "✍️ draft 19 ▌"
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(edits.shown)]
    assert min(gaps) >= 0.095 and 2 <= len(texts) <= 5


async def test_progress_close_drops_pending_updates_and_waits_for_an_edit_in_flight() -> None:
    edits = Recorder()
    progress = ThrottledProgress(edits, interval_s=0.1)
    await progress.stage("searching", 1, 2)
    await progress.stage("thinking", 1, 2)  # pending
    await progress.aclose()
    await asyncio.sleep(0.15)
    assert [t for _, t in edits.shown] == ["🔎 searching the papers… (1/2)"]
    await progress.partial("late")  # after close nothing is shown
    assert len(edits.shown) == 1

    slow = Recorder(delay=0.05)
    progress = ThrottledProgress(slow, interval_s=0.1)
    await progress.stage("searching", 1, 2)  # shown at once (the edit takes 50 ms)
    await progress.stage("thinking", 1, 2)  # too soon: the flusher shows it at 100 ms
    await asyncio.sleep(0.07)  # now the flusher's edit is in flight (100-150 ms)
    await progress.aclose()
    texts = [t for _, t in slow.shown]
    assert texts == ["🔎 searching the papers… (1/2)", "🔎 reading and writing… (1/2)"]  # finished, not cut


async def test_progress_edit_failures_are_not_fatal() -> None:
    progress = ThrottledProgress(Recorder(fail=True), interval_s=0.01)
    await progress.stage("searching", 1, 1)
    await progress.partial("x" * 3000)
    await progress.aclose()
    assert progress.edits == 0


# -- cooldowns ------------------------------------------------------------------------------------


def test_rate_limiter_user_cooldown_and_guild_window() -> None:
    now = [0.0]
    limiter = RateLimiter(user_cooldown_s=10, guild_per_minute=3, clock=lambda: now[0])
    assert limiter.check(1, 100).allowed
    refused = limiter.check(1, 100)
    assert (refused.wait, refused.scope) == (10, "user")
    now[0] = 4.0
    assert limiter.check(1, 100).wait == 6 and limiter.check(1, None).scope == "user"
    assert limiter.check(2, 100).allowed and limiter.check(3, 100).allowed
    guild = limiter.check(4, 100)
    assert guild.scope == "guild" and guild.wait == 56
    assert limiter.check(4, 200).allowed  # another server is not affected
    now[0] = 60.0
    assert limiter.check(4, 100).allowed  # the first request left the window
    now[0] = 1000.0
    for user in range(10_050):
        limiter.check(user, None)
    now[0] = 2000.0
    limiter.check(99_999, None)
    assert len(limiter._last_by_user) == 1  # idle users are forgotten


# -- what users read ------------------------------------------------------------------------------


def test_messages_for_expected_and_unexpected_failures() -> None:
    assert user_message(RateLimited(2.2)) == ("You're going a bit fast — try again in 3 s.", True)
    assert user_message(RateLimited(59.5, guild_wide=True))[0].startswith("This server is asking a lot")
    assert user_message(QuestionError("the question is empty")) == ("The question is empty", True)
    assert user_message(app_commands.MissingPermissions(["manage_guild"]))[0] == (
        "You need the Manage Server permission for that."
    )
    wrapped = app_commands.CommandInvokeError(_command(), UserFacingError("Not here."))
    assert user_message(wrapped) == ("Not here.", True)
    bug = describe_failure(RuntimeError("a bug"))
    assert re.fullmatch(
        r"Something went wrong on my side \(reference `[0-9a-f]{8}`\); it has been logged\.", bug
    )
    outage = describe_failure(IndexUnavailableError("closed"))
    assert re.fullmatch(
        r"The paper index is unavailable right now; please try again in a minute "
        r"\(reference `[0-9a-f]{8}`\)\.",
        outage,
    )
    for error, service in (
        (EmbeddingError("refused"), "The search model"),
        (DatabaseUnavailableError("locked"), "The bot's database"),
    ):
        text, expected = user_message(error)
        assert (text, expected) == (
            f"{service} is unavailable right now; please try again in a minute",
            False,
        )


def _command() -> app_commands.Command:
    async def noop(interaction: discord.Interaction) -> None:
        return None

    return app_commands.Command(name="x", description="x", callback=noop)


def test_a_paper_known_only_by_its_title_shows_no_made_up_id() -> None:
    """A saved page's paper has a title-derived id (title:…): its card and its /search footer leave
    it out; a real id is still shown."""
    from bot.core.papers import Paper, title_paper_id
    from bot.discord.cogs.search import result_footer
    from bot.discord.formatting import paper_embed

    page = Paper(
        paper_id=title_paper_id("Pointer Networks"), title="Pointer Networks", abstract="A.", sources=["page"]
    )
    real = Paper(paper_id="2407.07523", arxiv_id="2407.07523", title="SHERL", abstract="A.")
    assert result_footer(2, page) == "#2"
    assert result_footer(1, real) == "#1 · 2407.07523"
    assert paper_embed(page).footer.text is None
    assert paper_embed(real).footer.text == "2407.07523"
    embed = paper_embed(page, footer=result_footer(3, page))
    assert embed.footer.text == "#3"
    assert "title:" not in str(embed.to_dict())


def test_sources_show_a_passages_section_but_not_abstract() -> None:
    from bot.rag.citations import format_sources_list

    citations = [
        Citation(1, "2501.00663", "Titans: Learning to Memorize at Test Time", None, section="Abstract"),
        Citation(2, "2004.04906", "Dense Passage Retrieval", None, section="§3.2 Training (p. 4)"),
    ]
    lines = format_sources_list(citations).splitlines()
    assert lines == [
        "[1] Titans: Learning to Memorize at Test Time",
        "[2] Dense Passage Retrieval §3.2 Training (p. 4)",
    ]
    description = sources_embed(citations).description or ""
    assert "Abstract" not in description and "§3.2 Training (p. 4)" in description
