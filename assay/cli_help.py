"""The help-text fix every `curate` and `train` command shares."""

from __future__ import annotations

from typing import Any


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
