"""The state database: subscriptions, digest runs, the post ledger, feedback and the summary cache.

It stores the digest's own records (`bot.digest.records`); it does not define them."""

from __future__ import annotations

from bot.db.engine import Database, DatabaseConfigError, DatabaseUnavailableError, open_database
from bot.db.repository import Repository
from bot.db.schema import SCHEMA_VERSION, SchemaError, upgrade_schema

__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "DatabaseConfigError",
    "DatabaseUnavailableError",
    "Repository",
    "SchemaError",
    "open_database",
    "upgrade_schema",
]
