"""What every source parser returns, and the small coercions they share."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bot.core.errors import UserInputError
from bot.core.papers import Paper, clean_text

_ISO_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class Rejected:
    """A record (or a whole input) that did not become a `Paper`, and why."""

    source: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.reason}"


@dataclass
class ParseResult:
    papers: list[Paper] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    records: int = 0  # records read, accepted or not

    def extend(self, other: ParseResult) -> None:
        self.papers.extend(other.papers)
        self.rejected.extend(other.rejected)
        self.records += other.records


class RecordError(UserInputError, ValueError):
    """Raised by a record mapper; becomes a `Rejected` with the record's line."""


@dataclass(frozen=True)
class JsonRecord:
    line: int
    value: Any


@dataclass(frozen=True)
class BadRecord:
    line: int
    reason: str


Decoded = JsonRecord | BadRecord


def iter_json_lines(text: str) -> Iterator[Decoded]:
    """Yield each non-blank line decoded, or a `BadRecord` when it is not valid JSON."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield JsonRecord(line_no, json.loads(line))
        except json.JSONDecodeError as exc:
            yield BadRecord(line_no, _json_problem(exc))


def iter_json_array(text: str) -> Iterator[Decoded]:
    """Decode a top-level JSON array element by element, keeping each element's line number.

    A syntax error ends the walk with one `BadRecord`: nothing after it can be trusted.
    """
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if not text.startswith("[", pos):
        yield BadRecord(_line_of(text, pos), "expected a JSON array" + _instead(text[pos:]))
        return
    pos = _skip_ws(text, pos + 1)
    if text.startswith("]", pos):
        return
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield BadRecord(exc.lineno, _json_problem(exc))
            return
        yield JsonRecord(_line_of(text, pos), value)
        pos = _skip_ws(text, end)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
        elif text.startswith("]", pos):
            return
        else:
            yield BadRecord(_line_of(text, pos), "invalid JSON: expected ',' or ']' between array elements")
            return


def _json_problem(exc: json.JSONDecodeError) -> str:
    # Some messages end in "at" ("Unterminated string starting at") that json completes itself.
    return f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}"


def _instead(text: str) -> str:
    """What came instead of an array, when that helps: nothing, or an API's error object."""
    if not text:
        return ", got an empty response"
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return ""
        if isinstance(value, dict) and isinstance(value.get("error"), str):
            return f", got an error: {value['error'][:200]}"
    return ""


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def parse_date(value: Any) -> dt.date | None:
    """ISO date or timestamp (`2024-05-24T17:34:15.000Z`) → date; None when absent or unreadable."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    match = _ISO_DATE.match(text)
    if match:
        try:
            return dt.date.fromisoformat(match.group(1))
        except ValueError:
            return None
    return None


def date_in_name(name: str) -> dt.date | None:
    """The last `YYYY-MM-DD` in the file part of a path or source name (`arxiv_cs_2026-06-29.jsonl`)."""
    file_name = re.split(r"[\\/]", name)[-1]
    for candidate in reversed(_ISO_DATE.findall(file_name)):
        try:
            return dt.date.fromisoformat(candidate)
        except ValueError:
            continue
    return None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def optional_text(value: Any) -> str | None:
    """Cleaned text, or None for missing/blank/non-string values."""
    if not isinstance(value, str):
        return None
    return clean_text(value) or None


def author_names(value: Any) -> list[str]:
    """Authors as given by any source: strings, `{"name": ...}` objects, or one comma-separated string."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return []
    names: list[str] = []
    for item in value:
        raw = item.get("name") if isinstance(item, dict) else item
        name = optional_text(raw)
        if name:
            names.append(name)
    return names


def string_list(value: Any) -> list[str]:
    """Categories as a list, whether given as a list or as one space/comma-separated string."""
    if isinstance(value, str):
        value = re.split(r"[\s,]+", value)
    if not isinstance(value, list):
        return []
    return ordered_union([clean_text(item) for item in value if isinstance(item, str)])


def ordered_union(*lists: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for items in lists:
        for item in items:
            if item:
                seen.setdefault(item, None)
    return list(seen)


def require_title(value: Any) -> str:
    title = optional_text(value)
    if title is None:
        raise RecordError("missing title")
    return title


_JSON_TYPE_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string", type(None): "null"}


def type_name(value: Any) -> str:
    """JSON's name for a decoded value's type, for reject reasons."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


RecordMapper = Callable[[Any], Paper]


def collect(records: Iterable[Decoded], source: str, to_paper: RecordMapper) -> ParseResult:
    """Map decoded records to papers; each failure becomes a `Rejected` with its line."""
    result = ParseResult()
    for record in records:
        result.records += 1
        if isinstance(record, BadRecord):
            result.rejected.append(Rejected(source, record.line, record.reason))
            continue
        try:
            result.papers.append(to_paper(record.value))
        except RecordError as exc:
            result.rejected.append(Rejected(source, record.line, str(exc)))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            result.rejected.append(Rejected(source, record.line, f"invalid field: {problems}"))
    return result
