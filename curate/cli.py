"""`curate`: thin typer commands over the pipeline functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from curate.cli_config import flags_without_type, load_or_exit
from curate.config import PipelineConfig, parse_config
from curate.ingest.preflight import check_paths_or_exit
from curate.pipeline import all_stages, stage_groups
from curate.run.runner import Runner, RunResult
from curate.run_report import print_status, print_summary, write_run_report

app = typer.Typer(help="Curate a fine-tuning dataset from documents.", no_args_is_help=True)
flags_without_type()  # `--force`, not `--force <bool>`
console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="Pipeline YAML", exists=False)]
ExecutorOpt = Annotated[str | None, typer.Option("--executor", help="local | ray")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Re-run stages even when unchanged")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars")]


def _load(config_path: Path, executor: str | None = None) -> PipelineConfig:
    return load_or_exit(config_path, console, {"executor.kind": executor} if executor else None)


def _finish(config: PipelineConfig, result: RunResult) -> None:
    write_run_report(config.run_path)
    stopped = result.stopped
    if stopped is not None:
        console.print(f"[yellow]stopped at {stopped.name}: {stopped.message}[/yellow]")
    if result.errors:
        console.print(f"[yellow]finished with {result.errors} input errors — see `curate status {config.run_path}`[/yellow]")
    exported = stopped is None and any(s.name == "export" for s in result.stages)
    print_summary(config.run_path, console, _next_command(config) if exported else None)
    raise typer.Exit(result.exit_code)


def _next_command(config: PipelineConfig) -> str:
    """What to run after an export: `train run` on the train config beside the pipeline's, if any."""
    beside = Path(config.base_dir) / "train.yaml"
    target = beside if beside.exists() else Path("TRAIN.yaml")
    try:
        shown = str(target.resolve().relative_to(Path.cwd().resolve())) if beside.exists() else str(target)
    except ValueError:
        shown = str(target)
    return f"train run {shown}" + ("" if beside.exists() else f"  (with data: {config.run_path / config.export.dir})")


def _preflight(config: PipelineConfig) -> None:
    """Checks before any stage (teacher key, endpoint, model price, cassette): when one fails,
    nothing runs and the command exits with code 5, naming every problem."""
    from curate.services.teacher.preflight import EXIT_PREFLIGHT, run_preflight, teacher_preflight

    problems = run_preflight(config, [teacher_preflight])
    for problem in problems:
        console.print(f"[red]preflight: {problem}[/red]")
    if problems:
        raise typer.Exit(EXIT_PREFLIGHT)


def _run(config: PipelineConfig, groups: list[str] | None, force: bool, quiet: bool) -> RunResult:
    """Run stages; a stage that fails is reported in one message (its traceback is in the manifest)."""
    stages = all_stages() if groups is None else [s for g in groups for s in stage_groups()[g]]
    runner = Runner(config, stages, console=console, show_progress=not quiet, force=force)
    try:
        return runner.run()
    except Exception as error:
        console.print(f"[red]{type(error).__name__}: {error}[/red]")
        console.print(f"[dim]traceback: {config.run_path / 'manifest.json'}; status: curate status {config.run_path}[/dim]")
        write_run_report(config.run_path)
        raise typer.Exit(1) from None


@app.command()
def run(
    config: ConfigArg,
    executor: ExecutorOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the teacher cost estimate only")] = False,
) -> None:
    """Run every stage of the pipeline (skipping what is unchanged)."""
    cfg = _load(config, executor)
    if check_paths_or_exit(cfg, console):  # missing path: exit 2 now; no input: discovery records it, exit 2
        _finish(cfg, _run(cfg, ["ingest"], force, quiet))
    if dry_run:
        from curate.estimate import print_estimate

        print_estimate(cfg, console)
        raise typer.Exit(0)
    _preflight(cfg)
    _finish(cfg, _run(cfg, None, force, quiet))


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="A pipeline YAML, or files and folders to ingest")],
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (without a config)")] = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Discover, read and chunk documents."""
    if len(paths) == 1 and paths[0].suffix in {".yaml", ".yml"} and out is None:
        cfg = _load(paths[0])
    else:
        if out is None:
            console.print("[red]without a config, --out DIR is required[/red]")
            raise typer.Exit(1)
        cfg = parse_config(
            {
                "run_dir": str(out.resolve()),
                "ingest": {"paths": [str(p.resolve()) for p in paths]},
                "task": {"type": "freeform", "instruction": "(ingest only)"},
            },
            source="command line",
        )
    check_paths_or_exit(cfg, console)  # a missing path exits 2 at once, naming it
    _finish(cfg, _run(cfg, ["ingest"], force, quiet))


def _group_command(group: str, help_text: str) -> None:
    def command(config: ConfigArg, executor: ExecutorOpt = None, force: ForceOpt = False, quiet: QuietOpt = False) -> None:
        cfg = _load(config, executor)
        if group in ("generate", "filter"):  # the stages that ask the teacher
            _preflight(cfg)
        _finish(cfg, _run(cfg, [group], force, quiet))

    command.__doc__ = help_text
    app.command(name=group)(command)


_group_command("redact", "Redact personal data and secrets from chunks before the teacher sees them.")
_group_command("generate", "Ask the teacher for examples grounded in each chunk.")
_group_command("filter", "Filter, refine and deduplicate the generated examples.")
_group_command("dataset", "Validate, split and export the dataset.")


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="A run directory")],
    full: Annotated[bool, typer.Option("--full", help="Every stage's report section and the input errors")] = False,
) -> None:
    """One screen on a run: stages, rows in and out, exported examples, rejections, cost, warnings."""
    raise typer.Exit(print_status(run_dir, Console(), full=full))


def _register_package_commands() -> None:
    """Commands owned by stage packages: `curate review ...`, `curate index ...`, `curate audit`."""
    from curate.commands.audit import audit
    from curate.commands.index import app as index_app
    from curate.commands.review import app as review_app

    app.add_typer(review_app, name="review", help="Expert review in Label Studio")
    app.add_typer(index_app, name="index", help="Dedup index of earlier accepted datasets")
    app.command(name="audit")(audit)


_register_package_commands()


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="curate")


if __name__ == "__main__":  # pragma: no cover
    main()
