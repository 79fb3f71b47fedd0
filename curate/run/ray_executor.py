"""The Ray executor: the same `Stage` declarations, run on a Ray cluster through Ray Data.

- MAP: the primary input is cut into `partitions` contiguous blocks
  (`ray.data.from_arrow`), `map_batches` hands each batch (a whole block, or
  `batch_size` rows of it) to the stage function as a Polars frame (`pl.from_arrow`, no
  copy of numeric buffers).
- SHUFFLE: rows are bucketed by a hash of the stage's key into `partitions` blocks, and
  each block is one batch, so a key never splits across batches. (Ray Data's
  `repartition(keys=...)` also groups by key, but Ray may split an oversized block
  afterwards; bucketing while building the blocks keeps the guarantee unconditional.)
- IO_POOL (generate, refine, judge): split like a MAP, or like a SHUFFLE when the stage
  has a key (refine: all rejections of a chunk in one batch); every one is a pure map,
  fn(A ++ B) == fn(A) ++ fn(B), which tests/scale checks. The batches go to a pool of
  actors that ask for no CPU (`ActorPoolStrategy`, `num_cpus=0`): I/O-bound workers must
  not starve the CPU-bound reads (on a small cluster, fractional-CPU actors can hang a
  Parquet read silently). Teacher calls inside share one cluster-wide limit
  (`curate.run.limits`).
- GLOBAL: on the driver, like the local executor (it needs the whole input in one place).

A stage function's exception is caught on the worker and returned with the batch: the
other batches finish (and write their checkpoints), then the driver raises the first
failure, with its own type and the remote traceback as a note.

Every batch returns one row per output: the output's name and the frame in Polars' IPC
encoding (dtypes survive exactly; outputs of different schemas travel in one dataset).
The driver orders them by the batch's first input row, concatenates and sorts each output
by its key: the result does not depend on partitions, batch size or worker count.

Only the driver writes the manifest (the runner does). Each batch, once done, writes its
outputs and a completion marker under `<run_dir>/<stage>.state/shards/` (`ShardStore`),
so a cluster run that is killed resumes at batch granularity: finished batches are read
back, not recomputed. With no shared disk, put the run directory on object storage
(`run_dir: s3://bucket/prefix`).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from curate.run.executor import (
    LocalExecutor,
    ShardStore,
    finish_stage,
    frame_from_ipc,
    frame_to_ipc,
    run_shard,
    shard_frame,
    stage_token,
)
from curate.run.stage import Stage, StageContext, StageStopped, StepKind

if TYPE_CHECKING:
    from curate.run.config import RunSettings

logger = logging.getLogger(__name__)

ROW_COLUMN = "__assay_row"
RESULT_SCHEMA = pa.schema(
    [
        ("first_row", pa.int64()),
        ("output", pa.string()),
        ("payload", pa.large_binary()),
        ("stopped", pa.string()),
        ("exit_code", pa.int64()),
        ("error", pa.large_binary()),
    ]
)


def _result_table(
    first_row: int, outputs: dict[str, pl.DataFrame], stopped: str | None, error: bytes | None = None,
    exit_code: int | None = None,
) -> pa.Table:
    names = sorted(outputs) or [""]
    return pa.table(
        {
            "first_row": pa.array([first_row] * len(names), pa.int64()),
            "output": pa.array(names, pa.string()),
            "payload": pa.array([frame_to_ipc(outputs[n]) if n else b"" for n in names], pa.large_binary()),
            "stopped": pa.array([stopped] * len(names), pa.string()),
            "exit_code": pa.array([exit_code] * len(names), pa.int64()),
            "error": pa.array([error] * len(names), pa.large_binary()),
        },
        schema=RESULT_SCHEMA,
    )


def _pickled_error(error: Exception) -> bytes:
    """The stage function's exception, with its remote traceback as a note."""
    import cloudpickle

    error.add_note(f"(raised on a Ray worker)\n{traceback.format_exc()}")
    try:
        data: bytes = cloudpickle.dumps(error)
        pickle.loads(data)
        return data
    except Exception:  # an exception that does not survive pickling: keep its text
        return cloudpickle.dumps(RuntimeError(f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def _process_batch(
    batch: pa.Table, stage: Stage, ctx: StageContext, store: ShardStore | None
) -> pa.Table:
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    first_row = int(frame[ROW_COLUMN].min() or 0) if frame.height else -1  # type: ignore[arg-type]
    frame = frame.drop(ROW_COLUMN)
    shard_ctx = dataclasses.replace(ctx, shard=max(first_row, 0), show_progress=False)
    try:
        outputs = run_shard(stage, frame, shard_ctx, store)
    except StageStopped as stop:
        return _result_table(first_row, dict(stop.outputs), stop.reason or "stopped", exit_code=stop.exit_code)
    except Exception as error:
        # returned, not raised: the other batches finish (and checkpoint), and the driver
        # raises the function's own exception instead of Ray's wrappers
        return _result_table(first_row, {}, None, _pickled_error(error))
    return _result_table(first_row, outputs, None)


class _PoolWorker:
    """Ray Data actor for IO_POOL stages: keeps side inputs cached between batches."""

    def __init__(self, stage: Stage, ctx: StageContext, store: ShardStore | None):
        self.stage = stage
        self.ctx = ctx
        self.store = store

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _process_batch(batch, self.stage, self.ctx, self.store)


@dataclasses.dataclass
class RayExecutor:
    """Runs stages on a Ray cluster (`address`: "auto", "ray://host:10001", or None = local).

    `workers` sizes the actor pools of IO_POOL stages; `partitions` is the number of
    blocks the primary input is cut into (default: the cluster's CPUs); `batch_size`
    (MAP stages only) cuts blocks further into batches of at most that many rows.
    """

    address: str | None = None
    workers: int = 1
    partitions: int | None = None
    batch_size: int | None = None
    checkpoint: bool = True
    init_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_config(cls, config: RunSettings) -> RayExecutor:
        executor = config.executor
        return cls(address=executor.ray_address, workers=executor.workers, partitions=executor.partitions)

    # ------------------------------------------------------------------ cluster
    def connect(self) -> None:
        """Connect to the cluster (or start a local one) unless already connected."""
        import ray

        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
        kwargs.update(self.init_kwargs)
        ray.init(address=self.address, **kwargs)

    @staticmethod
    def _quiet_data_context() -> None:
        from ray.data import DataContext

        logging.getLogger("ray.data").setLevel(logging.WARNING)
        data_ctx = DataContext.get_current()
        data_ctx.enable_progress_bars = False
        data_ctx.print_on_execution_start = False
        data_ctx.verbose_stats_logs = False

    # ------------------------------------------------------------------ stages
    def execute(self, stage: Stage, primary: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
        if stage.kind is StepKind.GLOBAL or primary.height == 0:
            # one function call over the whole input: on the driver, as the local executor does
            return LocalExecutor(workers=1).execute(stage, primary, ctx)
        self.connect()
        self._quiet_data_context()
        store = ShardStore(ctx.run_dir, stage.name, stage_token(stage, ctx)) if self.checkpoint else None
        results, stopped = self._run_dataset(stage, primary, ctx, store)
        return finish_stage(stage, results, ctx, store, stopped)

    def _blocks(self, stage: Stage, primary: pl.DataFrame) -> list[pa.Table]:
        numbered = primary.with_row_index(ROW_COLUMN).with_columns(pl.col(ROW_COLUMN).cast(pl.Int64))
        num = max(1, min(self.partitions or self._default_partitions(), numbered.height))
        shards = shard_frame(numbered, stage, num)
        return [shard.to_arrow() for shard in shards if shard.height]

    def _default_partitions(self) -> int:
        """Without `partitions`: one block per CPU of the cluster (at least `workers`)."""
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
        return max(self.workers, cpus)

    def _run_dataset(
        self, stage: Stage, primary: pl.DataFrame, ctx: StageContext, store: ShardStore | None
    ) -> tuple[list[dict[str, pl.DataFrame]], StageStopped | None]:
        import ray.data
        from ray.data import ActorPoolStrategy

        dataset = ray.data.from_arrow(self._blocks(stage, primary))
        batch_size = self.batch_size if stage.key is None else None  # a keyed block is one batch
        if stage.kind is StepKind.IO_POOL:
            mapped = dataset.map_batches(
                _PoolWorker,
                fn_constructor_args=(stage, ctx, store),
                batch_size=batch_size,
                batch_format="pyarrow",
                zero_copy_batch=True,
                compute=ActorPoolStrategy(size=max(1, min(self.workers, dataset.num_blocks()))),
                num_cpus=0,
            )
        else:
            mapped = dataset.map_batches(
                _process_batch,  # type: ignore[arg-type]  # the task body; stage, ctx and store come from fn_kwargs
                fn_kwargs={"stage": stage, "ctx": ctx, "store": store},
                batch_size=batch_size,
                batch_format="pyarrow",
                zero_copy_batch=True,
                num_cpus=1,
            )
        per_batch: dict[int, dict[str, pl.DataFrame]] = {}
        errors: dict[int, BaseException] = {}
        stopped: StageStopped | None = None
        for table in self._iter_tables(mapped):
            for row in table.to_pylist():
                if row["error"] is not None:
                    errors[row["first_row"]] = pickle.loads(row["error"])
                    continue
                per_batch.setdefault(row["first_row"], {})[row["output"]] = frame_from_ipc(row["payload"])
                if row["stopped"] is not None:
                    stopped = StageStopped(row["stopped"], {}, exit_code=row["exit_code"] or 3)
        if errors:
            first = min(errors)
            if len(errors) > 1:
                errors[first].add_note(f"{len(errors)} batches of stage {stage.name!r} failed; this is the first")
            raise errors[first]
        return [per_batch[key] for key in sorted(per_batch)], stopped

    @staticmethod
    def _iter_tables(dataset: Any) -> Iterator[pa.Table]:
        yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
