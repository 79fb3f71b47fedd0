"""The judge's rubric and request: the teacher scores an example 1..5 per criterion.

Shared by the filter stage's judge step and train's evaluation judge, so a model's answers
are scored exactly as the training examples were. The rubric (criterion -> what a 5 means)
becomes a pydantic model with one 1..5 score per criterion and a short rationale; an example
is kept when its mean score reaches the threshold and no criterion falls below
`min_criterion`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from curate.services.teacher.request import TeacherRequest

DEFAULT_RUBRIC: dict[str, str] = {
    "accuracy": "Every statement is supported by the passage; nothing contradicts it.",
    "completeness": "The response covers what the instruction asks for, using the passage.",
    "format": "The response is well structured and follows the instruction's format.",
    "actionability": "A practitioner could act on the response without further questions.",
}


class JudgeConfig(BaseModel):
    """LLM-as-judge through the teacher backend, for tasks grounding cannot check."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(False, description="Score examples with the teacher as a judge")
    task_types: tuple[str, ...] = Field(
        ("freeform",), description="Task types the judge scores (others pass through)"
    )
    rubric: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_RUBRIC),
        description="Criterion name -> what a score of 5 means (each scored 1..5)",
    )
    threshold: float = Field(3.5, ge=1, le=5, description="Minimum mean rubric score to keep")
    min_criterion: int = Field(2, ge=1, le=5, description="Reject if any criterion scores below this")


JUDGE_SYSTEM = (
    "You are a strict reviewer of training examples for a domain model. Score the example "
    "against the passage on each criterion from 1 (unacceptable) to 5 (excellent):\n{rubric}\n"
    "Judge only from the passage; anything not supported by it lowers accuracy."
)


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


def judge_request(config: JudgeConfig, example: Mapping[str, Any], chunk_text: str) -> TeacherRequest:
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
