"""The runner's graph check: every input produced before it is read, record types matching;
side files hashed into the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.config import load_config
from curate.pipeline import all_stages
from curate.run.graph import StageGraphError, check_graph, graph_problems, side_file_hash
from curate.run.runner import Runner
from curate.run.stage import Output, Stage, StepKind
from schemas.artifacts import DEDUPED, REDACTED_CHUNKS, Artifact
from schemas.records import Chunk, Example
from tests.run.stages_for_tests import DOUBLE, GROUPS, SOURCE, doubled


def test_the_pipeline_graph_holds() -> None:
    assert graph_problems(all_stages(), {"stages": {}}) == []


def test_an_input_nothing_writes_is_named() -> None:
    problems = graph_problems([DOUBLE, GROUPS], {"stages": {}})
    assert problems == ["stage 'double' reads source/rows, which no earlier stage writes "
                        "and no earlier run of 'source' finished"]
    assert graph_problems([DOUBLE, GROUPS], {"stages": {"source": {"status": "complete"}}}) == []
    assert graph_problems([DOUBLE], {"stages": {}}, exists=lambda path: path == "source/rows") == []


def test_a_record_type_mismatch_is_named() -> None:
    as_examples = Artifact("redact", "chunks", Example, "chunk_id")  # a consumer that expects the wrong rows
    producer = Stage("redact", StepKind.MAP, doubled, (), (REDACTED_CHUNKS,))
    consumer = Stage("reader", StepKind.MAP, doubled, (as_examples,), (Output("rows"),))
    with pytest.raises(StageGraphError, match="reads redact/chunks as Example, but 'redact' writes Chunk"):
        check_graph([producer, consumer], {"stages": {}})
    assert REDACTED_CHUNKS.record is Chunk and DEDUPED.path == "dedup/examples"


def test_the_runner_checks_before_running_anything(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path))
    with pytest.raises(StageGraphError):
        Runner(config, [DOUBLE], show_progress=False).run()
    assert not (tmp_path / "run" / "double").exists()
    Runner(config, [SOURCE, DOUBLE], show_progress=False).run()  # the same stage with its producer runs


def test_side_files_are_hashed_whole(tmp_path: Path) -> None:
    folder = tmp_path / "mapping"
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    first = side_file_hash(folder)
    (folder / "b.json").write_text("{}")
    assert first is not None and side_file_hash(folder) != first
    assert side_file_hash(tmp_path / "missing") is None


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text("name: toy-5\nrun_dir: run\ntask: {type: qa, name: t, instruction: q}\n")
    return path
