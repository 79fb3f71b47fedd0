"""`train eval RUN_DIR`: the command mounted by train.cli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="A `train run` output directory")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML with an `eval:` section")] = None,
    max_examples: Annotated[int | None, typer.Option(help="Evaluate on at most this many test rows")] = None,
    test_file: Annotated[
        Path | None,
        typer.Option(
            "--test-file", exists=True, dir_okay=False, help="Held-out rows: chat JSONL or labelled JSONL records"
        ),
    ] = None,
) -> None:
    """Evaluate a fine-tune against the prompted base model and model-free baselines, with
    bootstrap intervals; exit 1 when the gate fails."""
    from train.evaluate.config import load_eval_config
    from train.evaluate.evaluate import evaluate_run

    console = Console()
    eval_config = load_eval_config(config)
    if max_examples is not None:
        eval_config = eval_config.model_copy(update={"max_examples": max_examples})
    if test_file is not None:
        eval_config = eval_config.model_copy(update={"test_file": str(test_file.resolve())})
    report = evaluate_run(run_dir, eval_config)
    for system in report["systems"]:
        scores, ci = system["scores"], system["interval"]
        console.print(
            f"{system['name']:>22} ({system['kind']}): {scores['metric']}={scores['score']:.4f} "
            f"[{ci['low']:.4f}, {ci['high']:.4f}] schema={scores['schema_compliance']:.3f}"
        )
    gate = report["gate"]
    console.print(
        f"gate: {'[green]passed[/green]' if gate['passed'] else '[red]failed[/red]'} {'; '.join(gate['reasons'])}"
    )
    for note in gate["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"report: {run_dir / 'eval' / 'report.md'}")
    raise typer.Exit(0 if gate["passed"] else 1)
