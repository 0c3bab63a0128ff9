"""LaTeX source (an arXiv e-print tarball, a gzipped single file, or a folder) → Document.

`\\input`/`\\include` are resolved (a missing file is noted and skipped, the rest is kept), comments
and argument-free user macros (`\\def\\model{…}`, `\\newcommand{\\model}{…}`) are expanded or removed,
and the rest becomes text with pylatexenc (MIT; math as readable Unicode). Tarballs are read in
memory, never written to disk: members with absolute or `..` paths are refused, and the expanded
size and member count are capped, so an archive bomb stops at the cap."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import structlog
from pylatexenc.latex2text import LatexNodes2Text

from bot.core.papers import paper_reference
from bot.fulltext.document import (
    Block,
    Document,
    FullTextError,
    Section,
    require_sections,
    tidy,
)

log = structlog.get_logger(__name__)

TEXT_SUFFIXES = (".tex", ".bbl", ".ltx")
MAX_INPUT_DEPTH = 12
_SECTIONING = re.compile(r"\\(section|subsection|subsubsection)(\*?)\s*(?:\[[^\]]*\])?\s*\{")
_INPUT = re.compile(r"\\(?:input|include|subfile)\s*\{([^}]+)\}|\\input\s+([^\s{}\\]+)")
_COMMENT = re.compile(r"(?<!\\)%.*")
_FLOAT = re.compile(
    r"\\begin\{(figure\*?|table\*?|wrapfigure|wraptable|SCfigure)\}(.*?)\\end\{\1\}", re.DOTALL
)
_LABEL = re.compile(r"\\label\{([^}]*)\}")
_REF = re.compile(r"\\(?:auto|c|C|eq)?ref\*?\{([^}]*)\}")
_CITE = re.compile(
    r"\\(?:cite|citep|citet|citealp|citeauthor|citeyear|parencite|textcite)\*?(?:\[[^\]]*\])*\{([^}]*)\}"
)
_BIBITEM = re.compile(r"\\bibitem(?:\[[^\]]*\])?\{[^}]*\}")
_DROP_ENVS = re.compile(
    r"\\begin\{(comment|tikzpicture|lstlisting|verbatim|minted|algorithm\*?|thebibliography)\}.*?\\end\{\1\}",
    re.DOTALL,
)


@dataclass(frozen=True)
class SourceLimits:
    max_expanded_bytes: int = 200 * 1024 * 1024
    max_members: int = 10_000
    max_text_bytes: int = 20 * 1024 * 1024  # all .tex/.bbl text read


@dataclass
class LatexSource:
    files: dict[str, str]  # posix path inside the source → text (TeX files only)
    missing: list[str] = field(default_factory=list)


def _safe_member_name(name: str, source: str) -> str:
    path = PurePosixPath(name)
    if (
        path.is_absolute()
        or name.startswith(("/", "\\"))
        or ".." in path.parts
        or re.match(r"^[A-Za-z]:", name)
    ):
        raise FullTextError(
            f"{source}: the archive holds an unsafe path ({name!r}); refused, nothing was written"
        )
    return str(path)


def read_tarball(data: bytes, *, source: str, limits: SourceLimits = SourceLimits()) -> LatexSource:
    """An arXiv e-print: a (gzipped) tar of the source, or one gzipped .tex file."""
    files: dict[str, str] = {}
    expanded = 0
    text_bytes = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as archive:
            for count, member in enumerate(archive, start=1):
                if count > limits.max_members:
                    raise FullTextError(f"{source}: the archive holds more than {limits.max_members} files")
                name = _safe_member_name(member.name, source)
                if member.issym() or member.islnk():
                    _safe_member_name(member.linkname, source)
                    continue  # links are never followed
                if not member.isfile():
                    continue
                expanded += member.size
                if expanded > limits.max_expanded_bytes:
                    raise FullTextError(
                        f"{source}: the archive expands past "
                        f"{limits.max_expanded_bytes // 2**20} MiB; refused"
                    )
                if not name.lower().endswith(TEXT_SUFFIXES):
                    continue
                text_bytes += member.size
                if text_bytes > limits.max_text_bytes:
                    raise FullTextError(
                        f"{source}: the TeX files exceed {limits.max_text_bytes // 2**20} MiB"
                    )
                handle = archive.extractfile(member)
                if handle is not None:
                    files[name] = handle.read(limits.max_text_bytes).decode("utf-8", "replace")
    except tarfile.ReadError:
        return LatexSource(files={"main.tex": _gunzip_single(data, source, limits)})
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise FullTextError(f"{source}: the archive is corrupt or truncated ({exc})") from exc
    if not files:
        raise FullTextError(f"{source}: the archive holds no .tex file")
    return LatexSource(files=files)


def _gunzip_single(data: bytes, source: str, limits: SourceLimits) -> str:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            text = stream.read(limits.max_text_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise FullTextError(f"{source}: neither a tar archive nor a gzipped TeX file ({exc})") from exc
    if len(text) > limits.max_text_bytes:
        raise FullTextError(
            f"{source}: the gzipped file expands past {limits.max_text_bytes // 2**20} MiB; refused"
        )
    decoded = text.decode("utf-8", "replace")
    if "\\begin{document}" not in decoded and "\\section" not in decoded:
        raise FullTextError(f"{source}: the gzipped file is not LaTeX")
    return decoded


def read_folder(folder: Path, *, limits: SourceLimits = SourceLimits()) -> LatexSource:
    files: dict[str, str] = {}
    total = 0
    root = folder.resolve()
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink() or not path.name.lower().endswith(TEXT_SUFFIXES):
            continue
        if not path.resolve().is_relative_to(root):
            continue
        total += path.stat().st_size
        if total > limits.max_text_bytes:
            raise FullTextError(f"{folder}: the TeX files exceed {limits.max_text_bytes // 2**20} MiB")
        files[path.relative_to(folder).as_posix()] = path.read_text("utf-8", errors="replace")
    if not files:
        raise FullTextError(f"{folder}: no .tex file in the folder")
    return LatexSource(files=files)


def _main_file(source: LatexSource, name: str) -> str:
    candidates = [
        path for path, text in source.files.items()
        if path.endswith((".tex", ".ltx")) and "\\begin{document}" in _COMMENT.sub("", text)
    ]  # fmt: skip
    if not candidates:
        raise FullTextError(f"{name}: no .tex file has \\begin{{document}}; which one is the paper?")
    preferred = [p for p in candidates if PurePosixPath(p).name in {"main.tex", "ms.tex", "paper.tex"}]
    return (
        preferred
        or sorted(candidates, key=lambda p: (PurePosixPath(p).name.startswith("_"), -len(source.files[p])))
    )[0]


def _expand_inputs(text: str, source: LatexSource, depth: int = 0) -> str:
    def include(match: re.Match[str]) -> str:
        target = (match.group(1) or match.group(2) or "").strip()
        if depth >= MAX_INPUT_DEPTH:
            return ""
        for candidate in (
            target,
            f"{target}.tex",
            target.removeprefix("./"),
            f"{target.removeprefix('./')}.tex",
        ):
            if candidate in source.files:
                return _expand_inputs(_COMMENT.sub("", source.files[candidate]), source, depth + 1)
        if not target.lower().endswith((".png", ".pdf", ".jpg", ".sty", ".cls")):
            source.missing.append(target)
        return ""

    return _INPUT.sub(include, text)


def _group(text: str, start: int) -> tuple[str, int]:
    """The balanced {…} group opening at text[start] ('{'): its content and the index after it."""
    depth = 0
    for i in range(start, len(text)):
        char = text[i]
        if char == "\\":
            continue
        if char == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif char == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return text[start + 1 :], len(text)


def _command_argument(text: str, command: str) -> str | None:
    match = re.search(rf"\\{command}\*?\s*(?:\[[^\]]*\])?\s*\{{", text)
    return _group(text, match.end() - 1)[0] if match else None


def _expand_macros(text: str) -> str:
    """Argument-free \\def and \\newcommand macros replaced by their bodies; definitions removed."""
    macros: dict[str, str] = {}
    pattern = re.compile(
        r"\\(?:def|newcommand|renewcommand|providecommand)\*?\s*\{?\\([A-Za-z]+)\}?\s*(\[\d\])?\s*\{"
    )
    out: list[str] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() < position:
            continue
        body, end = _group(text, match.end() - 1)
        out.append(text[position : match.start()])
        position = end
        if not match.group(2) and "#" not in body:
            macros[match.group(1)] = body
    out.append(text[position:])
    text = "".join(out)
    if macros:
        names = re.compile(
            r"\\(" + "|".join(sorted(map(re.escape, macros), key=len, reverse=True)) + r")(?![A-Za-z])"
        )
        for _ in range(3):  # macros defined through other macros
            text = names.sub(lambda m: macros[m.group(1)].replace("\\", "\\\\").replace("\\\\", "\\"), text)
    return text.replace("\\xspace", "")


_converter = LatexNodes2Text(math_mode="text", strict_latex_spaces=True)


def latex_text(fragment: str) -> str:
    try:
        text = _converter.latex_to_text(fragment)
    except Exception:  # pylatexenc gives up on some broken markup: strip commands instead
        text = re.sub(r"\\[A-Za-z]+\*?|[{}$]", " ", fragment)
    return tidy(text)


def _bracket_end(text: str, start: int) -> int:
    """The index of the "]" closing the [ opening at text[start], outside any {…} inside it."""
    depth = 0
    for i in range(start + 1, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
        elif text[i] == "]" and depth <= 0:
            return i
    return len(text)


def _short_label(label: str) -> str:
    """natbib's \\bibitem label "Vaswani et~al.(2017)Vaswani, Shazeer, …" → "Vaswani et al., 2017";
    another style's label ("VSP+17") as it reads. Never with brackets: "(ref. …)" must stay one group."""
    label = re.sub(r"\{\\natexlab\{([^{}]*)\}\}", r"\1", label.strip())
    if label.startswith("{") and _group(label, 0)[1] == len(label):
        label = label[1:-1]
    natbib = re.match(r"(.*?)\(([^()]*)\)", label, re.DOTALL)
    text = f"{latex_text(natbib.group(1))}, {latex_text(natbib.group(2))}" if natbib else latex_text(label)
    return re.sub(r"\s+", " ", re.sub(r"[()\[\]]", "", text)).strip(" ,")


def citation_labels(bbl: str) -> dict[str, str]:
    """Each labelled \\bibitem's key → the short label the paper prints for it: natbib's "Vaswani
    et al., 2017", which a reader can look up where a key ("DBLP:journals/corr/abs-1912") is not.
    A numbered list's items keep their keys ("beltagy2020longformer"): a bare "(ref. 3)" tells a
    reader less, and puts one more number beside the paper's own figures for the model to misread."""
    labels: dict[str, str] = {}
    for match in re.finditer(r"\\bibitem\s*\[", bbl):
        end = _bracket_end(bbl, match.end() - 1)
        label, position = bbl[match.end() : end], end + 1
        position += len(bbl[position:]) - len(bbl[position:].lstrip())
        if not bbl.startswith("{", position):
            continue
        key, short = _group(bbl, position)[0].strip(), _short_label(label)
        if key and short:
            labels[key] = short
    return labels


def _cite_text(match: re.Match[str], labels: dict[str, str]) -> str:
    """\\cite{a,b} → "(ref. Vaswani et al., 2017; Ba et al., 2016)" with natbib labels, else the keys
    "(ref. a, b)": it says that a claim is cited, in the same form as a PDF's "[27]" (chunking),
    never as brackets an answer's [n] could be taken for."""
    names = [labels.get(key.strip(), key.strip()) for key in match.group(1).split(",") if key.strip()]
    return paper_reference(("; " if any("," in name for name in names) else ", ").join(names))


def _table_text(body: str) -> str:
    tabular = re.search(r"\\begin\{(tabular\*?|tabularx|longtable)\}(.*?)\\end\{\1\}", body, re.DOTALL)
    if not tabular:
        return ""
    rows = re.sub(
        r"\\(?:toprule|midrule|bottomrule|hline|cline\{[^}]*\}|cmidrule(?:\([^)]*\))?\{[^}]*\})",
        "",
        tabular.group(2),
    )
    rows = re.sub(r"^\s*\{[^}]*\}", "", rows)  # the column spec
    lines = [" | ".join(latex_text(cell) for cell in row.split("&")) for row in re.split(r"\\\\", rows)]
    return "; ".join(line for line in lines if line.strip(" |"))


def parse_latex(source: LatexSource, *, name: str = "LaTeX source") -> Document:
    main = _main_file(source, name)
    text = _expand_inputs(_COMMENT.sub("", source.files[main]), source)
    if source.missing:
        log.warning("fulltext.latex_missing_inputs", source=name, missing=source.missing[:20])
    text = _expand_macros(text)
    document = Document(source_format="latex")
    preamble, _, body = text.partition("\\begin{document}")
    body = body.split("\\end{document}")[0]
    title = _command_argument(preamble + body[:5000], "title")
    document.title = latex_text(title) if title else ""
    authors = _command_argument(preamble + body[:5000], "author")
    if authors:
        authors = re.sub(r"\\(?:thanks|footnote|affiliation|email)\s*\{", "\\\\dropped{", authors)
        plain = latex_text(re.sub(r"\\dropped\{[^{}]*\}", "", authors))
        document.authors = [a.strip() for a in re.split(r",|\band\b|\n", plain) if 1 < len(a.split()) <= 4][
            :30
        ]
    abstract = re.search(r"\\begin\{abstract\}(.*?)\\end\{abstract\}", body, re.DOTALL)
    if abstract:
        document.abstract = latex_text(abstract.group(1))
        body = body.replace(abstract.group(0), "")
    bibliography = re.search(r"\\begin\{thebibliography\}.*?\\end\{thebibliography\}", body, re.DOTALL)
    bbl = (
        bibliography.group(0)
        if bibliography
        else next((t for p, t in source.files.items() if p.endswith(".bbl")), "")
    )
    document.references = [latex_text(item) for item in _BIBITEM.split(bbl)[1:] if item.strip()][:2000]
    body = _DROP_ENVS.sub(" ", body)
    document.sections = _sections(body, citation_labels(bbl))
    return require_sections(document, name)


def _sections(body: str, citations: dict[str, str]) -> list[Section]:
    counters = [0, 0, 0]
    labels: dict[str, str] = {}
    floats: list[tuple[str, str, str]] = []  # (kind, number, text)
    figure_no = table_no = 0

    def cite(match: re.Match[str]) -> str:
        return _cite_text(match, citations)

    def take_float(match: re.Match[str]) -> str:
        nonlocal figure_no, table_no
        environment, content = match.group(1), _CITE.sub(cite, match.group(2))
        is_table = environment.startswith(("table", "wraptable"))
        if is_table:
            table_no += 1
        else:
            figure_no += 1
        number = str(table_no if is_table else figure_no)
        for label in _LABEL.findall(content):
            labels[label] = number
        caption = _command_argument(content, "caption") or ""
        label_word = "Table" if is_table else "Figure"
        text = f"{label_word} {number}: {caption}"
        if is_table:
            text = f"{text} {_table_text(content)}"
        floats.append(("table" if is_table else "caption", number, text))
        return f"\n\n\x00FLOAT{len(floats) - 1}\x00\n\n"

    body = _FLOAT.sub(take_float, body)
    appendix_at = body.find("\\appendix")
    headings = list(_SECTIONING.finditer(body))
    parsed: list[tuple[Section, str]] = []
    starts = [h.start() for h in headings] + [len(body)]
    for index, heading in enumerate(headings):
        level = ("section", "subsection", "subsubsection").index(heading.group(1))
        title_tex, after_title = _group(body, heading.end() - 1)
        number: str | None = None
        if not heading.group(2):
            counters[level] += 1
            counters[level + 1 :] = [0] * (2 - level)
            in_appendix = 0 <= appendix_at < heading.start()
            top = (
                chr(ord("A") + counters[0] - 1 - _appendix_offset(body, headings, appendix_at))
                if in_appendix
                else str(counters[0])
            )
            number = ".".join([top, *map(str, counters[1 : level + 1])])
        section_text = body[after_title : starts[index + 1]]
        for label in _LABEL.findall(title_tex + section_text[:200]):
            labels.setdefault(label, number or "")
        parsed.append(
            (
                Section(title=latex_text(_LABEL.sub("", title_tex)) or "Untitled section", number=number),
                section_text,
            )
        )
    if not headings:
        parsed.append((Section(title="Body"), body))

    def readable(fragment: str) -> str:
        fragment = _REF.sub(lambda m: labels.get(m.group(1).split(",")[0], "?"), fragment)
        fragment = _CITE.sub(cite, fragment)
        return latex_text(_LABEL.sub("", fragment))

    sections: list[Section] = []
    for section, text in parsed:
        for paragraph in re.split(r"\n\s*\n", text):
            marker = re.fullmatch(r"\s*\x00FLOAT(\d+)\x00\s*", paragraph)
            if marker:
                kind, _, float_text = floats[int(marker.group(1))]
                block_text = readable(float_text)
                if len(block_text) > 12:
                    section.blocks.append(Block(text=block_text, kind=kind))  # type: ignore[arg-type]
                continue
            paragraph_text = readable(paragraph)
            if len(paragraph_text) > 20:
                section.blocks.append(Block(text=paragraph_text))
        sections.append(section)
    return sections


def _appendix_offset(body: str, headings: list[re.Match[str]], appendix_at: int) -> int:
    """Numbered top-level sections before \\appendix: the first appendix section is A."""
    return sum(1 for h in headings if h.start() < appendix_at and h.group(1) == "section" and not h.group(2))
