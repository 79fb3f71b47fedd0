"""The Ray executor on a real two-node cluster gives the local executor's outputs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from curate.run.executor import LocalExecutor
from curate.run.ray_executor import RayExecutor
from curate.run.runner import Runner, make_executor
from curate.run.stage import StepKind
from tests.run.stages_for_tests import STOP
from tests.scale.helpers import assert_same_artifacts, toy_config
from tests.scale.toy_stages import FLAKY, NODES, PIPELINE, POOLS_GLOBAL, POOLS_MAP, SOURCE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("local") / "run"
    result = Runner(toy_config(run), PIPELINE, show_progress=False).run()
    assert result.exit_code == 0
    return run


@pytest.mark.parametrize(
    ("partitions", "batch_size", "with_io"),
    [(1, None, True), (3, None, False), (3, 16, False), (8, None, False), (8, 5, True)],
)
def test_ray_matches_local(
    ray_cluster, local_reference: Path, tmp_path: Path, partitions: int, batch_size: int | None, with_io: bool
) -> None:
    """MAP (two outputs), SHUFFLE and IO_POOL stages (plain and keyed with a passthrough);
    the actor pool of an IO_POOL stage takes seconds to start, so only two cases include it."""
    run = tmp_path / "run"
    stages = PIPELINE if with_io else [s for s in PIPELINE if s.kind is not StepKind.IO_POOL]
    executor = RayExecutor(partitions=partitions, batch_size=batch_size, workers=2)
    result = Runner(toy_config(run), stages, executor=executor, show_progress=False).run()
    assert [s.status for s in result.stages] == ["complete"] * len(stages)
    names = assert_same_artifacts(local_reference, run, only={s.name for s in stages})
    assert {"split/even", "split/odd", "stats/stats"} <= set(names)
    assert ("io/rows" in names) is with_io
    if with_io:  # source rows once (not once per batch) plus one total per bucket
        totals = pl.read_parquet(run / "totals/rows.parquet")
        assert totals.height == 200 + 17 and totals["id"].n_unique() == totals.height
    # the shuffle stage really saw whole buckets: 17 buckets, counts add up
    stats = pl.read_parquet(run / "stats/stats.parquet")
    assert stats.height == 17 and stats["n"].sum() == 200
    # the driver wrote one manifest; no shard checkpoints are left behind
    assert (run / "manifest.json").exists()
    assert not list(run.glob("*.state/shards/*"))


def test_config_and_cli_flag_select_ray(ray_cluster, tmp_path: Path) -> None:
    config = toy_config(tmp_path / "run", executor={"kind": "ray", "workers": 2, "partitions": 4})
    executor = make_executor(config)
    assert isinstance(executor, RayExecutor)
    assert (executor.workers, executor.partitions) == (2, 4)


def test_ray_lends_its_pool_to_the_driver_and_none_to_its_tasks(ray_cluster, tmp_path: Path) -> None:
    """A GLOBAL stage (on the driver) gets a Ray pool of `workers` processes; a MAP stage's
    Ray task gets a serial pool (a pool inside a task would wait for the CPUs its siblings hold)."""
    run = tmp_path / "run"
    executor = RayExecutor(partitions=2, workers=2)
    result = Runner(toy_config(run, n=20), [SOURCE, POOLS_MAP, POOLS_GLOBAL], executor=executor,
                    show_progress=False).run()
    assert result.exit_code == 0
    mapped = pl.read_parquet(run / "poolsmap/rows.parquet")
    assert mapped.height == 20 and set(mapped["pool"]) == {"SerialPool"} and set(mapped["workers"]) == {1}
    assert all(str(pid) == pool_pids for pid, pool_pids in mapped.select("pid", "pool_pids").iter_rows())
    whole = pl.read_parquet(run / "poolsglobal/rows.parquet")
    assert whole.height == 20 and set(whole["pool"]) == {"_WrappedPool"} and set(whole["workers"]) == {2}
    assert str(whole["pid"][0]) not in whole["pool_pids"][0].split(",")


def test_work_runs_on_both_nodes(ray_cluster, tmp_path: Path) -> None:
    config = toy_config(tmp_path / "run", n=400)
    Runner(config, [SOURCE, NODES], executor=RayExecutor(partitions=8), show_progress=False).run()
    nodes = pl.read_parquet(tmp_path / "run/nodes/rows.parquet")["node"].unique().to_list()
    assert len(nodes) == 2, nodes


def test_stage_errors_surface_with_their_type(ray_cluster, tmp_path: Path) -> None:
    config = toy_config(tmp_path / "run", n=40)
    (tmp_path / "run").mkdir(parents=True)
    source_id = Runner(config, [SOURCE], show_progress=False)
    source_id.run()
    poison = pl.read_parquet(tmp_path / "run/source/rows.parquet")["id"][0]
    (tmp_path / "run/poison").write_text(poison)
    with pytest.raises(RuntimeError, match="worker killed midway"):
        Runner(config, [SOURCE, FLAKY], executor=RayExecutor(partitions=4), show_progress=False).run()


def test_stopped_stage_is_partial_on_ray(ray_cluster, tmp_path: Path) -> None:
    config = toy_config(tmp_path / "run", n=20)
    from tests.run.stages_for_tests import SOURCE as NUMBERS

    result = Runner(config, [NUMBERS, STOP], executor=RayExecutor(partitions=2), show_progress=False).run()
    assert result.stages[-1].status == "partial" and result.exit_code == 3
    assert pl.read_parquet(tmp_path / "run/double/rows.parquet").height == 10  # half of each of 2 shards


def _calls(run: Path) -> list[str]:
    return [p.read_text() for p in (run / "calls").iterdir()] if (run / "calls").exists() else []


def test_killed_run_resumes_at_shard_granularity(ray_cluster, tmp_path: Path) -> None:
    """A run that dies on one shard keeps the finished shards' checkpoints; the next run
    (here on Ray, after a local run died) recomputes only the shards without a marker."""
    run = tmp_path / "run"
    config = toy_config(run, n=80)
    Runner(config, [SOURCE], show_progress=False).run()
    ids = pl.read_parquet(run / "source/rows.parquet")["id"]
    (run / "poison").write_text(ids[-1])  # the last shard fails, after the others finished
    with pytest.raises(RuntimeError, match="worker killed midway"):
        Runner(config, [SOURCE, FLAKY], executor=LocalExecutor(partitions=8, checkpoint=True), show_progress=False).run()
    markers = list(run.glob("flaky.state/shards/*/*/_SUCCESS"))
    assert len(markers) == 7
    first_calls = len(_calls(run))
    assert first_calls == 8
    (run / "poison").unlink()
    result = Runner(config, [SOURCE, FLAKY], executor=RayExecutor(partitions=8), show_progress=False).run()
    assert result.stages[-1].status == "complete"
    assert len(_calls(run)) - first_calls == 1  # only the failed shard ran again
    out = pl.read_parquet(run / "flaky/rows.parquet")
    assert out.height == 80 and (out["double"] == out["value"] * 2).all()
    assert not list(run.glob("flaky.state/shards/*"))  # checkpoints dropped once committed


def test_ray_run_killed_midway_resumes(ray_cluster, tmp_path: Path) -> None:
    """The same on Ray alone: shards finished before the failure are not run again."""
    run = tmp_path / "run"
    config = toy_config(run, n=60)
    Runner(config, [SOURCE], show_progress=False).run()
    ids = pl.read_parquet(run / "source/rows.parquet")["id"]
    (run / "poison").write_text(ids[-1])
    with pytest.raises(RuntimeError, match="worker killed midway"):
        Runner(config, [SOURCE, FLAKY], executor=RayExecutor(partitions=6), show_progress=False).run()
    finished = len(list(run.glob("flaky.state/shards/*/*/_SUCCESS")))
    first_calls = len(_calls(run))
    (run / "poison").unlink()
    Runner(config, [SOURCE, FLAKY], executor=RayExecutor(partitions=6), show_progress=False).run()
    assert len(_calls(run)) - first_calls == 6 - finished
    assert pl.read_parquet(run / "flaky/rows.parquet").height == 60


def test_ray_tasks_and_pools_get_one_native_thread_per_cpu_they_hold(ray_cluster) -> None:
    """Ray's task workers would start a Polars thread per CPU of the node each; they get the
    CPU their task holds (or `threads_per_worker`), through the task's runtime environment."""
    from curate.run.services import RayServices
    from tests.run.test_worker_threads import polars_threads

    assert RayExecutor(workers=2).map_tasks(polars_threads, [0, 1, 2]) == [(1, "1")] * 3
    assert RayExecutor(workers=2, threads_per_worker=2).map_tasks(polars_threads, [0, 1]) == [(2, "2")] * 2
    with RayServices(workers=2).pool() as pool:
        assert list(pool.map(polars_threads, [0, 1])) == [(1, "1")] * 2


def test_wait_ready_starts_a_task_worker_per_cpu_before_the_run(ray_cluster) -> None:
    """`wait_ready` (a benchmark's standing cluster) returns once every warm-up task ran in a
    worker of the tasks' own runtime environment; the tasks after it run as usual."""
    import ray

    from tests.run.test_worker_threads import polars_threads

    executor = RayExecutor(workers=2)
    executor.wait_ready()
    assert executor._warming and len(ray.wait(executor._warming, num_returns=len(executor._warming), timeout=0)[0]) == len(executor._warming)
    assert executor.map_tasks(polars_threads, [0, 1]) == [(1, "1")] * 2
    executor.close()
    assert executor._warming == []
