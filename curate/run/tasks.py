"""Tasks: what a worker does for a stage, planned by the driver from part metadata alone.

The driver plans a stage's tasks from its primary input's parts (file, rows): a task reads
contiguous row ranges of one or more parts (`Slice`), runs the stage function, writes each
output as one part into the stage's task store and returns only metadata (`TaskResult`:
part locations, rows, digests). A keyed stage (SHUFFLE, keyed IO_POOL) first runs
bucketing tasks: each reads its slices and writes its rows hash-partitioned by the key into
one file per bucket; task i then reads bucket i of every bucketing task, so a key never
splits across tasks.

The task store (`ShardStore`, `<run_dir>/<stage>.state/shards/<token>/`) holds every
task's parts and, once it finished, a completion marker (`_SUCCESS`, the task's metadata).
The token covers the stage, its function, its config sections, what it reads outside the
run and the hashes of its inputs; a task's id covers its input slices (part digests, row
ranges). A killed run started again with the same plan finds the finished tasks' markers
and re-runs only the missing ones. A task that stops (`StageStopped`) or fails writes no
marker.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import xxhash

from curate.run.dataset import PartInfo, canonical_order, read_slice, write_part
from curate.run.rundir import (
    RunDir,
    atomic_write_parquet,
    atomic_write_text,
    path_exists,
    read_text,
    remove_tree,
)
from curate.run.stage import Stage, StageContext, StageStopped
from schemas.ids import sha256_hex

SHARDS_FOLDER = "shards"
DONE_MARKER = "_SUCCESS"
BUCKET_COLUMN = "__assay_bucket"


@dataclasses.dataclass(frozen=True)
class InputPart:
    """One part of a stage's primary input, as the driver knows it: metadata only."""

    location: str
    rows: int
    digest: str = ""


@dataclasses.dataclass(frozen=True)
class Slice:
    location: str
    offset: int
    length: int
    digest: str = ""


@dataclasses.dataclass(frozen=True)
class Task:
    index: int
    id: str
    slices: tuple[Slice, ...] = ()
    buckets: tuple[str, ...] = ()  # bucket files to read (the second half of a keyed stage)


@dataclasses.dataclass
class TaskResult:
    index: int
    parts: dict[str, PartInfo] = dataclasses.field(default_factory=dict)
    stopped: str | None = None
    exit_code: int = 3
    error: bytes | None = None  # the function's exception, pickled, with its traceback as a note
    reused: bool = False  # found finished in the store (a resumed run)
    buckets: tuple[str | None, ...] = ()  # bucketing tasks: the file of each bucket (None: empty)
    seconds: float = 0.0  # the worker's wall time for the task (read, run, write)
    cpu_seconds: float = 0.0  # the worker process's CPU time meanwhile (all its threads)


def plan_slices(parts: Sequence[InputPart], tasks: int) -> list[tuple[Slice, ...]]:
    """Cut the concatenated parts into `tasks` contiguous row ranges of near-equal size
    (sizes differ by at most one row)."""
    total = sum(p.rows for p in parts)
    if total == 0:
        return [tuple(Slice(p.location, 0, 0, p.digest) for p in parts[:1])]
    count = max(1, min(tasks, total))
    plans: list[tuple[Slice, ...]] = []
    start = 0  # global row where the next task begins
    for index in range(1, count + 1):
        end = total * index // count
        current, base = [], 0
        for part in parts:
            low, high = max(start, base), min(end, base + part.rows)
            if low < high:
                current.append(Slice(part.location, low - base, high - low, part.digest))
            base += part.rows
        plans.append(tuple(current))
        start = end
    return plans


def slices_id(index: int, slices: Sequence[Slice]) -> str:
    payload = json.dumps([[s.location.rsplit("/", 2)[-2:], s.offset, s.length, s.digest] for s in slices])
    return f"{index:05d}-{xxhash.xxh3_64_hexdigest(payload.encode())}"


def input_hashes(stage: Stage, manifest: Mapping[str, Any]) -> dict[str, str | None]:
    """The manifest's hash of each input artifact of `stage` (None: not produced yet)."""
    hashes = {}
    for artifact in stage.input_paths:
        producer, name = artifact.split("/", 1)
        hashes[artifact] = manifest.get("stages", {}).get(producer, {}).get("output_hashes", {}).get(name)
    return hashes


def stage_token(stage: Stage, ctx: StageContext, manifest: Mapping[str, Any] | None = None) -> str:
    """What a stage's task checkpoints depend on: the stage, its function and config, what
    it reads outside the run, its inputs."""
    manifest = manifest if manifest is not None else RunDir(ctx.run_dir).load_manifest()
    payload = {
        "stage": stage.name,
        "fn": f"{stage.fn.__module__}.{getattr(stage.fn, '__qualname__', stage.fn)}",
        "config": ctx.config.section_hash(*stage.config_sections),
        "external": stage.external(ctx.config) if stage.external is not None else None,
        "inputs": input_hashes(stage, manifest),
    }
    return sha256_hex(json.dumps(payload, sort_keys=True))[:16]


@dataclasses.dataclass(frozen=True)
class ShardStore:
    """The tasks of one stage run: their parts, then a marker, written by the worker."""

    run_dir: str
    stage: str
    token: str

    @property
    def base(self) -> str:
        return f"{self.run_dir}/{self.stage}.state/{SHARDS_FOLDER}"

    def folder(self, task_id: str) -> str:
        return f"{self.base}/{self.token}/{task_id}"

    def done(self, task_id: str) -> bool:
        return path_exists(f"{self.folder(task_id)}/{DONE_MARKER}")

    def marker(self, task_id: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(read_text(f"{self.folder(task_id)}/{DONE_MARKER}"))
        return loaded

    def finish(self, task_id: str, payload: Mapping[str, Any]) -> None:
        atomic_write_text(f"{self.folder(task_id)}/{DONE_MARKER}", json.dumps(payload))

    def forget(self) -> None:
        """Drop this token's tasks (a run that must not reuse them)."""
        remove_tree(f"{self.base}/{self.token}")

    def clear(self) -> None:
        """Drop every task of the stage (after its outputs are committed)."""
        remove_tree(self.base)


def pickled_error(error: Exception) -> bytes:
    """The stage function's exception, with its worker traceback as a note."""
    try:
        import cloudpickle
    except ImportError:  # a worker without cloudpickle (it comes with ray): plain pickle
        import pickle as cloudpickle

    error.add_note(f"(raised on a worker)\n{traceback.format_exc()}")
    try:
        data: bytes = cloudpickle.dumps(error)
        pickle.loads(data)
        return data
    except Exception:  # an exception that does not survive pickling: keep its text
        return cloudpickle.dumps(RuntimeError(f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def read_task_input(task: Task, key: str | None) -> pl.DataFrame:
    """A task's rows, in its input's key order (as if cut from the input read whole)."""
    from curate.run.rundir import read_parquet_file

    frames = [read_slice(s.location, s.offset, s.length) for s in task.slices]
    frames += [read_parquet_file(b) for b in task.buckets]
    if not frames:
        return pl.DataFrame()
    frame = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    return canonical_order(frame, key)


@dataclasses.dataclass(frozen=True)
class TaskJob:
    """Everything a worker needs to run one task (picklable)."""

    stage: Stage
    ctx: StageContext
    task: Task
    store: ShardStore
    input_key: str | None
    reuse: bool = True


def run_task(job: TaskJob) -> TaskResult:
    """The worker's side of a task: reuse its finished parts, or read, run, write."""
    task, store = job.task, job.store
    if job.reuse and store.done(task.id):
        marker = store.marker(task.id)
        parts = {name: PartInfo.from_json(info) for name, info in marker["parts"].items()}
        return TaskResult(task.index, parts, reused=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = TaskResult(task.index)
    try:
        outputs = dict(job.stage.fn(read_task_input(task, job.input_key), job.ctx))
    except StageStopped as stop:
        outputs, result.stopped, result.exit_code = dict(stop.outputs), stop.reason or "stopped", stop.exit_code
    except Exception as error:  # returned, not raised: the other tasks finish (and checkpoint)
        result.error = pickled_error(error)
        return result
    keys = {out.name: out.key for out in job.stage.declared_outputs}
    for name, frame in outputs.items():
        result.parts[name] = write_part(frame, f"{store.folder(task.id)}/{name}.parquet", keys.get(name))
    if result.stopped is None:
        store.finish(task.id, {"parts": {n: p.to_json() for n, p in result.parts.items()}})
    result.seconds, result.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return result


@dataclasses.dataclass(frozen=True)
class BucketJob:
    """The first half of a keyed stage: write a task's rows into `buckets` files by key."""

    task: Task
    key: str
    buckets: int
    store: ShardStore
    reuse: bool = True


def run_bucketing(job: BucketJob) -> TaskResult:
    task, store = job.task, job.store
    folder = f"{store.folder('bucketing')}/{task.id}"
    if job.reuse and path_exists(f"{folder}/{DONE_MARKER}"):
        return TaskResult(task.index, buckets=tuple(json.loads(read_text(f"{folder}/{DONE_MARKER}"))["buckets"]))
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        frame = read_task_input(task, None)
        bucket = (pl.col(job.key).hash(seed=0) % job.buckets).alias(BUCKET_COLUMN)
        pieces = frame.with_columns(bucket).partition_by(BUCKET_COLUMN, include_key=False, as_dict=True)
        files: list[str | None] = [None] * job.buckets
        for (index, *_), piece in pieces.items():
            target = f"{folder}/bucket-{int(index):05d}.parquet"
            atomic_write_parquet(piece, target, compression="lz4")  # scratch, read once by task `index`
            files[int(index)] = target
    except Exception as error:
        return TaskResult(task.index, error=pickled_error(error))
    atomic_write_text(f"{folder}/{DONE_MARKER}", json.dumps({"buckets": files}))
    return TaskResult(task.index, buckets=tuple(files), seconds=time.perf_counter() - started,
                      cpu_seconds=time.process_time() - cpu_started)
