"""Tables of each user's library, follows and personal digests (issue 16). Every row names its
user, so `/library forget-me` deletes them by `user_id`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.tables import AutoId, Base, UtcDateTime, utcnow


class LibraryPaperRow(Base):
    """A paper a user saved; `paper` is its record when saved, so exports never depend on the index."""

    __tablename__ = "library_papers"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    paper_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    paper: Mapped[dict[str, Any]] = mapped_column()
    note: Mapped[str | None] = mapped_column(Text)
    saved_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class FollowRow(Base):
    __tablename__ = "follows"
    __table_args__ = (UniqueConstraint("user_id", "kind", "value_key", name="uq_follows_user_kind_value"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # author, topic, category, query
    value: Mapped[str] = mapped_column(String(100))
    value_key: Mapped[str] = mapped_column(String(100))  # folded, so "Tri Dao" and "tri dao" are one
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class PersonalSettingsRow(Base):
    __tablename__ = "personal_settings"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    delivery: Mapped[str] = mapped_column(String(8), default="dm")  # dm, off
    cadence: Mapped[str] = mapped_column(String(8), default="daily")  # daily, weekly
    dm_closed: Mapped[bool] = mapped_column(Boolean, default=False)  # Discord said 50007; tell them once
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class PersonalFeedbackRow(Base):
    """A user's 👍 (+1) or 👎 (-1) on a paper of their own DM digest."""

    __tablename__ = "personal_feedback"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    paper_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[int] = mapped_column(SmallInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


LIBRARY_TABLES = (LibraryPaperRow, FollowRow, PersonalSettingsRow, PersonalFeedbackRow)
