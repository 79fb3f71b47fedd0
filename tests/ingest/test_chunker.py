"""Chunking: exact offsets, token budget, coverage, structure (hypothesis properties)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.ingest.chunker import chunk_text, sections
from curate.ingest.config import ChunkConfig, IngestConfig
from curate.ingest.readers import format_of, reader_for
from curate.ingest.tokenize import WORD_TOKEN, HFTokenizer, TiktokenTokenizer, WordsTokenizer, get_tokenizer

WORDS = WordsTokenizer()

word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789éßñ", min_size=1, max_size=12)
punct = st.sampled_from([".", ",", ";", ":", "!", "?", "-", "(", ")", '"', "'", "€", "…"])
sentence = st.lists(st.one_of(word, word, word, punct), min_size=1, max_size=40).map(lambda ws: " ".join(ws) + ".")
paragraph = st.lists(sentence, min_size=1, max_size=6).map(" ".join)
long_run = st.integers(min_value=50, max_value=400).map(lambda n: "x" * n + " " + "y" * (n // 3))  # no boundaries
list_block = st.lists(sentence, min_size=1, max_size=8).map(lambda items: "\n".join("- " + i for i in items))
heading = st.tuples(st.integers(1, 4), st.lists(word, min_size=1, max_size=5)).map(lambda t: "#" * t[0] + " " + " ".join(t[1]))
block = st.one_of(paragraph, paragraph, list_block, heading, heading, long_run)
separator = st.sampled_from(["\n\n", "\n", "\n\n\n", "  \n\n", " "])
document = st.lists(st.tuples(block, separator), min_size=1, max_size=25).map(
    lambda parts: "".join(b + s for b, s in parts).strip()
)
chunk_cfg = st.integers(4, 80).flatmap(
    lambda budget: st.builds(
        ChunkConfig,
        max_tokens=st.just(budget),
        overlap_tokens=st.integers(0, budget - 1) | st.just(0),
        min_tokens=st.integers(0, 30),
    )
)


_HEADING_LINE = re.compile(r"^#{1,6}[ \t]+\S")


def reference_count(text: str) -> int:
    return len(WORD_TOKEN.findall(text))


@pytest.mark.slow
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=document, cfg=chunk_cfg, headed=st.booleans())
def test_chunks_are_exact_slices_within_budget_covering_all_text(text: str, cfg: ChunkConfig, headed: bool) -> None:
    spans = chunk_text(text, WORDS, cfg, headed=headed)
    covered = np.zeros(len(text), dtype=bool)
    previous_start = -1
    for span in spans:
        piece = text[span.start:span.end]
        assert 0 <= span.start < span.end <= len(text)
        assert piece == piece.strip() and piece  # trimmed, never empty
        assert span.n_tokens == reference_count(piece)  # the numpy tokenizer counts like the regex
        assert span.n_tokens <= cfg.max_tokens
        assert span.start > previous_start  # in document order
        previous_start = span.start
        covered[span.start:span.end] = True
    # every non-space character is in some chunk: nothing is lost between chunks
    missing = [i for i in np.flatnonzero(~covered) if not text[i].isspace()]
    assert missing == []
    if cfg.overlap_tokens == 0:  # without overlap, chunks do not overlap
        for a, b in itertools.pairwise(spans):
            assert a.end <= b.start
    if headed and not cfg.overlap_tokens:  # a heading-only chunk only where it cannot join the next one
        for span, after in itertools.pairwise(spans):
            lines = text[span.start:span.end].splitlines()
            if all(_HEADING_LINE.match(line) or not line.strip() for line in lines):
                assert reference_count(text[span.start:after.end]) > cfg.max_tokens


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=300))
def test_words_tokenizer_matches_regex_definition_on_ascii(text: str) -> None:
    expected = [m.start() for m in WORD_TOKEN.finditer(text)]
    assert WORDS.starts(text).tolist() == expected


def test_words_tokenizer_on_unicode() -> None:
    text = "Größe: 3 €, café—naïve «quote» 東京 ok"
    starts = WORDS.starts(text).tolist()
    tokens = [text[a:b].strip() for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    assert tokens == ["Größe", ":", "3", "€", ",", "café", "—", "naïve", "«", "quote", "»", "東京", "ok"]


def test_heading_paths_and_sections_over_real_manual(shared_corpus: Path) -> None:
    path = shared_corpus / "docs" / "ir.md"
    text = reader_for("markdown")(path, "ir.md", IngestConfig()).documents[0].text
    spans = chunk_text(text, WORDS, ChunkConfig(max_tokens=256, min_tokens=0), headed=True)
    by_path = {span.heading_path: span for span in spans}
    incident = by_path[("IR: Incident Response", "IR-4 Incident Handling")]
    assert text[incident.start:incident.end].startswith("## IR-4 Incident Handling\n\n**Control.**")
    assert text[incident.start:incident.end].endswith("the risk executive (function).")
    assert all(span.n_tokens <= 256 for span in spans)
    # every section that fits becomes exactly one chunk
    assert len(spans) >= len(re.findall(r"^## ", text, re.MULTILINE))


def test_same_chunks_from_markdown_html_and_docx(shared_corpus: Path) -> None:
    """The readers' Markdown headings give the same section structure whatever the format."""
    paths = {}
    for path in [shared_corpus / "docs" / "ir.md", shared_corpus / "formats" / "ir.html", shared_corpus / "formats" / "ir.docx"]:
        fmt = format_of(path)
        assert fmt is not None
        text = reader_for(fmt)(path, path.name, IngestConfig()).documents[0].text
        paths[path.suffix] = [s.heading_path for s in chunk_text(text, WORDS, ChunkConfig(max_tokens=2000, min_tokens=0), headed=True)]
    assert paths[".md"] == paths[".html"] == paths[".docx"]
    assert len(paths[".md"]) == 34  # one chunk per control section; the family title (no body) joins the first


def test_pdf_chunks_carry_their_page(shared_corpus: Path) -> None:
    path = shared_corpus / "formats" / "ir.pdf"
    document = reader_for("pdf")(path, "ir.pdf", IngestConfig()).documents[0]
    spans = chunk_text(document.text, WORDS, ChunkConfig(max_tokens=128), headed=False, pages=document.pages)
    pages = {page: (start, end) for page, start, end in document.pages}
    covered = {page for s in spans if s.page and s.page_end for page in range(s.page, s.page_end + 1)}
    assert covered == set(pages)
    for span in spans:
        assert span.page is not None and span.page_end is not None
        assert pages[span.page][0] <= span.start < pages[span.page][1]
        assert pages[span.page_end][0] < span.end <= pages[span.page_end][1]


def test_code_fences_are_not_headings() -> None:
    text = "# Runbook\n\nSteps below.\n\n```bash\n# not a heading\nrm -rf /tmp/x\n```\n\n## Real heading\n\nBody."
    titles = [s.path for s in sections(text, headed=True)]
    assert titles == [("Runbook",), ("Runbook", "Real heading")]


def test_small_preamble_joins_next_section() -> None:
    text = "# Policy\n\nVersion 2.\n\n## Scope\n\n" + "Every word counts here. " * 20
    joined = chunk_text(text, WORDS, ChunkConfig(max_tokens=256, min_tokens=16), headed=True)
    assert len(joined) == 1 and joined[0].heading_path == ("Policy", "Scope") and joined[0].start == 0
    apart = chunk_text(text, WORDS, ChunkConfig(max_tokens=256, min_tokens=0), headed=True)
    assert [s.heading_path for s in apart] == [("Policy",), ("Policy", "Scope")]


def test_heading_without_body_joins_the_next_section_even_when_that_must_be_split() -> None:
    """The family title of a NIST-style manual used to be a 6-token chunk of its own."""
    body = " ".join(f"Rule {i} of the awareness policy applies to all staff." for i in range(60))
    text = f"# AT: Awareness and Training\n\n## AT-1 Policy and Procedures\n\n{body}\n\n## AT-2 Awareness Training\n\n" + "Staff take the awareness course every year. " * 5
    spans = chunk_text(text, WORDS, ChunkConfig(max_tokens=128, min_tokens=32), headed=True)
    first = text[spans[0].start:spans[0].end]
    assert first.startswith("# AT: Awareness and Training\n\n## AT-1 Policy and Procedures\n\nRule 0 of")
    assert spans[0].heading_path == ("AT: Awareness and Training", "AT-1 Policy and Procedures")
    assert spans[0].merged == 1  # the title section joined
    assert all(s.n_tokens <= 128 for s in spans)
    assert all(not text[s.start:s.end].startswith("#") or "\n\n" in text[s.start:s.end] for s in spans)
    # a heading without body joins the next section even with min_tokens=0, and so do several
    # in a row (withdrawn controls: "## AC-19(1) ...\n\n## AC-19(2) ...")
    withdrawn = text.replace("## AT-2", "## AT-1(1) Withdrawn\n\n## AT-1(2) Withdrawn\n\n## AT-2")
    for cfg in (ChunkConfig(max_tokens=128, min_tokens=0), ChunkConfig(max_tokens=128, min_tokens=32)):
        for source in (text, withdrawn):
            spans = chunk_text(source, WORDS, cfg, headed=True)
            assert source[spans[0].start:spans[0].end].startswith("# AT: Awareness and Training\n\n## AT-1 Policy")
            last = source[spans[-1].start:spans[-1].end]
            assert last.endswith("every year.") and ("AT-1(2) Withdrawn\n\n## AT-2" in last or source is text)


def test_small_pieces_join_a_neighbour_in_every_format() -> None:
    """Unheaded text (PDF, text, records) honours min_tokens too: the end of a long paragraph
    split at sentences and a short paragraph after it make one chunk, not two small ones."""
    long_paragraph = "First paragraph sentence with a few words in it. " * 4  # 4 x 10 tokens
    text = long_paragraph.strip() + "\n\nTail."
    spans = chunk_text(text, WORDS, ChunkConfig(max_tokens=35, min_tokens=8), headed=False)
    pieces = [text[s.start:s.end] for s in spans]
    assert pieces[-1].endswith("in it.\n\nTail.") and len(spans) == 2
    assert all(s.n_tokens >= 8 and s.n_tokens <= 35 for s in spans)


def test_overlap_repeats_tokens_of_previous_chunk() -> None:
    text = " ".join(f"Sentence number {i} ends here." for i in range(60))
    spans = chunk_text(text, WORDS, ChunkConfig(max_tokens=40, overlap_tokens=10, min_tokens=0), headed=False)
    assert len(spans) > 3
    for a, b in itertools.pairwise(spans):
        assert b.start < a.end  # they overlap
        assert reference_count(text[b.start:a.end]) == 10
        assert b.n_tokens <= 40


def _tiny_tiktoken() -> Any:
    """A stand-in BPE (no download possible): bytes plus a few merges, built in the test."""
    import tiktoken

    ranks = {bytes([i]): i for i in range(256)}
    for merge in [b"th", b"the", b" the", b"in", b"ing", b"er", b"ac", b"acc", b"ess"]:
        ranks[merge] = len(ranks)
    return tiktoken.Encoding(name="tiny-test-bpe", pat_str=r"""'s|'t| ?\w+| ?[^\s\w]+|\s+(?!\S)|\s+""", mergeable_ranks=ranks, special_tokens={})


def test_tiktoken_tokenizer_counts_and_chunks() -> None:
    encoding = _tiny_tiktoken()
    tokenizer = TiktokenTokenizer(encoding)
    text = "The access review is ongoing. Another sentence follows the first one.\n\nA new paragraph here."
    starts = tokenizer.starts(text)
    assert len(starts) <= len(encoding.encode_ordinary(text)) and starts[0] == 0
    spans = chunk_text(text, tokenizer, ChunkConfig(max_tokens=20, min_tokens=0), headed=False)
    assert all(s.n_tokens <= 20 for s in spans) and len(spans) >= 2


def test_tokenizer_json_from_tokenizers(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["access control policy review " * 20, "incident response plan " * 20], trainers.WordPieceTrainer(vocab_size=60, special_tokens=["[UNK]"]))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    tokenizer = get_tokenizer(str(path))
    assert isinstance(tokenizer, HFTokenizer)
    text = "access control review. incident response plan."
    assert tokenizer.starts(text)[0] == 0
    spans = chunk_text(text, tokenizer, ChunkConfig(max_tokens=4, min_tokens=0), headed=False)
    assert all(s.n_tokens <= 4 for s in spans)


def test_unknown_tokenizer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"chunk\.tokenizer"):
        get_tokenizer("no-such-tokenizer")
