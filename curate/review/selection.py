"""Which examples go to review, and in what order: the borderline ones and a random audit share.

Used by `sync.push` (what to send) and by `merge` (what was sent, to know which accepted
examples were audited); apart from both so neither imports the other.
"""

from __future__ import annotations

import polars as pl

from curate.review.config import ReviewConfig
from schemas.ids import content_id


def audit_draw(seed: str, example_id: str) -> float:
    """A uniform number in [0, 1) from the seed and the example id (no row order involved)."""
    return int(content_id("audit", seed, example_id), 16) / 2**64


def select_for_review(examples: pl.DataFrame, review: ReviewConfig) -> pl.DataFrame:
    """example_id, reason, kind and doubt of every example to send (borderline ones and the
    audit share), most doubtful first (`doubt_order`)."""
    rows = []
    for example_id, agreement, grounding in examples.select("example_id", "agreement", "grounding_score").iter_rows():
        reasons = []
        if agreement < review.borderline_agreement:
            reasons.append(f"agreement {agreement:.2f} < {review.borderline_agreement:.2f}")
        if grounding < review.borderline_grounding:
            reasons.append(f"grounding {grounding:.2f} < {review.borderline_grounding:.2f}")
        if reasons:
            rows.append((example_id, "borderline: " + ", ".join(reasons), "borderline"))
        elif audit_draw(review.seed, example_id) < review.audit_fraction:
            rows.append((example_id, "audit: a random sample of auto-accepted examples", "audit"))
    chosen = pl.DataFrame(
        rows, schema={"example_id": pl.String(), "reason": pl.String(), "kind": pl.String()}, orient="row"
    )
    return doubt_order(chosen.join(examples, on="example_id", how="left"))


DOUBT_SCORE = "doubt"


def doubt_order(selected: pl.DataFrame) -> pl.DataFrame:
    """The selection with its `doubt` (higher = more doubtful), sorted most doubtful first.

    Borderline examples come before audit ones (doubt 1 to 1.5 against 0 to 0.5). Within each
    kind, today: the lowest self-consistency agreement first, then the lowest grounding. The
    doubt score of the issue "Beyond the peers" slots in here: when the examples carry a
    `doubt` column (0-1, higher = more doubtful), it replaces the within-kind part."""
    if DOUBT_SCORE in selected.columns:
        within = pl.col(DOUBT_SCORE).fill_null(0.0).clip(0.0, 1.0)
    else:
        within = (1 - pl.col("agreement")).round(4) + (1 - pl.col("grounding_score")) * 1e-5
    kind = pl.when(pl.col("kind") == "borderline").then(1.0).otherwise(0.0)
    return (
        selected.with_columns((kind + within / 2).alias("_doubt"))
        .sort(["_doubt", "example_id"], descending=[True, False])
        .select("example_id", "reason", "kind", pl.col("_doubt").alias("doubt"))
    )


def is_audit(reason: str) -> bool:
    return reason.casefold().startswith("audit")
