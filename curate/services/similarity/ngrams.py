"""Word n-gram hashes of many texts at once, for overlap checks (decontamination, split leakage).

A service shared by stages (filters' decontamination, the dataset's leakage check), so it
imports no stage. Texts are normalised as the MinHash dedup does (NFKC, lower case, runs of word
characters). Every n-gram becomes one 64-bit hash: with 2e8 candidate n-grams against 1e6 eval
n-grams, a 32-bit hash would give ~5e4 chance matches, 64 bits ~1e-5. Hashes are consistent
within a process (Polars' seeded word hash), never persisted.

Everything is whole-array work: the only Python loop runs over the n positions of a gram.
"""

from __future__ import annotations

import numpy as np
import polars as pl

WORD_PATTERN = r"\w+"
_SEED = 0x5EED_D3C0
_PRIME = np.uint64(0x100000001B3)


def words_of(texts: pl.Series) -> pl.Series:
    """Normalised words of each text (list[str]); the same tokens as `curate.services.similarity.tokenize`."""
    texts = texts.fill_null("").cast(pl.String)
    return texts.str.normalize("NFKC").str.to_lowercase().str.extract_all(WORD_PATTERN)


def word_hashes(words: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """All words' 64-bit hashes (concatenated, text after text) and each text's word count."""
    lengths = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = words.explode().drop_nulls()
    return flat.hash(seed=_SEED).to_numpy().astype(np.uint64), lengths


def ngram_hashes(hashes: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every run of `n` consecutive words, and the index of the text it belongs to.

    A text of fewer than `n` words has no n-gram. Order-sensitive (a polynomial over the words).
    """
    ends = np.cumsum(lengths)
    starts = ends - lengths
    counts = np.maximum(lengths - n + 1, 0)
    total = int(counts.sum())
    doc = np.repeat(np.arange(len(lengths), dtype=np.int64), counts)
    first = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts) + starts[doc]
    h = np.zeros(total, dtype=np.uint64)
    for j in range(n):
        h = h * _PRIME + hashes[first + j]
    h ^= h >> np.uint64(31)
    return h, doc


def text_ngrams(texts: pl.Series, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`ngram_hashes` straight from texts: (hash per n-gram, index of its text)."""
    hashes, lengths = word_hashes(words_of(texts))
    return ngram_hashes(hashes, lengths, n)


def overlap_frame(
    cand_hashes: np.ndarray, cand_doc: np.ndarray, ref_hashes: np.ndarray, ref_doc: np.ndarray
) -> pl.DataFrame:
    """Shared n-grams between candidate texts and reference texts: one row per (candidate,
    reference) pair with the number of distinct n-grams they share (`shared`)."""
    cand = pl.DataFrame({"hash": cand_hashes, "cand": cand_doc}).unique()
    ref = pl.DataFrame({"hash": ref_hashes, "ref": ref_doc}).unique()
    return cand.join(ref, on="hash", how="inner").group_by("cand", "ref").agg(pl.len().alias("shared"))
