"""LLM-as-judge for free-form tasks, through the same teacher client (cost counted alike).

The rubric (criterion -> what a 5 means) becomes a pydantic model with one 1..5 score per
criterion and a short rationale; an example is kept when its mean score reaches the
threshold and no criterion falls below `min_criterion`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import polars as pl
from pydantic import BaseModel, Field, create_model

from curate.filters.config import JudgeConfig
from curate.filters.refine import TeacherLike
from schemas.records import Rejection

JUDGE_SYSTEM = (
    "You are a strict reviewer of training examples for a domain model. Score the example "
    "against the passage on each criterion from 1 (unacceptable) to 5 (excellent):\n{rubric}\n"
    "Judge only from the passage; anything not supported by it lowers accuracy."
)

JUDGMENT_SCHEMA = pl.Schema({
    "example_id": pl.String(), "chunk_id": pl.String(), "scores_json": pl.String(),
    "mean_score": pl.Float64(), "passed": pl.Boolean(), "cost_usd": pl.Float64(),
    "cached": pl.Boolean(), "error": pl.String(),
})


def rubric_model(rubric: Mapping[str, str]) -> type[BaseModel]:
    return _rubric_model(json.dumps(dict(rubric), sort_keys=True))


@lru_cache(maxsize=16)
def _rubric_model(rubric_json: str) -> type[BaseModel]:
    rubric = json.loads(rubric_json)
    fields: dict[str, Any] = {
        name: (int, Field(ge=1, le=5, description=meaning)) for name, meaning in rubric.items()
    }
    fields["rationale"] = (str, Field(description="One or two sentences on the weakest point"))
    return create_model("JudgeScores", **fields)


def judge_request(config: JudgeConfig, example: Mapping[str, Any], chunk_text: str) -> Any:
    from curate.generate.teacher import TeacherRequest

    rubric = "\n".join(f"- {name}: {meaning}" for name, meaning in config.rubric.items())
    messages = example["messages"]
    prompt = next((m["content"] for m in messages if m["role"] == "user"), "")
    answer = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), "")
    instruction = (
        "Score this training example.\n"
        f"<instruction>\n{prompt}\n</instruction>\n<response>\n{answer}\n</response>"
    )
    return TeacherRequest(
        chunk_id=example["chunk_id"], system=JUDGE_SYSTEM.format(rubric=rubric),
        chunk_text=chunk_text, instruction=instruction,
        response_model=rubric_model(config.rubric), sample_index=0, round=0, purpose="judge",
    )


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
