"""LLM-as-judge scores for free-form answers, through the teacher backend.

The rubric and the request are the filter stage's (`curate.filters.judge`), so a model's
answers are scored exactly as the training examples were; the cost is counted like any
teacher call and the answers are cached in the evaluation folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schemas.ids import content_id


def judge_answers(
    pipeline_config: str | Path,
    prompts: Sequence[list[dict[str, str]]],
    answers: Sequence[str],
    state_dir: Path,
    system_name: str,
) -> dict[str, Any]:
    """Mean rubric score (scaled to [0, 1]) of each answer to its prompt, and what it cost."""
    from curate.config import load_config
    from curate.filters.judge import judge_request
    from curate.generate.teacher import open_teacher

    config = load_config(pipeline_config)
    judge_config = config.filter.judge
    requests = []
    for prompt, answer in zip(prompts, answers, strict=True):
        # the question is the last user turn (few-shot turns before it are not judged)
        passage = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
        example = {
            "messages": [{"role": "user", "content": passage}, {"role": "assistant", "content": answer}],
            "chunk_id": content_id("eval", system_name, passage),
        }
        requests.append(judge_request(judge_config, example, passage))
    state_dir.mkdir(parents=True, exist_ok=True)
    with open_teacher(config, str(state_dir), purpose="eval-judge") as teacher:
        replies = teacher.ask_many(requests)
    criteria = list(judge_config.rubric)
    scores = [
        sum(getattr(reply.output, name) for name in criteria) / (5 * len(criteria))
        for reply in replies
        if reply.output is not None
    ]
    return {
        "mean": sum(scores) / len(scores) if scores else None,
        "scored": len(scores),
        "failed": len(replies) - len(scores),
        "cost_usd": sum(reply.usage.cost_usd for reply in replies),
        "criteria": criteria,
    }
