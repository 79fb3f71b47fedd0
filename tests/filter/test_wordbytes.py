"""Words from bytes (`wordbytes`): the same words, hashes and exact keys as the string path."""

from __future__ import annotations

import numpy as np
import polars as pl
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.services.similarity import dedup as d
from curate.services.similarity import wordbytes as wb

TEXTS = [
    "Hello, World!  foo_bar 42", "", None, "Ünïcode  Text, with PUNCTUATION! and 1,024 numbers",
    "ﬁne ligature  ＦＵＬＬＷＩＤＴＨ", "  lead and trail  ", "a", "x—y «quoted» naïve café", "tab\tsep\nline",
    "Straße İstanbul ΣΊΣΥΦΟΣ", "emoji 🙂 between words", "a" * 70 + " " + "b" * 16 + " " + "c" * 15,
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=90), max_size=12))
def test_xxh32_of_spans_equals_xxhash(words: list[bytes]) -> None:
    data = np.frombuffer(b"".join(words), dtype=np.uint8)  # no padding: reads stay inside each word
    lengths = np.array([len(w) for w in words], dtype=np.int64)
    ends = np.cumsum(lengths)
    got = wb.xxh32_spans(data, ends - lengths, ends)
    assert got.tolist() == [xxhash.xxh32_intdigest(w) for w in words]


def _check_against_tokenize(texts: list[str | None]) -> None:
    series = pl.Series(texts, dtype=pl.String)
    spans = wb.word_spans(series)
    words = d.tokenize(series)
    flat = [bytes(spans.data[s:e]).decode() for s, e in zip(spans.starts, spans.ends, strict=True)]
    assert flat == [w for row in words.to_list() for w in (row or [])]
    assert spans.counts.tolist() == words.list.len().fill_null(0).to_list()
    assert np.array_equal(wb.span_exact_keys(spans), d.exact_keys(words))


def test_word_spans_equal_tokenize() -> None:
    _check_against_tokenize(TEXTS)
    _check_against_tokenize([])
    _check_against_tokenize(["", "", None])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=60), st.text(alphabet="ab _,.\t\nÉé", max_size=40)), max_size=8))
def test_word_spans_equal_tokenize_on_any_text(texts: list[str | None]) -> None:
    _check_against_tokenize(texts)


def test_signatures_from_bytes_equal_signatures_from_words() -> None:
    series = pl.Series(TEXTS * 3)
    for size in (1, 3, 5):
        from_bytes = d.minhash_signatures(series, shingle_size=size)
        from_words = d.minhash_signatures(series, shingle_size=size, words=d.tokenize(series))
        assert np.array_equal(from_bytes, from_words)


def test_a_sliced_series_gives_its_own_words() -> None:
    series = pl.Series(["zero one", "two three four", "five"]).slice(1, 2)
    spans = wb.word_spans(series)
    assert spans.counts.tolist() == [3, 1]
    assert bytes(spans.data[spans.starts[0] : spans.ends[0]]) == b"two"
