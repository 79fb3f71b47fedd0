"""Loading the pipeline config for a command: a config error is one red line and exit 1.
The help-text fix every command shares is `assay.cli_help.flags_without_type` (re-exported)."""


from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from assay.cli_help import flags_without_type
from assay.errors import ConfigError
from curate.config import PipelineConfig, load_config


def load_or_exit(config_path: Path, console: Console, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    try:
        return load_config(config_path, overrides)
    except ConfigError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None


__all__ = ["flags_without_type", "load_or_exit"]
