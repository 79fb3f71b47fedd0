"""PDF reading order on PDFs we lay out ourselves: whole paragraphs across lines and pages,
hyphenation undone, headings from font sizes, running headers/footers dropped, exact offsets."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from curate.ingest.chunker import chunk_text
from curate.ingest.config import ChunkConfig, IngestConfig
from curate.ingest.readers.pdf import read_pdf
from curate.ingest.tokenize import WordsTokenizer
from tests.ingest.pdfgen import expected_text, layout, pdf_bytes, with_running_lines

WORDS = WordsTokenizer()
LONG_WORDS = ["implementation", "organization", "responsibilities", "authentication", "configuration"]

word = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=11),
    st.sampled_from(LONG_WORDS),
    st.sampled_from(["organization-defined", "role-based", "follow-up"]),  # compounds keep their hyphen
)


@st.composite
def sentence(draw: st.DrawFn) -> str:
    words = draw(st.lists(word, min_size=4, max_size=18))
    text = " ".join(words)
    if draw(st.booleans()):
        cut = draw(st.integers(1, len(words) - 1))
        text = " ".join(words[:cut]) + ", " + " ".join(words[cut:])
    return text[0].upper() + text[1:] + "."


paragraph = st.lists(sentence(), min_size=2, max_size=7).map(" ".join)
heading = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=9), min_size=1, max_size=4).map(
    lambda ws: " ".join(ws).capitalize()
)
blocks = st.lists(st.one_of(paragraph.map(lambda p: ("p", p)), paragraph.map(lambda p: ("p", p)), heading.map(lambda h: ("h", h))), min_size=2, max_size=14).filter(
    # body text is most of the text: the reader tells headings by their size against it
    lambda bs: sum(len(t) for k, t in bs if k == "p") >= 2 * sum(len(t) for k, t in bs if k == "h")
)


def read(tmp_path: Path, pages: list, name: str = "generated.pdf"):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(pdf_bytes(pages))
    return read_pdf(path, name, IngestConfig()).documents[0]


def test_sentences_across_page_breaks_fixed_example(tmp_path: Path) -> None:
    body = " ".join(
        f"Sentence {n} explains how the organization reviews access for the implementation of policy {n}." for n in range(60)
    )
    blocks = [("h", "Access reviews"), ("p", body), ("h", "Incident handling"), ("p", body.replace("access", "incidents"))]
    laid = layout(blocks, limit=380, hyphenate={"implementation", "organization"})
    assert len(laid.pages) >= 3
    document = read(tmp_path, with_running_lines(laid.pages, "Northwind Freight - Internal"))
    assert document.text == expected_text(blocks)
    assert document.metadata["headings_from"] == "font_size"
    assert document.metadata["running_lines_dropped"] == len(laid.pages)  # the header
    assert document.metadata["page_numbers_dropped"] == len(laid.pages)  # "Page n of N"
    assert document.metadata["line_end_hyphens"] >= 1
    spans = chunk_text(document.text, WORDS, ChunkConfig(max_tokens=160, min_tokens=16), headed=True, pages=document.pages)
    assert any(s.page_end != s.page for s in spans)  # chunks cross pages
    for span in spans:
        piece = document.text[span.start:span.end]
        assert piece.endswith(".") and not piece[0].islower()


def test_bare_page_numbers_are_dropped(tmp_path: Path) -> None:
    blocks = [("p", " ".join(f"Rule {n} keeps the records of the depot for seven years." for n in range(300)))]
    laid = layout(blocks)
    assert len(laid.pages) >= 3
    document = read(tmp_path, with_running_lines(laid.pages, "Records policy", footer="- {n} -"))
    assert document.text == expected_text(blocks)
    assert document.metadata["running_lines"] == ["Records policy"]
    assert document.metadata["page_numbers_dropped"] == len(laid.pages)


def test_outline_headings_also_when_set_over_two_lines(shared_corpus: Path) -> None:
    markdown = (shared_corpus / "docs" / "ac.md").read_text(encoding="utf-8")
    document = read_pdf(shared_corpus / "formats" / "ac.pdf", "ac.pdf", IngestConfig()).documents[0]
    assert document.metadata["headings_from"] == "outline"
    titles = re.findall(r"^## (.+)$", markdown, re.MULTILINE)
    assert re.findall(r"^## (.+)$", document.text, re.MULTILINE) == titles  # 127 bookmarks, some wrapped
    assert "\n## AC-4(13) Decomposition into Policy-relevant Subcomponents\n" in document.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(blocks=blocks, running=st.booleans())
def test_generated_pdf_whole_sentences_exact_offsets(tmp_path: Path, blocks: list[tuple[str, str]], running: bool) -> None:
    laid = layout(blocks, hyphenate=set(LONG_WORDS))
    # the reader learns the line gap from the document: it needs more line breaks inside
    # paragraphs than between them (else every line looks like a paragraph, as when double-spaced)
    assume(sum(len(lines) for lines in laid.pages) - len(blocks) >= len(blocks))
    running = running and len(laid.pages) >= 3  # "most pages" needs a few pages to tell
    pages = with_running_lines(laid.pages, "Confidential draft") if running else laid.pages
    document = read(tmp_path, pages)
    expected = expected_text(blocks)
    # every word back, hyphenated words whole, compounds with their hyphen, no running line
    assert " ".join(document.text.split()) == " ".join(expected.split())
    # breaks only where the layout had them; one may be lost only at a page end: a paragraph
    # that ends a page on a full line cannot be told from one that goes on
    gaps = list(re.finditer(r"\s+", document.text))
    wanted = ["\n" in gap.group() for gap in re.finditer(r"\s+", expected)]
    between_pages = {end for _, _, end in document.pages}
    for gap, want in zip(gaps, wanted, strict=True):
        got = "\n" in gap.group()
        assert got == want or (want and gap.start() in between_pages), (gap.start(), document.text[gap.start() - 40:gap.end() + 40])
    assert not re.search(r"[^.\n]\n", re.sub(r"^#.*$", ".", document.text, flags=re.MULTILINE))  # no break mid-sentence
    previous_end = 0
    numbers = []
    for number, start, end in document.pages:
        assert previous_end <= start < end <= len(document.text)
        previous_end = end
        numbers.append(number)
    assert numbers == sorted(numbers)
    page_of = {number: (start, end) for number, start, end in document.pages}
    spans = chunk_text(document.text, WORDS, ChunkConfig(max_tokens=200, min_tokens=0), headed=True, pages=document.pages)
    for span in spans:
        piece = document.text[span.start:span.end]
        assert piece == piece.strip() and piece
        rest = document.text[span.end:].split("\n")  # whole sentences; trailing headings have no sentence to end
        assert piece.endswith(".") or (piece.splitlines()[-1].startswith("# ") and all(not r or r.startswith("# ") for r in rest))
        assert not piece[0].islower()
        assert span.page is not None and span.page_end is not None and span.page <= span.page_end
        assert page_of[span.page][0] <= span.start and span.end <= page_of[span.page_end][1]
