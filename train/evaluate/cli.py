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
) -> None:
    """Evaluate a fine-tuned model against a prompted baseline; exit 1 when the gate fails."""
    from train.evaluate.config import load_eval_config
    from train.evaluate.evaluate import evaluate_run

    console = Console()
    eval_config = load_eval_config(config)
    if max_examples is not None:
        eval_config = eval_config.model_copy(update={"max_examples": max_examples})
    report = evaluate_run(run_dir, eval_config)
    for system in report["systems"]:
        scores = system["scores"]
        console.print(
            f"{system['name']:>18}: {scores['metric']}={scores['score']:.4f} "
            f"schema={scores['schema_compliance']:.3f} p50={system['latency_p50_s']:.3f}s"
        )
    gate = report["gate"]
    console.print(
        f"gate: {'[green]passed[/green]' if gate['passed'] else '[red]failed[/red]'} {'; '.join(gate['reasons'])}"
    )
    console.print(f"report: {run_dir / 'eval' / 'report.md'}")
    raise typer.Exit(0 if gate["passed"] else 1)
