"""The local executor: its process pool survives a dead worker; shard checkpoints; keyed splits."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.run.dataset import dataset_hash, frame_hash, row_digest
from curate.run.executor import LocalExecutor, frame_digest
from curate.run.rundir import read_parquet
from curate.run.runner import Runner
from curate.run.stage import Output, Stage, StepKind
from curate.run.tasks import InputPart, plan_slices
from tests.scale.helpers import toy_config
from tests.scale.toy_stages import BUCKET, DIES, SOURCE, TOTALS, bucket_totals


def test_pool_reruns_shards_of_a_dead_worker(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = toy_config(run, n=60)
    Runner(config, [SOURCE], show_progress=False).run()
    (run / "die-once").write_text(read_parquet(run / "source/rows.parquet")["id"][30])
    result = Runner(config, [SOURCE, DIES], executor=LocalExecutor(workers=2, partitions=4), show_progress=False).run()
    assert result.stages[-1].status == "complete"
    assert not (run / "die-once").exists()  # the worker did die once
    out = read_parquet(run / "dies/rows.parquet")
    assert out.height == 60 and (out["double"] == out["value"] * 2).all()


def test_pool_gives_up_after_repeated_deaths(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = toy_config(run, n=20)
    Runner(config, [SOURCE], show_progress=False).run()
    (run / "die-always").write_text("")
    executor = LocalExecutor(workers=2, partitions=2, max_pool_restarts=1)
    with pytest.raises(RuntimeError, match="worker processes died"):
        Runner(config, [SOURCE, DIES], executor=executor, show_progress=False).run()


def _worker_pid(_: int) -> int:
    import os

    return os.getpid()


def test_one_pool_serves_every_stage_until_closed(tmp_path: Path) -> None:
    """Stages and summaries reuse the run's pool; a runner closes it; a closed executor starts anew."""
    executor = LocalExecutor(workers=2, isolate=True)
    first = set(executor.map_tasks(_worker_pid, range(8)))
    second = set(executor.map_tasks(_worker_pid, range(8)))
    assert first == second and len(first) <= 2  # the same processes: no new pool per call
    executor.close()
    assert not set(executor.map_tasks(_worker_pid, range(4))) & first  # a fresh pool after close
    run = tmp_path / "run"
    Runner(toy_config(run, n=20), [SOURCE], executor=executor, show_progress=False).run()
    assert executor._pool is None  # the runner closed it


def test_frame_digest_and_canonical_hash() -> None:
    frame = pl.DataFrame({"id": ["a", "b", "c"], "xs": [[1, 2], [3], []], "s": [{"k": 1}, {"k": 2}, {"k": 3}]})
    assert frame_digest(frame) == frame_digest(frame.clone())
    assert frame_digest(frame) != frame_digest(frame.reverse())
    # the artifact hash is order-free and the same from any split into parts
    parts = [row_digest(frame.slice(0, 1)), row_digest(frame.slice(1, 2))]
    assert dataset_hash(parts) == frame_hash(frame) == frame_hash(frame.reverse())
    assert frame_hash(frame.head(2)) != frame_hash(frame)


@pytest.mark.parametrize("tasks", [1, 3, 8])
def test_plan_cuts_parts_into_contiguous_ranges(tasks: int) -> None:
    parts = [InputPart("a", 5), InputPart("b", 0), InputPart("c", 12)]
    plans = plan_slices(parts, tasks)
    assert len(plans) == tasks
    covered = [(s.location, s.offset + i) for plan in plans for s in plan for i in range(s.length)]
    assert covered == [("a", i) for i in range(5)] + [("c", i) for i in range(12)]


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_keyed_io_stage_splits_by_key_and_passes_side_input_once(tmp_path: Path, shards: int) -> None:
    run = tmp_path / "run"
    config = toy_config(run, n=50)
    Runner(config, [SOURCE, BUCKET], show_progress=False).run()
    rows = read_parquet(run / "bucket/rows.parquet")
    Runner(config, [SOURCE, BUCKET, TOTALS], executor=LocalExecutor(partitions=shards), show_progress=False).run()
    combined = read_parquet(run / "totals/rows.parquet")
    assert combined.height == 50 + rows["bucket"].n_unique()  # one total per bucket: no key in two tasks
    assert combined["id"].is_sorted() and combined["id"].n_unique() == combined.height
    manifest = json.loads((run / "manifest.json").read_text())["stages"]["totals"]
    assert manifest["tasks"] == min(shards, rows["bucket"].n_unique())  # empty buckets are no tasks
    assert len(manifest["artifacts"]["rows"]["parts"]) == manifest["tasks"] + 1  # + source/rows, once


def test_passthrough_must_name_an_output_and_a_side_input() -> None:
    with pytest.raises(ValueError, match="passthrough"):
        Stage("bad", StepKind.IO_POOL, bucket_totals, ("bucket/rows",), (Output("rows", "id"),),
              key="bucket", passthrough={"rows": "source/rows"})
