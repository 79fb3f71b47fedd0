"""`curate audit RUN_DIR` (mounted by curate.cli): what was sent, to whom, and the leak check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from curate.redact.audit import AuditResult


def audit(
    run_dir: Annotated[Path, typer.Argument(help="A run directory")],
    strict: Annotated[
        bool, typer.Option("--strict", help="Also fail when a re-scan of the payloads still finds entities")
    ] = False,
    no_rescan: Annotated[bool, typer.Option("--no-rescan", help="Skip re-scanning payloads with the detector")] = False,
) -> None:
    """Print what left the machine (provider, model, requests, tokens, cost) and prove from the
    recorded payloads that no redacted value was sent. Exit 1 on a leak or an edited log."""
    from curate.redact.audit import run_audit  # loads Presidio: only when auditing

    console = Console()
    result = run_audit(run_dir, rescan_payloads=not no_rescan)
    print_audit(result, console, strict=strict)
    raise typer.Exit(0 if result.ok(strict) else 1)


def print_audit(result: AuditResult, console: Console, *, strict: bool = False) -> None:
    table = Table(title="Requests by provider and model (sent: left the machine; local: cache/replay)")
    table.add_column("provider", overflow="fold")
    table.add_column("model", overflow="fold")
    for column in ("sent", "local", "in tok", "out tok", "cache r/w", "USD"):
        table.add_column(column, justify="right", no_wrap=True)
    for (provider, model), t in sorted(result.per_target.items()):
        table.add_row(
            provider,
            model,
            str(int(t["sent"])),
            str(int(t["local"])),
            str(int(t["input_tokens"])),
            str(int(t["output_tokens"])),
            f"{int(t['cache_read_tokens'])}/{int(t['cache_write_tokens'])}",
            f"{t['cost_usd']:.4f}",
        )
    console.print(table)
    console.print(f"requests logged: {result.requests}, sent off the machine: {result.sent}")
    if result.redact_enabled is False:
        console.print("[yellow]redaction was disabled for this run: chunks were sent as written[/yellow]")
    for problem in result.problems:
        console.print(f"[red]{problem}[/red]")
    if result.hash_mismatches:
        console.print(f"[red]payload hash mismatch on log lines {result.hash_mismatches[:20]}: the log was altered[/red]")
    console.print(
        f"leak check: {result.values_checked} redacted values searched in {result.payloads_checked} payloads"
    )
    if result.leaks:
        console.print(f"[red]LEAK: {len(result.leaks)} redacted value(s) found in payloads[/red]")
        for leak in result.leaks[:50]:
            console.print(f"[red]  log line {leak.line}: chunk {leak.chunk_id}: {leak.entity} ({leak.placeholder or 'masked'})[/red]")
    else:
        console.print("[green]no redacted value appears in any recorded payload[/green]")
    if result.residual:
        colour = "red" if strict else "yellow"
        listed = ", ".join(f"{k}={v}" for k, v in result.residual.items())
        console.print(f"[{colour}]re-scan of payloads still finds: {listed}[/{colour}]")
    else:
        console.print("re-scan of payloads: nothing detected")
    console.print("[green]audit passed[/green]" if result.ok(strict) else "[red]audit FAILED[/red]")
