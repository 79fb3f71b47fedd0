"""What an executor lends its stages: a worker pool and rate limiters (`curate.run.services`)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from curate.run.executor import LocalExecutor
from curate.run.executor_services import services_for
from curate.run.ray_executor import RayExecutor
from curate.run.services import LocalServices, RayServices, SerialPool
from curate.run.stage import StageContext
from tests.scale.helpers import toy_config


class Limits:
    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None):
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute


def _pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def test_each_executor_lends_its_own_services(tmp_path: Path) -> None:
    config = toy_config(tmp_path)
    assert services_for(LocalExecutor(workers=3), config) == LocalServices(workers=3)
    assert services_for(RayExecutor(address="auto", workers=4), config) == RayServices(address="auto", workers=4)
    # a stage that connects to Ray first starts the cluster the executor would have started
    started_as = RayExecutor(workers=2, init_kwargs={"num_cpus": 2})
    assert services_for(started_as, config).init_kwargs == {"num_cpus": 2}
    # an executor of its own kind (a test's): the config's executor decides
    ray_config = toy_config(tmp_path, executor={"kind": "ray", "workers": 2})
    assert services_for(object(), ray_config) == RayServices(address=None, workers=2)


def test_the_context_carries_its_services_to_workers(tmp_path: Path) -> None:
    ctx = StageContext(config=toy_config(tmp_path), run_dir=str(tmp_path), stage="s",
                       services=RayServices(address="auto", workers=8))
    assert pickle.loads(pickle.dumps(ctx)).services == RayServices(address="auto", workers=8)
    assert StageContext(config=toy_config(tmp_path), run_dir=str(tmp_path), stage="s").services == LocalServices()


def test_one_worker_maps_in_this_process(tmp_path: Path) -> None:
    ctx = StageContext(config=toy_config(tmp_path), run_dir=str(tmp_path), stage="s")
    with ctx.pool() as pool:
        assert isinstance(pool, SerialPool) and pool.workers == 1
        assert list(pool.map(_pid_and_square, [1, 2, 3])) == [(os.getpid(), 1), (os.getpid(), 4), (os.getpid(), 9)]


@pytest.mark.slow
def test_local_workers_map_in_processes_in_order() -> None:
    with LocalServices(workers=2).pool() as pool:
        assert pool.workers == 2
        done = list(pool.map(_pid_and_square, range(6)))
    assert [square for _, square in done] == [0, 1, 4, 9, 16, 25]
    assert os.getpid() not in {pid for pid, _ in done}


def test_no_shared_limiter_where_one_process_holds_the_client(tmp_path: Path) -> None:
    ctx = StageContext(config=toy_config(tmp_path), run_dir=str(tmp_path), stage="s")
    assert ctx.limiter("teacher", Limits(requests_per_minute=60)) is None
    # on Ray without limits, or before connecting, there is nothing to share either
    assert RayServices().limiter("x-teacher-limiter", Limits()) is None


@pytest.mark.slow
def test_the_streaming_executor_lends_its_pool_to_the_driver_and_none_to_its_workers(tmp_path: Path) -> None:
    """Through the runner: a GLOBAL stage (on the driver) gets the executor's process pool;
    a MAP task (in a worker process, with the context shipped in its task job) gets a serial
    pool, so that pools never nest."""
    from curate.run.rundir import read_parquet
    from curate.run.runner import Runner
    from tests.scale.toy_stages import POOLS_GLOBAL, POOLS_MAP, SOURCE

    run = tmp_path / "run"
    executor = LocalExecutor(workers=2, partitions=2)
    result = Runner(toy_config(run, n=20), [SOURCE, POOLS_MAP, POOLS_GLOBAL], executor=executor,
                    show_progress=False).run()
    assert result.exit_code == 0
    driver = os.getpid()
    mapped = read_parquet(run / "poolsmap/rows.parquet")
    assert mapped.height == 20 and set(mapped["pool"]) == {"SerialPool"} and set(mapped["workers"]) == {1}
    assert driver not in set(mapped["pid"])
    assert all(str(pid) == pool_pids for pid, pool_pids in mapped.select("pid", "pool_pids").iter_rows())
    whole = read_parquet(run / "poolsglobal/rows.parquet")
    assert whole.height == 20 and set(whole["pool"]) == {"_WrappedPool"} and set(whole["workers"]) == {2}
    assert set(whole["pid"]) == {driver}
    assert str(driver) not in whole["pool_pids"][0].split(",")
