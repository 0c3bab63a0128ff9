"""Digest runs end to end below Discord: real HTTP sources, real embeddings in Qdrant Edge, the real
`openai` client against the scripted LLM server, real SQLite, and an in-memory `DigestPoster`."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app.services import build_digest_service
from bot.core.config import DigestSettings, Settings, TokenizerSettings, load_settings
from bot.core.papers import Paper
from bot.db import Database, Repository, upgrade_schema
from bot.digest.delivery import item_marker, parse_marker
from bot.digest.picking import PaperSignals, PickRules, rank_papers
from bot.digest.records import GuildSettings, Subscription, SubscriptionSettings
from bot.digest.service import DigestService
from bot.digest.sources import SourceLoader, directory_fetcher, live_fetcher
from bot.digest.status import describe_run, digest_status
from bot.digest.subscriptions import SubscriptionLimitError, new_subscription, update_subscription
from bot.digest.summaries import HF_AI_SUMMARY, clean_summary, fallback_summary
from bot.ingest.fetch import RetryPolicy
from bot.ingest.pipeline import Ingestor
from bot.ingest.sources import ParseResult, parse_bytes
from bot.llm import LLMClient
from bot.retrieval.embedding import Embedder
from bot.retrieval.index import SearchFilter
from bot.retrieval.index.edge import EdgePaperIndex
from bot.retrieval.search import SearchService
from tests.support.digest import (
    HF_DAY,
    HF_RAW,
    FakeSources,
    MemoryPoster,
    SentMessage,
    SimulatedCrash,
    arxiv_listing,
    atom_feed,
    fake_sources,
    hf_day_from_slim,
    key_contribution,
    summary_responder,
)
from tests.support.scripted_llm import ScriptedError, ScriptedLLMServer

FAST_RETRY = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.01)
TOPIC = "text-to-image diffusion models"


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class Stack:
    settings: Settings
    database: Database
    repo: Repository
    search: SearchService
    ingestor: Ingestor
    llm: LLMClient
    llm_server: ScriptedLLMServer
    sources: FakeSources
    poster: MemoryPoster

    def service(self) -> DigestService:
        """A freshly built service, as after a restart: it shares only the database, index and channel."""
        fetch = live_fetcher(self.settings.sources, retry=FAST_RETRY)
        return build_digest_service(
            self.settings,
            repo=self.repo,
            search=self.search,
            ingestor=self.ingestor,
            llm=self.llm,
            fetch=fetch,
        )

    @property
    def llm_calls(self) -> int:
        return len(self.llm_server.requests_to("/v1/chat/completions"))

    async def subscribe(self, channel_id: int = 100, **options: Any) -> Subscription:
        values: dict[str, Any] = {"guild_id": 1, "channel_id": channel_id, "topics": [TOPIC], "max_papers": 3}
        values.update(options)
        return await self.repo.save_subscription(SubscriptionSettings.model_validate(values))


NEXT_DAY = dt.date(2026, 8, 19)
NEXT_DAY_PAPERS = 12
ARXIV_DAY = dt.date(2026, 6, 30)


def _arxiv_feed() -> bytes:
    d = ARXIV_DAY
    published = [d, d - dt.timedelta(days=1), d - dt.timedelta(days=3), d - dt.timedelta(days=4), d]
    return atom_feed(arxiv_listing("cs.CL", 5), published)


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[EdgePaperIndex]:
    """One index for the module with every paper the tests serve already embedded (embedding on
    CPU is the slow part); the tests' own ingests then find them stored, as on a bot's second day."""
    index = EdgePaperIndex(tmp_path_factory.mktemp("digest-index") / "qdrant")
    papers = [
        *parse_bytes(HF_RAW.read_bytes(), source_name=f"hf:{HF_DAY}", fmt="hf_json").papers,
        *parse_bytes(
            hf_day_from_slim(NEXT_DAY, NEXT_DAY_PAPERS), source_name=f"hf:{NEXT_DAY}", fmt="hf_json"
        ).papers,
        *parse_bytes(_arxiv_feed(), source_name="arxiv:cs.CL", fmt="arxiv_atom").papers,
    ]

    async def fill() -> None:
        await index.ensure_collection(embedder.dimensions)
        await Ingestor(index, embedder, TokenizerSettings()).ingest(papers)

    asyncio.run(fill())
    yield index
    asyncio.run(index.close())


@pytest.fixture
async def stack(
    embedder: Embedder, shared_index: EdgePaperIndex, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    async with fake_sources() as sources, ScriptedLLMServer(responder=summary_responder) as llm_server:
        sources.hf_days[NEXT_DAY.isoformat()] = hf_day_from_slim(NEXT_DAY, NEXT_DAY_PAPERS)
        sources.arxiv["cs.CL"] = _arxiv_feed()
        monkeypatch.setenv("SOURCES_HF_API_BASE", sources.base_url)
        monkeypatch.setenv("SOURCES_ARXIV_API_BASE", sources.base_url)
        monkeypatch.setenv("SOURCES_HTTP_TIMEOUT_S", "5")
        settings = load_settings()
        database = Database.from_settings(settings)
        await upgrade_schema(database.engine)
        search = SearchService(shared_index, embedder, encoding=settings.tokenizer.encoding)
        ingestor = Ingestor(shared_index, embedder, settings.tokenizer)
        llm = LLMClient(
            base_url=llm_server.base_url, api_key=None, model="scripted-model", api_mode="chat",
            timeout_s=5, max_retries=1, sleep=_no_sleep,
        )  # fmt: skip
        repo = Repository(database)
        yield Stack(settings, database, repo, search, ingestor, llm, llm_server, sources, MemoryPoster())
        await llm.aclose()
        await database.close()


# ------------------------------------------------------------------ a normal day


async def test_a_digest_posts_a_header_then_the_picked_papers_and_records_it(stack: Stack) -> None:
    sub = await stack.subscribe(layout="message_per_paper")
    outcome = await stack.service().run(sub, HF_DAY, trigger="schedule", poster=stack.poster)

    assert outcome.status == "posted", outcome.errors
    counts = outcome.counts
    assert (counts.fetched, counts.new, counts.duplicates, counts.filtered, counts.posted) == (
        29,
        29,
        0,
        26,
        3,
    )
    header, *papers = stack.poster.in_channel(100)
    assert header.kind == "header" and header.header is not None
    assert header.header.paper_count == 3 and header.header.sources == ("Hugging Face daily",)
    assert header.marker == "paperbot digest 2026-08-18 · header"
    assert [m.parent_id for m in papers] == [header.message_id] * 3
    posts = [m.post for m in papers if m.post is not None]
    assert "Text-to-Image Diffusion" in posts[0].paper.title
    assert all(TOPIC in p.why or "keyword" in p.why for p in posts[:1])
    contribution = key_contribution(posts[0].paper.abstract)
    assert posts[0].summary == f"TL;DR: Summary of {posts[0].paper.title}.\nKey contribution: {contribution}."
    assert not any(p.summary_is_fallback for p in posts)
    assert [p.rank for p in posts] == [1, 2, 3]
    assert all(m.marker == item_marker(HF_DAY, m.post.paper.paper_id) for m in papers if m.post)
    assert posts[0].layout == "message_per_paper"
    assert stack.llm_calls == 3

    entries = await stack.repo.digest_entries(100, HF_DAY)
    assert [(e.item, e.state) for e in entries] == [("#header", "posted")] + [
        (p.paper.paper_id, "posted") for p in posts
    ]
    assert [e.message_id for e in entries] == [m.message_id for m in stack.poster.in_channel(100)]
    post = await stack.repo.find_post(papers[0].message_id)
    assert post is not None and post.item == posts[0].paper.paper_id  # reactions map back to the paper

    status = await digest_status(stack.repo, 100, now=dt.datetime(2026, 8, 18, 12, tzinfo=dt.UTC))
    assert status is not None and status.runs[0].id == outcome.run_id
    assert status.next_run == dt.datetime(2026, 8, 19, 9, tzinfo=dt.UTC)
    line = describe_run(status.runs[0])
    assert line.startswith(
        "2026-08-18 (schedule) posted: fetched 29, new 29, duplicates 0, filtered 26, posted 3"
    )


async def test_a_scheduled_run_and_digest_now_at_once_post_one_digest(stack: Stack) -> None:
    sub = await stack.subscribe()
    service = stack.service()
    outcomes = await asyncio.gather(
        service.run(sub, HF_DAY, trigger="schedule", poster=stack.poster),
        service.run(sub, HF_DAY, poster=stack.poster),
    )
    assert sorted(o.status for o in outcomes) == ["already_posted", "posted"]
    assert len(stack.poster.paper_ids(100)) == 3


async def test_a_rerun_of_a_posted_day_posts_nothing(stack: Stack) -> None:
    sub = await stack.subscribe()
    await stack.service().run(sub, HF_DAY, poster=stack.poster)
    sent, calls = len(stack.poster.messages), stack.llm_calls
    again = await stack.service().run(sub, HF_DAY, trigger="schedule", poster=stack.poster)
    assert again.status == "already_posted" and again.counts.posted == 0
    assert len(stack.poster.messages) == sent and stack.llm_calls == calls
    assert stack.poster.lookups == 0  # nothing was pending, nothing to look up


# ------------------------------------------------------------------ exactly once across crashes


async def _picked_ids(stack: Stack, sub: Subscription) -> list[str]:
    preview = await stack.service().preview(sub, HF_DAY)
    return [p.paper.paper_id for p in preview.posts]


async def test_a_post_sent_just_before_a_crash_is_found_by_its_marker_not_sent_again(stack: Stack) -> None:
    sub = await stack.subscribe()
    picked = await _picked_ids(stack, sub)
    calls = stack.llm_calls
    stack.poster.crash_after_sending = picked[1]  # sent to the channel, id never recorded
    with pytest.raises(SimulatedCrash):
        await stack.service().run(sub, HF_DAY, trigger="schedule", poster=stack.poster)
    assert [r.status for r in await stack.repo.unfinished_runs()] == ["running"]
    lost = next(e for e in await stack.repo.digest_entries(100, HF_DAY) if e.item == picked[1])
    assert (lost.state, lost.attempts, lost.message_id) == ("intent", 1, None)

    resumed = await stack.service().run(sub, HF_DAY, trigger="recovery", poster=stack.poster)  # a new process

    assert resumed.status == "posted", resumed.errors
    assert (resumed.counts.recovered, resumed.counts.posted) == (1, 1)
    assert stack.poster.paper_ids(100) == picked  # each exactly once, none missing, in order
    assert [m.kind for m in stack.poster.in_channel(100)].count("header") == 1
    assert stack.poster.lookups == 1
    entry = next(e for e in await stack.repo.digest_entries(100, HF_DAY) if e.item == picked[1])
    sent = next(m for m in stack.poster.in_channel(100) if m.marker == entry.marker)
    assert entry.state == "posted" and entry.message_id == sent.message_id
    assert stack.llm_calls == calls  # the plan carries the summaries


async def test_a_post_not_yet_sent_at_the_crash_is_sent_on_restart(stack: Stack) -> None:
    sub = await stack.subscribe()
    picked = await _picked_ids(stack, sub)
    stack.poster.crash_before_sending = picked[2]
    with pytest.raises(SimulatedCrash):
        await stack.service().run(sub, HF_DAY, trigger="schedule", poster=stack.poster)
    resumed = await stack.service().run(sub, HF_DAY, trigger="recovery", poster=stack.poster)
    assert (resumed.counts.recovered, resumed.counts.posted) == (0, 1)
    assert stack.poster.paper_ids(100) == picked


async def test_failed_posts_are_counted_and_a_later_run_completes_the_digest(stack: Stack) -> None:
    sub = await stack.subscribe()
    picked = await _picked_ids(stack, sub)
    stack.poster.fail = {"header"}
    first = await stack.service().run(sub, HF_DAY, poster=stack.poster)
    assert first.status == "failed" and "403 Missing Permissions" in first.errors[0]
    assert stack.poster.messages == []  # no papers without their header

    stack.poster.fail = {picked[0]}
    second = await stack.service().run(sub, HF_DAY, poster=stack.poster)
    assert second.status == "partial" and (second.counts.posted, second.counts.failed) == (2, 1)

    stack.poster.fail = set()
    third = await stack.service().run(sub, HF_DAY, poster=stack.poster)
    assert third.status == "posted" and third.counts.posted == 1
    assert sorted(stack.poster.paper_ids(100)) == sorted(picked)
    runs = await stack.repo.recent_runs(100)
    assert [r.status for r in runs] == ["posted", "partial", "failed"]


# ------------------------------------------------------------------ summaries


async def test_ten_channels_pay_for_each_summary_once(stack: Stack) -> None:
    subs = [await stack.subscribe(channel_id=200 + i) for i in range(10)]
    service = stack.service()
    outcomes = await asyncio.gather(*(service.run(sub, HF_DAY, poster=stack.poster) for sub in subs))
    assert [o.status for o in outcomes] == ["posted"] * 10
    assert stack.llm_calls == 3  # 3 distinct papers, whatever the number of channels
    assert sum("/api/daily_papers" in r for r in stack.sources.requests) == 1  # and one fetch of the day
    summaries = {tuple(m.post.summary for m in stack.poster.in_channel(s.channel_id) if m.post) for s in subs}
    assert len(summaries) == 1

    later = await stack.subscribe(channel_id=300)
    # another process start: the cache is in the database
    await stack.service().run(later, HF_DAY, poster=stack.poster)
    assert stack.llm_calls == 3


async def test_llm_down_posts_the_abstract_marked_as_fallback_and_caches_nothing(stack: Stack) -> None:
    sub = await stack.subscribe()
    stack.llm_server.script(*[ScriptedError(500) for _ in range(6)])  # 3 papers x (1 try + 1 retry)
    outcome = await stack.service().run(sub, HF_DAY, poster=stack.poster)
    assert outcome.status == "posted"
    posts = [m.post for m in stack.poster.in_channel(100) if m.post]
    assert len(posts) == 3 and all(p.summary_is_fallback for p in posts)
    for post in posts:
        assert post.summary == fallback_summary(post.paper)
        assert post.summary.split(" ")[:5] == post.paper.abstract.split()[:5]
    ids = [p.paper.paper_id for p in posts]
    summaries = stack.service().summaries
    model, version = summaries.model, summaries.prompt_version
    assert await stack.repo.cached_summaries(ids, prompt_version=version, model=model) == {}

    other = await stack.subscribe(channel_id=101)  # the LLM is back for the next channel
    await stack.service().run(other, HF_DAY, poster=stack.poster)
    assert not any(m.post.summary_is_fallback for m in stack.poster.in_channel(101) if m.post)
    assert len(await stack.repo.cached_summaries(ids, prompt_version=version, model=model)) == 3


async def test_a_summary_that_does_not_hold_up_is_posted_as_hugging_faces_labelled_even_after_a_crash(
    stack: Stack,
) -> None:
    stack.llm_server.responder = lambda body: "TL;DR: A multi-agent reinforcement learning framework."
    sub = await stack.subscribe()
    picked = await _picked_ids(stack, sub)
    calls = stack.llm_calls
    assert calls == 3
    stack.poster.crash_before_sending = picked[1]
    with pytest.raises(SimulatedCrash):
        await stack.service().run(sub, HF_DAY, poster=stack.poster)
    resumed = await stack.service().run(sub, HF_DAY, trigger="recovery", poster=stack.poster)
    assert resumed.status == "posted", resumed.errors
    posts = [m.post for m in stack.poster.in_channel(100) if m.post]
    assert [p.paper.paper_id for p in posts] == picked
    for post in posts:  # the one planned before the crash and posted after it too
        assert (post.summary, post.summary_note) == (post.paper.ai_summary, HF_AI_SUMMARY)
    other = await stack.subscribe(channel_id=101)
    await stack.service().run(other, HF_DAY, poster=stack.poster)
    assert stack.llm_calls == calls  # the verdict is cached: no channel pays for it again
    assert all(m.post.summary_note == HF_AI_SUMMARY for m in stack.poster.in_channel(101) if m.post)


def test_summary_cleaning_and_fallback_text() -> None:
    assert clean_summary(" A faster model.\nKey contribution: X.\n\nTitle: next") == (
        "TL;DR: A faster model.\nKey contribution: X."
    )
    assert clean_summary("TL;DR: Already prefixed.") == "TL;DR: Already prefixed."
    assert clean_summary("  \n ") == "" and clean_summary("TL;DR:") == ""
    assert len(clean_summary("word " * 400)) <= 700
    paper = Paper(paper_id="x", title="t", abstract="First point here. Second point follows. " * 10)
    text = fallback_summary(paper)
    assert text.startswith("First point here. Second point follows.") and len(text) <= 320
    assert "no abstract" in fallback_summary(Paper(paper_id="y", title="t"))


# ------------------------------------------------------------------ empty days


async def test_an_empty_day_posts_one_line_only_when_the_channel_opted_in(stack: Stack) -> None:
    quiet = await stack.subscribe(channel_id=100)
    chatty = await stack.subscribe(channel_id=101, announce_empty=True)
    day = dt.date(2026, 8, 26)  # no Hugging Face list served for this day
    for sub in (quiet, chatty):
        outcome = await stack.service().run(sub, day, poster=stack.poster)
        assert outcome.status == "empty"
        assert outcome.empty_message == "No digest for Wed 2026-08-26: no new papers in Hugging Face daily."
    assert stack.poster.in_channel(100) == []
    (notice,) = stack.poster.in_channel(101)
    assert notice.header is not None and notice.header.empty_message == outcome.empty_message
    assert notice.marker == "paperbot digest 2026-08-26 · notice"

    again = await stack.service().run(chatty, day, poster=stack.poster)
    assert again.status == "empty" and len(stack.poster.in_channel(101)) == 1  # said once per day
    runs = await stack.repo.recent_runs(100)
    assert runs[0].status == "empty" and runs[0].empty_reason == "no_submissions"


@pytest.mark.parametrize(
    ("options", "day", "expected"),
    [
        ({"min_upvotes": 1000}, HF_DAY, "none of 29 new papers matched (29 below 1000 upvotes)"),
        ({"topics": [], "negative_keywords": ["the"]}, HF_DAY, "29 with an excluded keyword"),
        (
            {"hf_daily": False, "arxiv_categories": ["cs.CL"]},
            dt.date(2026, 8, 22),
            "no new papers on weekends",
        ),
        (
            {"hf_daily": False, "arxiv_categories": ["cs.CL"]},
            dt.date(2026, 8, 24),
            "(arXiv may be on holiday)",
        ),
    ],
)
async def test_empty_days_say_why(stack: Stack, options: dict[str, Any], day: dt.date, expected: str) -> None:
    sub = await stack.subscribe(announce_empty=True, **options)
    outcome = await stack.service().run(sub, day, poster=stack.poster)
    assert outcome.status == "empty" and outcome.empty_message is not None
    assert expected in outcome.empty_message
    (notice,) = stack.poster.in_channel(100)
    assert notice.header is not None and notice.header.empty_message == outcome.empty_message


async def test_unreachable_sources_are_reported_not_silent(stack: Stack) -> None:
    sub = await stack.subscribe(announce_empty=True)
    stack.sources.fail_next = 10
    outcome = await stack.service().run(sub, HF_DAY, poster=stack.poster)
    assert outcome.status == "empty" and "503" in outcome.errors[0]
    assert outcome.empty_message is not None and "could not be reached" in outcome.empty_message
    (run,) = await stack.repo.recent_runs(100)
    assert run.empty_reason == "sources_failed" and "hf:2026-08-18" in run.errors[0]

    stack.sources.fail_next = 0  # the sources are back: the day's digest can still go out
    retry = await stack.service().run(sub, HF_DAY, poster=stack.poster)
    assert retry.status == "posted" and retry.counts.posted == 3


async def test_arxiv_papers_of_the_lookback_window_count_and_are_not_posted_twice(stack: Stack) -> None:
    day = ARXIV_DAY
    sub = await stack.subscribe(hf_daily=False, arxiv_categories=["cs.CL"], topics=[], max_papers=10)
    first = await stack.service().run(sub, day, poster=stack.poster)
    assert (first.counts.fetched, first.counts.posted) == (4, 4)  # the one 4 days old is out of the window
    assert stack.poster.in_channel(100)[0].header.sources == ("arXiv cs.CL",)  # type: ignore[union-attr]
    assert all(p.upvotes is None for p in (m.post.paper for m in stack.poster.in_channel(100) if m.post))

    sub = await stack.repo.save_subscription(sub.settings().model_copy(update={"announce_empty": True}))
    second = await stack.service().run(sub, day + dt.timedelta(days=1), poster=stack.poster)
    assert (second.counts.fetched, second.counts.new, second.counts.duplicates) == (3, 0, 3)
    assert second.empty_message is not None and "were already posted here" in second.empty_message


# ------------------------------------------------------------------ picking


def _paper(paper_id: str, title: str, upvotes: int | None, abstract: str = "An abstract.") -> Paper:
    return Paper(paper_id=paper_id, title=title, abstract=abstract, upvotes=upvotes)


def test_rank_papers_applies_keywords_negatives_upvotes_relevance_and_the_limit() -> None:
    papers = [
        _paper("a", "LoRA adapters for tiny models", 12),
        _paper("b", "A survey of diffusion models", 90),
        _paper("c", "Diffusion from arXiv only", None),
        _paper("d", "Diffusion with few upvotes", 2),
        _paper("e", "Protein folding", 40),
        _paper("f", "Fast diffusion samplers", 30),
        _paper("g", "Diffusion distillation", 30),
        _paper("h", "URL parsing at scale", 50),
    ]
    similarity = {"a": 0.05, "b": 0.8, "c": 0.6, "d": 0.7, "e": 0.1, "f": 0.55, "g": 0.55, "h": 0.1}
    signals = {pid: PaperSignals(topic_similarity={"diffusion": value}) for pid, value in similarity.items()}
    rules = PickRules(
        topics=("diffusion",),
        keywords=("LoRA", "RL"),
        negative_keywords=("survey",),
        min_upvotes=5,
        max_papers=3,
    )
    result = rank_papers(papers, signals, rules)
    # f and g tie on score and upvotes → paper id; c is as relevant but has no upvotes (arXiv only)
    assert [p.paper.paper_id for p in result.picks] == ["f", "g", "c"]
    assert dict(result.dropped) == {"negative_keyword": 1, "min_upvotes": 1, "off_topic": 2, "over_limit": 1}
    assert result.filtered == 5
    assert result.picks[0].why == "matches “diffusion” (0.55) · 30 upvotes"
    assert result.picks[2].why == "matches “diffusion” (0.60)"
    assert rank_papers(papers, signals, rules) == result  # deterministic

    loose = rank_papers(papers, signals, PickRules(topics=("diffusion",), keywords=("LoRA",), max_papers=10))
    lora = next(p for p in loose.picks if p.paper.paper_id == "a")
    assert lora.matched_keywords == ("LoRA",) and lora.why == "keyword “LoRA” · 12 upvotes"
    assert "h" not in [p.paper.paper_id for p in loose.picks]  # "RL" is not a word of "URL"; off-topic

    everything = rank_papers(papers, {}, PickRules(max_papers=10))
    assert [p.paper.paper_id for p in everything.picks][:3] == ["b", "h", "e"]  # no topics: by upvotes


def test_rank_papers_follows_feedback() -> None:
    papers = [_paper("popular", "Popular", 80), _paper("niche", "Niche", 5)]
    neutral = rank_papers(papers, {}, PickRules(max_papers=2))
    assert [p.paper.paper_id for p in neutral.picks] == ["popular", "niche"]
    signals = {
        "niche": PaperSignals(liked_similarity=0.8, disliked_similarity=0.1),
        "popular": PaperSignals(liked_similarity=0.1, disliked_similarity=0.7),
    }
    steered = rank_papers(papers, signals, PickRules(max_papers=2))
    assert [p.paper.paper_id for p in steered.picks] == ["niche", "popular"]
    assert steered.picks[0].why == "5 upvotes · like papers 👍 here"


async def test_reactions_change_the_next_days_ranking(stack: Stack) -> None:
    options = {"topics": [], "max_papers": 30}
    liking, control, disliking = [await stack.subscribe(channel_id=c, **options) for c in (100, 101, 102)]
    for sub in (liking, control, disliking):
        await stack.service().run(sub, HF_DAY, poster=stack.poster)

    # Two people react to the post of the diffusion paper: 👍 in one channel, 👎 in another.
    def diffusion_post(channel_id: int) -> SentMessage:
        return next(
            m
            for m in stack.poster.in_channel(channel_id)
            if m.post and "Text-to-Image Diffusion" in m.post.paper.title
        )

    for message, value in ((diffusion_post(100), 1), (diffusion_post(102), -1)):
        post = await stack.repo.find_post(message.message_id)  # what the reaction handler does
        assert post is not None
        for user in (1, 2):
            await stack.repo.record_feedback(
                guild_id=1, channel_id=post.channel_id, message_id=message.message_id, paper_id=post.item,
                user_id=user, value=value,
            )  # fmt: skip

    ranks: dict[int, list[str]] = {}
    whys: dict[str, str] = {}
    for sub in (liking, control, disliking):
        preview = await stack.service().preview(sub, NEXT_DAY)
        ranks[sub.channel_id] = [p.paper.paper_id for p in preview.posts]
        if sub is liking:
            whys = {p.paper.paper_id: p.why for p in preview.posts}
    assert len(ranks[101]) == NEXT_DAY_PAPERS
    assert sorted(ranks[100]) == sorted(ranks[101]) == sorted(ranks[102])  # same papers, another order
    # The next day's paper closest to the liked one, by the index's own embeddings.
    liked = diffusion_post(100).post
    assert liked is not None
    hits = await stack.search.search_chunks(
        f"{liked.paper.title}\n\n{liked.paper.abstract}",
        limit=5,
        mode="dense",
        search_filter=SearchFilter(paper_ids=tuple(ranks[101])),
    )
    closest = [h.paper.paper_id for h in hits[:3]]
    assert ranks[100].index(closest[0]) < ranks[101].index(closest[0])
    assert all(ranks[100].index(p) <= ranks[101].index(p) for p in closest)
    assert sum(ranks[102].index(p) for p in closest) > sum(ranks[101].index(p) for p in closest)
    assert all(ranks[102].index(p) >= ranks[101].index(p) for p in closest)
    assert "like papers 👍 here" in whys[closest[0]]
    assert sum("👍" in why for why in whys.values()) <= 3  # only the close ones are said to be liked


# ------------------------------------------------------------------ preview and markers


async def test_preview_picks_and_summarizes_without_posting_or_recording(stack: Stack) -> None:
    sub = await stack.subscribe()
    preview = await stack.service().preview(sub, HF_DAY)
    assert (
        len(preview.posts) == 3 and preview.header.paper_count == 3 and preview.header.empty_message is None
    )
    assert all(p.why and p.summary.startswith("TL;DR:") for p in preview.posts)
    assert stack.poster.messages == []
    assert await stack.repo.recent_runs(100) == [] and await stack.repo.digest_entries(100, HF_DAY) == []
    unsaved = SubscriptionSettings(guild_id=1, channel_id=555, topics=["GUI agents"], max_papers=2)
    assert len((await stack.service().preview(unsaved, HF_DAY)).posts) == 2  # works before subscribing


def test_subscribe_options_fill_in_guild_then_bot_defaults() -> None:
    digest = DigestSettings(default_time="07:15", default_timezone="Europe/Paris", max_papers_limit=10)
    guild = GuildSettings(guild_id=1, default_timezone="Asia/Tokyo", default_post_time=None)
    sub = new_subscription(
        guild_id=1,
        channel_id=2,
        options={"topics": "RAG, agents", "layout": None},
        digest=digest,
        guild=guild,
    )
    assert (sub.timezone, sub.post_time, sub.weekdays) == ("Asia/Tokyo", dt.time(7, 15), (0, 1, 2, 3, 4))
    assert sub.topics == ["RAG", "agents"] and sub.layout == "thread_per_paper" and sub.max_papers == 5
    edited = update_subscription(sub, {"max_papers": 8, "topics": None}, digest)
    assert edited.max_papers == 8 and edited.topics == ["RAG", "agents"]
    with pytest.raises(SubscriptionLimitError, match="at most 10 papers"):
        update_subscription(sub, {"max_papers": 20}, digest)


async def test_saved_source_files_stand_in_for_the_network(tmp_path: Path) -> None:
    (tmp_path / f"hf_daily_{HF_DAY}.json").write_bytes(HF_RAW.read_bytes())
    fetch = directory_fetcher(tmp_path)
    result = await fetch(f"hf:{HF_DAY}")
    assert len(result.papers) == 29 and all(p.hf_date == HF_DAY for p in result.papers)
    with pytest.raises(FileNotFoundError, match=r"arxiv_cs\.CL\.xml"):
        await fetch("arxiv:cs.CL")


async def test_a_source_is_fetched_once_per_cache_period(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / f"hf_daily_{HF_DAY}.json").write_bytes(HF_RAW.read_bytes())
    saved = directory_fetcher(tmp_path)
    fetched: list[str] = []

    async def counting(spec: str) -> ParseResult:
        fetched.append(spec)
        return await saved(spec)

    now = [1000.0]
    loader = SourceLoader(counting, stack.ingestor, ttl_s=600, clock=lambda: now[0])
    first = await loader.load(f"hf:{HF_DAY}")
    again = await loader.load(f"hf:{HF_DAY}")
    assert again is first and fetched == [f"hf:{HF_DAY}"]
    failed = await loader.load("arxiv:cs.CL")  # no saved file: an error, not cached
    assert failed.error is not None and "arxiv_cs.CL.xml" in failed.error
    now[0] += 601
    refreshed = await loader.load(f"hf:{HF_DAY}")
    assert refreshed is not first and len(refreshed.papers) == 29
    assert fetched == [f"hf:{HF_DAY}", "arxiv:cs.CL", f"hf:{HF_DAY}"]


def test_markers_round_trip() -> None:
    marker = item_marker(HF_DAY, "2608.16887")
    assert marker == "paperbot digest 2026-08-18 · 2608.16887"
    assert parse_marker(f"footer text · {marker}") == (HF_DAY, "2608.16887")
    assert parse_marker(item_marker(HF_DAY, "#header")) == (HF_DAY, "header")
    assert parse_marker("paperbot digest 2026-13-45 · x") is None and parse_marker("nothing") is None
