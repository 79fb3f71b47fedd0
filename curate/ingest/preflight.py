"""Fail fast on input that cannot give a single document, before any stage runs.

A run whose `ingest.paths` does not exist used to run every stage on 0 rows and fail a minute
later at validation without naming the path; an empty folder used to exit 0. The check
here costs one `stat` per path and a walk that stops at the first file to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from curate.ingest.config import IngestSettings
from curate.ingest.readers import format_of
from curate.ingest.walk import iter_files


@dataclass
class PathCheck:
    missing: list[tuple[str, Path]] = field(default_factory=list)  # (as configured, resolved)
    has_input: bool = False

    def messages(self) -> list[str]:
        return [f"ingest.paths: {given!r} does not exist (resolved to {resolved})" for given, resolved in self.missing]


def preflight_paths(config: IngestSettings) -> PathCheck:
    """Which configured paths are missing, and whether any file there is one ingest can read."""
    icfg = config.ingest
    check = PathCheck()
    for given in icfg.paths:
        root = config.resolve(given)
        if root.is_file():
            check.has_input = True
        elif root.is_dir():
            check.has_input = check.has_input or any(
                format_of(path) for path in iter_files(root, icfg.include, icfg.exclude)
            )
        else:
            check.missing.append((given, root))
    return check


def no_input_message(config: IngestSettings) -> str:
    icfg = config.ingest
    return (
        f"no input: ingest.paths {list(icfg.paths)} hold no file matching ingest.include "
        f"({', '.join(icfg.include)}); nothing to ingest"
    )


def check_paths_or_exit(config: IngestSettings, console: Console) -> bool:
    """The CLI's preflight: a missing path exits 2 at once, naming it. Returns True when the
    paths exist but hold nothing to read (the caller runs discovery, which records the
    `no_input` error row, and exits 2), after printing a one-line warning."""
    import typer

    check = preflight_paths(config)
    if check.missing:
        for message in check.messages():
            console.print(f"[red]{message}[/red]")
        raise typer.Exit(2)
    if not check.has_input:
        console.print(f"[yellow]{no_input_message(config)}[/yellow]")
        return True
    return False
