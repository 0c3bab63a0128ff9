"""Plain, validated records that the repository reads and writes (no ORM objects leak out).

`SubscriptionSettings` is also the input of `/digest subscribe`: its validation errors are worded
for the server admin who typed the options.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.core.papers import clean_text
from bot.core.timing import format_weekdays, parse_post_time, parse_weekdays, validate_timezone

Layout = Literal["thread_per_paper", "message_per_paper"]
LAYOUTS: tuple[Layout, ...] = ("thread_per_paper", "message_per_paper")
# daily: the day's papers on each chosen weekday; weekly: one roundup of the past 7 days with a
# "paper of the week" poll, on one weekday.
Cadence = Literal["daily", "weekly"]
CADENCES: tuple[Cadence, ...] = ("daily", "weekly")
RunTrigger = Literal["schedule", "manual", "recovery"]
RunStatus = Literal[
    "running", "posted", "partial", "empty", "already_posted", "skipped", "failed", "interrupted"
]
LedgerKind = Literal["header", "paper", "notice", "guide"]  # guide: a roundup's discussion thread
LedgerState = Literal["intent", "posted", "failed"]

_ARXIV_CATEGORY = re.compile(r"^[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]+(?:-[a-z]+)?)?$")
MAX_TOPICS = 10
MAX_KEYWORDS = 20
MAX_TOPIC_CHARS = 200
MAX_KEYWORD_CHARS = 60


def _split_list(value: Any) -> list[Any]:
    """Lists come from slash-command options as one string: "a, b; c" or one item per line."""
    if isinstance(value, str):
        return re.split(r"[,;\n]", value)
    return list(value or [])


def _clean_terms(values: list[str], *, limit: int, max_chars: int, what: str) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        term = clean_text(value)
        if not term:
            continue
        if len(term) > max_chars:
            raise ValueError(f"{what} {term[:30]!r}… is longer than {max_chars} characters")
        seen.setdefault(term.lower(), term)
    if len(seen) > limit:
        raise ValueError(f"at most {limit} {what}s, got {len(seen)}")
    return list(seen.values())


class SubscriptionSettings(BaseModel):
    """What a channel's digest picks and when it posts. Validated on every write."""

    model_config = ConfigDict(frozen=True)

    guild_id: int
    channel_id: int
    hf_daily: bool = True
    arxiv_categories: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    negative_keywords: list[str] = Field(default_factory=list)
    min_upvotes: int = Field(default=0, ge=0)
    max_papers: int = Field(default=5, ge=1, le=50)
    post_time: dt.time = dt.time(9, 0)
    timezone: str = "UTC"
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    layout: Layout = "thread_per_paper"
    cadence: Cadence = "daily"
    announce_empty: bool = False
    paused: bool = False
    created_by: int | None = None

    @field_validator("arxiv_categories", mode="before")
    @classmethod
    def _categories(cls, value: Any) -> list[str]:
        items = _split_list(value)
        categories: list[str] = []
        for raw in items:
            category = str(raw).strip()
            if not category:
                continue
            if not _ARXIV_CATEGORY.match(category):
                raise ValueError(f"{category!r} is not an arXiv category such as cs.CL or hep-th")
            if category not in categories:
                categories.append(category)
        return categories

    @field_validator("topics", mode="before")
    @classmethod
    def _topics(cls, value: Any) -> list[str]:
        items = _split_list(value)
        return _clean_terms(
            [str(v) for v in items], limit=MAX_TOPICS, max_chars=MAX_TOPIC_CHARS, what="topic"
        )

    @field_validator("keywords", "negative_keywords", mode="before")
    @classmethod
    def _keywords(cls, value: Any) -> list[str]:
        items = _split_list(value)
        return _clean_terms(
            [str(v) for v in items], limit=MAX_KEYWORDS, max_chars=MAX_KEYWORD_CHARS, what="keyword"
        )

    @field_validator("post_time", mode="before")
    @classmethod
    def _post_time(cls, value: Any) -> dt.time:
        return parse_post_time(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("weekdays", mode="before")
    @classmethod
    def _weekdays(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, str):
            return parse_weekdays(value)
        days = sorted({int(d) for d in value or ()})
        if not days or days[0] < 0 or days[-1] > 6:
            raise ValueError("weekdays must be day numbers 0 (Monday) to 6 (Sunday), at least one")
        return tuple(days)

    @model_validator(mode="after")
    def _has_a_source(self) -> SubscriptionSettings:
        if not self.hf_daily and not self.arxiv_categories:
            raise ValueError("a digest needs a source: Hugging Face daily papers and/or arXiv categories")
        if self.cadence == "weekly" and len(self.weekdays) != 1:
            raise ValueError("a weekly roundup is posted on one weekday: give weekday (e.g. fri)")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def source_names(self) -> list[str]:
        return (["Hugging Face daily"] if self.hf_daily else []) + [
            f"arXiv {c}" for c in self.arxiv_categories
        ]

    def schedule_text(self) -> str:
        every = "weekly on" if self.cadence == "weekly" else "on"
        return f"{self.post_time:%H:%M} {self.timezone} {every} {format_weekdays(self.weekdays)}"


class Subscription(SubscriptionSettings):
    """A stored subscription."""

    id: int
    created_at: dt.datetime
    updated_at: dt.datetime

    def settings(self) -> SubscriptionSettings:
        return SubscriptionSettings.model_validate(
            self.model_dump(exclude={"id", "created_at", "updated_at"})
        )


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int
    default_timezone: str | None
    default_post_time: dt.time | None


@dataclass
class DigestCounts:
    """fetched: papers read from the day's sources; duplicates: repeated across sources or already posted
    in this channel; new: the rest (the candidates); filtered: candidates not picked; posted/failed:
    papers sent or not; recovered: found already posted (after a crash) and not sent again."""

    fetched: int = 0
    new: int = 0
    duplicates: int = 0
    filtered: int = 0
    posted: int = 0
    failed: int = 0
    recovered: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def copy_from(self, other: DigestCounts) -> None:
        for name, value in other.as_dict().items():
            setattr(self, name, value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DigestCounts:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DigestRun:
    id: int
    subscription_id: int | None
    guild_id: int
    channel_id: int
    digest_date: dt.date
    trigger: str
    status: str
    counts: DigestCounts
    errors: list[str]
    empty_reason: str | None
    details: dict[str, Any]
    started_at: dt.datetime
    finished_at: dt.datetime | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class PlannedItem:
    """One message of a digest, planned before anything is posted."""

    item: str
    kind: LedgerKind
    position: int
    marker: str
    content: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    guild_id: int
    channel_id: int
    digest_date: dt.date
    item: str
    kind: str
    position: int
    marker: str
    state: str
    attempts: int
    message_id: int | None
    run_id: int | None
    content: dict[str, Any]
    error: str | None

    @property
    def posted(self) -> bool:
        return self.state == "posted"


@dataclass(frozen=True)
class ChannelFeedback:
    """Papers this channel liked / disliked on balance, most recent first."""

    liked: list[str]
    disliked: list[str]
