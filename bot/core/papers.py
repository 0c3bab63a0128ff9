"""The domain model shared by every service: one `Paper`, whatever the source."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from typing import Any

from pydantic import BaseModel, Field, computed_field

ARXIV_NEW_ID = re.compile(r"^(?P<base>\d{4}\.\d{4,5})(?:v(?P<version>\d+))?$")
ARXIV_OLD_ID = re.compile(r"^(?P<base>[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v(?P<version>\d+))?$")
_POINT_NAMESPACE = uuid.UUID("6f1c1f6e-3a8e-4f0c-9a57-7d0c1e5b2a11")
_WS = re.compile(r"\s+")
# Control characters become spaces; zero-width characters and bidirectional overrides, embeddings
# and isolates (which can make text display as something else) are dropped.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\u200b\u2060-\u2064\ufeff\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str | None) -> str:
    """Collapse all runs of whitespace (line breaks, double spaces) into one space."""
    return _WS.sub(" ", text or "").strip()


def clean_user_text(text: str | None) -> str:
    """Text typed by a user or taken from a paper, as one line without control or invisible
    characters; empty when nothing visible is left (so "\u200b" counts as an empty question)."""
    text = clean_text(_INVISIBLE.sub("", _CONTROL.sub(" ", text or "")))
    # isprintable() is False for format characters (ZWJ, ZWNJ, direction marks) as for controls.
    return text if any(c.isprintable() and not c.isspace() for c in text) else ""


def parse_arxiv_id(raw: str) -> tuple[str, int | None] | None:
    """`2405.15738v2` → ("2405.15738", 2); accepts abs/pdf URLs and `arXiv:` prefixes."""
    text = raw.strip()
    text = re.sub(r"^(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/", "", text)
    text = re.sub(r"^arxiv:", "", text, flags=re.IGNORECASE)
    text = text.removesuffix(".pdf").strip("/")
    for pattern in (ARXIV_NEW_ID, ARXIV_OLD_ID):
        match = pattern.match(text)
        if match:
            version = match.group("version")
            return match.group("base"), int(version) if version else None
    return None


class Paper(BaseModel):
    """A paper after normalization. `paper_id` is the arXiv id (no version) when there is one."""

    paper_id: str
    title: str
    abstract: str = ""
    authors: list[str] = Field(default_factory=list)
    published: dt.date | None = None
    arxiv_id: str | None = None
    version: int | None = None
    categories: list[str] = Field(default_factory=list)
    upvotes: int | None = None
    ai_summary: str | None = None
    github_url: str | None = None
    project_url: str | None = None
    comment: str | None = None
    hf_date: dt.date | None = None  # the Hugging Face daily list the paper appeared on
    sources: list[str] = Field(default_factory=list)  # "hf", "arxiv", "page", "jsonl"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def abs_url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv_id}" if self.arxiv_id else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pdf_url(self) -> str | None:
        return f"https://arxiv.org/pdf/{self.arxiv_id}" if self.arxiv_id else None

    @property
    def url(self) -> str | None:
        return self.abs_url or self.project_url or self.github_url

    @property
    def text_hash(self) -> str:
        """Changes exactly when the embedded text changes."""
        return hashlib.sha1(f"{self.title}\n{self.abstract}".encode()).hexdigest()[:16]

    def to_payload(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["text_hash"] = self.text_hash
        return data

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Paper:
        fields = cls.model_fields  # once: every access goes through a pydantic descriptor
        return cls.model_validate({k: v for k, v in payload.items() if k in fields})


def title_paper_id(title: str) -> str:
    """A stable id for papers with neither arXiv id nor source id: hash of the normalized title."""
    normalized = re.sub(r"[^a-z0-9]+", " ", clean_text(title).lower()).strip()
    return "title:" + hashlib.sha1(normalized.encode()).hexdigest()[:16]


def is_title_id(paper_id: str) -> bool:
    """True for ids made by `title_paper_id`: the paper's real id is not known."""
    return paper_id.startswith("title:")


def point_id(paper_id: str, chunk_no: int) -> str:
    """Deterministic Qdrant point id, so re-ingesting the same paper overwrites, never duplicates."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{paper_id}#{chunk_no}"))


class Chunk(BaseModel):
    paper_id: str
    chunk_no: int
    text: str
    token_count: int


class SearchHit(BaseModel):
    paper: Paper
    score: float
    chunk_no: int = 0
    chunk_text: str = ""


# A paper's own citation in passage text ("(ref. 27)", "(ref. vaswani2017attention)"): it says that a
# claim is cited, and never as brackets an answer's [n] source number could be taken for.
PAPER_REFERENCE = re.compile(r"[ \t]*\(ref\.[^()]*\)")
# Put after a sentence splitter's "(?<=[.!?])": the period of "(ref. 27)" ends no sentence, so a
# passage is never cut between a claim's citation and its key.
NOT_A_REFERENCE_PERIOD = r"(?<!\(ref\.)"


def paper_reference(keys: str) -> str:
    """How a paper's own citation of `keys` ("27", "6, 3", "srivastava2014dropout") reads in a passage."""
    return f"(ref. {keys})"
