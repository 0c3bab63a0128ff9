"""Days of the week, times of day and time zones, as people type them: one rule for the settings
(`DIGEST_DEFAULT_*`) and for `/digest subscribe`."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_WEEKDAYS = (0, 1, 2, 3, 4, 5, 6)
_WEEKDAY_ALIASES = {
    "weekdays": (0, 1, 2, 3, 4),
    "weekends": (5, 6),
    "daily": ALL_WEEKDAYS,
    "every day": ALL_WEEKDAYS,
}


def parse_weekdays(value: str) -> tuple[int, ...]:
    """`mon-fri`, `mon,wed,fri`, `weekdays`, `daily` → sorted day numbers (0 = Monday)."""
    text = value.strip().lower()
    if text in _WEEKDAY_ALIASES:
        return _WEEKDAY_ALIASES[text]
    days: set[int] = set()
    for part in re.split(r"[,\s]+", text):
        if not part:
            continue
        first, dash, last = part.partition("-")
        try:
            start = WEEKDAY_NAMES.index(first[:3])
            end = WEEKDAY_NAMES.index(last[:3]) if dash else start
        except ValueError:
            raise ValueError(
                f"unknown day {part!r}: use mon, tue, wed, thu, fri, sat, sun or a range like mon-fri"
            ) from None
        span = range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)]
        days.update(span)
    if not days:
        raise ValueError("pick at least one day of the week")
    return tuple(sorted(days))


def format_weekdays(days: tuple[int, ...] | list[int]) -> str:
    return ",".join(WEEKDAY_NAMES[d] for d in sorted(days))


def parse_post_time(value: str | dt.time) -> dt.time:
    if isinstance(value, dt.time):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    match = re.fullmatch(r"\s*(\d{1,2})[:.h](\d{2})\s*", value)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"time {value!r} is not HH:MM on a 24-hour clock, e.g. 09:00 or 17:30")
    return dt.time(int(match.group(1)), int(match.group(2)))


def validate_timezone(name: str) -> str:
    name = name.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone; try e.g. Europe/Paris or Asia/Tokyo") from None
    return name


def timezone_suggestions(prefix: str, limit: int = 25) -> list[str]:
    """Time zones containing `prefix` (case-insensitive), for autocomplete."""
    needle = prefix.strip().lower().replace(" ", "_")
    names = sorted(n for n in available_timezones() if "/" in n or n == "UTC")
    matches = [n for n in names if needle in n.lower()] if needle else names
    return matches[:limit]
