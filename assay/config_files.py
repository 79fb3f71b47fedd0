"""Reading a YAML config file and turning pydantic's errors into lines that name the key.

Shared by `curate`'s pipeline config and `train`'s config, so both say the same things in
the same words: the file, the dotted key, the problem, and for an unknown key the nearest
valid one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from assay.config_keys import did_you_mean
from assay.errors import ConfigError


def read_mapping(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The top-level mapping of a YAML file, with dotted `overrides` applied (`a.b: value`)."""
    config_path = Path(path)
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: no such config file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{config_path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the top level must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return data


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def error_lines(error: ValidationError, model: type[BaseModel], hidden: frozenset[str] = frozenset()) -> list[str]:
    """One `  key: message` line per problem; an unknown key names the nearest valid one."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = str(item["msg"])
        if item["type"] == "extra_forbidden":
            guess = did_you_mean(model, item["loc"], hidden=hidden)
            message = "unknown key" + (f"; did you mean {guess}?" if guess else "")
        lines.append(f"  {key}: {message}")
    return lines
