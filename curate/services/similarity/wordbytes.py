"""Words straight from a batch's text bytes: spans, xxh32 hashes and exact keys, in numpy.

The same words as `minhash.tokenize` (NFKC, lower case, runs of `\\w` characters) without
building a Python string per word: the lower-cased texts of a batch are one Arrow byte
buffer, a byte table marks word bytes, and word boundaries are where the mark changes (or a
text begins or ends). Texts with non-ASCII characters are first normalised and cleaned by
Polars (every run of non-word characters becomes one space), so that in any text a byte is
part of a word exactly when it is an ASCII word character or a byte of a non-ASCII one.

`xxh32_spans` is xxHash32 (seed 0) of every word at once, computed over groups of words of
one length (every word of a group takes the same steps); it equals `xxhash.xxh32_intdigest`
(tested against it), so the shingle hashes, and the signatures, are the ones
`minhash.shingle_hash32` gives one shingle at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import xxhash

_P1, _P2, _P3, _P4, _P5 = (np.uint32(p) for p in (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1))
# A byte is part of a word when it is an ASCII word character ([0-9A-Za-z_]) or any byte of
# a non-ASCII character (texts holding those were cleaned first: see the module docstring).
_WORD_BYTE = np.zeros(256, dtype=bool)
for _lo, _hi in ((48, 57), (65, 90), (97, 122), (95, 95), (128, 255)):
    _WORD_BYTE[_lo : _hi + 1] = True
_LANE_SEEDS = tuple(np.uint32(v & 0xFFFFFFFF) for v in (0x9E3779B1 + 0x85EBCA77, 0x85EBCA77, 0, -0x9E3779B1))


@dataclass(frozen=True)
class WordSpans:
    """The words of a batch of texts: byte spans into `data`, in text order."""

    data: np.ndarray  # uint8: the normalised, lower-cased texts, each framed by two spaces
    offsets: np.ndarray  # int64, n + 1: text i is data[offsets[i]:offsets[i + 1]]
    starts: np.ndarray  # int64: first byte of each word
    ends: np.ndarray  # int64: one past its last byte
    counts: np.ndarray  # int64, n: words per text
    word: np.ndarray  # bool per byte of `data`: a word byte


def normalised_texts(texts: pl.Series) -> pl.Series:
    """Lower-cased texts; those with non-ASCII characters NFKC-normalised and with every run
    of non-word characters replaced by one space (what `tokenize` does before `\\w+`)."""
    texts = texts.fill_null("")
    non_ascii = np.flatnonzero((texts.str.len_bytes() != texts.str.len_chars()).to_numpy())
    texts = texts.str.to_lowercase()
    if len(non_ascii):
        cleaned = texts.gather(non_ascii).str.normalize("NFKC").str.to_lowercase().str.replace_all(r"\W+", " ")
        texts = texts.scatter(non_ascii, cleaned)
    return texts


def word_spans(texts: pl.Series) -> WordSpans:
    """The words of every text, as byte spans (no Python object per word).

    Each normalised text is framed by one space on either side, so no word touches another
    text's and the word bytes begin and end between a space and a space: the positions
    where "is a word byte" changes are, in turn, a word's start and its end.
    """
    framed = (" " + normalised_texts(texts) + " ").rechunk()
    arrow = framed.to_arrow(compat_level=pl.CompatLevel.oldest())
    n = len(arrow)
    _, offset_buffer, data_buffer = arrow.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int64)[arrow.offset : arrow.offset + n + 1]
    base, total = int(offsets[0]), int(offsets[-1] - offsets[0])
    offsets = offsets - base
    data = np.frombuffer(data_buffer, dtype=np.uint8)[base : base + total] if total else np.zeros(0, np.uint8)
    word = _WORD_BYTE[data]
    changes = np.flatnonzero(word[1:] != word[:-1])
    changes += 1
    starts, ends = changes[0::2], changes[1::2]
    counts = np.diff(np.searchsorted(starts, offsets, side="left")).astype(np.int64)
    return WordSpans(data, offsets, starts, ends, counts, word)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _words32(data: np.ndarray) -> np.ndarray:
    """The little-endian 32-bit value at every byte position of `data` (an unaligned view:
    one gather reads four bytes)."""
    if len(data) < 4:
        data = np.concatenate([data, np.zeros(4, dtype=np.uint8)])
    return np.ndarray((len(data) - 3,), dtype="<u4", buffer=data, strides=(1,))


def _round(h: np.ndarray, value: np.ndarray, prime: np.uint32, shift: int, prime2: np.uint32) -> None:
    """h = rotl(h + value * prime, shift) * prime2, in place (`value` is overwritten)."""
    value *= prime
    h += value
    np.right_shift(h, np.uint32(32 - shift), out=value)
    h <<= np.uint32(shift)
    h |= value
    h *= prime2


def xxh32_spans(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """xxHash32 (seed 0) of data[starts[k]:ends[k]] for every k (reads stay inside each span)."""
    lengths = (ends - starts).astype(np.int64)
    out = np.empty(len(starts), dtype=np.uint32)
    if len(starts) == 0:
        return out
    words32 = _words32(data)
    # a stable sort of 16-bit lengths is a radix sort
    order = np.argsort(lengths.astype(np.uint16) if lengths.max() < 1 << 16 else lengths, kind="stable")
    sorted_lengths = lengths[order]
    bounds = np.flatnonzero(np.diff(sorted_lengths)) + 1
    for group in np.split(order, bounds):
        out[group] = _xxh32_one_length(data, words32, starts[group], int(lengths[group[0]]))
    return out


def _xxh32_one_length(data: np.ndarray, words32: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """xxHash32 of words that all have `length` bytes (XXH32 and XXH32_finalize, vectorised;
    every step in place on the group's arrays)."""
    with np.errstate(over="ignore"):
        pos = 0
        if length >= 16:
            v = [np.full(len(starts), seed, dtype=np.uint32) for seed in _LANE_SEEDS]
            while pos + 16 <= length:
                for lane in range(4):
                    _round(v[lane], words32[starts + (pos + 4 * lane)], _P2, 13, _P1)
                pos += 16
            h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
        else:
            h = np.full(len(starts), _P5, dtype=np.uint32)
        h += np.uint32(length & 0xFFFFFFFF)
        while pos + 4 <= length:
            _round(h, words32[starts + pos], _P3, 17, _P4)
            pos += 4
        while pos < length:
            _round(h, data[starts + pos].astype(np.uint32), _P5, 11, _P1)
            pos += 1
        value = h >> np.uint32(15)
        h ^= value
        h *= _P2
        np.right_shift(h, np.uint32(13), out=value)
        h ^= value
        h *= _P3
        np.right_shift(h, np.uint32(16), out=value)
        h ^= value
    return h


def span_exact_keys(spans: WordSpans) -> np.ndarray:
    """`minhash.exact_keys` of every text: xxh3-64 of its words joined by single spaces.

    The joined texts are built in numpy (word bytes, plus one space after each word that is
    not its text's last); one xxh3 call per text, as xxhash has no batch interface.
    """
    n = len(spans.counts)
    keep = spans.word.copy()
    joined = spans.data.copy()
    first_word = np.cumsum(spans.counts) - spans.counts
    not_last = np.ones(len(spans.ends), dtype=bool)
    not_last[(first_word + spans.counts - 1)[spans.counts > 0]] = False
    spaces = spans.ends[not_last]
    joined[spaces] = ord(" ")
    keep[spaces] = True
    # bytes kept per text: its word bytes and one space between words
    word_bytes = np.concatenate(([0], np.cumsum(spans.ends - spans.starts)))
    kept = word_bytes[first_word + spans.counts] - word_bytes[first_word] + np.maximum(spans.counts - 1, 0)
    bounds = np.concatenate(([0], np.cumsum(kept)))
    buffer = joined[keep].tobytes()
    view = memoryview(buffer)
    digest = xxhash.xxh3_64_intdigest
    return np.fromiter((digest(view[bounds[i] : bounds[i + 1]]) for i in range(n)), dtype=np.uint64, count=n)
