"""The funnel of the whole filter package: rows in and out per step, reasons, recovery, cost.

Assembled by the dedup stage from every step's own funnel and rejections (read from the run
directory), and the label balance warning of a classification dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from curate.filter.base import aggregate_funnel, reason_counts
from curate.filter.config import FilterSettings
from curate.filter.dedup_index import index_location
from curate.filter.refine import recovery_rate
from curate.run.rundir import path_exists, read_parquet
from curate.run.stage import StageContext, collect, count
from schemas.artifacts import (
    FILTER_FUNNEL,
    JUDGE_REJECTED,
    JUDGMENTS,
    REFINE_FUNNEL,
    REFINE_REJECTED,
    REFINED_SAMPLES,
    SAMPLES,
    STEP_FUNNEL,
    Artifact,
)
from schemas.records import Rejection, polars_schema

REJECTION_COLUMNS = list(polars_schema(Rejection).names())

def _read(ctx: StageContext[FilterSettings], artifact: Artifact, columns: list[str] | None = None) -> pl.DataFrame | None:
    location = ctx.path(artifact)
    if not path_exists(location):
        return None
    frame = read_parquet(location)
    return frame.select(columns) if columns else frame


def package_report(ctx: StageContext[FilterSettings], dedup_in: pl.DataFrame, survivors: pl.DataFrame,
                   dedup_rejected: pl.DataFrame) -> dict[str, Any]:
    """The funnel of the whole package, from the artifacts of generate, filter, refine, judge."""
    rows: list[dict[str, Any]] = []
    samples = _read(ctx, SAMPLES, ["chunk_id", "status", "cost_usd"])
    cost = {"generate": 0.0, "refine": 0.0, "judge": 0.0}
    chunks_in = 0
    if samples is not None:
        ok = samples.filter(pl.col("status") == "ok").height
        rows.append(_row("generate", "teacher", "sample", "sample", samples.height, ok))
        cost["generate"] = float(samples["cost_usd"].sum() or 0.0)
        chunks_in = samples["chunk_id"].n_unique()
    for stage, handle in (("filter", FILTER_FUNNEL), ("refine", REFINE_FUNNEL)):
        funnel = _read(ctx, handle)
        if funnel is None:
            continue
        steps = funnel.filter(pl.col("step") != "repair").select(STEP_FUNNEL.names())
        for row in funnel_rows(aggregate_funnel(steps)):
            if row["step"] == "render":
                continue
            label = row["step"] if stage == "filter" else f"refine r{row['round']}: {row['step']}"
            rows.append(_row(stage, label, row["unit_in"], row["unit_out"], row["rows_in"], row["rows_out"], row["rejected"]))
        repair = funnel.filter(pl.col("step") == "repair")
        if repair.height:
            rows.append(_row("refine", "repair", "chunk", "chunk", int(repair["rows_in"].sum()), int(repair["rows_out"].sum())))
    refine_samples = _read(ctx, REFINED_SAMPLES, ["cost_usd"])
    if refine_samples is not None:
        cost["refine"] = float(refine_samples["cost_usd"].sum() or 0.0)
    judgments = _read(ctx, JUDGMENTS)
    if judgments is not None and judgments.height:
        cost["judge"] = float(judgments["cost_usd"].sum() or 0.0)
        rows.append(_row("judge", "judge", "example", "example", judgments.height, int(judgments["passed"].sum())))
    def count(reason: str) -> int:
        return int((dedup_rejected["reason"] == reason).sum()) if dedup_rejected.height else 0

    exact, indexed = count("exact_duplicate"), count("indexed_duplicate")
    contaminated, semantic = count("contaminated"), count("semantic_duplicate")
    if ctx.config.filter.decontaminate.enabled:
        rows.append(_row("dedup", "decontaminate", "example", "example", dedup_in.height, dedup_in.height - contaminated))
    minhash_in = dedup_in.height - contaminated
    rows.append(_row("dedup", "exact", "example", "example", minhash_in, minhash_in - exact))
    rows.append(_row("dedup", "near", "example", "example", minhash_in - exact, survivors.height + semantic + indexed))
    if index_location(ctx.config) is not None:
        rows.append(_row("dedup", "earlier datasets", "example", "example", survivors.height + semantic + indexed,
                         survivors.height + semantic))
    if ctx.config.filter.semantic_dedup.enabled:
        rows.append(_row("dedup", "semantic", "example", "example", survivors.height + semantic, survivors.height))
    rejections = [f for f in (_read(ctx, REFINE_REJECTED), _read(ctx, JUDGE_REJECTED)) if f is not None]
    rejections.append(dedup_rejected)
    all_rejected = pl.concat([f.select(REJECTION_COLUMNS) for f in rejections])
    repair_rows = [r for r in rows if r["step"] == "repair"]
    attempted = int(repair_rows[0]["rows_in"]) if repair_rows else 0
    recovered = int(repair_rows[0]["rows_out"]) if repair_rows else 0
    total_cost = sum(cost.values())
    accepted = survivors.height
    labels = label_counts(survivors)
    summary = {
        "chunks_in": chunks_in,
        "examples_accepted": accepted,
        "chunk_yield": round(accepted / chunks_in, 4) if chunks_in else None,
        "chunks_repaired": attempted,
        "recovery_rate": recovery_rate(attempted, recovered),
        "cost_generate_usd": round(cost["generate"], 8),
        "cost_refine_usd": round(cost["refine"], 8),
        "cost_judge_usd": round(cost["judge"], 8),
        "cost_total_usd": round(total_cost, 8),
        "cost_per_accepted_usd": round(total_cost / accepted, 8) if accepted else None,
        "label_warning": label_warning(labels, ctx.config.task.labels, ctx.config.filter.label_imbalance_ratio) or "",
    }
    return {"funnel": rows, "reasons": reason_counts(all_rejected), "summary": summary, "labels": labels}


def _row(stage: str, step: str, unit_in: str, unit_out: str, rows_in: int, rows_out: int,
         rejected: int | None = None) -> dict[str, Any]:
    return {
        "stage": stage, "step": step, "unit": unit_in if unit_in == unit_out else f"{unit_in}->{unit_out}",
        "rows_in": int(rows_in), "rows_out": int(rows_out),
        "rejected": int(rows_in - rows_out if rejected is None else rejected),
        "survival": round(rows_out / rows_in, 4) if rows_in else None,
    }


def funnel_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {**row, "survival": round(row["rows_out"] / row["rows_in"], 4) if row["rows_in"] else None}
        for row in frame.to_dicts()
    ]


def label_counts(examples: pl.DataFrame | pl.LazyFrame) -> dict[str, int]:
    """Examples per label (of a lazy scan, only `label` is read)."""
    frame = examples.lazy()
    if count(frame) == 0:
        return {}
    counts = collect(frame.drop_nulls("label").group_by("label").len().sort("label"))
    return dict(zip(counts["label"].to_list(), counts["len"].to_list(), strict=True))


def label_warning(counts: Mapping[str, int], labels: tuple[str, ...], ratio: float) -> str | None:
    """A warning when a taxonomy label has no examples or the largest outnumbers the smallest."""
    if not labels or not counts:
        return None
    missing = [label for label in labels if counts.get(label, 0) == 0]
    if missing:
        return "no examples for label(s): " + ", ".join(missing)
    high = max(counts.items(), key=lambda kv: kv[1])
    low = min(counts.items(), key=lambda kv: kv[1])
    if high[1] >= ratio * low[1]:
        return f"label imbalance: {high[0]}={high[1]} vs {low[0]}={low[1]} (ratio >= {ratio:g})"
    return None
