"""LSH banding: how many bands of how many rows for a threshold, band keys, candidate pairs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from curate.services.similarity.minhash import _MASK32, _MASK64, _SHINGLE_PRIME, _SHINGLE_SEED

# Rows of signatures turned into band keys at once (64k x 128 x 4 B = 32 MiB, transposed once).
_KEY_CHUNK = 1 << 16


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    return 1.0 - (1.0 - similarity**rows) ** bands


def choose_banding(num_perm: int, threshold: float, target: float = 0.99) -> tuple[int, int]:
    """The (bands, rows) with the most rows per band (fewest false candidates) for which a
    pair at `threshold` similarity becomes a candidate with probability >= `target`.

    Looser than datasketch's default (which balances false positives and negatives and
    finds only ~82% of pairs at 0.85-0.95 for threshold 0.8); candidates are verified after.
    """
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if bands < 1:
            break
        if candidate_probability(threshold, bands, rows) >= target:
            best = (bands, rows)
    return best


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (text, band): n x bands, uint64 (a hash of the band's values)."""
    return np.ascontiguousarray(band_major_keys(sig, bands, rows).T)


def band_major_keys(sig: np.ndarray, bands: int, rows: int, select: np.ndarray | None = None) -> np.ndarray:
    """`band_keys` of the rows `select` of `sig` (all rows if None), band-major: bands x m.

    One band's keys are then one contiguous array, which `streamed_candidate_pairs` sorts
    band by band. Signatures are read in chunks of `_KEY_CHUNK` rows, each transposed once
    so that every permutation's values are contiguous.
    """
    m = sig.shape[0] if select is None else len(select)
    keys = np.empty((bands, m), dtype=np.uint64)
    for lo in range(0, m, _KEY_CHUNK):
        part = sig[lo : lo + _KEY_CHUNK] if select is None else sig[select[lo : lo + _KEY_CHUNK]]
        keys[:, lo : lo + len(part)] = band_keys_from_columns(np.ascontiguousarray(part[:, : bands * rows].T), bands, rows)
    return keys


def band_keys_from_columns(columns: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """`band_major_keys` of permutation-major signatures (num_perm x m: one array per
    permutation, as `signatures_from_shingles(..., permutation_major=True)` gives them)."""
    keys = np.empty((bands, columns.shape[1]), dtype=np.uint64)
    prime = np.uint64(_SHINGLE_PRIME)
    for band in range(bands):
        h = keys[band]
        h.fill(np.uint64((_SHINGLE_SEED + band) & _MASK64))
        for col in range(band * rows, (band + 1) * rows):
            h ^= columns[col]
            h *= prime
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
    return keys


def band_frame(keys: np.ndarray, rows: np.ndarray | None = None) -> pl.DataFrame:
    """Band keys as a long frame (row, band, key): what a distributed run shuffles by key."""
    n, bands = keys.shape
    row_ids = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    return pl.DataFrame({
        "row": np.repeat(row_ids, bands),
        "band": np.tile(np.arange(bands, dtype=np.int32), n),
        "key": keys.ravel(),
    })


# ---------------------------------------------------------------- 4. candidate pairs
def candidate_pairs(bands: pl.DataFrame, max_bucket: int = 64) -> np.ndarray:
    """Unique pairs (i < j) of rows sharing a (band, key) bucket, as an (m, 2) int64 array.

    Buckets of up to `max_bucket` rows give all their pairs; a larger bucket (many
    near-identical texts) pairs each row with its next `max_bucket - 1` rows in row order,
    which keeps the bucket connected in the graph at linear cost.

    One band at a time (a band's shared keys, sorted by (key, row)), as
    `streamed_candidate_pairs` does: a window count over (band, key) of all rows at once
    took ~20x the frame's size in working memory (1 GiB for 4.2M rows), this ~2x.
    """
    found = []
    for part in bands.select("band", "key", "row").partition_by("band", include_key=False):
        shared = part.filter(pl.col("key").is_duplicated()).sort("key", "row")
        if shared.height:
            found.append(bucket_window_pairs(shared["row"].to_numpy(), max_bucket, shared["key"].to_numpy()))
    return unique_pairs(found)


def streamed_candidate_pairs(
    keys: np.ndarray, rows: np.ndarray, max_bucket: int = 64, *, select: np.ndarray | None = None,
    threads: int = 1,
) -> np.ndarray:
    """`candidate_pairs` from band-major keys (bands x m, `band_major_keys`) of `rows`, one
    band at a time: a band's shared buckets are found (hash), sorted by (key, row) and
    paired, so only one band's keys and sorted run are held at once per thread besides
    the pairs. `select`: take the columns `select` of `keys` (one band at a time)."""
    rows = np.asarray(rows, dtype=np.int64)

    def one_band(band: int) -> np.ndarray:
        band_keys_ = keys[band] if select is None else keys[band][select]
        shared = (
            pl.DataFrame({"key": band_keys_, "row": rows})
            .filter(pl.col("key").is_duplicated())
            .sort("key", "row")
        )
        if shared.height == 0:
            return np.zeros((0, 2), dtype=np.int64)
        return bucket_window_pairs(shared["row"].to_numpy(), max_bucket, shared["key"].to_numpy())

    if threads <= 1:
        return unique_pairs([one_band(band) for band in range(len(keys))])
    with ThreadPoolExecutor(threads) as pool:
        return unique_pairs(list(pool.map(one_band, range(len(keys)))))


def bucket_window_pairs(row: np.ndarray, max_bucket: int, *bucket: np.ndarray) -> np.ndarray:
    """Pairs of rows sorted by bucket (the arrays of `bucket` equal) and then row, each with
    its next `max_bucket - 1` rows of the same bucket."""
    row = np.asarray(row, dtype=np.int64)
    found: list[np.ndarray] = []
    for offset in range(1, max_bucket):
        if offset >= len(row):
            break
        same = np.ones(len(row) - offset, dtype=bool)
        for values in bucket:
            same &= values[offset:] == values[:-offset]
        if not same.any():
            break
        found.append(np.stack([row[:-offset][same], row[offset:][same]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def unique_pairs(parts: list[np.ndarray]) -> np.ndarray:
    """The distinct pairs of `parts` as (i < j) rows, sorted (one 64-bit code per pair)."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(parts)
    low, high = pairs.min(axis=1).astype(np.uint64), pairs.max(axis=1).astype(np.uint64)
    if len(pairs) and int(high.max()) >= 1 << 32:
        raise ValueError("row indices past 2^32 do not fit a pair code")
    codes = np.unique((low << np.uint64(32)) | high)
    return np.stack([(codes >> np.uint64(32)).astype(np.int64), (codes & np.uint64(_MASK32)).astype(np.int64)], axis=1)


# ---------------------------------------------------------------- 5. verification
