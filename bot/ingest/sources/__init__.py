"""Paper source parsers: one module per format, one entry point that recognizes the format.

`parse_path` / `parse_bytes` never raise for bad content: unreadable inputs and records come back
as `Rejected` entries (with the line when there is one) next to the papers that did parse.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from bot.ingest.sources.arxiv_atom import parse_atom
from bot.ingest.sources.arxiv_listing import parse_arxiv_listing
from bot.ingest.sources.base import ParseResult, Rejected, date_in_name
from bot.ingest.sources.generic_jsonl import parse_generic_jsonl
from bot.ingest.sources.hf_daily import parse_hf_json, parse_hf_jsonl
from bot.ingest.sources.saved_page import parse_saved_page
from bot.ingest.sources.sniff import FORMATS, SUPPORTED_SUFFIXES, Detection, detect_format

__all__ = ["FORMATS", "ParseResult", "Rejected", "parse_bytes", "parse_path"]

log = structlog.get_logger(__name__)

_MAX_LOGGED_REJECTS = 20


def parse_path(path: Path) -> ParseResult:
    """Parse a saved file of any supported format. A missing file raises FileNotFoundError."""
    path = Path(path)
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(s for s in SUPPORTED_SUFFIXES if s))
        result = ParseResult(
            rejected=[
                Rejected(str(path), None, f"unsupported file type {suffix!r} (expected one of {supported})")
            ]
        )
        _log_result(result, str(path), None)
        return result
    return parse_bytes(data, source_name=str(path))


def parse_bytes(data: bytes, *, source_name: str, fmt: str | None = None) -> ParseResult:
    """Parse one document. `fmt` (one of FORMATS) skips detection; `source_name` labels rejects
    and may carry the date of a listing or daily list (`arxiv_cs_2026-06-29.jsonl`, `hf:2026-08-18`)."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    detection = Detection(fmt) if fmt else detect_format(data)
    if detection.fmt is None:
        result = ParseResult(rejected=[Rejected(source_name, detection.line, detection.reason)])
    else:
        result = _parse_as(detection.fmt, data, source_name)
    _log_result(result, source_name, detection.fmt)
    return result


def _parse_as(fmt: str, data: bytes, source: str) -> ParseResult:
    if fmt == "arxiv_atom":
        return parse_atom(data, source)  # feedparser honours the XML encoding declaration
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return ParseResult(rejected=[Rejected(source, line, f"not UTF-8 text: {exc.reason}")])
    named_date = date_in_name(source)
    if fmt == "hf_json":
        return parse_hf_json(text, source, daily_date=named_date)
    if fmt == "hf_jsonl":
        return parse_hf_jsonl(text, source, daily_date=named_date)
    if fmt == "arxiv_listing":
        return parse_arxiv_listing(text, source, listing_date=named_date)
    if fmt == "jsonl":
        return parse_generic_jsonl(text, source)
    result = parse_saved_page(text, source)
    if result.records == 0:
        reason = "no papers found: expected a title line, a blank line and an abstract line per paper"
        result.rejected.append(Rejected(source, None, reason))
    return result


def _log_result(result: ParseResult, source: str, fmt: str | None) -> None:
    for rejected in result.rejected[:_MAX_LOGGED_REJECTS]:
        log.warning(
            "ingest.record_rejected", source=rejected.source, line=rejected.line, reason=rejected.reason
        )
    log.info(
        "ingest.source_parsed",
        source=source,
        format=fmt,
        records=result.records,
        papers=len(result.papers),
        rejected=len(result.rejected),
        rejects_not_logged=max(0, len(result.rejected) - _MAX_LOGGED_REJECTS),
    )
