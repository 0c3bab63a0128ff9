"""Which full-text format bytes or a path hold, and parsing them into a Document (size-capped)."""

from __future__ import annotations

from pathlib import Path

from bot.fulltext.document import Document, Format, FullTextError
from bot.fulltext.html import parse_html
from bot.fulltext.latex import LatexSource, SourceLimits, parse_latex, read_folder, read_tarball
from bot.fulltext.pdf import parse_pdf

FULLTEXT_SUFFIXES = (".pdf", ".html", ".htm", ".tar.gz", ".tgz", ".tar", ".gz", ".tex")


def is_fulltext_path(path: Path) -> bool:
    """A paper's full text rather than a list of papers: a PDF, an HTML page, an e-print archive, a
    .tex file, or a folder holding .tex files."""
    if path.is_dir():
        return any(p.suffix.lower() == ".tex" for p in path.rglob("*.tex"))
    return path.name.lower().endswith(FULLTEXT_SUFFIXES)


def sniff(data: bytes, name: str) -> Format | None:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF"):
        return "pdf"
    if data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar":
        return "latex"
    lowered = head[:512].lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<html" in lowered:
        return "html"
    if b"\\documentclass" in data[:65536] or b"\\section" in data[:65536]:
        return "latex"
    if name.lower().endswith(".pdf"):
        return "pdf"
    return None


def parse_bytes(data: bytes, *, name: str, max_bytes: int, limits: SourceLimits) -> Document:
    if len(data) > max_bytes:
        raise FullTextError(
            f"{name}: {len(data) / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB cap"
        )
    kind = sniff(data, name)
    if kind == "pdf":
        return parse_pdf(data, source=name)
    if kind == "html":
        return parse_html(data, source=name)
    if kind == "latex":
        if data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar":
            return parse_latex(read_tarball(data, source=name, limits=limits), name=name)
        return parse_latex(LatexSource(files={"main.tex": data.decode("utf-8", "replace")}), name=name)
    raise FullTextError(f"{name}: not a PDF, an HTML page or LaTeX source")


def parse_path(path: Path, *, max_bytes: int, limits: SourceLimits) -> Document:
    if path.is_dir():
        return parse_latex(read_folder(path, limits=limits), name=str(path))
    size = path.stat().st_size  # FileNotFoundError for a missing path
    if size > max_bytes:
        raise FullTextError(f"{path}: {size / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB cap")
    return parse_bytes(path.read_bytes(), name=str(path), max_bytes=max_bytes, limits=limits)
