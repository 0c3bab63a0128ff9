"""PDF → Document from the text layer (pypdf: BSD-licensed, pure Python; PyMuPDF is AGPL).

Some PDFs set words apart by position alone, without a space glyph, and pypdf runs them together
("inhumancommunicationsoftengarnersmore"). On such a page the word gaps pdfminer.six (MIT, pure
Python) finds from the glyph positions are copied into pypdf's text, which keeps pypdf's lines, the
ones the heading and caption rules below were written for.

Page 1 gives the title (the largest type on the page), the authors (the lines between title and
abstract that read as names) and arXiv's side stamp ("arXiv:2004.04906v3 [cs.CL] …"). Section
headings are lines such as "3.2 Training" whose numbers follow on from the last heading's, which
keeps table rows and list items from passing as headings. Encrypted, corrupt and scanned files (no
text layer) are one clear error each."""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass

import structlog
from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

from bot.fulltext.document import (
    REFERENCES_TITLE,
    Block,
    Document,
    FullTextError,
    Section,
    require_sections,
    tidy,
)

_ARXIV_STAMP = re.compile(r"arXiv:(\d{4}\.\d{4,5})(v\d+)?\s*\[[^\]]+\][^\n]*", re.IGNORECASE)
_HEADING = re.compile(r"^(?P<number>(?:\d{1,2}|[A-H])(?:\.\d{1,2}){0,3})\.?\s+(?P<title>[A-Z][^\n]{1,90})$")
_NAMED_HEADING = re.compile(
    r"^(?P<title>Abstract|Acknowledge?ments?|References|Bibliography|Appendix|Appendices|Limitations|"
    r"Ethics Statement|Ethical Considerations|Broader Impact|Conclusions?)\s*$",
    re.IGNORECASE,
)
_CAPTION = re.compile(r"^(?P<kind>Figure|Fig\.|Table)\s*(?P<n>[A-Z]?\d+)\s*[:.|]", re.IGNORECASE)
_PAGE_NUMBER = re.compile(r"^\s*\d{1,4}\s*$")
_NOT_A_NAME = re.compile(
    r"[@\d{}]|universit|institut|google|research|school|department|lab\b|inc\.|corp|"
    r"college|academy|\bai\b|\bcenter\b|\bcentre\b",
    re.IGNORECASE,
)
MAX_CAPTION_LINES = 8
# A page whose words run together: more than this share of its words are 18 letters or longer (none
# of the 9 PDFs of ../shared/data/fulltext but one, where 24 of 27 pages are).
RUN_TOGETHER_SHARE = 0.01
_LONG_WORD = 18
_WORD = re.compile(r"[^\W\d_]+")
# Shorter pieces are left as pypdf wrote them: too short to be found in the right place.
MIN_RESPACED_CHARS = 4

log = structlog.get_logger(__name__)


@dataclass
class _Line:
    text: str
    page: int


def _normalized(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace("\u00ad", "")


def _open(data: bytes, source: str) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise FullTextError(f"{source}: the PDF is encrypted; send an unprotected copy")
        _ = len(reader.pages)
    except FullTextError:
        raise
    except (FileNotDecryptedError, NotImplementedError) as exc:
        raise FullTextError(f"{source}: the PDF is encrypted; send an unprotected copy") from exc
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise FullTextError(f"{source}: not a readable PDF (corrupt or truncated: {exc})") from exc
    return reader


def _page_one_title(reader: PdfReader) -> str:
    """The run of text set in the largest type on page 1 (the arXiv stamp and headers excluded)."""
    pieces: list[tuple[float, str]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        scale = abs(tm[3] * cm[3]) or abs(tm[0] * cm[0]) or 1.0
        if text.strip():
            pieces.append((round(size * scale, 1), text))

    try:
        reader.pages[0].extract_text(visitor_text=visit)
    except Exception:  # a font pypdf cannot measure: fall back to the metadata title
        pieces = []
    pieces = [(s, t) for s, t in pieces if not _ARXIV_STAMP.search(t) and len(t.strip()) > 1]
    if not pieces:
        return ""
    largest = max(size for size, _ in pieces)

    # The run around the largest type, small capitals included ("LONGEVAL: Guidelines…").
    def part_of_title(piece: tuple[float, str]) -> bool:
        size, text = piece
        short = len(text.strip()) <= 4 and not text.strip().isdigit()
        return size >= 0.9 * largest or (short and size >= 0.6 * largest)

    first = next(i for i, (size, _) in enumerate(pieces) if size >= largest - 0.5)
    end = first
    while end + 1 < len(pieces) and part_of_title(pieces[end + 1]):
        end += 1
    while first > 0 and part_of_title(pieces[first - 1]):
        first -= 1
    return tidy(" ".join(t for _, t in pieces[first : end + 1]))


def runs_together(text: str) -> bool:
    words = _WORD.findall(text)
    return bool(words) and sum(len(w) >= _LONG_WORD for w in words) > RUN_TOGETHER_SHARE * len(words)


def respaced(text: str, reference: str) -> str:
    """`text` with the word gaps of `reference` (the same page's text from another extractor, its
    own line order) put back into each piece of `text` found in it, in reading order."""
    stream: list[str] = []
    gaps: set[int] = set()
    for char in reference:
        if char.isspace():
            gaps.add(len(stream))
        else:
            stream.append(char)
    joined = "".join(stream)
    out: list[str] = []
    cursor = end = 0
    for match in re.finditer(r"\S+", text):
        piece = match.group()
        out.append(text[end : match.start()])
        end = match.end()
        at = joined.find(piece, cursor) if len(piece) >= MIN_RESPACED_CHARS else -1
        if at < 0 and len(piece) >= _LONG_WORD:
            at = joined.find(piece)  # out of order (a caption, a column): the first place
        if at < 0:
            out.append(piece)
            continue
        cursor = at + len(piece)
        out.append("".join(" " + c if i and at + i in gaps else c for i, c in enumerate(piece)))
    out.append(text[end:])
    return "".join(out)


def _pdfminer_pages(data: bytes, numbers: list[int], source: str) -> dict[int, str]:
    """pdfminer.six's text of the pages `numbers` (1-based); {} when it cannot read them."""
    from pdfminer.high_level import extract_text  # only for PDFs that need it

    try:
        text = extract_text(io.BytesIO(data), page_numbers=[n - 1 for n in numbers])
    except Exception as exc:  # pdfminer raises many kinds on what pypdf read; keep pypdf's text
        log.warning("fulltext.pdf_respacing_failed", source=source, error=str(exc))
        return {}
    return {n: _normalized(page) for n, page in zip(numbers, text.split("\f"), strict=False)}


def _page_texts(reader: PdfReader, data: bytes, source: str) -> list[str]:
    texts: list[str] = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            texts.append(_normalized(page.extract_text() or ""))
        except Exception as exc:  # pypdf raises many kinds on a damaged content stream
            raise FullTextError(f"{source}: page {number} cannot be read ({exc})") from exc
    glued = [n for n, text in enumerate(texts, start=1) if runs_together(text)]
    if glued:
        references = _pdfminer_pages(data, glued, source)
        for number, reference in references.items():
            texts[number - 1] = respaced(texts[number - 1], reference)
        log.info("fulltext.pdf_respaced", source=source, pages=len(references))
    return texts


def _lines(reader: PdfReader, data: bytes, source: str) -> tuple[list[_Line], str | None]:
    lines: list[_Line] = []
    arxiv_id: str | None = None
    for number, text in enumerate(_page_texts(reader, data, source), start=1):
        for match in _ARXIV_STAMP.finditer(text):
            arxiv_id = arxiv_id or match.group(1)
        text = _ARXIV_STAMP.sub("", text)
        lines.extend(_Line(line.strip(), number) for line in text.splitlines() if line.strip())
    if sum(len(line.text) for line in lines) < 200:
        raise FullTextError(
            f"{source}: the PDF has no text layer (a scan?); paperbot reads text, it does not run OCR"
        )
    return lines, arxiv_id


def _number_follows(number: str, previous: list[str]) -> bool:
    """ "3.2" follows "3.1" or "3" ; "4" follows "3.x"; letters start appendices after the body."""
    parts = number.split(".")
    if not previous:
        return parts in (["1"], ["A"]) or (len(parts) == 1 and parts[0].isdigit() and int(parts[0]) <= 2)
    # The first part that differs must be the next number (or letter); every later part is 1:
    # "3.2" after "3.1.4", "4" or "4.1" after "3.x" (a heading the text layer lost is skipped over).
    depth = next((i for i, part in enumerate(parts) if i >= len(previous) or part != previous[i]), None)
    if depth is None or any(part != "1" for part in parts[depth + 1 :]):
        return False
    last = parts[depth]
    before = previous[depth] if depth < len(previous) else None
    if before is None:
        return last in ("1", "A")
    if last.isdigit() and before.isdigit():
        return int(last) == int(before) + 1
    if last.isalpha() and before.isalpha():
        return ord(last) == ord(before) + 1
    return depth == 0 and last == "A" and before.isdigit()  # the appendices begin


def _is_heading_title(title: str) -> bool:
    words = title.split()
    letters = sum(c.isalpha() for c in title)
    return (
        len(words) <= 12
        and letters >= 0.6 * len(title.replace(" ", ""))
        and not title.rstrip().endswith((".", ",", ";"))
        and not re.search(r"\d$|\b(?:19|20)\d\d\b|et al", title)  # contents-page lines, references
    )


_CONTINUES = re.compile(r"\b(?:and|of|the|in|for|with|to|on|a|an|from|by|via)$", re.IGNORECASE)


def _authors(lines: list[_Line], title: str) -> list[str]:
    names: list[str] = []
    title_words = set(title.lower().split())
    for line in lines[:40]:
        if line.page != 1 or line.text.lower().startswith("abstract"):
            break
        text = re.sub(r"[*†‡§∗¶♠♣♥♦]|\s\d(?=\s|,|$)", " ", line.text).strip()
        if not text or _NOT_A_NAME.search(text) or set(text.lower().split()) <= title_words:
            continue
        for name in re.split(r",|\band\b|\s{2,}", text):
            name = tidy(name)
            words = name.split()
            if 2 <= len(words) <= 4 and all(w[:1].isupper() for w in words) and name not in names:
                names.append(name)
    return names[:30]


def parse_pdf(data: bytes, *, source: str = "PDF") -> Document:
    reader = _open(data, source)
    lines, arxiv_id = _lines(reader, data, source)
    document = Document(source_format="pdf", arxiv_id=arxiv_id)
    metadata_title = ""
    try:
        metadata_title = tidy(str(reader.metadata.get("/Title") or "")) if reader.metadata else ""
    except Exception:  # broken metadata does not matter: the title comes from page 1
        metadata_title = ""
    document.title = _page_one_title(reader) or metadata_title
    document.authors = _authors(lines, document.title)

    current: Section | None = None
    numbers: list[str] = []
    in_references = False
    in_abstract = False
    abstract: list[str] = []
    caption: Block | None = None
    caption_lines = 0
    paragraph: list[str] = []
    paragraph_page = 1

    def flush_paragraph() -> None:
        nonlocal paragraph
        if paragraph and current is not None:
            current.blocks.append(Block(text=tidy("\n".join(paragraph)), page=paragraph_page))
        paragraph = []

    for line in lines:
        text = line.text
        if _PAGE_NUMBER.match(text):
            continue
        # A heading set on two lines ("3 The LONGEVAL guidelines for" / "faithfulness …").
        open_heading = current is not None and not current.blocks and not paragraph
        if open_heading and current and _CONTINUES.search(current.title) and len(text) < 50:
            current.title = f"{current.title} {text}"
            continue
        heading = _HEADING.match(text)
        named = _NAMED_HEADING.match(text)
        is_heading = False
        if heading and _is_heading_title(heading.group("title")):
            parts = heading.group("number").split(".")
            if _number_follows(heading.group("number"), numbers) and not (
                in_references and parts[0].isdigit()
            ):
                is_heading = True
        if is_heading or named:
            caption = None
            flush_paragraph()
            if named and not is_heading:
                title = named.group("title").strip()
                number = None
            else:
                assert heading is not None
                title, number = heading.group("title").strip(), heading.group("number")
                numbers = number.split(".")
            if title.lower() == "abstract" and current is None:
                in_abstract = True
                continue
            in_abstract = False
            if REFERENCES_TITLE.match(title):
                in_references = True
                continue
            if in_references and number is None and title.lower() not in {"appendix", "appendices"}:
                continue
            in_references = in_references and number is None
            current = Section(title=title, number=number)
            document.sections.append(current)
            continue
        if in_abstract:
            abstract.append(text)
            continue
        if in_references:
            document.references.append(text)
            continue
        if current is None:
            continue  # the title block, authors and affiliations
        match = _CAPTION.match(text)
        if match:
            flush_paragraph()
            is_table = match.group("kind").lower().startswith("tab")
            caption = Block(text=text, kind="table" if is_table else "caption", page=line.page)
            current.blocks.append(caption)
            caption_lines = 1
            if text.endswith("."):
                caption = None
            continue
        if caption is not None and caption_lines < MAX_CAPTION_LINES:
            caption.text = (
                tidy(caption.text + "\n" + text)
                if not caption.text.endswith("-")
                else caption.text[:-1] + text
            )
            caption_lines += 1
            if text.endswith("."):
                caption = None
            continue
        caption = None
        if not paragraph:
            paragraph_page = line.page
        if line.page != paragraph_page:
            flush_paragraph()
            paragraph_page = line.page
        paragraph.append(text)
        if text.endswith((".", ":")) and len(text) < 60:  # a short last line ends a paragraph
            flush_paragraph()
    flush_paragraph()
    document.abstract = tidy("\n".join(abstract))
    document.sections = [s for s in document.sections if s.blocks]
    if not document.sections:
        raise FullTextError(f"{source}: no section headings were found in the PDF's text")
    return require_sections(document, source)
