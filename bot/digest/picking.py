"""Which of the day's new papers a channel gets, in which order, and why.

Two steps: `gather_signals` asks the vector index how close each candidate is to the channel's
topics and to the papers the channel liked or disliked (dense similarity, restricted to the
candidates with `SearchFilter(paper_ids=...)`); `rank_papers` is a pure function of those numbers,
the subscription's rules and the papers' metadata, so the ranking is deterministic and testable.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from bot.core.papers import Paper
from bot.retrieval.chunking import paper_text
from bot.retrieval.index import SearchFilter
from bot.retrieval.search import SearchService

FEEDBACK_TEXT_CHARS = 1500


@dataclass(frozen=True)
class PaperSignals:
    """How close a paper is to each topic, and to the channel's liked / disliked papers (0 = unknown)."""

    topic_similarity: Mapping[str, float] = field(default_factory=dict)
    liked_similarity: float = 0.0
    disliked_similarity: float = 0.0
    # The channel's own engagement with this very paper (weekly roundups): net 👍 − 👎 on its posts
    # here, and how many of the channel's voters saved it to their library.
    channel_votes: int = 0
    saves: int = 0


@dataclass(frozen=True)
class PickRules:
    topics: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    negative_keywords: tuple[str, ...] = ()
    min_upvotes: int = 0
    max_papers: int = 5
    min_topic_similarity: float = 0.25


@dataclass(frozen=True)
class RankWeights:
    relevance: float = 1.0
    keyword: float = 0.3  # first matched keyword; each further one adds a third of it
    upvotes: float = 0.3  # times log1p(upvotes) / log1p(upvotes_scale), capped at 1
    upvotes_scale: int = 100
    # Feedback counts relative to the day: similarity to the liked papers minus its mean over the
    # candidates (papers of one field all look a little alike), the same for the disliked ones.
    feedback: float = 0.6  # times (relative liked similarity − relative disliked similarity)
    feedback_note_threshold: float = 0.2  # mention feedback in "why" from this relative similarity on
    votes: float = 0.2  # per net 👍 on the paper in this channel, at most `engagement_cap` of them
    saves: float = 0.2  # per save by the channel's voters, at most `engagement_cap` of them
    engagement_cap: int = 5


@dataclass(frozen=True)
class Pick:
    paper: Paper
    score: float
    why: str
    matched_topic: str | None = None
    matched_keywords: tuple[str, ...] = ()


DropReason = str  # "negative_keyword", "min_upvotes", "off_topic", "over_limit"


@dataclass(frozen=True)
class PickResult:
    picks: list[Pick]
    dropped: Counter[DropReason]

    @property
    def filtered(self) -> int:
        return sum(self.dropped.values())


@cache
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    # Whole words or phrases, case-insensitive: "RL" must not match "URL".
    return re.compile(rf"(?<!\w){re.escape(keyword)}(?!\w)", re.IGNORECASE)


def matched_keywords(paper: Paper, keywords: Sequence[str]) -> tuple[str, ...]:
    text = f"{paper.title}\n{paper.abstract}"
    return tuple(k for k in keywords if _keyword_pattern(k).search(text))


def _upvote_score(upvotes: int | None, scale: int) -> float:
    if not upvotes or upvotes <= 0:
        return 0.0
    return min(1.0, math.log1p(upvotes) / math.log1p(scale))


def _why(
    *,
    topic: str | None,
    similarity: float,
    keywords: tuple[str, ...],
    upvotes: int | None,
    liked_closeness: float,
    weights: RankWeights,
    channel_votes: int = 0,
    saves: int = 0,
) -> str:
    parts: list[str] = []
    if channel_votes > 0:
        parts.append(f"{channel_votes} 👍 here")
    if saves > 0:
        parts.append(f"saved by {saves} here")
    if topic is not None:
        parts.append(f"matches “{topic}” ({similarity:.2f})")
    if keywords:
        parts.append("keyword " + ", ".join(f"“{k}”" for k in keywords))
    if upvotes:
        parts.append(f"{upvotes} upvote{'s' if upvotes != 1 else ''}")
    if liked_closeness >= weights.feedback_note_threshold:
        parts.append("like papers 👍 here")
    return " · ".join(parts) or "today's papers, in order of interest"


def rank_papers(
    papers: Sequence[Paper],
    signals: Mapping[str, PaperSignals],
    rules: PickRules,
    weights: RankWeights = RankWeights(),
) -> PickResult:
    """Filter and order `papers` for one channel; ties break on upvotes, then paper id."""
    dropped: Counter[DropReason] = Counter()
    scored: list[Pick] = []
    focused = bool(rules.topics or rules.keywords)
    day = [signals.get(p.paper_id, PaperSignals()) for p in papers]
    liked_baseline = sum(s.liked_similarity for s in day) / len(day) if day else 0.0
    disliked_baseline = sum(s.disliked_similarity for s in day) / len(day) if day else 0.0
    for paper in papers:
        if matched_keywords(paper, rules.negative_keywords):
            dropped["negative_keyword"] += 1
            continue
        if rules.min_upvotes and paper.upvotes is not None and paper.upvotes < rules.min_upvotes:
            dropped["min_upvotes"] += 1
            continue
        signal = signals.get(paper.paper_id, PaperSignals())
        best_topic, similarity = None, 0.0
        for topic in rules.topics:
            value = signal.topic_similarity.get(topic, 0.0)
            if best_topic is None or value > similarity:
                best_topic, similarity = topic, value
        keywords = matched_keywords(paper, rules.keywords)
        on_topic = best_topic is not None and similarity >= rules.min_topic_similarity
        if focused and not on_topic and not keywords:
            dropped["off_topic"] += 1
            continue
        liked_closeness = signal.liked_similarity - liked_baseline
        net_feedback = liked_closeness - (signal.disliked_similarity - disliked_baseline)
        score = (
            weights.relevance * max(similarity, 0.0)
            + (weights.keyword * (1 + (len(keywords) - 1) / 3) if keywords else 0.0)
            + weights.upvotes * _upvote_score(paper.upvotes, weights.upvotes_scale)
            + weights.feedback * net_feedback
            + weights.votes * max(-weights.engagement_cap, min(signal.channel_votes, weights.engagement_cap))
            + weights.saves * min(signal.saves, weights.engagement_cap)
        )
        why = _why(
            topic=best_topic if on_topic else None,
            similarity=similarity,
            keywords=keywords,
            upvotes=paper.upvotes,
            liked_closeness=liked_closeness,
            weights=weights,
            channel_votes=signal.channel_votes,
            saves=signal.saves,
        )
        scored.append(
            Pick(
                paper=paper,
                score=round(score, 6),
                why=why,
                matched_topic=best_topic if on_topic else None,
                matched_keywords=keywords,
            )
        )
    scored.sort(key=lambda p: (-p.score, -(p.paper.upvotes or 0), p.paper.paper_id))
    picks = scored[: rules.max_papers]
    if len(scored) > len(picks):
        dropped["over_limit"] += len(scored) - len(picks)
    return PickResult(picks=picks, dropped=dropped)


async def gather_signals(
    search: SearchService,
    papers: Sequence[Paper],
    *,
    topics: Sequence[str],
    liked: Sequence[Paper] = (),
    disliked: Sequence[Paper] = (),
) -> dict[str, PaperSignals]:
    """Dense similarity of each candidate to each topic and to the liked / disliked papers."""
    ids = tuple(dict.fromkeys(p.paper_id for p in papers))
    if not ids:
        return {}
    restrict = SearchFilter(paper_ids=ids)
    limit = len(ids) * 4  # a paper may have several chunks; its best one counts
    by_topic: dict[str, dict[str, float]] = {}
    for topic in topics:
        hits = await search.search_chunks(topic, limit=limit, search_filter=restrict, mode="dense")
        by_topic[topic] = _best_per_paper((h.paper.paper_id, h.score) for h in hits)

    async def closest(examples: Sequence[Paper]) -> dict[str, float]:
        if not examples:
            return {}
        texts = [paper_text(p)[:FEEDBACK_TEXT_CHARS] for p in examples]
        vectors = await search.embedder.embed_documents(texts)
        best: dict[str, float] = {}
        for vector in vectors:
            hits = await search.index.query(
                dense=vector, sparse=None, mode="dense", limit=limit, search_filter=restrict
            )
            for paper_id, score in _best_per_paper((h.paper.paper_id, h.score) for h in hits).items():
                best[paper_id] = max(best.get(paper_id, score), score)
        return best

    liked_scores = await closest(liked)
    disliked_scores = await closest(disliked)
    return {
        paper_id: PaperSignals(
            topic_similarity={t: scores[paper_id] for t, scores in by_topic.items() if paper_id in scores},
            liked_similarity=liked_scores.get(paper_id, 0.0),
            disliked_similarity=disliked_scores.get(paper_id, 0.0),
        )
        for paper_id in ids
    }


def _best_per_paper(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for paper_id, score in pairs:
        if paper_id not in best or score > best[paper_id]:
            best[paper_id] = float(score)
    return best
