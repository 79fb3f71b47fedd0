"""Loading the pipeline config for a command: a config error is one red line and exit 1.
Also the help-text fix every `curate` command shares (`flags_without_type`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from curate.config import ConfigError, PipelineConfig, load_config


def load_or_exit(config_path: Path, console: Console, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    try:
        return load_config(config_path, overrides)
    except ConfigError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None


def flags_without_type() -> None:
    """typer 0.29's rich help shows an on/off flag as `--force <bool>`, as if it took a value
    (its plain-text help does not). Show no type for flags; every other option keeps its own."""
    from typer.core import TyperOption

    if not hasattr(TyperOption, "display_type_rich"):  # other typer versions: nothing to patch
        return
    if getattr(TyperOption.display_type_rich, "_assay_flags", False):
        return
    original = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag and self.metavar is None else original(self, ctx)

    display_type_rich._assay_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
