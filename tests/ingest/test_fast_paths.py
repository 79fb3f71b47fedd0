"""The vectorised fast paths of normalisation and token counting against their plain
definitions, on text of every width (ASCII, Latin-1, the BMP, beyond it): a fast path may
only skip work, never change the result."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from curate.ingest.normalize import normalize_text
from curate.ingest.tokenize import _CLASSES, OTHER, WORD, WordsTokenizer

# characters that normalisation and tokenisation treat specially, and one of each width
pieces = st.sampled_from(
    ["a", "Z", "7", "_", " ", "  ", "\t", "\n", "\n\n\n", "\r", "\r\n", "\f", "\x00", "\ufeff", "\u00a0", "\u00a0\n",
     "e\u0301", "é", "ß", "—", "\u201c", "\u2028", "\u3000", "東", "😀", "\U00010400", ".", "#", "-"]
)
texts = st.lists(pieces, max_size=60).map("".join)


def normalize_reference(text: str) -> str:
    """normalize_text as first written: every step a plain replace or regex substitution."""
    for old, new in (("\ufeff", ""), ("\r\n", "\n"), ("\r", "\n"), ("\f", "\n\n"), ("\x00", "")):
        text = text.replace(old, new)
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[ \t\u00a0]+(?=\n)", "", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n ")


def starts_reference(text: str) -> list[int]:
    """Token starts, one character at a time: a run of word characters, or one other mark."""
    def kind(ch: str) -> int:
        code = ord(ch)
        if code > 0xFFFF:
            return OTHER if 0x1F000 <= code <= 0x1FAFF else WORD
        return int(_CLASSES[code])

    kinds = [kind(ch) for ch in text]
    return [i for i, k in enumerate(kinds) if k == OTHER or (k == WORD and (i == 0 or kinds[i - 1] != WORD))]


@settings(max_examples=400, deadline=None)
@given(text=texts)
def test_normalize_text_equals_its_plain_definition(text: str) -> None:
    assert normalize_text(text) == normalize_reference(text)


@settings(max_examples=400, deadline=None)
@given(text=texts)
def test_words_tokenizer_equals_a_per_character_scan(text: str) -> None:
    assert WordsTokenizer().starts(text).tolist() == starts_reference(text)


@given(st.lists(st.tuples(st.text(max_size=200), st.integers(-(2**63), 2**63 - 1), st.integers(0, 2**63 - 1)), max_size=30))
@settings(max_examples=150, deadline=None)
def test_content_ids_equal_content_id_row_by_row(rows: list[tuple[str, int, int]]) -> None:
    import polars as pl

    from schemas.ids import content_id, content_ids

    doc_ids = pl.Series([r[0] for r in rows], dtype=pl.String)
    starts = pl.Series([r[1] for r in rows], dtype=pl.Int64)
    ends = pl.Series([r[2] for r in rows], dtype=pl.Int64)
    assert content_ids(doc_ids, starts, ends) == [content_id(*r) for r in rows]
    assert content_ids(doc_ids) == [content_id(r[0]) for r in rows]
