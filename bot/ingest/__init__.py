"""Ingest: read papers from files and live sources, normalize them to `Paper`, fold duplicates."""

from bot.ingest.fetch import FetchError, fetch_source, is_live_source
from bot.ingest.merge import dedupe, merge_papers
from bot.ingest.sources import ParseResult, Rejected, parse_bytes, parse_path

__all__ = [
    "FetchError",
    "ParseResult",
    "Rejected",
    "dedupe",
    "fetch_source",
    "is_live_source",
    "merge_papers",
    "parse_bytes",
    "parse_path",
]
