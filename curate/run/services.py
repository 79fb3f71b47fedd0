"""What an executor lends a stage besides its batch: a worker pool and rate limiters.

A stage asks its context (`ctx.pool()`, `ctx.limiter(purpose, limits)`), never the
executor's kind: the executor that runs the stage decides what they are.

- `LocalServices` (the local executor): a pool of spawn-started processes when the run has
  more than one worker (a `SerialPool` inside a worker process, so that pools never nest),
  and no shared limiter (the teacher client runs in one event loop, whose own limiter
  suffices).
- `RayServices` (the Ray executor): `ray.util.multiprocessing.Pool` over the cluster (a
  `SerialPool` inside a Ray task: a task holds a CPU, and a pool's actors waiting for CPUs
  the stage's own tasks hold would never start), and the cluster's named limiter actor
  (`curate.run.limits.cluster_limiter`), so a limit is the cluster's, not each worker's.

Both are small frozen dataclasses: they pickle with the `StageContext` that carries them to
workers, and open their pool or actor only when a stage asks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from curate.run.worker_threads import local_worker_env, ray_task_env, spawn_environment

if TYPE_CHECKING:
    from curate.run.config import RateLimits


class WorkerPool(Protocol):
    """A pool a stage may spread pure functions over: `map(fn, items)` in item order."""

    @property
    def workers(self) -> int: ...

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> Iterable[Any]: ...


class Limiter(Protocol):
    """What a teacher client needs of a shared rate limit."""

    async def acquire(self, tokens: int = 0) -> None: ...


class StageServices(Protocol):
    """What an executor lends its stages (picklable)."""

    def pool(self) -> contextlib.AbstractContextManager[WorkerPool]: ...

    def limiter(self, name: str, limits: RateLimits) -> Limiter | None: ...


@dataclasses.dataclass(frozen=True)
class SerialPool:
    """The trivial pool: every item in this process (one worker, tests, inside a worker)."""

    workers: int = 1

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> Iterator[Any]:
        return map(fn, items)


@dataclasses.dataclass(frozen=True)
class _WrappedPool:
    """A pool of `workers` processes (a `concurrent.futures` or Ray pool) behind `map`."""

    workers: int
    inner: Any

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> Iterable[Any]:
        return self.inner.map(fn, items)


@dataclasses.dataclass(frozen=True)
class LocalServices:
    """The local executor's services: `workers` spawn-started processes, no shared limiter."""

    workers: int = 1
    threads_per_worker: int | None = None  # native threads per process (None: its share of the CPUs)

    @contextlib.contextmanager
    def pool(self) -> Iterator[WorkerPool]:
        if self.workers <= 1 or multiprocessing.parent_process() is not None:
            yield SerialPool()
            return
        from concurrent.futures import ProcessPoolExecutor

        with spawn_environment(local_worker_env(self.workers, self.threads_per_worker)), ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            yield _WrappedPool(self.workers, pool)

    def limiter(self, name: str, limits: RateLimits) -> Limiter | None:
        return None


@dataclasses.dataclass(frozen=True)
class RayServices:
    """The Ray executor's services: a pool of `workers` Ray processes, the cluster's limiters."""

    address: str | None = None
    workers: int = 1
    threads_per_worker: int | None = None  # native threads per pool process (None: 1)
    #: the executor's own `ray.init` options: a stage that connects first starts the same cluster
    init_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def _connect(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **{"ignore_reinit_error": True, "log_to_driver": False, **self.init_kwargs})

    @contextlib.contextmanager
    def pool(self) -> Iterator[WorkerPool]:
        import ray
        from ray.util.multiprocessing import Pool

        if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
            yield SerialPool()  # inside a Ray task (the streaming executor's): pools never nest
            return
        self._connect()
        ray_pool = Pool(processes=max(1, self.workers),
                        ray_remote_args={"runtime_env": {"env_vars": ray_task_env(self.threads_per_worker)}})
        try:
            yield _WrappedPool(max(1, self.workers), ray_pool)
        finally:
            ray_pool.terminate()

    def limiter(self, name: str, limits: RateLimits) -> Limiter | None:
        """The named limiter actor of the connected cluster; None without limits or outside Ray."""
        import ray

        if not (limits.requests_per_minute or limits.tokens_per_minute) or not ray.is_initialized():
            return None
        from curate.run.limits import cluster_limiter

        return cluster_limiter(name, limits.requests_per_minute, limits.tokens_per_minute)
