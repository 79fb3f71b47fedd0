"""Dedup at scale: `dedup.dedup_frame`'s result with the per-row work spread over a pool.

A map/shuffle/reduce:
    map     per batch of rows: tokens, exact keys, MinHash signatures, LSH band keys,
            the band keys split into P partitions by key;
    shuffle partition p of every batch goes to reducer p, so a (band, key) bucket is
            whole in one reducer;
    reduce  per partition: candidate pairs (`banding.candidate_pairs`);
    driver  verification of the pairs against the signatures, exact + near edges,
            connected components (not first-come greedy), survivors by score then id.
Any pool with `map(fn, items)` works: a `concurrent.futures.ProcessPoolExecutor`, or
`ray.util.multiprocessing.Pool` on a Ray cluster (`dedup_pool(executor)` picks one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl

from curate.run.config import RunSettings
from curate.services.similarity.dedup import (
    DedupParams,
    DedupResult,
    band_frame,
    band_keys,
    candidate_pairs,
    dedup_frame,
    exact_edges,
    finish_dedup,
    sign_batches,
    verify_candidates,
)


class Pool(Protocol):
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> Iterable[Any]: ...


class SerialPool:
    """The trivial pool: runs every item in this process (tests, one worker)."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> Iterator[Any]:
        return map(fn, items)


# ------------------------------------------------------------------ map and reduce steps
@dataclass(frozen=True)
class _MapTask:
    texts: pl.Series
    start: int
    params: DedupParams
    partitions: int


@dataclass
class _MapResult:
    start: int
    keys: np.ndarray  # exact key per row
    sig: np.ndarray  # rows x num_perm
    bands: list[pl.DataFrame]  # (row, band, key) of non-empty rows, by partition


def _map_part(task: _MapTask) -> _MapResult:
    params = task.params
    keys, sig, lengths = sign_batches(task.texts, params)
    nonempty = np.flatnonzero(lengths > 0)
    bands, rows = params.banding
    frame = band_frame(band_keys(sig[nonempty], bands, rows), nonempty + task.start)
    if task.partitions <= 1:
        parts = [frame]
    else:
        bucket = (frame["key"] % task.partitions).cast(pl.Int64).alias("__p")
        split = frame.with_columns(bucket).partition_by("__p", as_dict=True, include_key=False)
        parts = [split.get((p,), frame.clear()) for p in range(task.partitions)]
    return _MapResult(task.start, keys, sig, parts)


@dataclass(frozen=True)
class _ReduceTask:
    bands: list[pl.DataFrame]
    keep: np.ndarray  # bool per row: exact-group representatives
    max_bucket: int


def _reduce_part(task: _ReduceTask) -> np.ndarray:
    frame = pl.concat(task.bands) if task.bands else pl.DataFrame()
    if frame.height == 0:
        return np.zeros((0, 2), dtype=np.int64)
    frame = frame.filter(pl.Series(task.keep[frame["row"].to_numpy()]))
    return candidate_pairs(frame, task.max_bucket)


def parallel_dedup_frame(
    frame: pl.DataFrame, *, text: str, id_col: str = "example_id", score: str = "quality_score",
    params: DedupParams | None = None, pool: Pool | None = None, partitions: int = 4,
    batch_rows: int = 50_000,
) -> tuple[pl.DataFrame, DedupResult]:
    """`dedup.dedup_frame` with the per-row work spread over `pool` (same result)."""
    params = params or DedupParams()
    pool = pool or SerialPool()
    ordered = frame.sort(id_col)
    texts = ordered[text]
    n = ordered.height
    tasks = [_MapTask(texts.slice(lo, batch_rows), lo, params, partitions) for lo in range(0, n, batch_rows)]
    mapped = sorted(pool.map(_map_part, tasks), key=lambda part: part.start)
    if mapped:
        keys = np.concatenate([part.keys for part in mapped])
        sig = np.concatenate([part.sig for part in mapped])
    else:
        keys = np.zeros(0, dtype=np.uint64)
        sig = np.zeros((0, params.num_perm), dtype=np.uint32)
    ex_edges = exact_edges(keys)
    _, first_index = np.unique(keys, return_index=True)
    is_rep = np.zeros(n, dtype=bool)
    is_rep[first_index] = True
    reduce_tasks = [
        _ReduceTask([part.bands[p] for part in mapped], is_rep, params.max_bucket) for p in range(partitions)
    ]
    found = [pairs for pairs in pool.map(_reduce_part, reduce_tasks) if len(pairs)]
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), dtype=np.int64)
    near, _ = verify_candidates(sig, pairs, params, words=texts)
    return finish_dedup(ordered, keys, ex_edges, near.astype(np.int64), len(pairs), id_col=id_col, score=score)


@contextlib.contextmanager
def dedup_pool(config: RunSettings) -> Iterator[Pool]:
    """The pool a pipeline config asks for: Ray's on a Ray run, processes for local workers > 1."""
    executor = config.executor
    if executor.kind == "ray":
        import ray
        from ray.util.multiprocessing import Pool as RayPool

        if not ray.is_initialized():
            ray.init(address=executor.ray_address, ignore_reinit_error=True, log_to_driver=False)
        ray_pool = RayPool(processes=max(1, executor.workers))
        try:
            yield ray_pool
        finally:
            ray_pool.terminate()
    elif executor.workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(executor.workers, mp_context=multiprocessing.get_context("spawn")) as process_pool:
            yield process_pool
    else:
        yield SerialPool()


def dedup_frame_for(config: RunSettings) -> Callable[..., tuple[pl.DataFrame, DedupResult]]:
    """A drop-in for `dedup_frame` that uses the executor of `config` for the per-row work."""

    def run(frame: pl.DataFrame, **kwargs: Any) -> tuple[pl.DataFrame, DedupResult]:
        workers = max(1, config.executor.workers)
        if config.executor.kind != "ray" and workers <= 1:
            return dedup_frame(frame, **kwargs)
        with dedup_pool(config) as pool:
            return parallel_dedup_frame(frame, pool=pool, partitions=max(2, workers), **kwargs)

    return run
