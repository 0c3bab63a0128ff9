"""Plain records of a user's library and follows (what the repository reads and writes)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal, get_args

from bot.core.papers import Paper, clean_user_text

FollowKind = Literal["author", "topic", "category", "query"]
FOLLOW_KINDS: tuple[FollowKind, ...] = get_args(FollowKind)
Delivery = Literal["dm", "off"]
Cadence = Literal["daily", "weekly"]
MAX_NOTE_CHARS = 1000
MAX_FOLLOW_CHARS = 100
# arXiv's archives (a category is an archive, or archive.SUBJECT): https://arxiv.org/category_taxonomy
ARXIV_ARCHIVES = frozenset(
    [
        "cs",
        "econ",
        "eess",
        "math",
        "stat",
        "q-bio",
        "q-fin",
        "astro-ph",
        "cond-mat",
        "gr-qc",
        "hep-ex",
        "hep-lat",
        "hep-ph",
        "hep-th",
        "math-ph",
        "nlin",
        "nucl-ex",
        "nucl-th",
        "physics",
        "quant-ph",
    ]
)
_CATEGORY = re.compile(r"^[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]+(?:-[a-z]+)?)?$")


@dataclass(frozen=True)
class SavedPaper:
    paper: Paper
    note: str | None
    saved_at: dt.datetime


@dataclass(frozen=True)
class Follow:
    id: int
    kind: FollowKind
    value: str

    def label(self) -> str:
        """`author Tri Dao`, `topic “state space models”` — what a pick's "why" names."""
        return (
            f"{self.kind} {self.value}"
            if self.kind in ("author", "category")
            else f"{self.kind} “{self.value}”"
        )


@dataclass(frozen=True)
class PersonalSettings:
    user_id: int
    delivery: Delivery = "dm"
    cadence: Cadence = "daily"
    dm_closed: bool = False  # the last DM failed with Discord's 50007; not tried again until told


@dataclass(frozen=True)
class PersonalPlan:
    """A user whose follows reach them by DM: their follows, settings and feedback."""

    settings: PersonalSettings
    follows: list[Follow]
    liked: list[str]  # paper ids: 👍 on their picks, then their saved papers
    disliked: list[str]


def fold(text: str) -> str:
    """Case- and accent-insensitive form for matching names and titles."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join(
        re.sub(
            r"[^a-z0-9]+", " ", "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
        ).split()
    )


def clean_follow(kind: str, value: str) -> tuple[FollowKind, str]:
    """A follow as stored; ValueError with a message for the user when it cannot be one."""
    if kind not in FOLLOW_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FOLLOW_KINDS)}")
    text = clean_user_text(value)
    if not text:
        raise ValueError("the value is empty")
    if len(text) > MAX_FOLLOW_CHARS:
        raise ValueError(f"the value is longer than {MAX_FOLLOW_CHARS} characters")
    if kind == "category" and not (_CATEGORY.match(text) and text.split(".")[0] in ARXIV_ARCHIVES):
        raise ValueError(f"{text!r} is not an arXiv category such as cs.CL or hep-th")
    if kind == "author" and not fold(text):
        raise ValueError("an author is a name with letters")
    return kind, text
