"""The review stage: reviewers' decisions flow back into the dataset.

GLOBAL over `dedup/examples`. Where `<run_dir>/review.state/decisions.parquet` (written by
`curate review pull`) has a decision, it wins: rejected examples leave (with a Rejection),
corrections replace the output and the chat, and the reviewer and time go into the
lineage columns. Elsewhere the config's policy applies (`review.pending`,
`review.unreviewed`, the audit); examples sent but not decided are marked "pending". With
no decisions at all the stage passes through. Its report (`summary`) holds the counts that
`curate status`, report.md and the dataset card show.
Decisions change outside the pipeline: the files `curate review push/pull` keep in
`review.state/` are the stage's `external` input, so new decisions re-run it and none skip it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from curate.review.config import ReviewSettings
from curate.review.merge import apply_review
from curate.review.sync import STATE_DIR, read_decisions, read_pushed
from curate.run.stage import Stage, StageContext, StepKind, collect
from schemas.artifacts import (
    DEDUPED,
    REVIEW_DECISIONS,
    REVIEW_PUSHED,
    REVIEW_REJECTED,
    REVIEW_SUMMARY,
    REVIEWED,
)
from schemas.ids import file_sha256, sha256_hex


def review_stage(batch: pl.DataFrame, ctx: StageContext[ReviewSettings]) -> dict[str, pl.DataFrame]:
    run_path = Path(ctx.run_dir)
    examples, rejected, report = apply_review(
        batch, read_decisions(run_path), read_pushed(run_path), ctx.config.review
    )
    ctx.write_json("merge.json", report)
    summary = REVIEW_SUMMARY.frame([{"report_json": json.dumps(report)}])
    return {"examples": examples, "rejected": rejected, "summary": summary}


def decisions_digest(config: ReviewSettings) -> str:
    """The review state the stage reads besides its input (pulled decisions, pushed ids)."""
    state = config.run_path / STATE_DIR
    return sha256_hex(" ".join(file_sha256(str(state / side.name)) if (state / side.name).exists() else "-"
                               for side in (REVIEW_DECISIONS, REVIEW_PUSHED)))


def summarize(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    """The review counts (accepted, corrected, rejected, pending, never sent), what was left
    out, and the audit: the figures `curate status`, report.md and the dataset card show."""
    summary = collect(outputs["summary"].select("report_json"))
    report = json.loads(summary.item(0, 0)) if summary.height else {}
    return {
        "counts": report.get("counts", {}),
        "left out": report.get("left_out", {}),
        "audit": report.get("audit", {}),
    }


STAGES: list[Stage] = [
    Stage(
        name="review",
        kind=StepKind.GLOBAL,
        fn=review_stage,
        inputs=(DEDUPED,),
        outputs=(REVIEWED, REVIEW_REJECTED, REVIEW_SUMMARY),
        side_files=(REVIEW_DECISIONS, REVIEW_PUSHED),
        config_sections=("review", "task"),
        summarize=summarize,
        description="apply expert review decisions from Label Studio",
        external=decisions_digest,  # new decisions pulled from Label Studio re-run it
    )
]
