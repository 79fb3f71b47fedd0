"""Why an example was sent for review, in words a domain expert reads without our code.

"Borderline: 2 of 3 samples said business-continuity, 1 said data-protection (its quote:
"…"); quote found word for word (grounding 1.00)" instead of "agreement 0.67 < 1.00". The
votes come from the teacher samples of the example's chunk and round (`generate/samples`,
`refine/samples`); where those are missing, the agreement figure is explained instead.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from curate.review.labeling import render_candidate
from schemas.tasks import TaskConfig, TaskType, output_model

QUOTE_CHARS = 140


@dataclass(frozen=True)
class Explanation:
    reason: str  # one line: the task list's reason column and the top of the labeling view
    others: str  # what the other samples answered, shown beside the candidate


def explain(
    task: TaskConfig, example: dict[str, Any], samples: list[dict[str, Any]], *, audit: bool
) -> Explanation:
    """The reason and the other samples' answers for one example. `samples`: the teacher
    samples of its chunk (any round; those of the example's round are used), as dicts with
    `sample_id`, `round`, `status`, `output_json`."""
    valid, invalid = _valid_outputs(task, samples, int(example.get("refine_round") or 0))
    candidate = json.loads(example["output_json"])
    own = set(example.get("sample_ids") or [])
    if task.type is TaskType.CLASSIFICATION and valid:
        votes, others = _label_votes(candidate, valid)
    elif valid:
        votes, others = _answer_votes(task, candidate, valid, own, float(example["agreement"]))
    else:
        votes = f"agreement {example['agreement']:.2f} (the share of the teacher's samples that gave this answer)"
        others = "(the samples are not in this run directory)"
    if invalid:
        votes += f"; {invalid} more sample{'s' if invalid > 1 else ''} gave no valid answer"
    parts = [votes, _grounding(float(example["grounding_score"]))]
    if int(example.get("refine_round") or 0):
        parts.append(f"repaired by the teacher in round {example['refine_round']} after the first answers were rejected")
    head = "Audit, a random check of an answer the filters passed" if audit else "Borderline"
    return Explanation(f"{head}: " + "; ".join(parts), others)


def _valid_outputs(task: TaskConfig, samples: list[dict[str, Any]], round_: int) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    model = output_model(task)
    valid: list[tuple[str, dict[str, Any]]] = []
    invalid = 0
    for sample in sorted(samples, key=lambda s: str(s["sample_id"])):
        if int(sample.get("round") or 0) != round_:
            continue
        try:
            parsed = model.model_validate_json(sample["output_json"] or "")
        except (ValidationError, ValueError):
            invalid += 1
            continue
        valid.append((str(sample["sample_id"]), parsed.model_dump(mode="json")))
    return valid, invalid


def _label_votes(candidate: dict[str, Any], valid: list[tuple[str, dict[str, Any]]]) -> tuple[str, str]:
    counts = Counter(str(output["label"]) for _, output in valid)
    mine = str(candidate.get("label"))
    total = len(valid)
    phrase = f"{counts.get(mine, 0)} of {total} sample{'s' if total > 1 else ''} said {mine}"
    lines: list[str] = []
    for label, n in counts.most_common():
        if label == mine:
            continue
        quote = next(str(output.get("quote") or "") for _, output in valid if output["label"] == label)
        phrase += f", {n} said {label} (its quote: {_short(quote)})"
        lines.append(f"{n} sample{'s' if n > 1 else ''} said {label}\nquote: {_short(quote, 600)}")
    return phrase, "\n\n".join(lines) or f"All {total} samples said {mine}."


def _answer_votes(
    task: TaskConfig, candidate: dict[str, Any], valid: list[tuple[str, dict[str, Any]]], own: set[str],
    agreement: float,
) -> tuple[str, str]:
    """Other task types: extraction votes field by field (the candidate is the per-field
    consensus), QA and freeform by answer (the candidate's samples are its `sample_ids`)."""
    total = len(valid)
    if task.type is TaskType.EXTRACTION:
        phrase = f"{total} samples; on average {agreement:.0%} of them gave the same value for each field"
        rest = [out for _, out in valid if out != candidate]
    else:
        rest = [out for sid, out in valid if sid not in own]
        phrase = f"{total - len(rest)} of {total} samples gave this answer"
        if rest:
            phrase += f", {len(rest)} gave another"
    if not rest:
        return phrase, f"All {total} samples gave this answer."
    return phrase, "\n\n".join(f"another sample said:\n{render_candidate(out)}" for out in rest)


def _grounding(score: float) -> str:
    if score >= 1.0:
        return "quote found word for word (grounding 1.00)"
    return f"quote not word for word in the passage: closest match {score:.0%} (grounding {score:.2f})"


def _short(text: str, limit: int = QUOTE_CHARS) -> str:
    text = " ".join(text.split())
    return f'"{text}"' if len(text) <= limit else f'"{text[: limit - 1]}…"'
