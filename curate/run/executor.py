"""The local executor: shards of a stage's primary input, run in-process or in a process pool.

The Ray executor (curate.run.ray_executor) reads the same `Stage` declaration; both
concatenate per-shard outputs and sort them by their key, so the result does not depend
on the number of shards or workers.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol

import polars as pl

from curate.run.stage import Stage, StageContext, StageStopped, StepKind


class Executor(Protocol):
    def execute(
        self, stage: Stage, primary: pl.DataFrame, ctx: StageContext
    ) -> dict[str, pl.DataFrame]: ...


def shard_frame(frame: pl.DataFrame, stage: Stage, num_shards: int) -> list[pl.DataFrame]:
    """Split a stage's input as its kind allows; a shuffle keeps each key in one shard."""
    if stage.kind is StepKind.GLOBAL or num_shards <= 1 or frame.height == 0:
        return [frame]
    if stage.kind is StepKind.SHUFFLE:
        assert stage.key is not None
        bucket = (pl.col(stage.key).hash(seed=0) % num_shards).alias("__shard")
        parts = frame.with_columns(bucket).partition_by("__shard", include_key=False)
        return parts
    size = -(-frame.height // num_shards)
    return [frame.slice(offset, size) for offset in range(0, frame.height, size)]


def combine(stage: Stage, results: list[Mapping[str, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    """Concatenate per-shard outputs and put them in canonical (key) order."""
    combined: dict[str, pl.DataFrame] = {}
    for output in stage.outputs:
        frames = [result[output.name] for result in results if output.name in result]
        if not frames:
            raise ValueError(f"stage {stage.name!r} did not return output {output.name!r}")
        frame = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        combined[output.name] = canonical_order(frame, output.key)
    return combined


def canonical_order(frame: pl.DataFrame, key: str | None) -> pl.DataFrame:
    if key and key in frame.columns:
        return frame.sort(key, maintain_order=True)
    return frame


def _run_shard(stage: Stage, shard: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    return dict(stage.fn(shard, ctx))


@dataclasses.dataclass
class LocalExecutor:
    """Runs shards in this process (workers=1) or in a spawn-started process pool."""

    workers: int = 1
    partitions: int | None = None

    def execute(
        self, stage: Stage, primary: pl.DataFrame, ctx: StageContext
    ) -> dict[str, pl.DataFrame]:
        num_shards = self.partitions or self.workers
        if stage.kind is StepKind.IO_POOL:
            num_shards = 1  # one event loop holds the request budget; concurrency is inside
        shards = shard_frame(primary, stage, num_shards)
        contexts = [
            dataclasses.replace(ctx, shard=i, num_shards=len(shards), show_progress=ctx.show_progress and self.workers <= 1)
            for i in range(len(shards))
        ]
        results: list[dict[str, pl.DataFrame]] = []
        stopped: StageStopped | None = None
        if self.workers <= 1 or len(shards) == 1:
            for shard, shard_ctx in zip(shards, contexts, strict=True):
                try:
                    results.append(_run_shard(stage, shard, shard_ctx))
                except StageStopped as stop:
                    results.append(stop.outputs)
                    stopped = stop
                    break
        else:
            pool_ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=self.workers, mp_context=pool_ctx) as pool:
                futures = [
                    pool.submit(_run_shard, stage, shard, shard_ctx)
                    for shard, shard_ctx in zip(shards, contexts, strict=True)
                ]
                for future in futures:
                    try:
                        results.append(future.result())
                    except StageStopped as stop:
                        results.append(stop.outputs)
                        stopped = stop
        combined = combine(stage, results)
        if stopped is not None:
            raise StageStopped(stopped.reason, combined)
        return combined
