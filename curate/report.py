"""The readable report every run leaves: counts per stage, rejection reasons, cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from curate.run.rundir import RunDir, atomic_write_text


def stage_table(manifest: dict[str, Any]) -> Table:
    table = Table(title="Stages", show_lines=False)
    for column in ("stage", "status", "rows in", "rows out", "errors", "seconds"):
        table.add_column(column, justify="left" if column in {"stage", "status"} else "right")
    for name, entry in manifest.get("stages", {}).items():
        rows = entry.get("rows", {})
        out = ", ".join(f"{k}={v}" for k, v in rows.items())
        table.add_row(
            name, entry.get("status", "?"), str(entry.get("rows_in", "")), out,
            str(entry.get("errors", 0)), f"{entry.get('seconds', 0):.1f}",
        )
    return table


def error_frame(run_dir: RunDir) -> pl.DataFrame:
    frames = [pl.read_parquet(p) for p in sorted(run_dir.root.glob("*/errors.parquet"))]
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def print_status(run_path: Path, console: Console) -> int:
    run_dir = RunDir(run_path)
    manifest = run_dir.load_manifest()
    if not manifest.get("stages"):
        console.print(f"[red]{run_path}: no manifest — nothing has run here[/red]")
        return 1
    console.print(stage_table(manifest))
    for name, entry in manifest["stages"].items():
        for title, section in (entry.get("report") or {}).items():
            if section in ({}, [], None):
                continue  # e.g. "errors by reason" of a clean run
            console.print(report_section_table(f"{name}: {title}", section))
    errors = error_frame(run_dir)
    if errors.height:
        table = Table(title=f"Errors ({errors.height})")
        for column in ("stage", "source", "reason", "message"):
            table.add_column(column)
        for row in errors.head(50).iter_rows(named=True):
            table.add_row(*(str(row.get(c, "")) for c in ("stage", "source", "reason", "message")))
        console.print(table)
    return 0


def report_section_table(title: str, section: Any) -> Table:
    """A report section as a table: a list of dicts, or a flat dict of figures."""
    table = Table(title=title)
    if isinstance(section, list) and section and isinstance(section[0], dict):
        columns = list(section[0].keys())
        for column in columns:
            table.add_column(str(column))
        for row in section:
            table.add_row(*(_fmt(row.get(c)) for c in columns))
    elif isinstance(section, dict):
        table.add_column("key")
        table.add_column("value", justify="right")
        for key, value in section.items():
            table.add_row(str(key), _fmt(value))
    else:
        table.add_column("value")
        table.add_row(_fmt(section))
    return table


def write_run_report(run_path: Path) -> Path:
    """report.json and report.md in the run directory, from the manifest."""
    run_dir = RunDir(run_path)
    manifest = run_dir.load_manifest()
    errors = error_frame(run_dir)
    stages: dict[str, dict[str, Any]] = {
        name: {k: entry.get(k) for k in ("status", "rows_in", "rows", "errors", "seconds", "report", "message")}
        for name, entry in manifest.get("stages", {}).items()
    }
    summary = {
        "stages": stages,
        "errors_by_reason": (
            {r["reason"]: r["count"] for r in errors.group_by("reason").len(name="count").iter_rows(named=True)}
            if errors.height else {}
        ),
        "config_hash": manifest.get("config_hash"),
        "libraries": manifest.get("libraries"),
    }
    atomic_write_text(run_path / "report.json", json.dumps(summary, indent=2, default=str))
    lines = ["# Run report", "", "| stage | status | rows in | rows out | errors | seconds |", "|---|---|---|---|---|---|"]
    for name, entry in stages.items():
        out = ", ".join(f"{k}={v}" for k, v in (entry.get("rows") or {}).items())
        lines.append(f"| {name} | {entry.get('status')} | {entry.get('rows_in')} | {out} | {entry.get('errors')} | {entry.get('seconds')} |")
    for name, entry in stages.items():
        for title, section in (entry.get("report") or {}).items():
            lines += ["", f"## {name}: {title}", "", "```json", json.dumps(section, indent=2, default=str), "```"]
    if summary["errors_by_reason"]:
        lines += ["", "## Errors by reason", ""] + [f"- {k}: {v}" for k, v in summary["errors_by_reason"].items()]
    atomic_write_text(run_path / "report.md", "\n".join(lines) + "\n")
    return run_path / "report.md"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)
