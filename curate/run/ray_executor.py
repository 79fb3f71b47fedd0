"""The Ray executor: the same `Stage` declarations and the same tasks, run as Ray tasks.

The driver plans a stage's tasks from its input's part metadata (`curate.run.executor`
`execute_stage`); each task is a Ray task that reads its own slices of the input's Parquet
parts (or its bucket files) from the run directory, runs the stage function, writes its
outputs' parts and returns only their metadata. Nothing but file names and digests passes
through the driver or the object store.

- MAP: `partitions` tasks (default: the cluster's CPUs), each of at most `batch_size`
  rows when that is set.
- SHUFFLE: bucketing tasks first (each writes its rows hash-partitioned by the key, one
  file per bucket), then task i reads bucket i of every bucketing task: a key never splits.
- IO_POOL (generate, refine, judge): tasks that ask for no CPU (I/O-bound work must not
  starve the CPU-bound tasks), at most `workers` in flight; keyed like a SHUFFLE when the
  stage has a key. Teacher calls inside share one cluster-wide limit (`curate.run.limits`).
- GLOBAL: on the driver, like the local executor (it needs the whole input in one place).

A stage function's exception is caught on the worker and returned with the task: the
other tasks finish (and write their completion markers), then the driver raises the first
failure, with its own type and the remote traceback as a note. A worker process that dies
is retried by Ray (`max_retries`).

Every workers reads and writes the run directory itself: a local path on a one-machine
cluster or a shared filesystem; with no shared disk, put it on object storage
(`run_dir: s3://bucket/prefix`). A killed cluster run resumes at partition grain: finished
tasks' markers are found, only the missing tasks run (`curate.run.tasks`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from curate.run.stage import Stage, StepKind
from curate.run.worker_threads import ray_task_env

if TYPE_CHECKING:
    from curate.run.config import RunSettings

logger = logging.getLogger(__name__)
J = TypeVar("J")
R = TypeVar("R")


@dataclasses.dataclass
class RayExecutor:
    """Runs stages on a Ray cluster (`address`: "auto", "ray://host:10001", or None = local).

    `workers` bounds the IO_POOL tasks in flight; `partitions` is the number of tasks a
    stage's input is cut into (default: the cluster's CPUs); `batch_size` (unkeyed stages
    only) cuts it further into tasks of at most that many rows.
    """

    address: str | None = None
    workers: int = 1
    partitions: int | None = None
    batch_size: int | None = None
    checkpoint: bool = True
    max_retries: int = 3
    threads_per_worker: int | None = None  # native threads per task (None: 1, the CPU a task holds)
    init_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    _warming: list[Any] = dataclasses.field(default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def from_config(cls, config: RunSettings) -> RayExecutor:
        executor = config.executor
        return cls(address=executor.ray_address, workers=executor.workers, partitions=executor.partitions,
                   threads_per_worker=executor.threads_per_worker)

    def connect(self) -> None:
        """Connect to the cluster (or start a local one) unless already connected."""
        import ray

        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
        kwargs.update(self.init_kwargs)
        ray.init(address=self.address, **kwargs)

    def task_count(self, stage: Stage, rows: int) -> int:
        count = self.partitions or self._default_partitions()
        if self.batch_size and stage.key is None and stage.kind is not StepKind.GLOBAL:
            count = max(count, -(-rows // self.batch_size))
        return count

    def _default_partitions(self) -> int:
        """Without `partitions`: one task per CPU of the cluster (at least `workers`)."""
        import ray

        self.connect()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return max(self.workers, cpus)

    def warm_up(self) -> None:
        """Start a task worker per CPU of the cluster now, without waiting: a task's worker is
        a process of its own runtime environment (`_task_options`), which Ray starts at the
        first such task; started here, they import while the driver runs the first stages.
        Only when already connected: a run whose stages are all unchanged starts no cluster."""
        import ray

        from curate.run.executor import import_worker_modules

        if not ray.is_initialized():
            return
        remote = ray.remote(import_worker_modules).options(**self._task_options(io=False))
        self._warming = [remote.remote() for _ in range(self._default_partitions())]

    def wait_ready(self) -> None:
        """Connect, start a task worker per CPU and wait until each has imported the pipeline:
        the cluster as a standing one is when a run starts (benchmarks time runs from here)."""
        import ray

        self.connect()
        self.warm_up()
        ray.get(self._warming)

    def _task_options(self, io: bool) -> dict[str, Any]:
        # SPREAD: tasks go round the nodes (the default packs the driver's node first)
        return {
            "num_cpus": 0 if io else 1, "max_retries": self.max_retries, "scheduling_strategy": "SPREAD",
            "runtime_env": {"env_vars": ray_task_env(self.threads_per_worker)},
        }

    def close(self) -> None:
        """Forget the warm-up tasks; the Ray cluster outlives a run (``ray.shutdown`` is the caller's)."""
        self._warming = []

    def map_tasks(
        self, fn: Callable[[J], R], jobs: Sequence[J], *, io: bool = False,
        stop: Callable[[R], bool] | None = None,
    ) -> list[R]:
        """Each job a Ray task (no CPU asked for I/O-bound ones, then at most `workers` in
        flight); results in job order."""
        import ray

        self.connect()
        remote = ray.remote(fn).options(**self._task_options(io))
        limit = max(1, self.workers) if io else len(jobs)
        refs: list[Any] = []
        waiting: list[Any] = []
        for job in jobs:
            if len(waiting) >= limit:
                _, waiting = ray.wait(waiting, num_returns=1)
            ref = remote.remote(job)
            refs.append(ref)
            waiting.append(ref)
        return list(ray.get(refs))
