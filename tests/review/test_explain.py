"""Reasons in plain words, from the teacher samples: no server needed."""

from __future__ import annotations

import json

from curate.review.explain import explain
from schemas.tasks import TaskConfig

CLASSIFY = TaskConfig(type="classification", instruction="Which area?", labels=("access", "incident", "continuity"))
QA = TaskConfig(type="qa", instruction="Ask and answer.")


def _sample(sid: str, output: dict | str | None, round_: int = 0) -> dict:
    text = output if isinstance(output, str) or output is None else json.dumps(output)
    return {"sample_id": sid, "round": round_, "status": "ok", "output_json": text}


def _example(output: dict, agreement: float, grounding: float = 1.0, sample_ids: tuple[str, ...] = (), round_: int = 0) -> dict:
    return {"output_json": json.dumps(output), "agreement": agreement, "grounding_score": grounding,
            "sample_ids": list(sample_ids), "refine_round": round_}


def test_borderline_classification_says_what_each_sample_said() -> None:
    mine = {"label": "continuity", "quote": "replicated to Antwerp."}
    samples = [
        _sample("s1", mine), _sample("s2", mine),
        _sample("s3", {"label": "access", "quote": "one copy of every backup is kept offline"}),
        _sample("s4", '{"label": "nonsense"}'),  # gave no valid answer
        _sample("r1", {"label": "incident", "quote": "a later round"}, round_=1),  # another round: not counted
    ]
    words = explain(CLASSIFY, _example(mine, 2 / 3, 0.93), samples, audit=False)
    assert words.reason == (
        'Borderline: 2 of 3 samples said continuity, 1 said access (its quote: "one copy of every backup is kept '
        'offline"); 1 more sample gave no valid answer; quote not word for word in the passage: closest match 93% '
        "(grounding 0.93)"
    )
    assert words.others == '1 sample said access\nquote: "one copy of every backup is kept offline"'


def test_audit_and_refined_and_missing_samples() -> None:
    mine = {"label": "access", "quote": "accounts are reviewed"}
    audit = explain(CLASSIFY, _example(mine, 1.0), [_sample(f"s{n}", mine) for n in range(3)], audit=True)
    assert audit.reason == (
        "Audit, a random check of an answer the filters passed: 3 of 3 samples said access; "
        "quote found word for word (grounding 1.00)"
    )
    assert audit.others == "All 3 samples said access."
    refined = explain(CLASSIFY, _example(mine, 1.0, round_=1), [_sample("r", mine, round_=1)], audit=False)
    assert refined.reason.startswith("Borderline: 1 of 1 sample said access") and "repaired by the teacher in round 1" in refined.reason
    unknown = explain(CLASSIFY, _example(mine, 2 / 3), [], audit=False)
    assert unknown.reason.startswith("Borderline: agreement 0.67 (the share of the teacher's samples")


def test_qa_shows_the_other_answer() -> None:
    mine = {"question": "Who reviews accounts?", "answer": "The system owner.", "quote": "The system owner reviews"}
    other = {"question": "Who reviews accounts?", "answer": "The CISO.", "quote": "the CISO"}
    words = explain(QA, _example(mine, 2 / 3, sample_ids=("a", "b")), [_sample("a", mine), _sample("b", mine), _sample("c", other)], audit=False)
    assert words.reason.startswith("Borderline: 2 of 3 samples gave this answer, 1 gave another")
    assert "answer: The CISO." in words.others
