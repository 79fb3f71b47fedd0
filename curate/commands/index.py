"""`curate index add|show`: the dedup index of earlier accepted datasets (`filter.dedup_index`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from curate.cli_config import load_or_exit
from schemas.artifacts import SPLIT_EXAMPLES

app = typer.Typer(help="Dedup index of earlier accepted datasets", no_args_is_help=True)
console = Console(stderr=True)
ConfigArg = Annotated[Path, typer.Argument(help="Pipeline YAML (its filter.dedup_index names the index)")]


@app.command()
def add(
    config: ConfigArg,
    artifact: Annotated[str, typer.Option(help="The run's accepted examples")] = SPLIT_EXAMPLES.path,
) -> None:
    """Add this run's accepted dataset to the index: later runs drop examples that repeat it."""
    from curate.filter.dedup_index import add_run_to_index

    try:
        counts = add_run_to_index(load_or_exit(config, console), artifact)
    except (ValueError, FileNotFoundError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(f"{counts['index']}: added {counts['added']} examples from {counts['artifact']} "
                  f"({counts['already_indexed']} already indexed); the index holds {counts['index_rows']}",
                  soft_wrap=True)


@app.command()
def show(config: ConfigArg) -> None:
    """Where the index is and how many examples it holds."""
    from curate.filter.dedup_index import DedupIndex, index_location

    location = index_location(load_or_exit(config, console))
    if location is None:
        console.print("[red]filter.dedup_index is not set in the config[/red]")
        raise typer.Exit(1)
    console.print(f"{location}: {DedupIndex(location).ids().len()} examples", soft_wrap=True)
