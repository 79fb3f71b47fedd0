"""The readable report every run leaves: counts per stage, rejection reasons, cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from curate.run.rundir import RunDir, atomic_write_text
from curate.run_report_html import cost_line, error_frame, rejection_line, run_summary, write_html_report


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


def print_summary(run_path: Path, console: Console, next_command: str | None = None) -> None:
    """The closing lines of a run (and the head of `curate status`): exported examples per
    split and where, rejections, cost, warnings, the HTML report and the next command."""
    run_path = run_path.resolve()
    summary = run_summary(run_path)
    rows = summary["rows"]
    if rows:
        where = _shown(Path(summary["export_dir"])) if summary.get("export_dir") else "?"
        console.print(f"[bold]dataset[/bold]   {sum(rows.values())} examples "
                      f"({', '.join(f'{s} {n}' for s, n in rows.items())}) in {where}")
    console.print(f"[bold]rejected[/bold]  {rejection_line(summary)}")
    console.print(f"[bold]cost[/bold]      {cost_line(summary)}")
    if summary["input_errors"]:
        console.print(f"[bold]errors[/bold]    {summary['input_errors']} bad input file(s)/record(s): "
                      f"curate status {_shown(run_path)} --full")
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning[/yellow]   {warning}")
    html_report = run_path / "report.html"
    if html_report.exists():
        console.print(f"[bold]report[/bold]    {html_report.as_uri()}  (also report.md)")
    if next_command:
        console.print(f"[bold]next[/bold]      {next_command}")


def _shown(path: Path) -> str:
    """A path as short as it can be said: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def print_status(run_path: Path, console: Console, full: bool = False) -> int:
    """One screen by default (stages, summary, errors by reason); `full` adds every stage's
    report section and the first 50 input errors."""
    run_dir = RunDir(run_path)
    manifest = run_dir.load_manifest()
    if not manifest.get("stages"):
        console.print(f"[red]{run_path}: no manifest — nothing has run here[/red]")
        return 1
    console.print(stage_table(manifest))
    if not full:
        print_summary(run_path, console)
        for name, entry in manifest["stages"].items():
            report = entry.get("report") or {}
            pending = report.get("pending")  # requests still to send: what to act on first
            if pending not in ({}, [], None):
                console.print(report_section_table(f"{name}: pending", pending))
            if name == "review" and any((report.get("counts") or {}).values()):
                console.print(report_section_table("review: counts", report["counts"]))
        errors = error_frame(run_dir)
        if errors.height:
            counts = errors.group_by("stage", "reason").len().sort("len", descending=True)
            console.print("[bold]errors[/bold]    " + ", ".join(f"{s}/{r} {n}" for s, r, n in counts.iter_rows()))
        console.print(f"[dim]every report section and error: curate status {_shown(run_path)} --full[/dim]")
        return 0
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
    """report.json, report.md and report.html in the run directory, from the manifest."""
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
    write_html_report(run_path)
    return run_path / "report.md"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)
