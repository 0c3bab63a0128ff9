"""arXiv HTML (LaTeXML, arxiv.org/html/ID) → Document: `ltx_section`/`ltx_subsection` with their
`ltx_tag` numbers and ids (the anchors of cited passages), `ltx_para`, figure and table captions;
math is its `alttext`, and the bibliography is kept apart."""

from __future__ import annotations

import re

import lxml.html
from lxml.etree import ParserError, _Element

from bot.core.papers import parse_arxiv_id
from bot.fulltext.document import Block, Document, FullTextError, Section, require_sections, tidy

_SECTION_CLASSES = ("ltx_section", "ltx_subsection", "ltx_subsubsection", "ltx_appendix")
_ARXIV_IN_URL = re.compile(r"arxiv\.org/(?:html|abs|pdf)/(\d{4}\.\d{4,5})")


def _classes(element: _Element) -> set[str]:
    return set((element.get("class") or "").split())


def element_text(element: _Element) -> str:
    """Readable text of an element: math as its LaTeX alttext, footnote marks and notes left out."""
    parts: list[str] = []

    def walk(node: _Element) -> None:
        tag = node.tag if isinstance(node.tag, str) else ""
        classes = _classes(node)
        if tag == "math":
            parts.append(f" {node.get('alttext') or ''} ")
        elif "ltx_note" in classes or tag in {"script", "style", "img"}:
            pass
        else:
            if node.text:
                parts.append(node.text)
            for child in node:
                walk(child)
                if child.tail:
                    parts.append(child.tail)
            return

    walk(element)
    return tidy("".join(parts))


def _heading(section: _Element) -> tuple[str | None, str]:
    heading = next((h for h in section if isinstance(h.tag, str) and "ltx_title" in _classes(h)), None)
    if heading is None:
        return None, ""
    tag = next((t for t in heading.iter() if "ltx_tag" in _classes(t)), None)
    number = tidy(tag.text_content()).rstrip(".") if tag is not None else None
    full = element_text(heading)
    title = full[len(number) :].strip(" .") if number and full.startswith(number) else full
    if number and number.lower().startswith("appendix"):
        number = number.split()[-1]
    return number or None, title


def _collect(container: _Element, blocks: list[Block]) -> None:
    """Paragraphs and captions directly in `container` (nested sections are parsed on their own)."""
    for child in container:
        if not isinstance(child.tag, str):
            continue
        classes = _classes(child)
        if classes & set(_SECTION_CLASSES) or "ltx_bibliography" in classes:
            continue
        if child.tag == "figure" or classes & {"ltx_figure", "ltx_table", "ltx_float"}:
            caption = next((c for c in child.iter() if "ltx_caption" in _classes(c)), None)
            is_table = "ltx_table" in classes or (
                caption is not None and "Table" in caption.text_content()[:12]
            )
            text = element_text(caption) if caption is not None else ""
            if is_table:
                cells = [element_text(t) for t in child.iter("table")]
                text = " ".join([text, *cells]).strip()
            if text:
                blocks.append(Block(text=text, kind="table" if is_table else "caption"))
        elif "ltx_para" in classes or child.tag == "p":
            text = element_text(child)
            if text:
                blocks.append(Block(text=text))
        elif child.tag in {"div", "span", "section"} and not classes & {
            "ltx_title",
            "ltx_authors",
            "ltx_abstract",
        }:
            _collect(child, blocks)


def parse_html(data: bytes, *, source: str = "HTML") -> Document:
    try:
        root = lxml.html.fromstring(data)
    except (ParserError, ValueError) as exc:
        raise FullTextError(f"{source}: not readable HTML ({exc})") from exc
    document = Document(source_format="html")
    title = next(iter(root.find_class("ltx_title_document")), None)
    if title is not None:
        document.title = element_text(title)
    elif root.find(".//title") is not None:
        document.title = tidy(root.find(".//title").text_content())
    document.authors = [a for a in (element_text(p) for p in root.find_class("ltx_personname")) if a][:50]
    abstract = next(iter(root.find_class("ltx_abstract")), None)
    if abstract is not None:
        document.abstract = " ".join(element_text(p) for p in abstract.iter("p"))
    canonical = root.find(".//link[@rel='canonical']")
    for candidate in [
        canonical.get("href") if canonical is not None else "",
        data[:20000].decode("utf-8", "ignore"),
    ]:
        match = _ARXIV_IN_URL.search(candidate or "")
        if match and parse_arxiv_id(match.group(1)):
            document.arxiv_id = match.group(1)
            break
    for section in root.iter("section"):
        classes = _classes(section)
        if "ltx_bibliography" in classes:
            document.references = [element_text(item) for item in section.iter("li")]
            continue
        if not classes & set(_SECTION_CLASSES):
            continue
        number, heading = _heading(section)
        parsed = Section(title=heading or "Untitled section", number=number, anchor=section.get("id"))
        _collect(section, parsed.blocks)
        document.sections.append(parsed)
    if not document.sections:
        raise FullTextError(
            f"{source}: the HTML page has no sections (is it an arXiv HTML full text, arxiv.org/html/ID?)"
        )
    return require_sections(document, source)
