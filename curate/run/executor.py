"""The local executor: shards of a stage's primary input, run in-process or in a process pool.

The Ray executor (curate.run.ray_executor) reads the same `Stage` declaration; both
concatenate per-shard outputs and sort them by their key, so the result does not depend
on the number of shards or workers.

Shard checkpoints (`ShardStore`): with `checkpoint=True` every finished shard's outputs
are written under `<run_dir>/<stage>.state/shards/<token>/<shard>/` followed by a
completion marker; a run killed midway and started again reloads the finished shards
instead of recomputing them. The token covers the stage, its config sections and the
hashes of its inputs in the manifest; a shard's name is a hash of its rows, so the
checkpoints of a run stay valid whatever order the shards finish in.
"""

from __future__ import annotations

import dataclasses
import io
import json
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import polars as pl
import xxhash

from curate.run.rundir import (
    RunDir,
    atomic_write_parquet,
    atomic_write_text,
    path_exists,
    read_parquet,
    read_text,
    remove_tree,
)
from curate.run.stage import Stage, StageContext, StageStopped, StepKind
from schemas.ids import sha256_hex

SHARDS_FOLDER = "shards"
DONE_MARKER = "_SUCCESS"


class Executor(Protocol):
    def execute(
        self, stage: Stage, primary: pl.DataFrame, ctx: StageContext
    ) -> dict[str, pl.DataFrame]: ...


def shard_frame(frame: pl.DataFrame, stage: Stage, num_shards: int) -> list[pl.DataFrame]:
    """Split a stage's input as its kind allows; a shuffle keeps each key in one shard."""
    if stage.kind is StepKind.GLOBAL or num_shards <= 1 or frame.height == 0:
        return [frame]
    if stage.key is not None and stage.kind in (StepKind.SHUFFLE, StepKind.IO_POOL):
        bucket = (pl.col(stage.key).hash(seed=0) % num_shards).alias("__shard")
        parts = frame.with_columns(bucket).partition_by("__shard", include_key=False, maintain_order=True)
        return parts
    size = -(-frame.height // num_shards)
    return [frame.slice(offset, size) for offset in range(0, frame.height, size)]


def combine(
    stage: Stage, results: Sequence[Mapping[str, pl.DataFrame]], ctx: StageContext
) -> dict[str, pl.DataFrame]:
    """Concatenate per-shard outputs (plus passed-through side inputs, once) in key order."""
    combined: dict[str, pl.DataFrame] = {}
    for output in stage.declared_outputs:
        frames = [result[output.name] for result in results if output.name in result]
        if not frames:
            raise ValueError(f"stage {stage.name!r} did not return output {output.name!r}")
        if output.name in stage.passthrough:
            frames.insert(0, ctx.side(stage.passthrough[output.name]))
        frame = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        combined[output.name] = canonical_order(frame, output.key)
    return combined


def finish_stage(
    stage: Stage, results: Sequence[Mapping[str, pl.DataFrame]], ctx: StageContext,
    store: ShardStore | None, stopped: str | StageStopped | None,
) -> dict[str, pl.DataFrame]:
    """Every executor's last step: combine the batches; a stopped stage raises with what it
    has (its checkpoints kept for the next run), a finished one drops its checkpoints."""
    combined = combine(stage, results, ctx)
    if isinstance(stopped, StageStopped):
        raise StageStopped(stopped.reason, combined, exit_code=stopped.exit_code)
    if stopped is not None:
        raise StageStopped(stopped, combined)
    if store is not None:
        store.clear()
    return combined


def canonical_order(frame: pl.DataFrame, key: str | None) -> pl.DataFrame:
    if key and key in frame.columns:
        return frame.sort(key, maintain_order=True)
    return frame


# ------------------------------------------------------------------ shard checkpoints
def frame_digest(frame: pl.DataFrame) -> str:
    """A 64-bit content hash of a frame (schema, then every row in order)."""
    hasher = xxhash.xxh3_64()
    hasher.update(json.dumps([[name, str(dtype)] for name, dtype in frame.schema.items()]).encode())
    hasher.update(frame.height.to_bytes(8, "little"))
    if frame.height and frame.width:
        hasher.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return hasher.hexdigest()


def input_hashes(stage: Stage, manifest: Mapping[str, Any]) -> dict[str, str | None]:
    """The manifest's hash of each input artifact of `stage` (None: not produced yet)."""
    hashes = {}
    for artifact in stage.input_paths:
        producer, name = artifact.split("/", 1)
        hashes[artifact] = manifest.get("stages", {}).get(producer, {}).get("output_hashes", {}).get(name)
    return hashes


def stage_token(stage: Stage, ctx: StageContext) -> str:
    """What a stage's shard checkpoints depend on: the stage, its config, its inputs."""
    payload = {
        "stage": stage.name,
        "fn": f"{stage.fn.__module__}.{getattr(stage.fn, '__qualname__', stage.fn)}",
        "config": ctx.config.section_hash(*stage.config_sections),
        "inputs": input_hashes(stage, RunDir(ctx.run_dir).load_manifest()),
    }
    return sha256_hex(json.dumps(payload, sort_keys=True))[:16]


@dataclasses.dataclass(frozen=True)
class ShardStore:
    """Finished shards of one stage run: outputs then a marker, written by the worker."""

    run_dir: str
    stage: str
    token: str

    @property
    def base(self) -> str:
        return f"{self.run_dir}/{self.stage}.state/{SHARDS_FOLDER}"

    def folder(self, shard_id: str) -> str:
        return f"{self.base}/{self.token}/{shard_id}"

    def done(self, shard_id: str) -> bool:
        return path_exists(f"{self.folder(shard_id)}/{DONE_MARKER}")

    def load(self, shard_id: str) -> dict[str, pl.DataFrame]:
        marker = json.loads(read_text(f"{self.folder(shard_id)}/{DONE_MARKER}"))
        return {name: read_parquet(f"{self.folder(shard_id)}/{name}.parquet") for name in marker["outputs"]}

    def save(self, shard_id: str, outputs: Mapping[str, pl.DataFrame]) -> None:
        for name, frame in outputs.items():
            atomic_write_parquet(frame, f"{self.folder(shard_id)}/{name}.parquet")
        marker = {"outputs": sorted(outputs), "rows": {n: f.height for n, f in outputs.items()}}
        atomic_write_text(f"{self.folder(shard_id)}/{DONE_MARKER}", json.dumps(marker))

    def clear(self) -> None:
        """Drop every checkpoint of the stage (after its outputs are combined)."""
        remove_tree(self.base)


def run_shard(
    stage: Stage, shard: pl.DataFrame, ctx: StageContext, store: ShardStore | None = None
) -> dict[str, pl.DataFrame]:
    """Run a stage function on one shard, reusing or writing its checkpoint.

    A shard that stops (`StageStopped`) writes no marker: the next run does it again.
    """
    shard_id = frame_digest(shard) if store is not None else ""
    if store is not None and store.done(shard_id):
        return store.load(shard_id)
    result = dict(stage.fn(shard, ctx))
    if store is not None:
        store.save(shard_id, result)
    return result


# ------------------------------------------------------------------ frames over pipes
def frame_to_ipc(frame: pl.DataFrame) -> bytes:
    """Polars' own IPC encoding: keeps every dtype exactly (Arrow round trips may not)."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    return buffer.getvalue()


def frame_from_ipc(data: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(data))


@dataclasses.dataclass
class LocalExecutor:
    """Runs shards in this process (workers=1) or in a spawn-started process pool.

    Robustness: a worker process that dies (killed for memory, a segfault in a native
    library) breaks the pool; the shards it took are run again in a fresh pool, up to
    `max_pool_restarts` times, while the shards already finished are kept. An exception
    raised by the stage function itself is not retried: it is a bug or a bad input and
    is raised as is.
    """

    workers: int = 1
    partitions: int | None = None
    checkpoint: bool = False
    max_pool_restarts: int = 2
    max_tasks_per_child: int | None = None

    def execute(
        self, stage: Stage, primary: pl.DataFrame, ctx: StageContext
    ) -> dict[str, pl.DataFrame]:
        num_shards = self.partitions or self.workers
        if stage.kind is StepKind.IO_POOL:
            num_shards = 1  # one event loop holds the request budget; concurrency is inside
        shards = shard_frame(primary, stage, num_shards)
        contexts = [
            dataclasses.replace(
                ctx, shard=i, num_shards=len(shards),
                show_progress=ctx.show_progress and self.workers <= 1,
            )
            for i in range(len(shards))
        ]
        store = ShardStore(ctx.run_dir, stage.name, stage_token(stage, ctx)) if self.checkpoint else None
        results: dict[int, dict[str, pl.DataFrame]] = {}
        stopped: StageStopped | None = None
        if self.workers <= 1 or len(shards) == 1:
            for index, (shard, shard_ctx) in enumerate(zip(shards, contexts, strict=True)):
                try:
                    results[index] = run_shard(stage, shard, shard_ctx, store)
                except StageStopped as stop:
                    results[index] = stop.outputs
                    stopped = stop
                    break
        else:
            stopped = self._run_pool(stage, shards, contexts, store, results)
        return finish_stage(stage, [results[i] for i in sorted(results)], ctx, store, stopped)

    def _run_pool(
        self,
        stage: Stage,
        shards: list[pl.DataFrame],
        contexts: list[StageContext],
        store: ShardStore | None,
        results: dict[int, dict[str, pl.DataFrame]],
    ) -> StageStopped | None:
        pending = list(range(len(shards)))
        stopped: StageStopped | None = None
        restarts = 0
        pool_ctx = multiprocessing.get_context("spawn")
        while pending:
            broken: list[int] = []
            with ProcessPoolExecutor(
                max_workers=min(self.workers, len(pending)), mp_context=pool_ctx,
                max_tasks_per_child=self.max_tasks_per_child,
            ) as pool:
                futures: dict[int, Future[dict[str, pl.DataFrame]]] = {
                    i: pool.submit(run_shard, stage, shards[i], contexts[i], store) for i in pending
                }
                for index, future in futures.items():
                    try:
                        results[index] = future.result()
                    except StageStopped as stop:
                        results[index] = stop.outputs
                        stopped = stop
                    except BrokenProcessPool:
                        broken.append(index)
            if broken and restarts >= self.max_pool_restarts:
                raise RuntimeError(
                    f"stage {stage.name!r}: worker processes died {restarts + 1} times "
                    f"({len(broken)} shards unfinished; out of memory? try more partitions)"
                )
            restarts += 1 if broken else 0
            pending = broken
        return stopped
