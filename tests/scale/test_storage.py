"""A run whose directory is an s3:// URL, on a local S3 server (moto's server mode)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pytest

from curate.run.executor import LocalExecutor
from curate.run.ray_executor import RayExecutor
from curate.run.rundir import RunDir, atomic_write_parquet, atomic_write_text, read_parquet
from curate.run.runner import Runner
from tests.scale.helpers import canonical, toy_config
from tests.scale.toy_stages import PIPELINE

pytestmark = pytest.mark.integration
STAGES = [s for s in PIPELINE if s.name != "io"]


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    import boto3

    name = f"assay-{abs(hash(request.node.name)) % 10**8}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def _s3_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("local") / "run"
    Runner(toy_config(run), STAGES, show_progress=False).run()
    return run


def _assert_same(local: Path, objects: dict[str, bytes], prefix: str) -> None:
    for stage in STAGES:
        for output in stage.output_names:
            expected = read_parquet(local / stage.name / f"{output}.parquet")
            folder = f"{prefix}/{stage.name}/{output}.parquet/"
            parts = [pl.read_parquet(io.BytesIO(data)) for key, data in sorted(objects.items()) if key.startswith(folder)]
            assert parts, folder
            got = pl.concat(parts, how="diagonal_relaxed")
            assert canonical(got).equals(canonical(expected)), f"{stage.name}/{output}"


def test_local_executor_runs_on_s3(s3_endpoint: str, bucket: str, local_run: Path) -> None:
    config = toy_config(f"s3://{bucket}/runs/toy")
    first = Runner(config, STAGES, executor=LocalExecutor(workers=1, partitions=3), show_progress=False).run()
    assert first.exit_code == 0
    objects = _s3_objects(s3_endpoint, bucket)
    _assert_same(local_run, objects, "runs/toy")
    manifest = json.loads(objects["runs/toy/manifest.json"])
    assert set(manifest["stages"]) == {s.name for s in STAGES}
    assert not [key for key in objects if "/." in key]  # no staging objects left
    # the manifest on S3 makes the second run skip everything
    again = Runner(config, STAGES, show_progress=False).run()
    assert [s.status for s in again.stages[1:]] == ["skipped"] * (len(STAGES) - 1)


def test_ray_executor_runs_on_s3(ray_cluster, s3_endpoint: str, bucket: str, local_run: Path) -> None:
    """Both nodes read side inputs and write shard checkpoints through S3, not a shared disk."""
    config = toy_config(f"s3://{bucket}/toy")
    result = Runner(config, STAGES, executor=RayExecutor(partitions=4), show_progress=False).run()
    assert result.exit_code == 0
    objects = _s3_objects(s3_endpoint, bucket)
    _assert_same(local_run, objects, "toy")
    assert "toy/manifest.json" in objects
    assert not [key for key in objects if "/shards/" in key]


def test_rundir_helpers_on_s3(s3_endpoint: str, bucket: str) -> None:
    frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    atomic_write_parquet(frame, f"s3://{bucket}/x/frame.parquet")
    atomic_write_text(f"s3://{bucket}/x/note.txt", "hello")
    assert read_parquet(f"s3://{bucket}/x/frame.parquet").equals(frame)
    run_dir = RunDir(f"s3://{bucket}/run")
    assert run_dir.remote and run_dir.load_manifest() == {"stages": {}}
    hashes = run_dir.commit_stage("s", {"out": frame, "other": frame.head(1)})
    assert set(hashes) == {"out", "other"}
    assert run_dir.read("s/out").equals(frame)
    run_dir.commit_stage("s", {"out": frame.head(2)})  # a re-run with fewer outputs replaces them all
    assert run_dir.read("s/out").height == 2 and not run_dir.exists("s/other")
