"""The state database: subscriptions, digest runs, the post ledger, feedback and the summary cache."""

from __future__ import annotations

from bot.db.engine import Database, DatabaseConfigError, DatabaseUnavailableError, open_database
from bot.db.records import (
    ChannelFeedback,
    DigestCounts,
    DigestRun,
    GuildSettings,
    LedgerEntry,
    PlannedItem,
    Subscription,
    SubscriptionSettings,
)
from bot.db.repository import Repository
from bot.db.schema import SCHEMA_VERSION, SchemaError, upgrade_schema

__all__ = [
    "SCHEMA_VERSION",
    "ChannelFeedback",
    "Database",
    "DatabaseConfigError",
    "DatabaseUnavailableError",
    "DigestCounts",
    "DigestRun",
    "GuildSettings",
    "LedgerEntry",
    "PlannedItem",
    "Repository",
    "SchemaError",
    "Subscription",
    "SubscriptionSettings",
    "open_database",
    "upgrade_schema",
]
