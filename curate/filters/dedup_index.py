"""Dedup at scale, built on the vectorised steps of `curate.filters.dedup`.

Two things live here:

- `parallel_dedup_frame`: the same result as `dedup.dedup_frame`, with the per-row work
  spread over a pool of workers as a map/shuffle/reduce:
    map     per batch of rows: tokens, exact keys, MinHash signatures, LSH band keys,
            the band keys split into P partitions by key;
    shuffle partition p of every batch goes to reducer p, so a (band, key) bucket is
            whole in one reducer;
    reduce  per partition: candidate pairs (`dedup.candidate_pairs`);
    driver  verification of the pairs against the signatures, exact + near edges,
            connected components (not first-come greedy), survivors by score then id.
  Any pool with `map(fn, items)` works: a `concurrent.futures.ProcessPoolExecutor`, or
  `ray.util.multiprocessing.Pool` on a Ray cluster (`dedup_pool(config)` picks one).

- `DedupIndex`: incremental dedup. A persisted index of every row that went through
  dedup (id, quality score, exact key, signature, component) lets a new batch B be
  deduplicated against all earlier batches without recomputing their signatures; the
  result for B's rows equals the dedup of everything together, restricted to B.
  The pipeline uses it through `filter.dedup_index` (`drop_indexed_duplicates`, where an
  indexed row always wins: it belongs to a dataset that has shipped) and
  `curate index add` (a run's final dataset joins the index once it is accepted).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl

from curate.filters.dedup import (
    DedupParams,
    DedupResult,
    band_frame,
    band_keys,
    candidate_pairs,
    exact_edges,
    finish_dedup,
    sign_batches,
    verify_candidates,
    verify_pairs,
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
def dedup_pool(config: Any) -> Iterator[Pool]:
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


def dedup_frame_for(config: Any) -> Callable[..., tuple[pl.DataFrame, DedupResult]]:
    """A drop-in for `dedup_frame` that uses the executor of `config` for the per-row work."""

    def run(frame: pl.DataFrame, **kwargs: Any) -> tuple[pl.DataFrame, DedupResult]:
        workers = max(1, config.executor.workers)
        if config.executor.kind != "ray" and workers <= 1:
            from curate.filters.dedup import dedup_frame

            return dedup_frame(frame, **kwargs)
        with dedup_pool(config) as pool:
            return parallel_dedup_frame(frame, pool=pool, partitions=max(2, workers), **kwargs)

    return run


# ------------------------------------------------------------------ incremental index
INDEX_SCHEMA = {
    "id": pl.String,
    "score": pl.Float64,
    "exact_key": pl.UInt64,
    "signature": pl.Binary,
    "component_id": pl.String,
}


class DedupIndex:
    """Every row that went through dedup so far, persisted at `location` (a folder or URL).

    `rows.parquet` holds, per row: id, quality score, exact key, MinHash signature
    (num_perm uint32, as bytes) and component id (the smallest id of its duplicate group);
    `params.json` the dedup parameters, which must not change between batches (else the
    signatures are not comparable: start a new index).
    """

    def __init__(self, location: str):
        self.location = location.rstrip("/")

    @property
    def rows_path(self) -> str:
        return f"{self.location}/rows.parquet"

    @property
    def params_path(self) -> str:
        return f"{self.location}/params.json"

    def load(self, columns: list[str] | None = None) -> pl.DataFrame:
        from curate.run.rundir import path_exists, read_parquet

        if not path_exists(self.rows_path):
            return pl.DataFrame(schema=INDEX_SCHEMA).select(columns or list(INDEX_SCHEMA))
        return read_parquet(self.rows_path, columns)

    def ids(self) -> pl.Series:
        """The indexed ids alone (a column read: no signatures)."""
        return self.load(["id"])["id"]

    def _check_params(self, params: DedupParams) -> None:
        from curate.run.rundir import path_exists, read_text

        if path_exists(self.params_path):
            stored = json.loads(read_text(self.params_path))
            if stored != _params_json(params):
                raise ValueError(
                    f"dedup index {self.location} was built with {stored}, not {_params_json(params)}: "
                    "signatures are not comparable; use a new index"
                )

    def dedup(
        self, frame: pl.DataFrame, *, text: str, id_col: str = "example_id", score: str = "quality_score",
        params: DedupParams | None = None, commit: bool = True, prefer_indexed: bool = False,
    ) -> pl.DataFrame:
        """Dedup `frame` against itself and every indexed row; add it to the index.

        Returns `frame` sorted by id with `component_id` (smallest id of its group, over
        all batches), `survivor`, `survivor_id` and `exact_duplicate`. A row of `frame`
        that duplicates an indexed row with a better score (or equal score and smaller
        id) is not a survivor; with `prefer_indexed`, an indexed row beats any new one.
        Ids already in the index are an error (a batch is indexed once).
        """
        from curate.run.rundir import atomic_write_parquet, atomic_write_text

        params = params or DedupParams()
        self._check_params(params)
        old = self.load()
        new = frame.sort(id_col)
        clash = new.filter(pl.col(id_col).is_in(old["id"].implode()))
        if clash.height:
            raise ValueError(f"{clash.height} ids are already in the dedup index (first: {clash[id_col][0]})")
        new_keys, new_sig, new_lengths = sign_batches(new[text], params)
        old_sig = (
            np.frombuffer(b"".join(old["signature"].to_list()), dtype=np.uint32).reshape(old.height, params.num_perm)
            if old.height
            else np.zeros((0, params.num_perm), dtype=np.uint32)
        )
        nonempty_new = new_lengths > 0
        # the union, in id order (the order dedup_frame works in)
        union = pl.concat([
            old.select(pl.col("id"), pl.col("score"), pl.col("component_id"), pl.lit(False).alias("is_new")),
            pl.DataFrame({
                "id": new[id_col].cast(pl.String), "score": new[score].cast(pl.Float64),
                "component_id": pl.Series([None] * new.height, dtype=pl.String),
                "is_new": pl.Series([True] * new.height),
            }),
        ]).with_row_index("source")
        order = union["id"].arg_sort().to_numpy()
        union = union[order]
        keys = np.concatenate([old["exact_key"].to_numpy(), new_keys])[order]
        sig = np.concatenate([old_sig, new_sig])[order]
        # an empty text has the all-empty signature and no band keys
        nonempty = np.concatenate([(old_sig != np.uint32(0xFFFFFFFF)).any(axis=1), nonempty_new])[order]
        is_new = union["is_new"].to_numpy()
        n = union.height
        position = pl.DataFrame({"id": union["id"], "pos": np.arange(n, dtype=np.int64)})
        # earlier groups: a star from each indexed row to its group's first row
        members = union.with_columns(pl.Series("pos", np.arange(n))).filter(~pl.col("is_new"))
        stars = members.join(position.rename({"id": "component_id", "pos": "root"}), on="component_id", how="left")
        star_edges = stars.select("pos", "root").to_numpy().astype(np.int64) if stars.height else np.zeros((0, 2), np.int64)
        ex_edges = exact_edges(keys)
        _, first_index = np.unique(keys, return_index=True)
        reps = np.zeros(n, dtype=bool)
        reps[first_index] = True
        candidates = np.flatnonzero(reps & nonempty)
        bands_n, rows_n = params.banding
        bands = band_frame(band_keys(sig[candidates], bands_n, rows_n), candidates)
        # only buckets holding a new row can add edges the index does not already imply
        touched = bands.filter(pl.Series(is_new[bands["row"].to_numpy()])).select("band", "key").unique()
        bands = bands.join(touched, on=["band", "key"], how="semi")
        pairs = candidate_pairs(bands, params.max_bucket)
        near, _ = verify_pairs(sig, pairs, params.threshold)
        rank = pl.when(pl.lit(pl.Series(is_new))).then(pl.col("score")).otherwise(float("inf"))
        frame_u = union.select("id", (rank if prefer_indexed else pl.col("score")).alias("score"))
        # the index's own groups (stars) count as exact edges: components, survivors, flags as in dedup_frame
        judged, _ = finish_dedup(frame_u, keys, np.concatenate([star_edges, ex_edges]), near.astype(np.int64),
                                 len(pairs), id_col="id", score="score")
        component_id = union["id"].gather(judged["component"])
        result = pl.DataFrame({
            "id": union["id"], "component_id": component_id, "survivor": judged["survivor"],
            "survivor_id": judged.select(pl.col("id").filter(pl.col("survivor")).first().over("component"))["id"],
            "exact_duplicate": judged["exact_duplicate"],
        }).filter(pl.Series(is_new))
        out = new.with_columns(pl.col(id_col).cast(pl.String).alias("__id")).join(
            result.rename({"id": "__id"}), on="__id", how="left"
        ).drop("__id")
        if commit:
            index = pl.DataFrame({
                "id": union["id"], "score": union["score"], "exact_key": keys,
                "signature": [row.tobytes() for row in sig], "component_id": component_id,
            }, schema=INDEX_SCHEMA)
            atomic_write_parquet(index, self.rows_path)
            atomic_write_text(self.params_path, json.dumps(_params_json(params), sort_keys=True))
        return out.sort(id_col)


def _params_json(params: DedupParams) -> dict[str, Any]:
    return {
        "threshold": params.threshold, "num_perm": params.num_perm, "shingle_size": params.shingle_size,
        "bands": list(params.banding), "seed": params.seed, "max_bucket": params.max_bucket,
    }


# ------------------------------------------------------------------ the pipeline's index
def index_location(config: Any) -> str | None:
    """`filter.dedup_index` as a path or URL (a relative path is from the config's folder)."""
    value: str | None = config.filter.dedup_index
    if not value:
        return None
    return value if "://" in value else str(config.resolve(value))


def index_digest(config: Any) -> str | None:
    """What the dedup stage reads from the index (its ids), for the stage's fingerprint:
    adding a dataset to the index makes the next run deduplicate again."""
    from curate.run.executor import frame_digest

    location = index_location(config)
    if location is None:
        return None
    return frame_digest(DedupIndex(location).ids().sort().to_frame())


def drop_indexed_duplicates(
    frame: pl.DataFrame, *, text: str, location: str, params: DedupParams,
    id_col: str = "example_id", score: str = "quality_score",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split `frame` into rows kept and rows that duplicate an indexed row.

    An indexed row always wins, whatever the scores, because its dataset has already
    shipped. A row whose id is already indexed (the same example, accepted before)
    duplicates itself. The dropped rows get `duplicate_of`. The index is read, not
    changed.
    """
    index = DedupIndex(location)
    indexed = index.ids()
    if indexed.len() == 0 or frame.height == 0:
        return frame, frame.clear().with_columns(pl.lit(None, dtype=pl.String).alias("duplicate_of"))
    seen = frame[id_col].cast(pl.String).is_in(indexed.implode())
    again = frame.filter(seen).with_columns(pl.col(id_col).cast(pl.String).alias("duplicate_of"))
    rest = frame.filter(~seen)
    if rest.height == 0:
        return rest, again
    judged = index.dedup(rest, text=text, id_col=id_col, score=score, params=params,
                         commit=False, prefer_indexed=True)
    # only groups holding an indexed row: two new rows were already judged by the run's own dedup
    lost = ~pl.col("survivor") & pl.col("survivor_id").is_in(indexed.implode())
    kept = judged.filter(~lost).select(frame.columns)
    dropped = judged.filter(lost).select(*frame.columns, pl.col("survivor_id").alias("duplicate_of"))
    return kept, pl.concat([again, dropped])


def add_run_to_index(config: Any, artifact: str = "split/examples") -> dict[str, Any]:
    """Add a run's accepted dataset to the index at `filter.dedup_index`.

    Rows the index already holds are skipped, so adding the same run twice is harmless.
    The run is read, not changed. Returns counts and the location.
    """
    from curate.filters.stages import dedup_params, dedup_text
    from curate.run.rundir import RunDir, run_location

    location = index_location(config)
    if location is None:
        raise ValueError("filter.dedup_index is not set in the config: name the index folder or URL")
    run = RunDir(run_location(config))
    if not run.exists(artifact):
        raise FileNotFoundError(f"{run_location(config)}: no {artifact} yet (run the stages that write it first)")
    frame = run.read(artifact)
    index = DedupIndex(location)
    known = index.ids()
    new = frame.filter(~pl.col("example_id").cast(pl.String).is_in(known.implode()))
    if new.height:
        with_text = new.with_columns(dedup_text(config.filter.dedup_field).alias("__text"))
        index.dedup(with_text, text="__text", id_col="example_id", score="quality_score",
                    params=dedup_params(config), commit=True)
    return {"index": location, "artifact": artifact, "added": new.height,
            "already_indexed": frame.height - new.height, "index_rows": known.len() + new.height}
