"""The real pipeline (the demo: ingest -> ... -> export, teacher replayed from the
hand-written cassette) through the local and the Ray executor: identical artifacts for
every stage after a canonical sort, with 1, 3 and 8 partitions and different batch sizes.
And a property test per non-global stage: the result on a concatenation of two inputs
equals the concatenation of the results."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.config import PipelineConfig, load_config
from curate.pipeline import all_stages
from curate.run.ray_executor import RayExecutor
from curate.run.rundir import RunDir
from curate.run.runner import Runner
from curate.run.stage import Stage, StageContext, StageStopped, StepKind
from tests.scale.helpers import assert_same_artifacts, canonical

# paths that name the run directory itself differ between two run directories by design
RUN_PATH_COLUMNS = frozenset({"export_dir"})


def demo_config(demo_config_path: Path, run_dir: Path) -> PipelineConfig:
    return load_config(demo_config_path, overrides={"run_dir": str(run_dir)})


def stages_through(last: str) -> list[Stage]:
    stages = all_stages()
    names = [s.name for s in stages]
    return stages[: names.index(last) + 1]


@pytest.fixture(scope="module")
def demo_reference(demo_config_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("demo-local") / "run"
    result = Runner(demo_config(demo_config_path, run), all_stages(), show_progress=False).run()
    assert result.stopped is None, result.stages
    return run


@pytest.mark.integration
@pytest.mark.parametrize(
    ("partitions", "batch_size", "last"),
    [(1, None, "dedup"), (3, 4, "export"), (8, None, "dedup")],
)
def test_demo_pipeline_same_on_ray(
    ray_cluster, demo_config_path: Path, demo_reference: Path, tmp_path: Path,
    partitions: int, batch_size: int | None, last: str,
) -> None:
    """Stages after dedup are GLOBAL (on the driver under both executors): one case runs them."""
    run = tmp_path / "run"
    stages = stages_through(last)
    executor = RayExecutor(partitions=partitions, batch_size=batch_size, workers=2)
    result = Runner(demo_config(demo_config_path, run), stages, executor=executor, show_progress=False).run()
    assert result.stopped is None, result.stages
    compared = assert_same_artifacts(
        demo_reference, run, ignore_columns=RUN_PATH_COLUMNS, only={s.name for s in stages}
    )
    assert {"ingest/documents", "chunk/chunks", "redact/chunks", "generate/samples",
            "filter/examples", "dedup/examples"} <= set(compared)
    assert pl.read_parquet(run / "dedup/examples.parquet").height > 0


def _split(stage: Stage, frame: pl.DataFrame, cut: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    if stage.key is not None:  # SHUFFLE, or keyed IO_POOL (refine): a key stays on one side
        left = (pl.col(stage.key).hash(seed) % 1000) < int(cut * 1000)
        return frame.filter(left), frame.filter(~left)
    at = round(cut * frame.height)
    return frame.head(at), frame.slice(at)


NON_GLOBAL = [s for s in all_stages() if s.kind is not StepKind.GLOBAL]


def test_refine_is_keyed_by_chunk_and_passes_examples_through() -> None:
    """No stage is left as one batch on the cluster: refine, which must see all of a
    chunk's rejections at once, is keyed; filter's examples join its output once."""
    refine = next(s for s in NON_GLOBAL if s.name == "refine")
    assert refine.key == "chunk_id" and refine.passthrough == {"examples": "filter/examples"}


@pytest.mark.parametrize("stage", NON_GLOBAL, ids=lambda s: s.name)
def test_stage_on_concatenation_is_concatenation_of_results(
    stage: Stage, demo_config_path: Path, demo_reference: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """fn(A ++ B) == fn(A) ++ fn(B) for a MAP/IO_POOL stage at any cut, and for a keyed
    stage at any split that keeps each key on one side (what the executors rely on)."""
    run = tmp_path_factory.mktemp(f"prop-{stage.name}") / "run"
    shutil.copytree(demo_reference, run)  # the stage may write its state folder: work on a copy
    config = demo_config(demo_config_path, run)
    primary = RunDir(run).read(stage.input_paths[0])
    assert primary.height > 1, f"{stage.name}: the demo gives it too little input to test"
    ctx = StageContext(config=config, run_dir=str(run), stage=stage.name, show_progress=False)

    def call(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
        try:
            return dict(stage.fn(frame, dataclasses.replace(ctx)))
        except StageStopped as stop:  # pragma: no cover - the demo has no budget stop
            pytest.fail(f"{stage.name} stopped: {stop.reason}")

    whole = call(primary)

    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(cut=st.floats(0.1, 0.9), seed=st.integers(0, 2**16))
    def check(cut: float, seed: int) -> None:
        left, right = _split(stage, primary, cut, seed)
        parts = [call(left), call(right)]
        for output in stage.output_names:
            if output in {"funnel", "recognizers"}:
                continue  # per-call summaries (counts per step / recognizer), not row sets
            joined = pl.concat([p[output] for p in parts], how="diagonal_relaxed")
            expected = whole[output]
            assert canonical(joined.select(expected.columns)).equals(canonical(expected)), (stage.name, output)

    check()
