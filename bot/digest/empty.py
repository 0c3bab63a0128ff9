"""Why a day's digest has nothing to post, in one short line for the channel."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from enum import StrEnum

from bot.digest.records import DigestCounts

_DROP_LABELS = {
    "off_topic": "off-topic",
    "negative_keyword": "with an excluded keyword",
    "min_upvotes": "below {min_upvotes} upvotes",
    "over_limit": "over the limit",
}


class EmptyReason(StrEnum):
    SOURCES_FAILED = "sources_failed"
    NO_SUBMISSIONS = "no_submissions"
    ARXIV_WEEKEND = "arxiv_weekend"
    NOTHING_NEW = "nothing_new"
    ALL_FILTERED = "all_filtered"


def empty_reason(
    counts: DigestCounts, *, sources_failed: bool, arxiv_only: bool, digest_date: dt.date
) -> EmptyReason:
    if sources_failed and counts.fetched == 0:
        return EmptyReason.SOURCES_FAILED
    if counts.fetched == 0:
        weekend = digest_date.weekday() >= 5
        return EmptyReason.ARXIV_WEEKEND if arxiv_only and weekend else EmptyReason.NO_SUBMISSIONS
    if counts.new == 0:
        return EmptyReason.NOTHING_NEW
    return EmptyReason.ALL_FILTERED


def explain_empty(
    reason: EmptyReason,
    counts: DigestCounts,
    *,
    digest_date: dt.date,
    sources: Sequence[str],
    dropped: Mapping[str, int],
    errors: Sequence[str] = (),
    min_upvotes: int = 0,
    has_arxiv: bool = False,
) -> str:
    day = f"{digest_date:%a} {digest_date.isoformat()}"
    where = ", ".join(sources)
    if reason is EmptyReason.SOURCES_FAILED:
        detail = errors[0] if errors else "no answer"
        return f"No digest for {day}: the paper sources could not be reached ({detail[:120]})."
    if reason is EmptyReason.ARXIV_WEEKEND:
        return f"No digest for {day}: arXiv announces no new papers on weekends."
    if reason is EmptyReason.NO_SUBMISSIONS:
        holiday = " (arXiv may be on holiday)" if has_arxiv else ""
        return f"No digest for {day}: no new papers in {where}{holiday}."
    if reason is EmptyReason.NOTHING_NEW:
        return f"No digest for {day}: all {counts.fetched} papers in {where} were already posted here."
    parts = [
        f"{count} {_DROP_LABELS.get(name, name).format(min_upvotes=min_upvotes)}"
        for name, count in sorted(dropped.items(), key=lambda item: (-item[1], item[0]))
        if count
    ]
    return f"No digest for {day}: none of {counts.new} new papers matched ({', '.join(parts)})."
