"""Executors run a stage's tasks; the driver plans them from metadata and commits their parts.

`execute_stage` is the driver's loop, shared by every executor: plan the tasks from the
primary input's parts (`curate.run.tasks`), for a keyed stage run the bucketing tasks
first, run the tasks, and gather what they return: metadata only (part locations, rows,
digests). An executor only says how to run a list of picklable jobs (`map_tasks`): in this
process, in a spawn-started process pool (`LocalExecutor`), or as Ray tasks
(`curate.run.ray_executor`). The outputs do not depend on the executor, the worker count or
the partitioning: each artifact's content hash is computed from its parts' order-free
digests (`curate.run.dataset`), and reading it whole sorts it by its key.

GLOBAL stages (and stages without inputs) run `run_global` on the driver: the input read
whole, one function call, its outputs written as one part each.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import pickle
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

import polars as pl
import xxhash

from curate.run.dataset import (
    PartInfo,
    dataset_key,
    parquet_footer,
    part_files,
    row_digest,
    scan_dataset,
    scan_part,
    write_part,
)
from curate.run.rundir import RunDir, file_size, read_parquet_file
from curate.run.stage import PartwiseSummary, Stage, StageContext, StageStopped, StepKind
from curate.run.tasks import (
    BucketJob,
    InputPart,
    ShardStore,
    Task,
    TaskJob,
    TaskResult,
    plan_slices,
    run_bucketing,
    run_task,
    slices_id,
)
from curate.run.worker_threads import local_worker_env, spawn_environment

J = TypeVar("J")
R = TypeVar("R")


class Executor(Protocol):
    def map_tasks(
        self, fn: Callable[[J], R], jobs: Sequence[J], *, io: bool = False,
        stop: Callable[[R], bool] | None = None,
    ) -> list[R]:
        """`fn` over `jobs`, results in job order; `stop(result)` true: no need to start more."""
        ...

    def task_count(self, stage: Stage, rows: int) -> int:
        """How many tasks a stage's primary input of `rows` rows is cut into."""
        ...

    def close(self) -> None:
        """Release what the executor keeps between stages (the runner calls it after a run)."""
        ...

    def warm_up(self) -> None:
        """Start the workers now, without waiting for them (the runner calls it before a run
        whose stages will need them, so that they start while the first stages run)."""
        ...


@dataclasses.dataclass(frozen=True)
class InputSource:
    """An artifact as the driver knows it: its parts' metadata, its key, its size on disk."""

    artifact: str
    parts: tuple[InputPart, ...]
    key: str | None
    bytes: int = 0

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    def part_infos(self) -> list[PartInfo]:
        """The parts as they are, with digests (read from the part where the manifest has none)."""
        return [PartInfo(p.location, p.rows, p.digest or row_digest(read_parquet_file(p.location)))
                for p in self.parts]


def input_source(run_dir: RunDir, artifact: str, manifest: Mapping[str, Any]) -> InputSource:
    """An artifact's parts from its files' footers (rows, key); digests from the manifest
    entry of the stage that wrote it, where it matches the files."""
    location = run_dir.artifact_location(artifact)
    files = part_files(location)
    if not files:
        raise FileNotFoundError(f"{artifact}: no such artifact in {run_dir.location} (run its stage first)")
    producer, name = artifact.split("/", 1)
    entry = manifest.get("stages", {}).get(producer, {}).get("artifacts", {}).get(name) or {}
    known = {f"{location}/{p['file']}": (p["rows"], p["digest"]) for p in entry.get("parts", [])}
    parts = []
    for file in files:
        rows = parquet_footer(file)[0]
        digest = known[file][1] if known.get(file, (None,))[0] == rows else ""
        parts.append(InputPart(file, rows, digest))
    return InputSource(artifact, tuple(parts), dataset_key(files), sum(file_size(f) for f in files))


@dataclasses.dataclass
class StageOutcome:
    parts: dict[str, list[PartInfo]]
    stopped: StageStopped | None = None
    tasks: int = 0
    reused: int = 0
    frames: dict[str, pl.DataFrame] | None = None  # a GLOBAL stage's outputs (it ran on the driver)
    task_seconds: list[float] = dataclasses.field(default_factory=list)  # each task run (not reused)
    task_cpu_seconds: list[float] = dataclasses.field(default_factory=list)  # their workers' CPU time
    bucketing_seconds: list[float] = dataclasses.field(default_factory=list)  # a keyed stage's first round


def frame_digest(frame: pl.DataFrame) -> str:
    """A 64-bit content hash of a frame (schema, then every row in order)."""
    hasher = xxhash.xxh3_64()
    hasher.update(json.dumps([[name, str(dtype)] for name, dtype in frame.schema.items()]).encode())
    hasher.update(frame.height.to_bytes(8, "little"))
    if frame.height and frame.width:
        hasher.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return hasher.hexdigest()


def keyed(stage: Stage) -> bool:
    return stage.key is not None and stage.kind in (StepKind.SHUFFLE, StepKind.IO_POOL)


def _raise_first(stage: Stage, results: Sequence[TaskResult]) -> None:
    errors = [r for r in results if r.error is not None]
    if errors:
        first: BaseException = pickle.loads(errors[0].error)  # type: ignore[arg-type]
        if len(errors) > 1:
            first.add_note(f"{len(errors)} tasks of stage {stage.name!r} failed; this is the first")
        raise first


def plan_tasks(
    executor: Executor, stage: Stage, source: InputSource, store: ShardStore, reuse: bool
) -> tuple[list[Task], list[TaskResult]]:
    """The stage's tasks; for a keyed stage cut into several, after its bucketing tasks ran
    (their results come second: they took part of the stage's time)."""
    slices = plan_slices(source.parts, executor.task_count(stage, source.rows))
    tasks = [Task(i, slices_id(i, s), slices=s) for i, s in enumerate(slices)]
    if not keyed(stage) or len(tasks) == 1:
        return tasks, []
    assert stage.key is not None
    jobs = [BucketJob(task, stage.key, len(tasks), store, reuse) for task in tasks]
    bucketed = executor.map_tasks(run_bucketing, jobs)
    _raise_first(stage, bucketed)
    ids = xxhash.xxh3_64_hexdigest(json.dumps([t.id for t in tasks]).encode())
    schema = tasks[0].slices[:1]  # a zero-row read of the input: its columns, for any task
    schema = tuple(dataclasses.replace(s, offset=0, length=0) for s in schema)
    buckets = [tuple(f for r in bucketed if (f := r.buckets[i]) is not None) for i in range(len(tasks))]
    # an empty bucket is no task (as a key-split never makes an empty batch), unless all are
    return [
        Task(i, f"b{i:05d}-{ids}", slices=schema, buckets=files)
        for i, files in enumerate(buckets) if files or (i == 0 and not any(buckets))
    ], bucketed


def execute_stage(
    executor: Executor, stage: Stage, source: InputSource, ctx: StageContext, store: ShardStore,
    reuse: bool = True,
) -> StageOutcome:
    """Run a partitioned stage's tasks; return its outputs' parts (metadata) and whether it
    stopped. A task's exception is raised here after the other tasks finished."""
    if not reuse:
        store.forget()
    tasks, bucketed = plan_tasks(executor, stage, source, store, reuse)
    jobs = [
        TaskJob(stage, dataclasses.replace(ctx, shard=t.index, num_shards=len(tasks), show_progress=False),
                t, store, source.key, reuse)
        for t in tasks
    ]
    results = executor.map_tasks(
        run_task, jobs, io=stage.kind is StepKind.IO_POOL,
        stop=lambda r: r.stopped is not None or r.error is not None,
    )
    _raise_first(stage, results)
    stopped = next((r for r in results if r.stopped is not None), None)
    ran = [r for r in results if not r.reused]
    outcome = StageOutcome({}, tasks=len(tasks), reused=len(results) - len(ran),
                           task_seconds=[r.seconds for r in ran], task_cpu_seconds=[r.cpu_seconds for r in ran],
                           bucketing_seconds=[r.seconds for r in bucketed if r.seconds])
    if stopped is not None:
        outcome.stopped = StageStopped(stopped.stopped or "stopped", {}, exit_code=stopped.exit_code)
    for output in stage.output_names:
        outcome.parts[output] = [r.parts[output] for r in results if output in r.parts]
        if not outcome.parts[output]:
            raise ValueError(f"stage {stage.name!r} did not return output {output!r}")
    return outcome


def run_global(stage: Stage, frame: pl.DataFrame, ctx: StageContext, store: ShardStore) -> StageOutcome:
    """A GLOBAL stage on the driver: one call over the whole input, one part per output."""
    stopped = None
    try:
        outputs = dict(stage.fn(frame, ctx))
    except StageStopped as stop:
        outputs, stopped = dict(stop.outputs), stop
    keys = {out.name: out.key for out in stage.declared_outputs}
    missing = [o for o in stage.output_names if o not in outputs]
    if missing:
        raise ValueError(f"stage {stage.name!r} did not return output {missing[0]!r}")
    folder = store.folder("global")
    parts = {name: [write_part(f, f"{folder}/{name}.parquet", keys.get(name))] for name, f in outputs.items()}
    return StageOutcome(parts, stopped, tasks=1, frames=outputs)


@dataclasses.dataclass(frozen=True)
class SummaryJob:
    stage: Stage
    locations: dict[str, str]


def run_summary(job: SummaryJob) -> dict[str, Any]:
    """A stage's `summarize` over lazy scans of its committed outputs, on a worker."""
    assert job.stage.summarize is not None
    return job.stage.summarize({name: scan_dataset(location) for name, location in job.locations.items()})


def run_part_summary(job: SummaryJob) -> dict[str, pl.DataFrame]:
    """A `PartwiseSummary`'s aggregates of one part of each output (`locations`: part files)."""
    assert isinstance(job.stage.summarize, PartwiseSummary)
    return dict(job.stage.summarize.part({name: scan_part(file) for name, file in job.locations.items()}))


def summarize_outcome(
    executor: Executor, stage: Stage, outputs: Mapping[str, str], parts: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """A stage's report over its committed outputs (`outputs`: each artifact's location,
    `parts`: its part files): a `PartwiseSummary` as a job per part and a combine here when
    every output has the same number of parts, else the whole scans in one job."""
    summary = stage.summarize
    counts = {len(files) for files in parts.values()}
    if isinstance(summary, PartwiseSummary) and len(counts) == 1 and counts != {0}:
        jobs = [SummaryJob(stage, {name: files[i] for name, files in parts.items()}) for i in range(counts.pop())]
        aggregates = executor.map_tasks(run_part_summary, jobs)
        return summary.combine(
            {name: pl.concat([a[name] for a in aggregates], how="diagonal_relaxed") for name in aggregates[0]}
        )
    return executor.map_tasks(run_summary, [SummaryJob(stage, dict(outputs))])[0]


def import_worker_modules() -> None:
    """What every task needs, imported by a fresh worker while the driver still plans."""
    import curate.run.tasks  # noqa: F401


@dataclasses.dataclass
class LocalExecutor:
    """Runs tasks in this process (one worker, or an IO_POOL stage: its concurrency is
    inside one event loop) or in a spawn-started process pool.

    `partitions` is the number of tasks a stage is cut into (default: `workers`);
    `isolate` runs the tasks in a pool even with one worker, so that this process (the
    driver) holds metadata only. `checkpoint`: reuse the finished tasks of a killed run
    (resume at partition grain).

    The process pool lives from the first pooled stage to `close()` (the runner closes it
    after its run): each stage and each stage summary used to start its own pool, and with
    8 workers every start re-imports polars and the pipeline in 8 fresh processes.

    Robustness: a worker process that dies (killed for memory, a segfault in a native
    library) breaks the pool; the tasks it took are run again in a fresh pool, up to
    `max_pool_restarts` times, while the tasks already finished are kept. An exception
    raised by the stage function itself is not retried: it is a bug or a bad input and
    is raised as is once the other tasks finished.
    """

    workers: int = 1
    partitions: int | None = None
    checkpoint: bool = True
    isolate: bool = False
    max_pool_restarts: int = 2
    max_tasks_per_child: int | None = None
    threads_per_worker: int | None = None  # native threads per worker process (None: its share of the CPUs)
    _pool: ProcessPoolExecutor | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pool": None}  # a pool does not travel; a copy starts its own

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def warm_up(self) -> None:
        if not (self.workers > 1 or self.isolate):
            return
        with spawn_environment(local_worker_env(self.workers, self.threads_per_worker)):
            pool = self._shared_pool()
            for _ in range(self.workers):  # each submission spawns a process (up to `workers`)
                pool.submit(import_worker_modules)

    def _shared_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=self.max_tasks_per_child,
            )
        return self._pool

    def task_count(self, stage: Stage, rows: int) -> int:
        if stage.kind is StepKind.IO_POOL:
            return self.partitions or 1  # one event loop holds the request budget
        return self.partitions or self.workers

    def map_tasks(
        self, fn: Callable[[J], R], jobs: Sequence[J], *, io: bool = False,
        stop: Callable[[R], bool] | None = None,
    ) -> list[R]:
        if io or not (self.workers > 1 or self.isolate) or (len(jobs) <= 1 and not self.isolate):
            results = []
            for job in jobs:
                results.append(fn(job))
                if stop is not None and stop(results[-1]):
                    break
            return results
        with spawn_environment(local_worker_env(self.workers, self.threads_per_worker)):
            return self._run_pool(fn, jobs)

    def _run_pool(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        results: dict[int, R] = {}
        pending = list(range(len(jobs)))
        restarts = 0
        while pending:
            broken: list[int] = []
            try:
                futures: dict[int, Future[R]] = {i: self._shared_pool().submit(fn, jobs[i]) for i in pending}
            except BrokenProcessPool:  # broken by an earlier call's dying worker
                self.close()
                futures = {i: self._shared_pool().submit(fn, jobs[i]) for i in pending}
            for index, future in futures.items():
                try:
                    results[index] = future.result()
                except BrokenProcessPool:
                    broken.append(index)
            if broken:
                self.close()  # a broken pool takes no more work: the retry gets a fresh one
                if restarts >= self.max_pool_restarts:
                    raise RuntimeError(
                        f"worker processes died {restarts + 1} times "
                        f"({len(broken)} tasks unfinished; out of memory? try more partitions)"
                    )
                restarts += 1
            pending = broken
        return [results[i] for i in range(len(jobs))]
