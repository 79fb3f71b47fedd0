"""The run model: atomic outputs, skip-if-unchanged, partial stops, shard independence."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.config import ConfigError, load_config, parse_config
from curate.run.executor import LocalExecutor
from curate.run.rundir import read_parquet
from curate.run.runner import Runner
from tests.run.stages_for_tests import DOUBLE, EXPLODE, GROUPS, SOURCE, STOP


def _config(tmp_path: Path, size: int = 20, **extra):
    return parse_config(
        {"name": f"toy-{size}", "run_dir": str(tmp_path / "run"), "task": {"type": "freeform", "instruction": "x"}, **extra}
    )


def test_second_run_skips_unchanged_stages(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = Runner(config, [SOURCE, DOUBLE], show_progress=False).run()
    second = Runner(config, [SOURCE, DOUBLE], show_progress=False).run()
    assert [s.status for s in first.stages] == ["complete", "complete"]
    assert [s.status for s in second.stages] == ["skipped", "skipped"]
    manifest = Runner(config, []).run_dir.load_manifest()
    assert manifest["stages"]["double"]["rows"] == {"rows": 20}
    assert "polars" in manifest["libraries"]


def test_config_change_reruns_only_affected_stages(tmp_path: Path) -> None:
    Runner(_config(tmp_path), [SOURCE, DOUBLE], show_progress=False).run()
    changed = _config(tmp_path, chunk={"max_tokens": 100})
    result = Runner(changed, [SOURCE, DOUBLE], show_progress=False).run()
    assert [s.status for s in result.stages] == ["skipped", "complete"]


def test_input_change_reruns_downstream(tmp_path: Path) -> None:
    Runner(_config(tmp_path, 20), [SOURCE, DOUBLE], show_progress=False).run()
    result = Runner(_config(tmp_path, 30), [SOURCE, DOUBLE], show_progress=False).run()
    assert [s.status for s in result.stages] == ["complete", "complete"]
    assert read_parquet(tmp_path / "run/double/rows.parquet").height == 30


def test_stage_killed_midway_leaves_previous_outputs_whole(tmp_path: Path) -> None:
    config = _config(tmp_path)
    Runner(config, [SOURCE, DOUBLE], show_progress=False).run()
    before = (tmp_path / "run/double/rows.parquet/part-00000.parquet").read_bytes()
    with pytest.raises(RuntimeError, match="killed midway"):
        Runner(config, [SOURCE, EXPLODE], show_progress=False, force=True).run()
    manifest = Runner(config, []).run_dir.load_manifest()
    assert manifest["stages"]["double"]["status"] == "failed"
    assert manifest["stages"]["double"]["message"] == "RuntimeError: killed midway"
    assert "killed midway" in manifest["stages"]["double"]["traceback"]
    assert (tmp_path / "run/double/rows.parquet/part-00000.parquet").read_bytes() == before
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_stopped_stage_is_partial_and_rerun_next_time(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = Runner(config, [SOURCE, STOP], show_progress=False).run()
    assert result.stages[-1].status == "partial"
    assert result.exit_code == 3
    assert read_parquet(tmp_path / "run/double/rows.parquet").height == 10
    again = Runner(config, [SOURCE, DOUBLE], show_progress=False).run()
    assert again.stages[-1].status == "complete"


@pytest.mark.parametrize("partitions", [1, 3, 8])
def test_output_does_not_depend_on_sharding(tmp_path: Path, partitions: int) -> None:
    reference = Runner(_config(tmp_path / "ref"), [SOURCE, DOUBLE, GROUPS], show_progress=False)
    reference.run()
    sharded_config = _config(tmp_path / "sharded")
    Runner(
        sharded_config, [SOURCE, DOUBLE, GROUPS],
        executor=LocalExecutor(workers=1, partitions=partitions), show_progress=False,
    ).run()
    for artifact in ("double/rows.parquet", "groups/groups.parquet"):
        ref = read_parquet(tmp_path / "ref/run" / artifact)
        got = read_parquet(tmp_path / "sharded/run" / artifact)
        assert got.equals(ref), artifact


@pytest.mark.slow
def test_process_pool_gives_same_output(tmp_path: Path) -> None:
    Runner(_config(tmp_path / "ref"), [SOURCE, DOUBLE], show_progress=False).run()
    Runner(
        _config(tmp_path / "pool"), [SOURCE, DOUBLE],
        executor=LocalExecutor(workers=2, partitions=4), show_progress=False,
    ).run()
    ref = read_parquet(tmp_path / "ref/run/double/rows.parquet")
    assert read_parquet(tmp_path / "pool/run/double/rows.parquet").equals(ref)


def test_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "pipeline.yaml"
    bad.write_text("task:\n  type: classification\n  instruction: x\n  labels: [a, b]\nteacher:\n  samples: 0\n  colour: red\n")
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    message = str(error.value)
    assert str(bad) in message
    assert "teacher.samples" in message and "greater than or equal to 1" in message
    assert "teacher.colour: unknown key" in message  # with the nearest valid key when one is close


def test_config_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "pipeline.yaml"
    path.parent.mkdir()
    path.write_text("run_dir: runs/x\ntask: {type: freeform, instruction: x}\n")
    config = load_config(path)
    assert config.run_path == path.parent.resolve() / "runs/x"


def test_manifest_says_where_a_keyed_stage_spent_its_time(tmp_path: Path) -> None:
    """`timing`: the tasks' wall and CPU seconds and the bucketing round of a keyed stage
    (what bench/scale reads to tell waiting workers from slow ones)."""
    config = _config(tmp_path, size=200)
    Runner(config, [SOURCE, DOUBLE, GROUPS], executor=LocalExecutor(workers=1, partitions=3), show_progress=False).run()
    stages = Runner(config, []).run_dir.load_manifest()["stages"]
    groups, double = stages["groups"]["timing"], stages["double"]["timing"]
    assert groups["bucketing_sum"] > 0 and double["bucketing_sum"] == 0  # only the keyed stage buckets
    for timing in (groups, double):
        assert 0 < timing["task_min"] <= timing["task_max"] <= timing["task_sum"] <= timing["run"]
        assert timing["task_cpu_sum"] > 0
