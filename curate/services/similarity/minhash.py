"""MinHash signatures of word shingles, vectorised with numpy.

`minhash_signatures` equals datasketch's `MinHash(num_perm, seed)` (scheme "affine32") fed
the same shingles with `hashfunc=shingle_hash32`; `datasketch_minhash` builds that reference
for tests and benchmarks. `tokenize` / `exact_keys` give normalised words and a stable
content hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import xxhash

from curate.services.similarity.wordbytes import WordSpans, word_spans, xxh32_spans

if TYPE_CHECKING:
    from datasketch import MinHash

WORD_PATTERN = r"\w+"
_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_SHINGLE_SEED = 0x9E3779B97F4A7C15
_SHINGLE_PRIME = 0x100000001B3  # FNV-1a 64-bit prime
_EMPTY = np.uint32(_MASK32)
# Cells (shingles x permutations) computed at once for long texts: bounds the working memory (~32 MiB).
_MAX_CELLS = 1 << 23
# Shingles per tile of the permutation-wise signature loop: the tile's shingle matrix and
# one permutation's values of it (2 x 128k x 4 B = 1 MiB) stay in a core's L2 cache.
_TILE_CELLS = 1 << 17
# Texts with more shingles than this are signed segment-wise (a tile would hold only a few
# texts, and each permutation's pass would do little work per call).
_LONG_TEXT = 512


# ---------------------------------------------------------------- 1. tokens and exact keys
def tokenize(texts: pl.Series) -> pl.Series:
    """Normalised words of each text (NFKC, lower case, runs of word characters)."""
    texts = texts.fill_null("")
    non_ascii = np.flatnonzero((texts.str.len_bytes() != texts.str.len_chars()).to_numpy())
    if len(non_ascii):  # NFKC leaves ASCII unchanged: normalise only the other rows
        texts = texts.scatter(non_ascii, texts.gather(non_ascii).str.normalize("NFKC"))
    return texts.str.to_lowercase().str.extract_all(WORD_PATTERN)


def exact_keys(words: pl.Series) -> np.ndarray:
    """A stable 64-bit hash (xxh3) of each text's normalised word sequence."""
    joined = words.list.join(" ").to_list()
    return np.fromiter(
        (xxhash.xxh3_64_intdigest(text.encode("utf-8")) for text in joined),
        dtype=np.uint64, count=len(joined),
    )


# ---------------------------------------------------------------- 2. shingles and MinHash
def word_hash32(word: str) -> int:
    return xxhash.xxh32_intdigest(word.encode("utf-8"))


def shingle_hash32(shingle: bytes) -> int:
    """The 32-bit hash of one shingle (its words joined by single spaces).

    The scalar reference of `shingle_hashes`: pass it as datasketch's `hashfunc` and
    datasketch produces the same signatures as `minhash_signatures`.
    """
    h = _SHINGLE_SEED
    for word in shingle.decode("utf-8").split(" "):
        h = ((h ^ word_hash32(word)) * _SHINGLE_PRIME) & _MASK64
    return (h ^ (h >> 32)) & _MASK32


def shingles_of(words: Sequence[str], size: int) -> list[bytes]:
    """The shingles of one word list as bytes (the scalar reference, for datasketch)."""
    if not words:
        return []
    if len(words) <= size:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)]


def word_hash_arrays(words: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """All word hashes (uint32, concatenated) and the word count of each text.

    Words are hashed with xxh32 once per distinct word of the batch (its vocabulary): Polars'
    in-process hash groups equal words (a 64-bit collision inside one batch's vocabulary,
    p ~ 1e-8 for a million words, is the only way two words could share a value), numpy
    maps the values back. No per-shingle or per-token Python work.
    """
    lengths = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = words.explode().drop_nulls()
    if flat.len() == 0:
        return np.zeros(0, dtype=np.uint32), lengths
    _, first, inverse = np.unique(flat.hash(seed=0).to_numpy(), return_index=True, return_inverse=True)
    vocab = flat.gather(first).to_list()
    hashes = np.fromiter((word_hash32(w) for w in vocab), dtype=np.uint32, count=len(vocab))
    return hashes[inverse], lengths


def shingle_hashes(word_hashes: np.ndarray, lengths: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every `size`-word shingle (uint32) and the shingle count per text.

    A text shorter than `size` words has one shingle (all its words); an empty text none.
    Every window of `size` consecutive words of the batch is hashed at once (contiguous
    slices of the word hashes, no gather), and the windows that lie inside one text are
    kept; the few texts shorter than `size` are hashed apart.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.where(lengths == 0, 0, np.maximum(lengths - size + 1, 1))
    word_start = np.cumsum(lengths) - lengths
    out = np.empty(int(counts.sum()), dtype=np.uint32)
    wide = word_hashes.astype(np.uint64)
    prime = np.uint64(_SHINGLE_PRIME)
    full = lengths >= size
    windows = len(wide) - size + 1
    if windows > 0 and full.any():
        h: np.ndarray = np.full(windows, _SHINGLE_SEED, dtype=np.uint64)
        for j in range(size):
            h ^= wide[j : j + windows]
            h *= prime
        inside = np.zeros(windows + 1, dtype=np.int32)  # +1 where a text's windows begin, -1 after
        inside[word_start[full]] += 1
        inside[word_start[full] + counts[full]] -= 1
        kept = _fold32(h[np.cumsum(inside[:-1]) > 0])
        if full.all():
            return kept, counts
        out[np.repeat(full, counts)] = kept
    short = np.flatnonzero(~full & (lengths > 0))
    if short.size:
        g: np.ndarray = np.full(short.size, _SHINGLE_SEED, dtype=np.uint64)
        first, width = word_start[short], lengths[short]
        for j in range(size - 1):
            valid = j < width
            g = np.where(valid, (g ^ wide[np.where(valid, first + j, 0)]) * prime, g)
        out[(np.cumsum(counts) - counts)[short]] = _fold32(g)
    return out, counts


def _fold32(h: np.ndarray) -> np.ndarray:
    return np.asarray((h ^ (h >> np.uint64(32))) & np.uint64(_MASK32), dtype=np.uint32)


def text_shingle_hashes(texts: pl.Series, size: int) -> tuple[np.ndarray, np.ndarray, WordSpans]:
    """Shingle hashes and counts of a batch of texts, straight from their bytes
    (`wordbytes`: the words of `tokenize`, hashed with xxh32 in numpy), and the word spans."""
    spans = word_spans(texts)
    hashes, counts = shingle_hashes(xxh32_spans(spans.data, spans.starts, spans.ends), spans.counts, size)
    return hashes, counts, spans


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own affine32 permutation parameters (a, b) for (num_perm, seed)."""
    from datasketch import MinHash  # scipy behind it: seconds to import, paid only when signing

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32)


def fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch pre-mixes every hash value with it)."""
    h = values.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def signatures_from_shingles(
    hashes: np.ndarray, counts: np.ndarray, num_perm: int = 128, seed: int = 1, *,
    permutation_major: bool = False,
) -> np.ndarray:
    """MinHash signatures (n_texts x num_perm, uint32) from shingle hashes and counts;
    `permutation_major`: as num_perm x n_texts (how they are computed: no transpose; LSH
    band keys read them so, `banding.band_keys_from_columns`).

    Same arithmetic as datasketch's affine32 `update_batch`: fmix32, then a*h+b mod 2^32,
    then the minimum per permutation. A text without shingles keeps the empty value.
    Texts of up to `_LONG_TEXT` shingles go permutation by permutation over tiles of texts
    (`_signatures_by_permutation`), longer ones through `_signatures_by_segment`; both give
    the same values.
    """
    a, b = permutations(num_perm, seed)
    n = len(counts)
    sig = np.full((num_perm, n), _EMPTY, dtype=np.uint32)  # permutation-major
    mixed = fmix32(hashes)
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    short = np.flatnonzero((counts > 0) & (counts <= _LONG_TEXT))
    long = np.flatnonzero(counts > _LONG_TEXT)
    if short.size:
        _signatures_by_permutation(sig, mixed, starts, counts, short, a, b)
    if long.size:
        _signatures_by_segment(sig, mixed, starts, counts, long, a, b)
    return sig if permutation_major else np.ascontiguousarray(sig.T)


def _signatures_by_permutation(sig: np.ndarray, mixed: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                               docs: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Texts sorted by shingle count (descending), in tiles of about `_TILE_CELLS` shingles:
    a tile's shingles as one (width x texts) matrix, shingle-major (a text with fewer than
    `width` shingles repeats its first one, which leaves its minimum unchanged); then per
    permutation one a*h+b over the matrix with scalar a and b and one minimum down its
    columns (a reduction over contiguous rows). The matrix stays in cache across the
    permutations; no per-text work."""
    num_perm = len(a)
    order = docs[np.argsort(-counts[docs], kind="stable")]
    a_values, b_values = list(a), list(b)  # numpy scalars: uint32 arithmetic throughout
    lo = 0
    while lo < order.size:
        width = int(counts[order[lo]])
        tile = order[lo : lo + max(1, _TILE_CELLS // width)]
        tile_counts = counts[tile]
        slots = np.minimum(np.arange(width)[:, None], tile_counts[None, :] - 1)
        shingles = mixed[slots + starts[tile][None, :]]
        cells = np.empty_like(shingles)
        mins = np.empty((num_perm, tile.size), dtype=np.uint32)
        for p in range(num_perm):
            np.multiply(shingles, a_values[p], out=cells)
            np.add(cells, b_values[p], out=cells)
            np.minimum.reduce(cells, axis=0, out=mins[p])
        sig[:, tile] = mins
        lo += tile.size


def _signatures_by_segment(sig: np.ndarray, mixed: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                           docs: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Long texts: permutation-major blocks of their shingles in one reused buffer, then the
    minimum per text and permutation with `reduceat` (its per-segment cost is paid back on
    long segments)."""
    num_perm = len(a)
    width = max(1, _MAX_CELLS // num_perm)
    buffer = np.empty((num_perm, width), dtype=np.uint32)
    a_col, b_col = a[:, None], b[:, None]
    ends = starts + counts
    docs_ends = ends[docs]
    i = 0
    while i < docs.size:
        # take texts until their shingles fill the buffer (at least one text); the texts
        # of `docs` are in ascending order, so their shingles are consecutive runs
        lo = int(starts[docs[i]])
        j = max(int(np.searchsorted(docs_ends, lo + width, side="right")), i + 1)
        batch = docs[i:j]
        segments = np.concatenate([np.arange(starts[t], ends[t]) for t in batch]) if j - i > 1 else \
            np.arange(starts[batch[0]], ends[batch[0]])
        if segments.size > buffer.shape[1]:
            buffer = np.empty((num_perm, segments.size), dtype=np.uint32)
        block = buffer[:, : segments.size]
        np.multiply(a_col, mixed[None, segments], out=block)
        np.add(block, b_col, out=block)
        offsets = np.concatenate(([0], np.cumsum(counts[batch])[:-1])).astype(np.intp)
        sig[:, batch] = np.minimum.reduceat(block, offsets, axis=1)
        i = j


def minhash_signatures(
    texts: pl.Series, *, num_perm: int = 128, shingle_size: int = 5, seed: int = 1,
    words: pl.Series | None = None,
) -> np.ndarray:
    """MinHash signatures of a batch of texts (n x num_perm, uint32)."""
    if words is None:
        hashes, counts, _ = text_shingle_hashes(texts, shingle_size)
    else:
        word_hashes, lengths = word_hash_arrays(words)
        hashes, counts = shingle_hashes(word_hashes, lengths, shingle_size)
    return signatures_from_shingles(hashes, counts, num_perm, seed)


def datasketch_minhash(words: Sequence[str], *, num_perm: int = 128, shingle_size: int = 5, seed: int = 1) -> MinHash:
    """The datasketch MinHash of one word list that `minhash_signatures` reproduces."""
    from datasketch import MinHash

    mh = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash32)
    shingles = shingles_of(list(words), shingle_size)
    if shingles:
        mh.update_batch(shingles)
    return mh


# ---------------------------------------------------------------- 3. LSH bands
