"""Config keys a pydantic model accepts, for "did you mean ...?" on a mistyped key.

Shared by the pipeline config (curate) and the train config (train): both forbid unknown keys,
and pydantic's "Extra inputs are not permitted" does not say which key was meant.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (`Section`, `Section | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _keys(model: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
    """Accepted key (alias when there is one) -> the nested model it holds, if any."""
    return {(field.alias or name): _model_of(field.annotation) for name, field in model.model_fields.items()}


def all_keys(model: type[BaseModel], prefix: str = "", hidden: frozenset[str] = frozenset()) -> list[str]:
    """Every dotted key of a model and its nested sections."""
    out = []
    for key, nested in _keys(model).items():
        if key in hidden:
            continue
        dotted = f"{prefix}{key}"
        out.append(dotted)
        if nested is not None:
            out += all_keys(nested, f"{dotted}.")
    return out


def did_you_mean(model: type[BaseModel], loc: Sequence[str | int], hidden: frozenset[str] = frozenset()) -> str | None:
    """The valid dotted key nearest to the unknown key at `loc`: first among its siblings
    (`chunk.max_token` -> `chunk.max_tokens`), then anywhere by its last part
    (`ingest.max_tokens` -> `chunk.max_tokens`)."""
    if not loc or not all(isinstance(part, str) for part in loc):
        return None
    parts = [str(part) for part in loc]
    node: type[BaseModel] | None = model
    for part in parts[:-1]:
        node = _keys(node).get(part) if node is not None else None
    if node is not None:
        siblings = [k for k in _keys(node) if k not in hidden]
        close = difflib.get_close_matches(parts[-1], siblings, n=1, cutoff=0.6)
        if close:
            return ".".join([*parts[:-1], close[0]])
    everywhere = all_keys(model, hidden=hidden)
    by_leaf: dict[str, list[str]] = {}
    for key in everywhere:
        by_leaf.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    close = difflib.get_close_matches(parts[-1], list(by_leaf), n=1, cutoff=0.75)
    if close:
        return " or ".join(by_leaf[close[0]][:3])
    close = difflib.get_close_matches(".".join(parts), everywhere, n=1, cutoff=0.6)
    return close[0] if close else None
