r"""One formatter for `/library export` and `python -m bot cite`: BibTeX, RIS, CSL-JSON, Markdown.

BibTeX follows arXiv's own export (`@misc` with `eprint`, `archivePrefix`, `primaryClass`): LaTeX's
special characters are escaped and the title is braced so styles keep its capitals. Paper text is
untrusted: every value is one line, and its braces become `\textbraceleft{}` / `\textbraceright{}`
(BibTeX counts `\{` as a brace, so an unbalanced one in a title would end the field early).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from bot.core.papers import Paper, clean_text, parse_arxiv_id
from bot.library.records import fold

CitationFormat = Literal["bibtex", "ris", "csl-json", "markdown"]
CITATION_FORMATS: tuple[CitationFormat, ...] = get_args(CitationFormat)
FILE_SUFFIX: dict[str, str] = {"bibtex": "bib", "ris": "ris", "csl-json": "json", "markdown": "md"}
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\textbraceleft{}", "}": r"\textbraceright{}", "&": r"\&",
    "%": r"\%", "$": r"\$",
    "#": r"\#", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))
_KEY_STOP = {"a", "an", "the", "on", "of", "for", "and", "to", "in", "with", "towards", "toward"}


@dataclass(frozen=True)
class CitedPaper:
    """A paper to cite, with the user's note when it comes from their library."""

    paper: Paper
    note: str | None = None


def paper_year(paper: Paper) -> int | None:
    if paper.published is not None:
        return paper.published.year
    if paper.arxiv_id and re.match(r"^\d{4}\.", paper.arxiv_id):
        return 2000 + int(paper.arxiv_id[:2])
    return paper.hf_date.year if paper.hf_date is not None else None


def paper_date(paper: Paper) -> dt.date | None:
    return paper.published or paper.hf_date


def _latex(text: str) -> str:
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], clean_text(text))


def _split_name(name: str) -> tuple[str, str]:
    """(family, given) of "Given Names Family"; a "Family, Given" name is already split."""
    name = clean_text(name)
    if "," in name:
        family, given = (part.strip() for part in name.split(",", 1))
        return family, given
    parts = name.rsplit(" ", 1)
    return (parts[1], parts[0]) if len(parts) == 2 else (name, "")


def cite_keys(papers: Sequence[Paper]) -> list[str]:
    """`dao2024transformers`: first author's family name, year, first title word; a, b… on clashes."""
    keys: list[str] = []
    seen: dict[str, int] = {}
    for paper in papers:
        family = fold(_split_name(paper.authors[0])[0]).replace(" ", "") if paper.authors else ""
        words = [w for w in fold(paper.title).split() if w not in _KEY_STOP]
        base = f"{family or 'paper'}{paper_year(paper) or ''}{words[0] if words else ''}"[:60]
        count = seen.get(base, 0)
        seen[base] = count + 1
        keys.append(
            base if count == 0 else f"{base}{chr(ord('a') + (count - 1) % 26)}{(count - 1) // 26 or ''}"
        )
    return keys


def to_bibtex(items: Sequence[CitedPaper]) -> str:
    entries = []
    for key, item in zip(cite_keys([i.paper for i in items]), items, strict=True):
        paper = item.paper
        fields: list[tuple[str, str]] = [("title", "{" + _latex(paper.title) + "}")]
        if paper.authors:
            fields.append(("author", " and ".join(_latex(a) for a in paper.authors)))
        year = paper_year(paper)
        if year is not None:
            fields.append(("year", str(year)))
        if paper.arxiv_id:
            fields += [("eprint", paper.arxiv_id), ("archivePrefix", "arXiv")]
            if paper.categories:
                fields.append(("primaryClass", _latex(paper.categories[0])))
        if paper.url:
            fields.append(("url", paper.url))
        if item.note:
            fields.append(("note", _latex(item.note)))
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
        entries.append(f"@misc{{{key},\n{body}\n}}\n")
    return "\n".join(entries)


def _ris_line(tag: str, value: str) -> str:
    return f"{tag}  - {clean_text(value)}"


def to_ris(items: Sequence[CitedPaper]) -> str:
    records = []
    for item in items:
        paper = item.paper
        lines = [_ris_line("TY", "GEN"), _ris_line("TI", paper.title)]
        lines += [_ris_line("AU", a) for a in paper.authors]
        date = paper_date(paper)
        if date is not None:
            lines += [_ris_line("PY", str(date.year)), _ris_line("DA", date.strftime("%Y/%m/%d"))]
        elif (year := paper_year(paper)) is not None:
            lines.append(_ris_line("PY", str(year)))
        if paper.arxiv_id:
            lines += [_ris_line("PB", "arXiv"), _ris_line("M1", f"arXiv:{paper.arxiv_id}")]
        if paper.abstract:
            lines.append(_ris_line("AB", paper.abstract))
        if paper.url:
            lines.append(_ris_line("UR", paper.url))
        if item.note:
            lines.append(_ris_line("N1", item.note))
        lines.append("ER  - ")
        records.append("\n".join(lines))
    return "\n\n".join(records) + "\n"


def to_csl_json(items: Sequence[CitedPaper]) -> str:
    records = []
    for key, item in zip(cite_keys([i.paper for i in items]), items, strict=True):
        paper = item.paper
        record: dict[str, object] = {"id": key, "type": "article", "title": clean_text(paper.title)}
        record["author"] = [
            {"family": family, "given": given} if given else {"literal": family}
            for family, given in (_split_name(a) for a in paper.authors)
        ]
        date = paper_date(paper)
        year = paper_year(paper)
        if date is not None:
            record["issued"] = {"date-parts": [[date.year, date.month, date.day]]}
        elif year is not None:
            record["issued"] = {"date-parts": [[year]]}
        if paper.arxiv_id:
            record.update(publisher="arXiv", number=paper.arxiv_id, DOI=f"10.48550/arXiv.{paper.arxiv_id}")
        if paper.url:
            record["URL"] = paper.url
        if paper.abstract:
            record["abstract"] = clean_text(paper.abstract)
        if item.note:
            record["note"] = clean_text(item.note)
        records.append(record)
    return json.dumps(records, ensure_ascii=False, indent=2) + "\n"


def _md(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", clean_text(text))


def to_markdown(items: Sequence[CitedPaper]) -> str:
    lines = []
    for item in items:
        paper = item.paper
        title = f"[{_md(paper.title)}]({paper.url})" if paper.url else _md(paper.title)
        authors = ", ".join(_md(a) for a in paper.authors[:6]) + (" et al." if len(paper.authors) > 6 else "")
        year = paper_year(paper)
        line = f"- **{title}**" + (f" — {authors}" if authors else "") + (f" ({year})" if year else "")
        if paper.arxiv_id:
            line += f" · arXiv:{paper.arxiv_id}"
        lines.append(line)
        if item.note:
            lines.append(f"  > {_md(item.note)}")
    return "\n".join(lines) + "\n"


def format_citations(items: Sequence[CitedPaper], fmt: str) -> str:
    """`items` in `fmt` (one of CITATION_FORMATS)."""
    formatters = {"bibtex": to_bibtex, "ris": to_ris, "csl-json": to_csl_json, "markdown": to_markdown}
    if fmt not in formatters:
        raise ValueError(f"format must be one of {', '.join(CITATION_FORMATS)}")
    return formatters[fmt](items)


def normalize_paper_id(raw: str) -> str:
    """An arXiv id without version from an id, `arXiv:` id or arxiv.org link; else the text as given."""
    parsed = parse_arxiv_id(raw.strip())
    return parsed[0] if parsed else raw.strip()
