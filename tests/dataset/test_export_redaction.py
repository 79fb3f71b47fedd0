"""The export re-scans the final dataset for personal data, and restores originals on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curate.config import parse_config
from curate.dataset.stages import STAGES
from curate.run.rundir import RunDir
from curate.run.runner import Runner
from curate.services.pii.rescan import ResidualFindingsError
from schemas.records import Example, frame_of
from tests.dataset.conftest import example_rows

PLANTED_EMAIL = "jane.roe@example.org"


def _run(tmp_path: Path, rows: list[dict[str, Any]], families: list[str], **redact: Any) -> Path:
    run_dir = tmp_path / "run"
    RunDir(run_dir).commit_stage("review", {"examples": frame_of(Example, rows)})
    config = parse_config(
        {
            "run_dir": str(run_dir),
            "task": {"type": "classification", "instruction": "Which family?", "labels": families},
            "redact": {"enabled": True, **redact},
            "export": {"diversity": {"embeddings": False}},  # the card's embedding measures: not what this proves
        },
        source="test",
        base_dir=tmp_path,
    )
    Runner(config, STAGES, show_progress=False).run()
    return run_dir / config.export.dir


def _with_user_text(row: dict[str, Any], text: str) -> dict[str, Any]:
    messages = [dict(m) for m in row["messages"]]
    messages[1]["content"] += " " + text
    return {**row, "messages": messages}


def test_residual_personal_data_fails_the_export(
    tmp_path: Path, controls: list[dict[str, Any]], families: list[str]
) -> None:
    rows = example_rows(controls[:60])
    rows[0] = _with_user_text(rows[0], f"Contact {PLANTED_EMAIL} for access.")
    with pytest.raises(ResidualFindingsError, match="EMAIL_ADDRESS=1"):
        _run(tmp_path, rows, families, max_residual=0)
    assert not (tmp_path / "run" / "dataset").exists()


def test_residual_counts_reach_the_card_and_placeholders_are_restored_on_request(
    tmp_path: Path, controls: list[dict[str, Any]], families: list[str]
) -> None:
    rows = example_rows(controls[:60])
    doc_id = rows[0]["doc_id"]
    rows[0] = _with_user_text(rows[0], "Contact <EMAIL_ADDRESS_1> for access.")
    mapping = tmp_path / "run" / "redact.state" / "mapping" / f"{doc_id}.json"
    mapping.parent.mkdir(parents=True)
    mapping.write_text(json.dumps({"doc_id": doc_id, "entries": [
        {"placeholder": "<EMAIL_ADDRESS_1>", "entity": "EMAIL_ADDRESS", "value": PLANTED_EMAIL, "action": "replace"}]}))
    folder = _run(tmp_path, rows, families, max_residual=0, restore_in_final=True)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "residual scan" in card and "0 finding(s)" in card
    exported = pl.concat([pl.read_parquet(p) for p in (folder / "parquet").glob("*.parquet")], how="diagonal_relaxed")
    text = json.dumps(exported.filter(pl.col("doc_id") == doc_id).to_dicts(), default=str)
    assert PLANTED_EMAIL in text and "<EMAIL_ADDRESS_1>" not in text
