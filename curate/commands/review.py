"""`curate review push|pull|server`: expert review in Label Studio."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from curate.cli_config import load_or_exit
from curate.review.client import ReviewServerError

app = typer.Typer(help="Expert review in Label Studio", no_args_is_help=True)
console = Console(stderr=True)
ConfigArg = Annotated[Path, typer.Argument(help="Pipeline YAML")]


@app.command()
def push(config: ConfigArg) -> None:
    """Send borderline and audit examples to Label Studio (idempotent, resumable)."""
    from curate.review.sync import push as do_push

    cfg = load_or_exit(config, console)
    try:
        report = do_push(cfg)
    except (ReviewServerError, FileNotFoundError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"project {report.project_id} {report.project_title!r} at {report.url} "
        f"({'created' if report.project_created else 'found'}): {report.selected} selected "
        f"({report.borderline} borderline, {report.audit} audit), {report.already_present} already there, "
        f"{report.imported} imported in {report.batches} batches"
    )
    tab = f"?tab={report.view_id}" if report.view_id is not None else ""
    console.print(f"review them, most doubtful first, at {report.url}/projects/{report.project_id}/data{tab}")


@app.command()
def pull(config: ConfigArg) -> None:
    """Fetch reviewers' annotations and store the resolved decisions for the review stage."""
    from curate.review.sync import pull as do_pull

    cfg = load_or_exit(config, console)
    try:
        report = do_pull(cfg)
    except ReviewServerError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(json.dumps(asdict(report), indent=2))
    if report.invalid_corrections:
        console.print(
            f"[yellow]{len(report.invalid_corrections)} corrections were refused and not applied (the example "
            "stays pending): fix them in Label Studio and pull again[/yellow]"
        )
        for item in report.invalid_corrections:
            console.print(f"[yellow]  {report.url}/projects/{report.project_id}/data?task={item['task_id']}: {item['error']}[/yellow]")
    counts = report.counts
    if counts:
        console.print(
            f"{counts['accepted']} accepted, {counts['corrected']} corrected, {counts['rejected']} rejected, "
            f"{counts['pending']} pending, {counts['never_sent']} never sent; audit {report.audit['status']} "
            f"({report.audit['message']})"
        )
    console.print("apply them with `curate run CONFIG` (the review stage reads the decisions)")


@app.command()
def server(
    action: Annotated[str, typer.Argument(help="start | stop | status | install")],
    port: Annotated[int | None, typer.Option(help="Port (default 8080, or a free one if busy)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Label Studio data folder")] = None,
) -> None:
    """Run a local Label Studio in its own environment (.ls-venv)."""
    from curate.review import server as srv

    argv = [action] + (["--port", str(port)] if port else []) + (["--data-dir", str(data_dir)] if data_dir else [])
    raise typer.Exit(srv.main(argv))
