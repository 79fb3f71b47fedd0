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
        bool,
        typer.Option(
            "--strict",
            help="Also fail when a re-scan of the payloads still finds entities, or when an entity type "
            "was not checked at all (no detector for it, or --no-rescan)",
        ),
    ] = False,
    no_rescan: Annotated[bool, typer.Option("--no-rescan", help="Skip re-scanning payloads with the detector")] = False,
) -> None:
    """Print what left the machine (provider, model, requests, tokens, cost), prove from the
    recorded payloads that no value the redactor replaced was sent, and say per entity type
    what was checked, by which detector, and what was not checked at all. Exit 1 on a leak or
    an edited log (with --strict also on a residual finding or an unchecked type)."""
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
        console.print("  (that covers the values the redactor found; a value its detectors missed is in no mapping:"
                      " the re-scan and the table below say what they could and could not see)")
    if result.values_too_short:
        console.print(f"  ({result.values_too_short} redacted value(s) under 4 characters not searched: they would match by chance)")
    if result.residual:
        colour = "red" if strict else "yellow"
        listed = ", ".join(f"{k}={v}" for k, v in result.residual.items())
        console.print(f"[{colour}]re-scan of payloads still finds: {listed}[/{colour}]")
    else:
        console.print("re-scan of payloads: nothing detected")
    print_coverage(result, console, strict=strict)
    console.print("[green]audit passed[/green]" if result.ok(strict) else "[red]audit FAILED[/red]")


def print_coverage(result: AuditResult, console: Console, *, strict: bool = False) -> None:
    """Per entity type: policy, the detectors of the re-scan, values searched, residual, status."""
    if not result.coverage:
        return
    table = Table(title="What was checked, per entity type (leak check: exact search for the redactor's values; "
                  "re-scan: the detectors listed, with their recall)")
    for column in ("entity type", "policy", "detectors (re-scan)", "values searched", "residual", "status"):
        table.add_column(column, overflow="fold")
    for c in result.coverage:
        status = f"[red]{c.status}[/red]" if c.status in ("NOT CHECKED", "not re-scanned") else c.status
        table.add_row(c.entity, c.policy, ", ".join(c.detectors) or "-", str(c.values_searched), str(c.residual), status)
    console.print(table)
    if result.unchecked:
        colour = "red" if strict else "yellow"
        console.print(
            f"[{colour}]NOT CHECKED in the payloads: {', '.join(result.unchecked)}: the audit says nothing about "
            f"these (configure redact.ner_model for ORGANIZATION/LOCATION, or narrow redact.entities)[/{colour}]"
        )
    if result.not_requested:
        console.print(f"not requested (outside redact.entities), not checked: {', '.join(result.not_requested)}")
