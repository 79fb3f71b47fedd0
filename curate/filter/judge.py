"""The judge step of the filter stage: keep or reject examples by the teacher's rubric scores.

The rubric, its request and its config are the teacher service's (`curate.services.teacher.judge`),
shared with train's evaluation judge.

The rubric (criterion -> what a 5 means) becomes a pydantic model with one 1..5 score per
criterion and a short rationale; an example is kept when its mean score reaches the
threshold and no criterion falls below `min_criterion`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from curate.filter.refine import TeacherLike
from curate.services.teacher.judge import JudgeConfig, judge_request
from schemas.records import Rejection


@dataclass
class JudgeOutcome:
    scores: dict[str, float] = field(default_factory=dict)  # example_id -> mean/5
    rejections: list[Rejection] = field(default_factory=list)
    judgments: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None


def judge(examples: pl.DataFrame, chunks: Mapping[str, str], config: JudgeConfig, teacher: TeacherLike) -> JudgeOutcome:
    """Score every example in `examples` (the caller selects the task types to judge)."""
    outcome = JudgeOutcome()
    rows = list(examples.iter_rows(named=True))
    if not rows:
        return outcome
    answers = teacher.ask_many([judge_request(config, row, chunks.get(row["chunk_id"], "")) for row in rows])
    for row, answer in zip(rows, answers, strict=True):
        cost = float(answer.usage.cost_usd)
        if answer.error_kind == "budget":
            outcome.stopped = answer.error or "teacher budget reached"
        if answer.output is None:
            detail = f"judge gave no scores: {answer.error}"
            outcome.rejections.append(_rejection(row, "judge_failed", detail, repairable=False))
            outcome.judgments.append(_judgment(row, {}, 0.0, False, cost, answer))
            continue
        scores = {name: int(getattr(answer.output, name)) for name in config.rubric}
        mean = sum(scores.values()) / len(scores)
        low = [name for name, score in scores.items() if score < config.min_criterion]
        passed = mean >= config.threshold and not low
        outcome.judgments.append(_judgment(row, {**scores, "rationale": answer.output.rationale}, mean, passed, cost, answer))
        if passed:
            outcome.scores[row["example_id"]] = mean / 5
        else:
            detail = f"mean {mean:.2f} (threshold {config.threshold})" + (f"; low: {', '.join(low)}" if low else "")
            outcome.rejections.append(_rejection(row, "judge_below_threshold", detail, repairable=True))
    return outcome


def _rejection(row: Mapping[str, Any], reason: str, detail: str, *, repairable: bool) -> Rejection:
    return Rejection(
        item_id=row["example_id"], chunk_id=row["chunk_id"], filter="judge", reason=reason,
        detail=detail, repairable=repairable, output_json=row["output_json"],
        refine_round=int(row.get("refine_round") or 0),
    )


def _judgment(row: Mapping[str, Any], scores: dict[str, Any], mean: float, passed: bool, cost: float, answer: Any) -> dict[str, Any]:
    return {
        "example_id": row["example_id"], "chunk_id": row["chunk_id"],
        "scores_json": json.dumps(scores, sort_keys=True), "mean_score": round(mean, 4),
        "passed": passed, "cost_usd": cost, "cached": bool(answer.cached), "error": answer.error,
    }
