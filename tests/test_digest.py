"""Digest runs end to end below Discord: real HTTP sources, real embeddings in Qdrant Edge, the real
`openai` client against the scripted LLM server, real SQLite, and an in-memory `DigestPoster`."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.db import Database, Repository, Subscription, SubscriptionSettings, upgrade_schema
from bot.digest import DigestService, build_digest_service, item_marker, parse_marker
from bot.digest.picking import PaperSignals, PickRules, rank_papers
from bot.digest.sources import live_fetcher
from bot.digest.status import describe_run, digest_status
from bot.digest.summaries import clean_summary, fallback_summary
from bot.embedding import Embedder
from bot.index.edge import EdgePaperIndex
from bot.ingest.fetch import RetryPolicy
from bot.ingest.pipeline import Ingestor
from bot.llm import LLMClient
from bot.models import Paper
from bot.search import SearchService
from bot.services import Services
from tests.support.digest import (
    HF_DAY,
    FakeSources,
    MemoryPoster,
    SimulatedCrash,
    arxiv_listing,
    atom_feed,
    fake_sources,
    hf_day_from_slim,
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
    services: Services
    llm: LLMClient
    llm_server: ScriptedLLMServer
    sources: FakeSources
    poster: MemoryPoster

    def service(self) -> DigestService:
        """A freshly built service, as after a restart: it shares only the database, index and channel."""
        fetch = live_fetcher(self.settings.sources, retry=FAST_RETRY)
        return build_digest_service(
            self.settings, self.services, self.repo, self.llm, poster=self.poster, fetch=fetch
        )

    @property
    def llm_calls(self) -> int:
        return len(self.llm_server.requests_to("/v1/chat/completions"))

    async def subscribe(self, channel_id: int = 100, **options: Any) -> Subscription:
        values: dict[str, Any] = {"guild_id": 1, "channel_id": channel_id, "topics": [TOPIC], "max_papers": 3}
        values.update(options)
        return await self.repo.save_subscription(SubscriptionSettings.model_validate(values))


@pytest.fixture
async def stack(
    tmp_path: Any, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    async with fake_sources() as sources, ScriptedLLMServer(responder=summary_responder) as llm_server:
        monkeypatch.setenv("SOURCES_HF_API_BASE", sources.base_url)
        monkeypatch.setenv("SOURCES_ARXIV_API_BASE", sources.base_url)
        monkeypatch.setenv("SOURCES_HTTP_TIMEOUT_S", "5")
        settings = load_settings()
        database = Database.from_settings(settings)
        await upgrade_schema(database.engine)
        index = EdgePaperIndex(settings.core.qdrant_path)
        await index.ensure_collection(embedder.dimensions)
        services = Services(
            settings=settings,
            index=index,
            embedder=embedder,
            ingestor=Ingestor(index, embedder, settings.tokenizer),
            search=SearchService(index, embedder, encoding=settings.tokenizer.encoding),
        )
        llm = LLMClient(
            base_url=llm_server.base_url, api_key=None, model="scripted-model", api_mode="chat",
            timeout_s=5, max_retries=1, sleep=_no_sleep,
        )  # fmt: skip
        yield Stack(settings, database, Repository(database), services, llm, llm_server, sources, MemoryPoster())
        await llm.aclose()
        await index.close()
        await database.close()


# ------------------------------------------------------------------ a normal day


async def test_a_digest_posts_a_header_then_the_picked_papers_and_records_it(stack: Stack) -> None:
    sub = await stack.subscribe(layout="message_per_paper")
    outcome = await stack.service().run(sub, HF_DAY, trigger="schedule")

    assert outcome.status == "posted", outcome.errors
    counts = outcome.counts
    assert (counts.fetched, counts.new, counts.duplicates, counts.filtered, counts.posted) == (29, 29, 0, 26, 3)
    header, *papers = stack.poster.in_channel(100)
    assert header.kind == "header" and header.header is not None
    assert header.header.paper_count == 3 and header.header.sources == ("Hugging Face daily",)
    assert header.marker == "paperbot digest 2026-08-18 · header"
    assert [m.parent_id for m in papers] == [header.message_id] * 3
    posts = [m.post for m in papers if m.post is not None]
    assert "Text-to-Image Diffusion" in posts[0].paper.title
    assert all(TOPIC in p.why or "keyword" in p.why for p in posts[:1])
    assert posts[0].summary == f"TL;DR: Summary of {posts[0].paper.title}.\nKey contribution: a tested idea."
    assert not any(p.summary_is_fallback for p in posts)
    assert [p.rank for p in posts] == [1, 2, 3]
    assert all(m.marker == item_marker(HF_DAY, m.post.paper.paper_id) for m in papers if m.post)
    assert posts[0].layout == "message_per_paper"
    assert stack.llm_calls == 3

    entries = await stack.repo.digest_entries(100, HF_DAY)
    assert [(e.item, e.state) for e in entries] == [("#header", "posted")] + [(p.paper.paper_id, "posted") for p in posts]
    assert [e.message_id for e in entries] == [m.message_id for m in stack.poster.in_channel(100)]
    post = await stack.repo.find_post(papers[0].message_id)
    assert post is not None and post.item == posts[0].paper.paper_id  # reactions map back to the paper

    status = await digest_status(stack.repo, 100, now=dt.datetime(2026, 8, 18, 12, tzinfo=dt.UTC))
    assert status is not None and status.runs[0].id == outcome.run_id
    assert status.next_run == dt.datetime(2026, 8, 19, 9, tzinfo=dt.UTC)
    line = describe_run(status.runs[0])
    assert line.startswith("2026-08-18 (schedule) posted: fetched 29, new 29, duplicates 0, filtered 26, posted 3")


async def test_a_rerun_of_a_posted_day_posts_nothing(stack: Stack) -> None:
    sub = await stack.subscribe()
    await stack.service().run(sub, HF_DAY)
    sent, calls = len(stack.poster.messages), stack.llm_calls
    again = await stack.service().run(sub, HF_DAY, trigger="schedule")
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
        await stack.service().run(sub, HF_DAY, trigger="schedule")
    assert [r.status for r in await stack.repo.unfinished_runs()] == ["running"]
    lost = next(e for e in await stack.repo.digest_entries(100, HF_DAY) if e.item == picked[1])
    assert (lost.state, lost.attempts, lost.message_id) == ("intent", 1, None)

    resumed = await stack.service().run(sub, HF_DAY, trigger="recovery")  # a new process

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
        await stack.service().run(sub, HF_DAY, trigger="schedule")
    resumed = await stack.service().run(sub, HF_DAY, trigger="recovery")
    assert (resumed.counts.recovered, resumed.counts.posted) == (0, 1)
    assert stack.poster.paper_ids(100) == picked


async def test_failed_posts_are_counted_and_a_later_run_completes_the_digest(stack: Stack) -> None:
    sub = await stack.subscribe()
    picked = await _picked_ids(stack, sub)
    stack.poster.fail = {"header"}
    first = await stack.service().run(sub, HF_DAY)
    assert first.status == "failed" and "403 Missing Permissions" in first.errors[0]
    assert stack.poster.messages == []  # no papers without their header

    stack.poster.fail = {picked[0]}
    second = await stack.service().run(sub, HF_DAY)
    assert second.status == "partial" and (second.counts.posted, second.counts.failed) == (2, 1)

    stack.poster.fail = set()
    third = await stack.service().run(sub, HF_DAY)
    assert third.status == "posted" and third.counts.posted == 1
    assert sorted(stack.poster.paper_ids(100)) == sorted(picked)
    runs = await stack.repo.recent_runs(100)
    assert [r.status for r in runs] == ["posted", "partial", "failed"]


# ------------------------------------------------------------------ summaries


async def test_ten_channels_pay_for_each_summary_once(stack: Stack) -> None:
    subs = [await stack.subscribe(channel_id=200 + i) for i in range(10)]
    service = stack.service()
    outcomes = await asyncio.gather(*(service.run(sub, HF_DAY) for sub in subs))
    assert [o.status for o in outcomes] == ["posted"] * 10
    assert stack.llm_calls == 3  # 3 distinct papers, whatever the number of channels
    summaries = {tuple(m.post.summary for m in stack.poster.in_channel(s.channel_id) if m.post) for s in subs}
    assert len(summaries) == 1

    later = await stack.subscribe(channel_id=300)
    await stack.service().run(later, HF_DAY)  # another process start: the cache is in the database
    assert stack.llm_calls == 3


async def test_llm_down_posts_the_abstract_marked_as_fallback_and_caches_nothing(stack: Stack) -> None:
    sub = await stack.subscribe()
    stack.llm_server.script(*[ScriptedError(500) for _ in range(6)])  # 3 papers x (1 try + 1 retry)
    outcome = await stack.service().run(sub, HF_DAY)
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
    await stack.service().run(other, HF_DAY)
    assert not any(m.post.summary_is_fallback for m in stack.poster.in_channel(101) if m.post)
    assert len(await stack.repo.cached_summaries(ids, prompt_version=version, model=model)) == 3


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
        outcome = await stack.service().run(sub, day)
        assert outcome.status == "empty"
        assert outcome.empty_message == "No digest for Wed 2026-08-26: no new papers in Hugging Face daily."
    assert stack.poster.in_channel(100) == []
    (notice,) = stack.poster.in_channel(101)
    assert notice.header is not None and notice.header.empty_message == outcome.empty_message
    assert notice.marker == "paperbot digest 2026-08-26 · notice"

    again = await stack.service().run(chatty, day)
    assert again.status == "empty" and len(stack.poster.in_channel(101)) == 1  # said once per day
    runs = await stack.repo.recent_runs(100)
    assert runs[0].status == "empty" and runs[0].empty_reason == "no_submissions"


@pytest.mark.parametrize(
    ("options", "day", "expected"),
    [
        ({"min_upvotes": 1000}, HF_DAY, "none of 29 new papers matched (29 below 1000 upvotes)"),
        ({"topics": [], "negative_keywords": ["the"]}, HF_DAY, "29 with an excluded keyword"),
        ({"hf_daily": False, "arxiv_categories": ["cs.CL"]}, dt.date(2026, 8, 22), "no new papers on weekends"),
        ({"hf_daily": False, "arxiv_categories": ["cs.CL"]}, dt.date(2026, 8, 24), "(arXiv may be on holiday)"),
    ],
)
async def test_empty_days_say_why(stack: Stack, options: dict[str, Any], day: dt.date, expected: str) -> None:
    sub = await stack.subscribe(announce_empty=True, **options)
    outcome = await stack.service().run(sub, day)
    assert outcome.status == "empty" and outcome.empty_message is not None
    assert expected in outcome.empty_message
    (notice,) = stack.poster.in_channel(100)
    assert notice.header is not None and notice.header.empty_message == outcome.empty_message


async def test_unreachable_sources_are_reported_not_silent(stack: Stack) -> None:
    sub = await stack.subscribe(announce_empty=True)
    stack.sources.fail_next = 10
    outcome = await stack.service().run(sub, HF_DAY)
    assert outcome.status == "empty" and "503" in outcome.errors[0]
    assert outcome.empty_message is not None and "could not be reached" in outcome.empty_message
    (run,) = await stack.repo.recent_runs(100)
    assert run.empty_reason == "sources_failed" and "hf:2026-08-18" in run.errors[0]

    stack.sources.fail_next = 0  # the sources are back: the day's digest can still go out
    retry = await stack.service().run(sub, HF_DAY)
    assert retry.status == "posted" and retry.counts.posted == 3


async def test_arxiv_papers_of_the_lookback_window_count_and_are_not_posted_twice(stack: Stack) -> None:
    records = arxiv_listing("cs.CL", 5)
    day = dt.date(2026, 6, 30)
    published = [day, day - dt.timedelta(days=1), day - dt.timedelta(days=3), day - dt.timedelta(days=4), day]
    stack.sources.arxiv["cs.CL"] = atom_feed(records, published)
    sub = await stack.subscribe(hf_daily=False, arxiv_categories=["cs.CL"], topics=[], max_papers=10)
    first = await stack.service().run(sub, day)
    assert (first.counts.fetched, first.counts.posted) == (4, 4)  # the one 4 days old is out of the window
    assert stack.poster.in_channel(100)[0].header.sources == ("arXiv cs.CL",)  # type: ignore[union-attr]
    assert all(p.upvotes is None for p in (m.post.paper for m in stack.poster.in_channel(100) if m.post))

    sub = await stack.repo.save_subscription(sub.settings().model_copy(update={"announce_empty": True}))
    second = await stack.service().run(sub, day + dt.timedelta(days=1))
    assert (second.counts.fetched, second.counts.new, second.counts.duplicates) == (3, 0, 3)
    assert second.empty_message is not None and "were already posted here" in second.empty_message


# ------------------------------------------------------------------ picking


def _paper(paper_id: str, title: str, upvotes: int | None, abstract: str = "An abstract.") -> Paper:
    return Paper(paper_id=paper_id, title=title, abstract=abstract, upvotes=upvotes)


def test_rank_papers_applies_keywords_negatives_upvotes_relevance_and_the_limit() -> None:
    papers = [
        _paper("a", "LoRA adapters for tiny models", 1),
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
        topics=("diffusion",), keywords=("LoRA", "RL"), negative_keywords=("survey",), min_upvotes=5, max_papers=3
    )
    result = rank_papers(papers, signals, rules)
    assert [p.paper.paper_id for p in result.picks] == ["c", "f", "g"]  # f/g tie on score → upvotes → id
    assert dict(result.dropped) == {"negative_keyword": 1, "min_upvotes": 1, "off_topic": 2, "over_limit": 1}
    assert result.filtered == 5
    assert result.picks[0].why == "matches “diffusion” (0.60)"
    assert result.picks[1].why == "matches “diffusion” (0.55) · 30 upvotes"
    assert rank_papers(papers, signals, rules) == result  # deterministic

    loose = rank_papers(papers, signals, PickRules(topics=("diffusion",), keywords=("LoRA",), max_papers=10))
    lora = next(p for p in loose.picks if p.paper.paper_id == "a")
    assert lora.matched_keywords == ("LoRA",) and lora.why == "keyword “LoRA” · 1 upvote"
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
    next_day = dt.date(2026, 8, 19)
    stack.sources.hf_days[next_day.isoformat()] = hf_day_from_slim(next_day)
    options = {"topics": [], "max_papers": 30}
    liking, control, disliking = (await stack.subscribe(channel_id=c, **options) for c in (100, 101, 102))
    for sub in (liking, control, disliking):
        await stack.service().run(sub, HF_DAY)

    # People react to the post of the diffusion paper in two channels.
    message = next(
        m for m in stack.poster.in_channel(100) if m.post and "Text-to-Image Diffusion" in m.post.paper.title
    )
    disliked_message = next(
        m for m in stack.poster.in_channel(102) if m.post and m.post.paper.paper_id == message.post.paper.paper_id  # type: ignore[union-attr]
    )
    for msg, value in ((message, 1), (disliked_message, -1)):
        post = await stack.repo.find_post(msg.message_id)
        assert post is not None
        for user in (1, 2):
            await stack.repo.record_feedback(
                guild_id=1, channel_id=post.channel_id, message_id=msg.message_id, paper_id=post.item,
                user_id=user, value=value,
            )  # fmt: skip

    ranks: dict[int, list[str]] = {}
    for sub in (liking, control, disliking):
        preview = await stack.service().preview(sub, next_day)
        ranks[sub.channel_id] = [p.paper.paper_id for p in preview.posts]
        if sub is liking:
            whys = {p.paper.paper_id: p.why for p in preview.posts}
    assert sorted(ranks[100]) == sorted(ranks[101]) == sorted(ranks[102])  # same papers, other order
    # The next day's papers closest to the liked one, by the same embedding the index uses.
    liked_text = f"{message.post.title if False else message.post.paper.title}\n\n{message.post.paper.abstract}"  # type: ignore[union-attr]
    hits = await stack.services.search.search_chunks(liked_text[:1500], limit=3, mode="dense", search_filter=None)
    similar = next(h.paper.paper_id for h in hits if h.paper.paper_id in ranks[101])
    assert ranks[100].index(similar) < ranks[101].index(similar) < ranks[102].index(similar)
    assert "like papers 👍 here" in whys[similar]


# ------------------------------------------------------------------ preview and markers


async def test_preview_picks_and_summarizes_without_posting_or_recording(stack: Stack) -> None:
    sub = await stack.subscribe()
    preview = await stack.service().preview(sub, HF_DAY)
    assert len(preview.posts) == 3 and preview.header.paper_count == 3 and preview.header.empty_message is None
    assert all(p.why and p.summary.startswith("TL;DR:") for p in preview.posts)
    assert stack.poster.messages == []
    assert await stack.repo.recent_runs(100) == [] and await stack.repo.digest_entries(100, HF_DAY) == []
    unsaved = SubscriptionSettings(guild_id=1, channel_id=555, topics=["GUI agents"], max_papers=2)
    assert len((await stack.service().preview(unsaved, HF_DAY)).posts) == 2  # works before subscribing


def test_markers_round_trip() -> None:
    marker = item_marker(HF_DAY, "2608.16887")
    assert marker == "paperbot digest 2026-08-18 · 2608.16887"
    assert parse_marker(f"footer text · {marker}") == (HF_DAY, "2608.16887")
    assert parse_marker(item_marker(HF_DAY, "#header")) == (HF_DAY, "header")
    assert parse_marker("paperbot digest 2026-13-45 · x") is None and parse_marker("nothing") is None
