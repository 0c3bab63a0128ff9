"""Full-text parsers on the real papers of ../shared/data/fulltext, and each kind of bad input
(docs/reliability.md): one clear message naming the file, nothing written outside memory."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from bot.fulltext.chunking import document_passages
from bot.fulltext.document import FullTextError
from bot.fulltext.files import is_fulltext_path, parse_bytes, parse_path
from bot.fulltext.html import parse_html
from bot.fulltext.latex import (
    LatexSource,
    SourceLimits,
    citation_labels,
    parse_latex,
    read_folder,
    read_tarball,
)
from bot.fulltext.pdf import parse_pdf, respaced, runs_together
from bot.retrieval.index.base import FULLTEXT_FIRST_CHUNK
from tests.support.fake_arxiv import FULLTEXT, eprint_tarball

ATTENTION_PDF = FULLTEXT / "attention-is-all-you-need" / "pdf" / "attention.pdf"
MISTRAL_LATEX = FULLTEXT / "mistral-7b" / "latex"
RESPECT_PDF = FULLTEXT / "respect-llms" / "pdf" / "respect.pdf"
TELL_ME_HTML = FULLTEXT / "tell-me-about-yourself" / "html" / "source.html"
CAP = 50 * 2**20


def labels(document: object) -> list[str]:
    return [s.label for s in document.sections]  # type: ignore[attr-defined]


# -- the three formats ----------------------------------------------------------------------------


def test_pdf_gives_title_authors_arxiv_stamp_numbered_sections_pages_and_keeps_references_apart() -> None:
    document = parse_pdf(ATTENTION_PDF.read_bytes(), source="attention.pdf")
    assert document.title == "Attention Is All You Need"
    assert document.arxiv_id == "1706.03762"  # the side stamp "arXiv:1706.03762v7 [cs.CL] …"
    assert document.authors[:3] == ["Ashish Vaswani", "Noam Shazeer", "Niki Parmar"]
    assert "§3.2.2 Multi-Head Attention" in labels(document)
    assert "§5.3 Optimizer" in labels(document)
    optimizer = next(s for s in document.sections if s.number == "5.3")
    assert optimizer.first_page == 7 and "Adam optimizer" in optimizer.blocks[0].text
    assert document.abstract.startswith("The dominant sequence transduction models")
    # The reference list is kept apart, never in a section.
    assert len(document.references) > 20
    body = " ".join(b.text for s in document.sections for b in s.blocks)
    assert "Neural machine translation by jointly learning to align and translate" not in body
    tables = [b for s in document.sections for b in s.blocks if b.kind == "table"]
    assert any(b.text.startswith("Table 3: Variations on the Transformer architecture") for b in tables)


def test_every_pdf_of_the_set_parses_into_sections() -> None:
    for pdf in sorted(FULLTEXT.glob("*/pdf/*.pdf")):
        document = parse_pdf(pdf.read_bytes(), source=pdf.name)
        assert len(document.sections) >= 5, pdf
        assert document.sections[0].label.startswith(("§1", "§2")), (pdf, labels(document)[:3])


def test_a_pdf_whose_words_run_together_gets_its_word_gaps_back() -> None:
    """The politeness paper's PDF sets most words apart by position alone: pypdf read 24 of its 27
    pages as "inhumancommunicationsoftengarnersmore", which neither search nor the model can use."""
    raw = PdfReader(RESPECT_PDF).pages[0].extract_text()
    assert runs_together(raw) and "inhumancommunicationsoftengarnersmore" in raw
    document = parse_pdf(RESPECT_PDF.read_bytes(), source="respect.pdf")
    body = " ".join(b.text for s in document.sections for b in s.blocks)
    assert "in human communications often garners more" in document.abstract
    assert "we constructed the Japanese Massive Multitask Language Understanding Benchmark (JMMLU)" in body
    assert not runs_together(body)
    assert "§3 JMMLU Construction" in labels(document)  # pypdf's lines, which the headings come from
    # A page that reads well is left as it is, and only pieces found in the reference change.
    attention = PdfReader(ATTENTION_PDF).pages[2].extract_text()
    assert not runs_together(attention)
    assert respaced("Weuse MMLU, not that.", "We use MMLU,\nnot that.") == "We use MMLU, not that."
    assert respaced("unknownpiece stays", "something else") == "unknownpiece stays"


def test_arxiv_html_gives_sections_with_anchors_captions_and_math_as_text() -> None:
    document = parse_html(TELL_ME_HTML.read_bytes(), source="source.html")
    assert document.title == "Tell me about yourself: LLMs are aware of their learned behaviors"
    assert document.arxiv_id == "2501.11120"
    design = next(s for s in document.sections if s.label == "§3.1.1 Design")
    assert design.anchor == "S3.SS1.SSS1"
    assert labels(document)[:2] == ["§1 Introduction", "§2 Out-of-context reasoning"]
    captions = [b for s in document.sections for b in s.blocks if b.kind == "caption"]
    assert captions[0].text.startswith("Figure 1: Models can describe a learned behavioral policy")
    assert len(document.references) > 20  # the bibliography, apart
    discussion = next(s for s in document.sections if s.label == "§7 Discussion")
    assert discussion.blocks, "paragraph-level subsections (ltx_paragraph) belong to their section"


def test_latex_folder_resolves_inputs_expands_macros_and_numbers_sections_and_floats() -> None:
    document = parse_latex(read_folder(FULLTEXT / "attention-is-all-you-need" / "latex"), name="attention")
    assert document.title == "Attention Is All You Need"
    assert labels(document)[:3] == ["§1 Introduction", "§2 Background", "§3 Model Architecture"]
    regularization = next(s for s in document.sections if s.number == "5.4")
    text = " ".join(b.text for b in regularization.blocks)
    assert "P_drop=0.1" in text  # math as readable text
    assert "apply dropout (ref. srivastava2014dropout) to the output" in text  # a numbered list's key
    variations = next(s for s in document.sections if s.number == "6.2")
    assert "as described in Section 3.2.2" in " ".join(b.text for b in variations.blocks)  # \ref resolved
    mistral = parse_latex(read_folder(MISTRAL_LATEX), name="mistral")
    assert mistral.title == "Mistral 7B"  # \title{\mistral}: a \def macro expanded


def test_latex_citations_read_as_the_paper_s_reference_list_names_them() -> None:
    """\\cite keys ("DBLP:journals/corr/abs-1912…", "llama3_1_405b") mean little to a reader: natbib's
    .bbl labels give "(ref. AI@Meta, 2024b)"; a numbered list's items keep their keys."""
    labels = citation_labels((FULLTEXT / "deepseek-v3" / "latex" / "main.bbl").read_text())
    assert labels["llama3"] == "AI@Meta, 2024a" and labels["llama3_1_405b"] == "AI@Meta, 2024b"
    assert citation_labels((FULLTEXT / "s2orc" / "latex" / "main.bbl").read_text())["Ahmad2018CADAA"] == (
        "Ahmad and Afzal, 2018"
    )  # a label wrapped in braces and spread over lines
    assert citation_labels((MISTRAL_LATEX / "main.bbl").read_text()) == {}
    document = parse_latex(read_folder(FULLTEXT / "deepseek-v3" / "latex"), name="deepseek")
    text = " ".join(b.text for s in document.sections for b in s.blocks)
    assert "(ref. Touvron et al., 2023a; Touvron et al., 2023b; AI@Meta, 2024a; AI@Meta, 2024b)" in text
    assert not re.search(r"\(ref\.[^()]*_", text)  # no raw key ("llama3_1_405b") is left


def test_an_eprint_tarball_parses_like_its_folder() -> None:
    from_tar = parse_latex(read_tarball(eprint_tarball(MISTRAL_LATEX), source="e-print"), name="e-print")
    from_folder = parse_latex(read_folder(MISTRAL_LATEX), name="folder")
    assert labels(from_tar) == labels(from_folder)
    single = gzip.compress((MISTRAL_LATEX / "main.tex").read_bytes())  # a one-file e-print
    assert parse_bytes(single, name="single.gz", max_bytes=CAP, limits=SourceLimits()).title == "Mistral 7B"


def test_passages_stay_within_a_section_carry_it_and_make_paper_citations_plain_text() -> None:
    document = parse_pdf((FULLTEXT / "mistral-7b" / "pdf" / "2310.06825.pdf").read_bytes(), source="m")
    passages = document_passages(document, max_tokens=160, overlap=32, encoding="cl100k_base")
    assert [p.chunk_no for p in passages] == list(
        range(FULLTEXT_FIRST_CHUNK, FULLTEXT_FIRST_CHUNK + len(passages))
    )
    assert {p.section for p in passages} == set(document.outline())
    assert all(p.page for p in passages)
    assert {p.kind for p in passages} >= {"body", "caption", "table"}
    assert not any(re.search(r"\[\d+\]", p.text) for p in passages)  # "[27]" reads as "(ref. 27)"
    assert any("(ref. " in p.text for p in passages)


def test_a_passage_never_starts_inside_a_citation() -> None:
    """The period of "(ref. JonasFaceNet2017)" was a sentence end: a passage began "JonasFaceNet2017).
    In this work, …", the citation cut from the claim it supports."""
    for name in ("attention-is-all-you-need", "deepseek-v3"):
        document = parse_latex(read_folder(FULLTEXT / name / "latex"), name=name)
        passages = document_passages(document, max_tokens=160, overlap=32, encoding="cl100k_base")
        assert len(passages) > 50
        cut = [p.text[:40] for p in passages if re.match(r"[A-Za-z][\w:/-]*\d{2,4}[a-z]?\)", p.text)]
        assert cut == [], name


def test_paths_that_are_full_texts() -> None:
    assert (
        is_fulltext_path(MISTRAL_LATEX) and is_fulltext_path(ATTENTION_PDF) and is_fulltext_path(TELL_ME_HTML)
    )
    assert not is_fulltext_path(FULLTEXT / "MANIFEST.jsonl")


# -- bad input: one clear message each --------------------------------------------------------------


def _pdf(writer: PdfWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_encrypted_corrupt_and_scanned_pdfs_are_each_one_clear_error() -> None:
    writer = PdfWriter()
    writer.add_page(PdfReader(ATTENTION_PDF).pages[1])
    writer.encrypt(user_password="secret")
    with pytest.raises(FullTextError, match=r"^locked\.pdf: the PDF is encrypted"):
        parse_pdf(_pdf(writer), source="locked.pdf")
    with pytest.raises(FullTextError, match=r"^cut\.pdf: not a readable PDF \(corrupt or truncated"):
        parse_pdf(b"%PDF-1.7\n" + b"\x00garbage" * 50, source="cut.pdf")
    scan = PdfWriter()
    scan.add_blank_page(width=612, height=792)
    scan.add_blank_page(width=612, height=792)
    with pytest.raises(FullTextError, match=r"^scan\.pdf: the PDF has no text layer \(a scan\?\)"):
        parse_pdf(_pdf(scan), source="scan.pdf")


def test_html_without_sections_is_refused_with_its_reason() -> None:
    page = b"<html><head><title>Blog</title></head><body><p>Some text about papers.</p></body></html>"
    with pytest.raises(FullTextError, match=r"^page\.html: the HTML page has no sections"):
        parse_html(page, source="page.html")


def test_latex_with_a_missing_input_keeps_the_rest_and_logs_what_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main = (MISTRAL_LATEX / "main.tex").read_text()
    main = main.replace("\\section{Introduction}", "\\input{sections/missing_intro}\n\\section{Introduction}")
    source = LatexSource(files={"main.tex": main})
    document = parse_latex(source, name="mistral-missing")
    assert source.missing == ["sections/missing_intro"]
    assert "§2 Architectural details" in labels(document)
    assert "fulltext.latex_missing_inputs" in capsys.readouterr().out


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.7\n" + b"0" * 3000)
    with pytest.raises(FullTextError, match=r"big\.pdf: 0\.0 MiB is over the 0 MiB cap"):
        parse_path(big, max_bytes=1000, limits=SourceLimits())


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../evil.tex", "/etc/evil.tex", "sub/../../evil.tex"])
def test_tarballs_with_parent_or_absolute_paths_are_refused_and_nothing_is_written(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = _tar({"main.tex": b"\\begin{document}\\section{A}text\\end{document}", name: b"x"})
    with pytest.raises(FullTextError, match="the archive holds an unsafe path"):
        read_tarball(data, source="evil.tar.gz")
    assert list(tmp_path.rglob("*evil*")) == [] and not (tmp_path.parent / "evil.tex").exists()


def test_a_tarball_that_expands_past_the_cap_stops_at_the_cap() -> None:
    bomb = _tar(
        {"main.tex": b"\\begin{document}\\section{A}x\\end{document}", "zeros.bin": b"\0" * 4_000_000}
    )
    assert len(bomb) < 10_000  # compresses ~500:1
    with pytest.raises(FullTextError, match=r"the archive expands past 1 MiB; refused"):
        read_tarball(bomb, source="bomb.tar.gz", limits=SourceLimits(max_expanded_bytes=2**20))
    single = gzip.compress(b"\\section{A}" + b" " * 3_000_000)
    with pytest.raises(FullTextError, match="the gzipped file expands past 1 MiB"):
        read_tarball(single, source="bomb.gz", limits=SourceLimits(max_text_bytes=2**20))


def test_bytes_that_are_no_full_text_say_so() -> None:
    with pytest.raises(FullTextError, match=r"^notes\.txt: not a PDF, an HTML page or LaTeX source"):
        parse_bytes(b"just some notes", name="notes.txt", max_bytes=CAP, limits=SourceLimits())


def test_a_long_passage_is_cut_around_the_sentence_nearest_the_question_not_at_its_head() -> None:
    from bot.rag.packing import focus

    document = parse_latex(read_folder(MISTRAL_LATEX), name="mistral")
    passage = next(
        p.text
        for p in document_passages(document, max_tokens=192, overlap=48, encoding="cl100k_base")
        if "W=4096" in p.text and not p.text.startswith("At the last layer")
    )
    question = "What window size does Mistral 7B use at the last layer for sliding window attention?"
    cut = focus(passage, question, 60, "cl100k_base")
    assert "W=4096" in cut and passage.startswith(cut) is False  # the head alone would have lost it
    assert cut in passage and len(cut) < len(passage)
    assert focus(passage, question, 10_000, "cl100k_base") == passage  # what fits stays whole


def test_a_table_passage_is_cut_around_the_row_nearest_the_question() -> None:
    """Qwen3-Omni's Table 2: the caption, then rows joined by "; ". Cut as one long sentence after
    the caption, a short excerpt held the caption alone; cut by rows, it keeps the row asked about."""
    from bot.rag.packing import focus

    document = parse_latex(read_folder(FULLTEXT / "qwen3-omni" / "latex"), name="qwen3-omni")
    table = next(
        b.text for s in document.sections for b in s.blocks
        if b.kind == "table" and "Theoretical First-Packet Latency" in b.text
    )  # fmt: skip
    question = "How much time does the MTP module cost per token?"
    cut = focus(table, question, 40, "cl100k_base", rows=True)
    assert "MTP Module Time Cost Per Token" in cut and "14ms" in cut and cut in table
    assert "MTP Module" not in focus(table, question, 40, "cl100k_base")  # as sentences: caption only
