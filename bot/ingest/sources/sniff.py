"""Recognize a paper source's format from its first meaningful bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass

FORMATS = ("hf_json", "hf_jsonl", "arxiv_atom", "arxiv_listing", "jsonl", "page")
SUPPORTED_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson", ".xml", ".atom", ".txt", ".text", ""})

# A bad first line must not hide the format; look this far for a record that decides it.
_SNIFF_LINES = 20
_LISTING_KEYS = ("abs", "pdf", "summary")


@dataclass(frozen=True)
class Detection:
    fmt: str | None
    reason: str = ""
    line: int | None = None


def detect_format(data: bytes) -> Detection:
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return Detection(None, "empty input: no records")
    first = head[:1]
    if first == b"<":
        return Detection("arxiv_atom")
    if first == b"[":
        return Detection("hf_json")
    if first == b"{":
        return _detect_json_lines(data)
    if b"\x00" in data[:4096]:
        return Detection(None, "binary content: not a paper source this bot can read")
    return Detection("page")


def _detect_json_lines(data: bytes) -> Detection:
    text = data.decode("utf-8-sig", errors="replace")
    seen = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        seen += 1
        if seen > _SNIFF_LINES:
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        return _detect_record(record, line_no)
    return Detection(None, f"no JSON object in the first {_SNIFF_LINES} lines: not JSON lines of papers", 1)


def _detect_record(record: dict[str, object], line_no: int) -> Detection:
    if "paper" in record:
        return Detection("hf_jsonl")
    if "categories" in record and any(key in record for key in _LISTING_KEYS):
        return Detection("arxiv_listing")
    if "abstract" in record:
        return Detection("jsonl")
    keys = ", ".join(sorted(record)[:8]) or "none"
    reason = (
        f"unrecognized JSON record (keys: {keys}); expected a Hugging Face daily-papers item ('paper'), "
        "an arXiv listing record ('categories' + 'abs'/'pdf'/'summary') or a generic paper ('abstract')"
    )
    return Detection(None, reason, line_no)
