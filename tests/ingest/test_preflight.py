"""Fail fast: a missing input path or an input without documents is never a silent 0."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import yaml
from typer.testing import CliRunner

from curate.config import parse_config
from curate.ingest.preflight import preflight_paths


def write_config(tmp_path: Path, repo_root: Path, paths: list[str]) -> Path:
    """The demo pipeline (replay teacher), with other input paths and its run inside tmp."""
    data = yaml.safe_load((repo_root / "data" / "demo" / "pipeline.yaml").read_text(encoding="utf-8"))
    data["ingest"]["paths"] = paths
    data["run_dir"] = str(tmp_path / "run")
    data["teacher"]["cassette"] = str(repo_root / "data" / "demo" / data["teacher"]["cassette"])
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_preflight_names_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\ntext", encoding="utf-8")
    cfg = parse_config({"task": {"type": "freeform", "instruction": "x"}, "ingest": {"paths": ["docs", "nowhere/else"]}}, base_dir=tmp_path)
    check = preflight_paths(cfg)
    assert check.has_input
    assert check.messages() == [f"ingest.paths: 'nowhere/else' does not exist (resolved to {tmp_path / 'nowhere' / 'else'})"]


def test_missing_path_fails_in_under_two_seconds_naming_it(tmp_path: Path, repo_root: Path) -> None:
    from curate.cli import app

    config = write_config(tmp_path, repo_root, ["client-docs-typo"])
    began = time.perf_counter()
    result = CliRunner().invoke(app, ["run", str(config), "--quiet"], env={"COLUMNS": "300"})
    seconds = time.perf_counter() - began
    assert result.exit_code == 2, result.output
    assert seconds < 2.0
    assert "'client-docs-typo' does not exist" in result.output and str(tmp_path / "client-docs-typo") in result.output
    assert not (tmp_path / "run" / "manifest.json").exists()  # no stage ran

    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "missing-folder"), "--out", str(tmp_path / "r2")])
    assert result.exit_code == 2 and "missing-folder" in result.output


def test_empty_folder_exits_2_with_a_row_and_one_warning(tmp_path: Path) -> None:
    from curate.cli import app

    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "photo.png").write_bytes(b"\x89PNG")  # nothing ingest can read
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "inbox"), "--out", str(out), "--quiet"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert [line for line in result.output.splitlines() if line.startswith("no input:")] != []
    errors = pl.read_parquet(out / "discover" / "errors.parquet")
    assert errors["reason"].to_list() == ["no_input"]
    assert "hold no file matching ingest.include" in errors["message"].item()


def test_run_on_empty_input_stops_after_discovery(tmp_path: Path, repo_root: Path) -> None:
    from curate.cli import app

    (tmp_path / "empty").mkdir()
    config = write_config(tmp_path, repo_root, ["empty"])
    began = time.perf_counter()
    result = CliRunner().invoke(app, ["run", str(config), "--quiet"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert time.perf_counter() - began < 10
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["stages"]) == {"discover", "ingest", "chunk"}  # redact, generate, ... never started
    assert "no input:" in result.output
