"""Reading a user's .bib file for `/library import`, with bibtexparser (a maintained BibTeX parser:
braces, @string macros, comments and LaTeX accents are its problem, not ours).

Each entry is reduced to what can find the paper in the index: an arXiv id (from `eprint`, an
arXiv DOI `10.48550/arXiv.…`, an arxiv.org URL or a `journal = {arXiv preprint arXiv:…}`), its DOI
and its title, normalized for comparison.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import bibtexparser
from bibtexparser.bparser import BibTexParser
from bibtexparser.customization import convert_to_unicode

from bot.core.errors import UserInputError
from bot.core.papers import parse_arxiv_id
from bot.library.records import fold

_ARXIV_IN_TEXT = re.compile(
    r"arxiv(?:\.org/(?:abs|pdf)/|[:\s]+|\.)\s*([a-z\-]+(?:\.[A-Z]{2})?/\d{7}|\d{4}\.\d{4,5})(?:v\d+)?", re.I
)
_ARXIV_DOI = re.compile(r"^10\.48550/arxiv\.(.+)$", re.I)
_LATEX_BITS = re.compile(r"\\[a-zA-Z]+\s*|[{}\\$]")


class BibFileError(UserInputError):
    """The .bib file cannot be read; the message says why."""


@dataclass(frozen=True)
class BibEntry:
    key: str
    arxiv_id: str | None
    doi: str | None
    title: str  # as written, LaTeX removed
    title_key: str  # `fold`ed, for matching

    @property
    def label(self) -> str:
        return self.key or self.title[:60]


def _arxiv_id(fields: dict[str, str]) -> str | None:
    eprint = fields.get("eprint", "")
    prefix = (fields.get("archiveprefix") or fields.get("eprinttype") or "").lower()
    if eprint and prefix in ("", "arxiv"):
        parsed = parse_arxiv_id(eprint)
        if parsed:
            return parsed[0]
    doi = fields.get("doi", "").strip()
    if match := _ARXIV_DOI.match(doi):
        parsed = parse_arxiv_id(match.group(1))
        if parsed:
            return parsed[0]
    for name in ("url", "journal", "note", "howpublished", "archiveprefix"):
        if match := _ARXIV_IN_TEXT.search(fields.get(name, "")):
            parsed = parse_arxiv_id(match.group(1))
            if parsed:
                return parsed[0]
    return None


def _plain(text: str) -> str:
    return " ".join(_LATEX_BITS.sub("", text).split())


def parse_bib(data: bytes, *, max_bytes: int) -> list[BibEntry]:
    """The entries of a .bib file; BibFileError when it is too large, not UTF-8 or holds none."""
    if len(data) > max_bytes:
        raise BibFileError(
            f"The .bib file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BibFileError(
            f"The .bib file is not UTF-8 (byte {exc.start} cannot be read); save it as UTF-8 and try again."
        ) from None
    if "\x00" in text:
        raise BibFileError("The file is not a text .bib file.")
    parser = BibTexParser(common_strings=True, ignore_nonstandard_types=False, interpolate_strings=True)
    parser.customization = convert_to_unicode
    try:
        database = bibtexparser.loads(text, parser=parser)
    except Exception as exc:  # pyparsing errors on broken syntax, and anything else a file can cause
        raise BibFileError(f"The .bib file could not be read: {str(exc)[:200]}") from None
    entries = []
    for raw in database.entries:
        fields = {str(k).lower(): str(v) for k, v in raw.items()}
        title = _plain(fields.get("title", ""))
        doi = fields.get("doi", "").strip().lower() or None
        entries.append(
            BibEntry(
                key=fields.get("id", ""),
                arxiv_id=_arxiv_id(fields),
                doi=doi,
                title=title,
                title_key=fold(title),
            )
        )
    if not entries:
        raise BibFileError(
            "No BibTeX entries were found in the file (entries look like `@article{key, title = {…}}`)."
        )
    return entries
