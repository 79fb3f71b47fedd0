"""Comparing run directories: every artifact of every stage, after a canonical sort."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from curate.config import PipelineConfig, parse_config


def toy_config(run_dir: str | Path, n: int = 200, **extra: object) -> PipelineConfig:
    return parse_config({"name": f"toy-{n}", "run_dir": str(run_dir),
                         "task": {"type": "freeform", "instruction": "x"}, **extra})


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in an order that depends only on their content (any dtype, nested too)."""
    if frame.height == 0:
        return frame
    return frame.with_columns(pl.Series("__h", frame.hash_rows(seed=0))).sort("__h", maintain_order=True).drop("__h")


# Per-shard summaries: each shard of a stage writes its own rows (funnel counts, the list
# of recognizers in use), under the local executor with several partitions too; their
# consumers aggregate them. Compared after that aggregation.
COUNT_COLUMNS = ("rows_in", "rows_out", "rejected", "skipped", "cost_usd")


def normalise_summary(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    if name.endswith("/funnel"):
        counts = [c for c in COUNT_COLUMNS if c in frame.columns]
        keys = [c for c in frame.columns if c not in counts]
        return frame.group_by(keys).agg(pl.col(c).sum() for c in counts).select(frame.columns)
    if name.endswith("/recognizers"):
        return frame.unique()
    return frame


def artifacts(run_dir: Path, only: set[str] | None = None) -> dict[str, pl.DataFrame]:
    return {
        f"{path.parent.name}/{path.stem}": pl.read_parquet(path)
        for path in sorted(run_dir.glob("*/*.parquet"))
        if not path.parent.name.startswith(".") and not path.parent.name.endswith(".state")
        and (only is None or path.parent.name in only)
    }


def assert_same_artifacts(
    reference: Path, other: Path, ignore_columns: frozenset[str] = frozenset(), only: set[str] | None = None
) -> list[str]:
    """Every artifact (of the stages in `only`) equal in both run directories, after a
    canonical sort; returns the artifact names compared."""
    ref, got = artifacts(reference, only), artifacts(other, only)
    assert sorted(ref) == sorted(got), (sorted(ref), sorted(got))
    assert ref, f"no artifacts in {reference}"
    for name, frame in ref.items():
        keep = [c for c in frame.columns if c not in ignore_columns]
        a = canonical(normalise_summary(name, frame.select(keep)))
        b = canonical(normalise_summary(name, got[name].select(keep)))
        assert a.schema == b.schema, (name, a.schema, b.schema)
        assert a.equals(b), f"{name} differs:\n{a}\n{b}"
    return sorted(ref)
