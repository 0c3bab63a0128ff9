"""Tables of the state database (SQLAlchemy 2 declarative). Discord ids are 64-bit snowflakes."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out, on SQLite (which stores no offset) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[str]: JSON, list[int]: JSON}


class SchemaVersion(Base):
    """One row per applied schema version; the highest is the database's version."""

    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    description: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class GuildSettingsRow(Base):
    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    default_timezone: Mapped[str | None] = mapped_column(String(64))
    default_post_time: Mapped[dt.time | None] = mapped_column(Time)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class SubscriptionRow(Base):
    """A channel's digest: what to pick from which sources, and when to post it."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    channel_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    hf_daily: Mapped[bool] = mapped_column(Boolean, default=True)
    arxiv_categories: Mapped[list[str]] = mapped_column(default=list)
    topics: Mapped[list[str]] = mapped_column(default=list)
    keywords: Mapped[list[str]] = mapped_column(default=list)
    negative_keywords: Mapped[list[str]] = mapped_column(default=list)
    min_upvotes: Mapped[int] = mapped_column(Integer, default=0)
    max_papers: Mapped[int] = mapped_column(Integer, default=5)
    post_time: Mapped[dt.time] = mapped_column(Time)
    timezone: Mapped[str] = mapped_column(String(64))
    weekdays: Mapped[list[int]] = mapped_column()  # 0 = Monday … 6 = Sunday
    layout: Mapped[str] = mapped_column(String(32))
    cadence: Mapped[str] = mapped_column(String(8), default="daily", server_default="daily")  # or weekly
    announce_empty: Mapped[bool] = mapped_column(Boolean, default=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class DigestRunRow(Base):
    __tablename__ = "digest_runs"
    __table_args__ = (Index("ix_digest_runs_channel_started", "channel_id", "started_at"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True)
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL"), index=True
    )
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    digest_date: Mapped[dt.date] = mapped_column(Date)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule, manual, recovery
    status: Mapped[str] = mapped_column(String(16), index=True)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    filtered: Mapped[int] = mapped_column(Integer, default=0)
    posted: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    recovered: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[str]] = mapped_column(default=list)
    empty_reason: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class LedgerRow(Base):
    """What was (to be) posted where. A row is written as an intent before its message is sent."""

    __tablename__ = "post_ledger"
    __table_args__ = (
        UniqueConstraint("channel_id", "digest_date", "item", name="uq_ledger_channel_date_item"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    digest_date: Mapped[dt.date] = mapped_column(Date)
    item: Mapped[str] = mapped_column(String(128))  # a paper id, or "#header" / "#notice"
    kind: Mapped[str] = mapped_column(String(16))  # header, paper, notice
    position: Mapped[int] = mapped_column(SmallInteger, default=0)
    marker: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="intent")  # intent, posted, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("digest_runs.id", ondelete="SET NULL"))
    content: Mapped[dict[str, Any]] = mapped_column(default=dict)  # what to post, so a resume posts the same
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    posted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class FeedbackRow(Base):
    """A 👍 (+1) or 👎 (-1) of one user on one digest post."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("message_id", "user_id", name="uq_feedback_message_user"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger, index=True)
    message_id: Mapped[int] = mapped_column(BigInteger)
    paper_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class SummaryCacheRow(Base):
    __tablename__ = "summary_cache"

    paper_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    prompt_version: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class GuildTokenUsageRow(Base):
    """LLM tokens a guild's answers used on one UTC day (the daily budget reads this)."""

    __tablename__ = "guild_token_usage"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)


class ChannelMemoryRow(Base):
    """A channel that opted in to channel memory (`/memory enable`); no row → nothing is stored."""

    __tablename__ = "channel_memory"

    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    retention_days: Mapped[int] = mapped_column(Integer)
    enabled_by: Mapped[int | None] = mapped_column(BigInteger)
    enabled_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
