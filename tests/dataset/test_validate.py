"""The great-expectations suite: a clean dataset passes; planted violations stop the run, named."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from curate.dataset.stages import STAGES
from curate.dataset.validation import ValidationFailed
from curate.run.rundir import RunDir
from curate.run.runner import Runner
from tests.dataset.conftest import make_config

VALIDATE = [s for s in STAGES if s.name == "validate"]


def _run_validate(run_dir: Path, frame: pl.DataFrame, families: list[str], **sections: Any) -> Any:
    RunDir(run_dir).commit_stage("review", {"examples": frame})
    return Runner(make_config(run_dir, families, **sections), VALIDATE, show_progress=False).run()


def _edit(frame: pl.DataFrame, n: int, **values: Any) -> pl.DataFrame:
    """Set columns of the first `n` rows (by example_id) to the given values."""
    frame = frame.sort("example_id")
    index = pl.int_range(pl.len()) < n
    return frame.with_columns(
        [pl.when(index).then(pl.lit(v, dtype=frame.schema[k])).otherwise(pl.col(k)).alias(k) for k, v in values.items()]
    )


def test_clean_dataset_passes_and_writes_data_docs(examples: pl.DataFrame, families: list[str], tmp_path: Path) -> None:
    frame = _edit(examples, 3, review_status="rejected")
    result = _run_validate(tmp_path, frame, families)
    assert result.exit_code == 0
    out = RunDir(tmp_path).read("validate/examples")
    assert out.height == examples.height - 3  # reviewer-rejected examples are left out
    manifest = RunDir(tmp_path).load_manifest()
    report = manifest["stages"]["validate"]["report"]
    assert report["summary"]["passed"] == report["summary"]["evaluated"] > 10
    assert report["summary"]["rejected_dropped"] == 3
    assert {c["check"] for c in report["checks"]} >= {
        "label_in_taxonomy", "unique_example_id", "unique_content_hash", "response_length",
        "grounding_score", "message_roles", "messages_non_empty", "required_fields", "output_schema",
    }
    docs = tmp_path / "validate.state" / "data_docs"
    index = docs / "index.html"
    assert index.exists()
    pages = [p for p in docs.rglob("*.html") if p != index]
    assert pages, "a validation result page is rendered"
    assert any("expect_column_values_to_be_in_set" in p.read_text(encoding="utf-8") or
               "values must belong to this set" in p.read_text(encoding="utf-8") for p in pages)


def _bad_roles(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.sort("example_id")
    messages = frame["messages"].to_list()
    messages[0] = [m for m in messages[0] if m["role"] != "user"]  # system, assistant
    return frame.with_columns(pl.Series("messages", messages, dtype=frame.schema["messages"]))


def _duplicate_chat(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.sort("example_id")
    messages = frame["messages"].to_list()
    messages[1] = messages[0]
    return frame.with_columns(pl.Series("messages", messages, dtype=frame.schema["messages"]))


@pytest.mark.parametrize(
    ("plant", "check", "column"),
    [
        (lambda f: _edit(f, 2, label="NOT-A-FAMILY"), "label_in_taxonomy", "label"),
        (lambda f: _edit(f, 1, grounding_score=0.1), "grounding_score", "grounding_score"),
        (lambda f: pl.concat([f, f.head(1)]), "unique_example_id", "example_id"),
        (_duplicate_chat, "unique_content_hash", "content_hash"),
        (_bad_roles, "message_roles", "role_sequence"),
        (lambda f: _edit(f, 1, doc_id=None), "required_fields", "doc_id"),
    ],
)
def test_planted_violation_stops_the_run(
    examples: pl.DataFrame, families: list[str], tmp_path: Path, plant: Any, check: str, column: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _run_validate(tmp_path, plant(examples), families)
    failure = caught.value
    assert check in failure.checks
    named = next(f for f in failure.failures if f["check"] == check)
    assert named["column"] == column and named["unexpected_count"] >= 1
    assert check in str(failure) and named["expectation"] in str(failure)
    assert pickle.loads(pickle.dumps(failure)).checks == failure.checks  # crosses process pools
    # nothing is committed for the failed stage; the Data Docs show the failure
    assert not RunDir(tmp_path).exists("validate/examples")
    assert (tmp_path / "validate.state" / "data_docs" / "index.html").exists()


def test_planted_label_names_offending_examples(examples: pl.DataFrame, families: list[str], tmp_path: Path) -> None:
    planted = _edit(examples, 2, label="NOT-A-FAMILY")
    with pytest.raises(ValidationFailed) as caught:
        _run_validate(tmp_path, planted, families)
    named = next(f for f in caught.value.failures if f["check"] == "label_in_taxonomy")
    assert named["unexpected_count"] == 2
    first_ids = planted.sort("example_id")["example_id"].head(2).to_list()
    assert all(i in named["unexpected_examples"] for i in first_ids)


def test_warn_only_check_does_not_stop(examples: pl.DataFrame, families: list[str], tmp_path: Path) -> None:
    planted = _edit(examples, 1, grounding_score=0.1)
    result = _run_validate(tmp_path, planted, families, validate={"warn_only": ["grounding_score"]})
    assert result.exit_code == 0
    report = RunDir(tmp_path).load_manifest()["stages"]["validate"]["report"]
    assert report["summary"]["warnings"] == "grounding_score"


def test_cli_exits_non_zero_on_a_planted_violation(examples: pl.DataFrame, families: list[str], tmp_path: Path) -> None:
    from curate.cli import app

    run_dir = tmp_path / "run"
    RunDir(run_dir).commit_stage("review", {"examples": _edit(examples, 1, label="NOT-A-FAMILY")})
    config = make_config(run_dir, families).model_dump(mode="json", by_alias=True, exclude={"base_dir"})
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    outcome = CliRunner().invoke(app, ["dataset", str(path), "--quiet"])
    assert outcome.exit_code != 0
    message = str(outcome.exception) + outcome.output
    assert "label_in_taxonomy" in message


def test_empty_dataset_stops_with_row_count(examples: pl.DataFrame, families: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _run_validate(tmp_path, examples.clear(), families)
    assert caught.value.checks == ["row_count"]
    assert "observed 0" in str(caught.value)


def test_redacted_value_back_in_an_example_stops_the_run(
    examples: pl.DataFrame, families: list[str], tmp_path: Path
) -> None:
    """A value the redact stage replaced must not come back (e.g. through a reviewer's correction)."""
    import json

    frame = examples.sort("example_id")
    row = frame.row(0, named=True)
    value = row["messages"][1]["content"].split("\n\n", 1)[1][:30]  # words of its passage
    mapping = tmp_path / "redact.state" / "mapping"
    mapping.mkdir(parents=True)
    entries = [{"placeholder": "<PERSON_1>", "entity": "PERSON", "value": value, "action": "replace"}]
    (mapping / f"{row['doc_id']}.json").write_text(json.dumps({"doc_id": row["doc_id"], "entries": entries}))
    with pytest.raises(ValidationFailed) as caught:
        _run_validate(tmp_path, frame, families)
    assert caught.value.checks == ["no_redacted_values"]
    assert row["example_id"] in str(caught.value)
