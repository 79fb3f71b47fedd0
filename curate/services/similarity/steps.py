"""Dedup as map/reduce steps over a worker pool (the executor's: `ctx.pool()`).

    sign        map over row batches: exact keys, word counts and LSH band keys, the
                band keys split into P partitions by key (`sign_step`); the signatures
                are made, banded and dropped in the task (kept only on request: the
                dedup index persists them);
    buckets     shuffle by band key: partition p of every batch goes to one task, so a
                (band, key) bucket is whole there; its candidate pairs (`bucket_step`);
    verify      map over batches of candidate pairs, each with the texts of its rows,
                which are signed (and shingled) again there (`verify_texts_step`,
                `dedup.verify_texts`); or, with the signatures at hand (the dedup
                index), with the signatures of its rows (`verify_step`);
    components  global, over the edges only (n labels, m edges: small);
    survivors   shuffle by component: the best row of each group, exact flags
                (`components.survivor_step`).

Every step is a pure function of a picklable task, so any pool with `map(fn, items)`
runs it (`curate.run.services`: processes locally, Ray workers on a cluster, or this
process), and the result never depends on the pool, the partitions or the batch sizes:
`dedup_steps` gives `dedup.dedup_frame`'s result (tests/filter/test_dedup_steps.py). The
pipeline's dedup, the dedup index (`curate.filter.dedup_index`) and the split-leakage
check (`cross_group_pairs`) are chains of these steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import polars as pl

from curate.run.services import SerialPool, WorkerPool
from curate.services.similarity.banding import band_major_keys, candidate_pairs, unique_pairs
from curate.services.similarity.components import exact_edges
from curate.services.similarity.dedup import (
    DedupParams,
    DedupResult,
    finish_dedup,
    sign_and_band,
    verify_candidates,
    verify_texts,
)

SIGN_ROWS = 50_000  # rows per sign task at most (a pool of several workers)
VERIFY_PAIRS = 200_000  # candidate pairs per verify task at most
VERIFY_MIN_PAIRS = 20_000  # candidate pairs per verify task at least (when there are that many)


# ------------------------------------------------------------------ 1. sign (map)
# The band keys travel as (row, band, key) frames of 13 bytes a row and band: row as
# UInt32 (a candidate pair holds two rows in 64 bits: `unique_pairs`), band as UInt8.
def band_schema() -> dict[str, pl.DataType]:
    """The columns of a band frame: an intermediate of the steps, not an artifact."""
    return {"row": pl.UInt32(), "band": pl.UInt8(), "key": pl.UInt64()}


@dataclass(frozen=True)
class SignTask:
    texts: pl.Series
    start: int  # position of the first text among all rows
    params: DedupParams
    partitions: int
    keep_sig: bool = True  # return the signatures (the dedup index persists them)


@dataclass
class Signed:
    start: int
    keys: np.ndarray  # exact key per row (uint64)
    sig: np.ndarray  # rows x num_perm (uint32); 0 x num_perm unless the task kept them
    lengths: np.ndarray  # words per row
    bands: list[pl.DataFrame]  # (row, band, key) of non-empty rows, by partition of key


def sign_step(task: SignTask) -> Signed:
    """Exact keys and word counts of a batch, its signatures if `keep_sig`, and its band
    keys by partition (none when `partitions` is 0), made in the signing threads
    (`dedup.sign_and_band`) while a batch's signatures are at hand."""
    with_bands = task.partitions > 0
    keys, sig, lengths, major = sign_and_band(task.texts, task.params, with_bands=with_bands, with_sig=task.keep_sig)
    if not with_bands:
        return Signed(task.start, keys, sig, lengths, [])
    nonempty = np.flatnonzero(lengths > 0)
    return Signed(task.start, keys, sig, lengths, split_bands(major[:, nonempty], nonempty + task.start, task.partitions))


def split_bands(major: np.ndarray, rows: np.ndarray, partitions: int) -> list[pl.DataFrame]:
    """Band-major keys (bands x m) of `rows` as (row, band, key) frames (`band_schema`),
    split by key into `partitions`."""
    bands, m = major.shape
    if len(rows) and int(rows.max()) >= 1 << 32:
        raise ValueError("row indices past 2^32 do not fit a band frame (nor a pair code)")
    if bands > 256:
        raise ValueError(f"{bands} bands do not fit a UInt8 band number")
    frame = pl.DataFrame({
        "row": np.tile(np.asarray(rows, dtype=np.uint32), bands),
        "band": np.repeat(np.arange(bands, dtype=np.uint8), m),
        "key": major.ravel(),
    }, schema=band_schema())
    if partitions <= 1:
        return [frame]
    bucket = (frame["key"] % partitions).cast(pl.Int64).alias("__p")
    split = frame.with_columns(bucket).partition_by("__p", as_dict=True, include_key=False)
    return [split.get((p,), frame.clear()) for p in range(partitions)]


def band_partitions(sig: np.ndarray, rows: np.ndarray, params: DedupParams, partitions: int) -> list[pl.DataFrame]:
    """The band keys (row, band, key) of signatures `sig` of `rows`, split by key into `partitions`."""
    bands, per_band = params.banding
    return split_bands(band_major_keys(sig, bands, per_band), rows, partitions)


@dataclass(frozen=True)
class BandTask:
    sig: np.ndarray
    rows: np.ndarray
    params: DedupParams
    partitions: int


def band_step(task: BandTask) -> list[pl.DataFrame]:
    """Band keys of signatures already at hand (the dedup index's), by partition."""
    return band_partitions(task.sig, task.rows, task.params, task.partitions)


@dataclass
class SignedRows:
    """Every row's exact key, word count and signature (only where kept: else 0 x num_perm),
    and the band keys by partition."""

    keys: np.ndarray
    sig: np.ndarray
    lengths: np.ndarray
    bands: list[list[pl.DataFrame]]  # [partition][sign task]


def sign_rows(
    texts: pl.Series, params: DedupParams, pool: WorkerPool, partitions: int, batch_rows: int | None = None,
    *, keep_sig: bool = True,
) -> SignedRows:
    """`sign_step` over batches of `texts` of `batch_rows` (default: one batch when the pool
    has one worker, whose signing then uses `params.sign_threads` threads; else an even share
    per worker, at most `SIGN_ROWS`). `partitions` 0: no band keys. `keep_sig` False: no
    signature matrix (n x num_perm x 4 B: 488 MiB at 1M rows); verify with `verify_texts_on`."""
    n = len(texts)
    batch = batch_rows or (n if pool.workers <= 1 else min(SIGN_ROWS, -(-n // pool.workers)))
    tasks = [SignTask(texts.slice(lo, batch), lo, params, partitions, keep_sig) for lo in range(0, n, max(batch, 1))]
    signed = sorted(pool.map(sign_step, tasks), key=lambda part: part.start)
    if not signed:
        empty = pl.DataFrame(schema=band_schema())
        return SignedRows(np.zeros(0, dtype=np.uint64), np.zeros((0, params.num_perm), dtype=np.uint32),
                          np.zeros(0, dtype=np.int64), [[empty] for _ in range(partitions)])
    sig = np.concatenate([part.sig for part in signed]) if keep_sig else np.zeros((0, params.num_perm), np.uint32)
    return SignedRows(
        np.concatenate([part.keys for part in signed]), sig,
        np.concatenate([part.lengths for part in signed]),
        [[part.bands[p] for part in signed] for p in range(partitions)],
    )


# ------------------------------------------------------------------ 2. buckets (shuffle by band key)
@dataclass(frozen=True)
class BucketTask:
    bands: list[pl.DataFrame]  # one partition of the band keys, from every sign task
    keep: np.ndarray | None  # bool per row: rows that may pair (None: all)
    touch: np.ndarray | None  # bool per row: only buckets holding such a row (None: all buckets)
    max_bucket: int


def bucket_step(task: BucketTask) -> np.ndarray:
    """Candidate pairs (i < j) of one partition of (band, key) buckets."""
    frame = pl.concat(task.bands) if task.bands else pl.DataFrame()
    if frame.height == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if task.keep is not None:
        frame = frame.filter(pl.Series(task.keep[frame["row"].to_numpy()]))
    if task.touch is not None:
        touched = frame.filter(pl.Series(task.touch[frame["row"].to_numpy()])).select("band", "key").unique()
        frame = frame.join(touched, on=["band", "key"], how="semi")
    return candidate_pairs(frame, task.max_bucket)


def sign_bands(sig: np.ndarray, rows: np.ndarray, params: DedupParams, pool: WorkerPool,
               partitions: int) -> list[list[pl.DataFrame]]:
    """`band_step` over batches of `rows` of `sig`: band keys as [partition][batch]."""
    batch = max(1, len(rows) if pool.workers <= 1 else min(SIGN_ROWS, -(-len(rows) // pool.workers)))
    tasks = [BandTask(sig[rows[lo : lo + batch]], rows[lo : lo + batch], params, partitions)
             for lo in range(0, len(rows), batch)]
    done = list(pool.map(band_step, tasks))
    return [[parts[p] for parts in done] for p in range(partitions)]


def bucket_pairs(
    bands: list[list[pl.DataFrame]], params: DedupParams, pool: WorkerPool, *, keep: np.ndarray | None = None,
    touch: np.ndarray | None = None,
) -> np.ndarray:
    """`bucket_step` over every partition of the band keys: the distinct candidate pairs, sorted."""
    tasks = [BucketTask(part, keep, touch, params.max_bucket) for part in bands]
    return unique_pairs(list(pool.map(bucket_step, tasks)))


# ------------------------------------------------------------------ 3. verify (map over pair batches)
@dataclass(frozen=True)
class VerifyTask:
    rows: np.ndarray  # the distinct rows of the batch's pairs (positions among all rows)
    pairs: np.ndarray  # the batch's pairs, as indices into `rows`
    sig: np.ndarray  # the signatures of `rows`
    words: pl.Series | None  # the texts of `rows` (exact verification only)
    params: DedupParams


def verify_step(task: VerifyTask) -> tuple[np.ndarray, np.ndarray]:
    """The verified edges of one batch (positions among all rows) and their Jaccard."""
    edges, jac = verify_candidates(task.sig, task.pairs, task.params, words=task.words)
    return task.rows[edges].reshape(-1, 2), jac


def verify_pairs_on(
    pairs: np.ndarray, sig: np.ndarray, texts: pl.Series | None, params: DedupParams, pool: WorkerPool,
) -> tuple[np.ndarray, np.ndarray]:
    """`verify_step` over batches of `pairs` (in order): verified edges and their Jaccard."""
    tasks = []
    for lo in range(0, len(pairs), VERIFY_PAIRS):
        chunk = pairs[lo : lo + VERIFY_PAIRS]
        rows, local = np.unique(chunk.ravel(), return_inverse=True)
        words = texts.gather(rows) if texts is not None and params.verify == "exact" else None
        tasks.append(VerifyTask(rows, local.reshape(-1, 2).astype(np.int64), sig[rows], words, params))
    done = list(pool.map(verify_step, tasks))
    if not done:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    return (np.concatenate([edges for edges, _ in done]).astype(np.int64),
            np.concatenate([jac for _, jac in done]))


@dataclass(frozen=True)
class VerifyTextsTask:
    rows: np.ndarray  # the distinct rows of the batch's pairs (positions among all rows)
    pairs: np.ndarray  # the batch's pairs, as indices into `rows`
    texts: pl.Series  # the texts of `rows`
    params: DedupParams


def verify_texts_step(task: VerifyTextsTask) -> tuple[np.ndarray, np.ndarray]:
    """`verify_step` from the texts alone: the batch's rows are signed (and, for exact
    verification, shingled) again here (`dedup.verify_texts`)."""
    edges, jac = verify_texts(task.texts, task.pairs, task.params)
    return task.rows[edges].reshape(-1, 2), jac


def verify_texts_on(
    pairs: np.ndarray, texts: pl.Series, params: DedupParams, pool: WorkerPool,
) -> tuple[np.ndarray, np.ndarray]:
    """`verify_texts_step` over batches of `pairs` (in order; at least one batch per worker
    when there are `VERIFY_MIN_PAIRS` a worker): verified edges and their Jaccard, as
    `verify_pairs_on` finds them from the signatures. Only `pool.workers` batches' texts
    are gathered at a time (the batches go in waves), not every candidate row's."""
    per_task = min(VERIFY_PAIRS, max(VERIFY_MIN_PAIRS, -(-len(pairs) // max(1, pool.workers))))
    starts = list(range(0, len(pairs), per_task))
    done: list[tuple[np.ndarray, np.ndarray]] = []
    wave = max(1, pool.workers)
    for first in range(0, len(starts), wave):
        tasks = []
        for lo in starts[first : first + wave]:
            rows, local = np.unique(pairs[lo : lo + per_task].ravel(), return_inverse=True)
            tasks.append(VerifyTextsTask(rows, local.reshape(-1, 2).astype(np.int64), texts.gather(rows), params))
        done.extend(pool.map(verify_texts_step, tasks))
        del tasks
    if not done:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    return (np.concatenate([edges for edges, _ in done]).astype(np.int64),
            np.concatenate([jac for _, jac in done]))


# ------------------------------------------------------------------ the chains
def representatives(keys: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Rows that may pair: one per exact group (its first row), with words."""
    _, first_index = np.unique(keys, return_index=True)
    keep = np.zeros(len(keys), dtype=bool)
    keep[first_index] = True
    return keep & (lengths > 0)


def dedup_steps(
    frame: pl.DataFrame, *, text: str, id_col: str = "example_id", score: str = "quality_score",
    params: DedupParams | None = None, pool: WorkerPool | None = None, partitions: int | None = None,
    batch_rows: int | None = None,
) -> tuple[pl.DataFrame, DedupResult]:
    """`dedup.dedup_frame`'s result, as the chain of steps over `pool` (`partitions` of the
    band keys and of the components: the pool's workers by default; `batch_rows` per sign
    task: see `sign_rows`)."""
    params = params or DedupParams()
    pool = pool or SerialPool()
    partitions = max(1, partitions or pool.workers)
    ordered = frame.sort(id_col)
    texts = ordered[text]
    keys, pairs = sign_and_pair(texts, params, pool, partitions, batch_rows, representatives_only=True)
    near, _ = verify_texts_on(pairs, texts, params, pool)
    return finish_dedup(ordered, keys, exact_edges(keys), near, len(pairs),
                        id_col=id_col, score=score, pool=pool, partitions=partitions)


def sign_and_pair(
    texts: pl.Series, params: DedupParams, pool: WorkerPool, partitions: int, batch_rows: int | None = None,
    *, representatives_only: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The sign and bucket steps without a signature matrix: every row's exact key and the
    candidate pairs (among `representatives` only, or among all rows with words: only those
    have band keys). The band keys are dropped on return."""
    signed = sign_rows(texts, params, pool, partitions, batch_rows, keep_sig=False)
    keep = representatives(signed.keys, signed.lengths) if representatives_only else None
    return signed.keys, bucket_pairs(signed.bands, params, pool, keep=keep)


def cross_group_pairs(
    frame: pl.DataFrame, *, text: str, group: str, id_col: str,
    params: DedupParams | None = None, pool: WorkerPool | None = None,
) -> pl.DataFrame:
    """Near-duplicate (or exact) pairs whose rows lie in different groups, e.g. a test
    example that nearly repeats a training example (split leakage): the sign, bucket and
    verify steps over every row with words (not only one per exact group).

    Returns a frame (id_a, group_a, id_b, group_b, jaccard) sorted by ids, with id_a < id_b.
    """
    params = params or DedupParams()
    pool = pool or SerialPool()
    ordered = frame.sort(id_col)
    texts = ordered[text]
    keys, pairs = sign_and_pair(texts, params, pool, max(1, pool.workers), representatives_only=False)
    edges, jac = verify_texts_on(pairs, texts, params, pool)
    ex = exact_edges(keys)
    all_edges = np.concatenate([edges, ex]) if len(ex) else edges
    all_jac = np.concatenate([jac, np.ones(len(ex))]) if len(ex) else jac
    schema: dict[str, pl.DataType] = {"id_a": ordered[id_col].dtype, "group_a": ordered[group].dtype,
                                      "id_b": ordered[id_col].dtype, "group_b": ordered[group].dtype,
                                      "jaccard": pl.Float64()}
    if len(all_edges) == 0:
        return pl.DataFrame(schema=schema)
    all_edges = np.sort(all_edges, axis=1)
    ids, groups = ordered[id_col], ordered[group]
    found = pl.DataFrame({
        "id_a": ids.gather(all_edges[:, 0]), "group_a": groups.gather(all_edges[:, 0]),
        "id_b": ids.gather(all_edges[:, 1]), "group_b": groups.gather(all_edges[:, 1]),
        "jaccard": all_jac,
    })
    return (
        found.filter(pl.col("group_a") != pl.col("group_b"))
        .group_by("id_a", "id_b").agg(pl.all().sort_by("jaccard").last())
        .select(list(schema))
        .sort("id_a", "id_b")
    )


def estimate_only(params: DedupParams) -> DedupParams:
    """`params` verifying by the MinHash estimate alone (where the texts are not at hand)."""
    return dataclasses.replace(params, verify="estimate")
