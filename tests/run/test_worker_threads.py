"""A worker process gets its share of native threads, not one per CPU of the machine."""

from __future__ import annotations

import os

import polars as pl

from curate.run.executor import LocalExecutor
from curate.run.services import LocalServices
from curate.run.worker_threads import THREAD_VARIABLES, local_worker_threads


def polars_threads(_: object) -> tuple[int, str | None]:
    return pl.thread_pool_size(), os.environ.get("OMP_NUM_THREADS")


def test_pool_workers_start_with_the_configured_threads_and_the_driver_keeps_its_environment() -> None:
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    executor = LocalExecutor(workers=2, threads_per_worker=3)
    try:
        assert executor.map_tasks(polars_threads, [0, 1, 2]) == [(3, "3")] * 3
    finally:
        executor.close()
    assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == before


def test_a_stage_pool_gets_the_same_share() -> None:
    with LocalServices(workers=2, threads_per_worker=1).pool() as pool:
        assert list(pool.map(polars_threads, [0, 1])) == [(1, "1")] * 2


def test_the_default_divides_the_machine_among_the_workers() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert local_worker_threads(1, None) == cpus
    assert local_worker_threads(cpus * 4, None) == 1  # never zero
    assert local_worker_threads(2, 5) == 5
