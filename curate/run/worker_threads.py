"""How many threads a worker process's native libraries may use.

Polars (and numpy's BLAS) start one thread per CPU of the machine in every process. A pool
of `workers` processes, each with a thread per CPU, oversubscribes the machine `workers`
times over, and a "one worker" run is not one CPU's work. So each worker gets its share:
`executor.threads_per_worker`, else the machine's CPUs divided among the workers (locally)
or one thread per CPU a Ray task holds (as Ray does for OpenMP). The variables are read when
a library first starts its threads, so they travel in the worker's environment at spawn.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

THREAD_VARIABLES = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: `taskset -c 0,1` gives 2), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def local_worker_threads(workers: int, threads_per_worker: int | None) -> int:
    """The configured threads per worker, else an equal share of this machine's CPUs."""
    if threads_per_worker is not None:
        return threads_per_worker
    return max(1, usable_cpus() // max(1, workers))


def thread_env(threads: int) -> dict[str, str]:
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def local_worker_env(workers: int, threads_per_worker: int | None) -> dict[str, str]:
    """The environment of a local pool's worker processes."""
    return thread_env(local_worker_threads(workers, threads_per_worker))


def ray_task_env(threads_per_worker: int | None) -> dict[str, str]:
    """The environment of a Ray task's worker: its configured threads, else the one CPU it holds."""
    return thread_env(threads_per_worker or 1)


@contextlib.contextmanager
def spawn_environment(env: Mapping[str, str]) -> Iterator[None]:
    """`env` in os.environ while worker processes may be spawned (they copy it), then restored.

    A process pool spawns its processes as work arrives (and replaces retired ones), so
    the pool's submissions and waits run inside this block."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
