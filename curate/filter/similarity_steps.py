"""Decontamination and semantic dedup as steps of the dedup stage.

The dedup stage (GLOBAL: it sees every example at once) runs them around its MinHash dedup:
decontaminate first (so that a clean near-duplicate can still survive a contaminated one), then
exact/near dedup and the dedup index, then semantic dedup on what is left. Each step returns the
examples kept, its rejections in the `Rejection` schema, and a report for the stage's summary.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from schemas.ids import file_sha256, sha256_hex
from schemas.records import Rejection, empty_frame, polars_schema


def _rejections(losers: pl.DataFrame, filter_name: str, reason: str) -> pl.DataFrame:
    return losers.select(
        pl.col("example_id").alias("item_id"), "chunk_id", pl.lit(filter_name).alias("filter"),
        pl.lit(reason).alias("reason"), pl.col("detail").str.slice(0, 2000), pl.lit(False).alias("repairable"),
        "output_json", "refine_round",
    ).cast(polars_schema(Rejection))


def decontaminate_step(examples: pl.DataFrame, config: Any, text: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Examples kept, `contaminated` rejections (filter `decontaminate`), and per-set counts."""
    settings = config.filter.decontaminate
    if not settings.enabled:
        return examples, empty_frame(Rejection), {}
    from curate.filter.decontaminate import EvalIndex, decontaminate, read_eval_sets

    index = EvalIndex.build(settings, read_eval_sets(settings, config.resolve))
    columns = examples.columns
    outcome = decontaminate(examples.with_columns(text.alias("__text")), text="__text", index=index)
    report = {**outcome.report, "examples_checked": examples.height, "rejected": outcome.rejected.height}
    return (outcome.kept.select(columns), _rejections(outcome.rejected, "decontaminate", "contaminated"), report)


def semantic_dedup_step(examples: pl.DataFrame, config: Any) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Examples kept, `semantic_duplicate` rejections (filter `semantic_dedup`), and per-field figures."""
    settings = config.filter.semantic_dedup
    if not settings.enabled or examples.height == 0:
        return examples, empty_frame(Rejection), {}
    from curate.filter.semantic_dedup import semantic_dedup

    outcome = semantic_dedup(examples, settings)
    return (outcome.kept.select(examples.columns),
            _rejections(outcome.rejected, "semantic_dedup", "semantic_duplicate"), outcome.report)


def eval_sets_digest(config: Any) -> str | None:
    """The eval sets' contents, for the dedup stage's fingerprint: an edited eval set re-runs it."""
    settings = config.filter.decontaminate
    if not settings.enabled:
        return None
    parts = []
    for spec in settings.eval_sets:
        path = config.resolve(spec.path)
        parts.append(f"{spec.label}={file_sha256(str(path)) if path.exists() else 'missing'}")
    return sha256_hex(" ".join(parts))
