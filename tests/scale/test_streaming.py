"""The streaming executor: the same rows and hashes at any partitioning and worker count,
artifacts as part folders, and a killed run that resumes with only its missing tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from curate.run.executor import Executor, LocalExecutor
from curate.run.rundir import read_parquet
from curate.run.runner import Runner
from tests.scale.helpers import toy_config
from tests.scale.toy_stages import BUCKET, SOURCE, SPLIT, STATS

ROOT = Path(__file__).resolve().parents[2]
STAGES = [SOURCE, SPLIT, BUCKET, STATS]  # two MAP stages (one with two outputs), a SHUFFLE
CHECKED = ("split/even", "split/odd", "bucket/rows", "stats/stats")


def _run(run: Path, executor: Executor) -> dict[str, Any]:
    result = Runner(toy_config(run, n=300), STAGES, executor=executor, show_progress=False).run()
    assert result.exit_code == 0
    manifest: dict[str, Any] = json.loads((run / "manifest.json").read_text())
    return manifest


def _hashes(manifest: dict[str, Any]) -> dict[str, str]:
    return {a: manifest["stages"][a.split("/")[0]]["output_hashes"][a.split("/")[1]] for a in CHECKED}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    run = tmp_path_factory.mktemp("ref") / "run"
    return run, _run(run, LocalExecutor())


@pytest.mark.parametrize(("partitions", "workers"), [(1, 1), (3, 1), (8, 1), (3, 2), (8, 2)])
def test_same_rows_and_hashes_at_any_partitioning(
    reference: tuple[Path, dict[str, Any]], tmp_path: Path, partitions: int, workers: int
) -> None:
    ref_run, ref_manifest = reference
    run = tmp_path / "run"
    manifest = _run(run, LocalExecutor(workers=workers, partitions=partitions))
    assert _hashes(manifest) == _hashes(ref_manifest)
    for artifact in CHECKED:  # read whole: the same frame, in key order
        assert read_parquet(run / f"{artifact}.parquet").equals(read_parquet(ref_run / f"{artifact}.parquet"))
    parts = manifest["stages"]["split"]["artifacts"]["even"]["parts"]
    assert len(parts) == partitions == len(list((run / "split/even.parquet").glob("part-*.parquet")))
    assert sum(p["rows"] for p in parts) == 150
    assert manifest["stages"]["stats"]["tasks"] == min(partitions, 17)  # 17 keys: no empty bucket is a task


@pytest.mark.integration
@pytest.mark.parametrize("partitions", [1, 3, 8])
def test_ray_gives_the_same_hashes(ray_cluster, reference: tuple[Path, dict[str, Any]], tmp_path: Path,
                                   partitions: int) -> None:
    from curate.run.ray_executor import RayExecutor

    manifest = _run(tmp_path / "run", RayExecutor(partitions=partitions, workers=2))
    assert _hashes(manifest) == _hashes(reference[1])


def _calls(run: Path) -> int:
    return len(list((run / "calls").iterdir())) if (run / "calls").exists() else 0


def _kill_and_resume(tmp_path: Path, stage: str, where: str, resume: Executor) -> None:
    run = tmp_path / "run"
    config = toy_config(run, n=80)
    Runner(config, [SOURCE, BUCKET], show_progress=False).run()
    rows = read_parquet(run / "bucket/rows.parquet")
    (run / "poison").write_text(rows.sort("bucket")["id"][-1])  # in the last task of either plan
    killed = subprocess.run([sys.executable, "-m", "tests.scale.resume_driver", str(run), stage, where, "8"],
                            cwd=ROOT, check=False, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    finished = len(list(run.glob(f"{stage}.state/shards/*/*/_SUCCESS")))
    assert 1 <= finished < 8
    first = _calls(run)
    (run / "poison").unlink()
    from tests.scale.toy_stages import KILL_MAP, KILL_SHUFFLE

    killing = {"killmap": KILL_MAP, "killshuffle": KILL_SHUFFLE}[stage]
    result = Runner(config, [SOURCE, BUCKET, killing], executor=resume, show_progress=False).run()
    assert result.stages[-1].status == "complete"
    entry = json.loads((run / "manifest.json").read_text())["stages"][stage]
    assert entry["tasks_reused"] == finished
    assert _calls(run) - first == entry["tasks"] - finished  # only the missing partitions ran
    out = read_parquet(run / f"{stage}/rows.parquet")
    assert out.height == 80 and (out["double"] == out["value"] * 2).all()
    assert not list(run.glob(f"{stage}.state/shards/*"))


@pytest.mark.parametrize("stage", ["killmap", "killshuffle"])
def test_killed_local_run_resumes_only_missing_partitions(tmp_path: Path, stage: str) -> None:
    _kill_and_resume(tmp_path, stage, "local", LocalExecutor(partitions=8))


@pytest.mark.integration
@pytest.mark.parametrize("stage", ["killmap", "killshuffle"])
def test_killed_ray_run_resumes_only_missing_partitions(ray_cluster, tmp_path: Path, stage: str) -> None:
    from curate.run.ray_executor import RayExecutor

    _kill_and_resume(tmp_path, stage, ray_cluster.address, RayExecutor(partitions=8))
