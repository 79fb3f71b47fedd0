"""Evaluation metrics and the gate on hand-checked cases."""

from __future__ import annotations

import json

import pytest

from schemas.tasks import TaskConfig
from train.evaluate.evaluate import HeldOutRow, choose_shots, few_shot_prompt
from train.evaluate.metrics import classification_report, percentile, score_predictions, token_f1

CLASSIFY = TaskConfig(type="classification", instruction="Which?", labels=("AC", "IR", "PE"))
EXTRACT = TaskConfig(
    type="extraction",
    instruction="Extract.",
    fields=[{"name": "owner", "description": "who"}, {"name": "deadline", "description": "when", "kind": "date"}],
)


def _cls(label: str) -> str:
    return json.dumps({"label": label, "quote": "q"})


def test_token_f1_hand_checked() -> None:
    assert token_f1("the quick brown fox", "the quick brown fox") == 1.0
    # pred 3 tokens, ref 4 tokens, overlap 2 -> P=2/3, R=1/2, F1=4/7
    assert token_f1("quick red fox", "the quick brown fox") == pytest.approx(4 / 7)
    assert token_f1("", "") == 1.0
    assert token_f1("x", None) == 0.0
    assert token_f1("Fox, QUICK!", "quick fox") == 1.0


def test_classification_exact_match_compliance_and_confusion() -> None:
    references = [_cls("AC"), _cls("AC"), _cls("IR"), _cls("PE")]
    predictions = [
        _cls("AC"),  # right
        "Sure! " + _cls("IR") + " hope that helps",  # wrong label, JSON found inside prose
        "not json at all",  # invalid
        _cls("PE"),  # right
    ]
    scores = score_predictions(CLASSIFY, predictions, references)
    assert scores.metric == "exact_match"
    assert scores.score == pytest.approx(0.5)
    assert scores.schema_compliance == pytest.approx(0.75)
    assert scores.confusion["AC"] == {"AC": 1, "IR": 1, "PE": 0, "<invalid>": 0}
    assert scores.confusion["IR"]["<invalid>"] == 1
    # AC: predicted AC once (correct) -> precision 1; recall 1/2
    assert scores.per_class["AC"].precision == pytest.approx(1.0)
    assert scores.per_class["AC"].recall == pytest.approx(0.5)
    # IR: predicted IR once (wrong) -> precision 0; support 1, recall 0
    assert scores.per_class["IR"].precision == 0.0
    assert scores.per_class["PE"].f1 == pytest.approx(1.0)


def test_label_outside_taxonomy_is_not_schema_compliant() -> None:
    scores = score_predictions(CLASSIFY, [_cls("ZZ")], [_cls("AC")])
    assert scores.schema_compliance == 0.0
    assert scores.score == 0.0


def test_extraction_field_f1() -> None:
    gold = json.dumps({"owner": {"value": "Security Office", "quote": "q"}, "deadline": {"value": "30 days", "quote": "q"}})
    pred = json.dumps({"owner": {"value": "the Security Office", "quote": "q"}, "deadline": {"value": "90 days", "quote": "q"}})
    scores = score_predictions(EXTRACT, [pred], [gold])
    assert scores.per_field_f1["owner"] == pytest.approx(token_f1("the Security Office", "Security Office"))
    assert scores.per_field_f1["deadline"] == pytest.approx(0.5)
    assert scores.score == pytest.approx((scores.per_field_f1["owner"] + 0.5) / 2)


def test_classification_report_accuracy() -> None:
    accuracy, per_class, _ = classification_report(["a", "b"], ["a", "a", None], ["a", "b", "b"])
    assert accuracy == pytest.approx(1 / 3)
    assert per_class["a"].precision == pytest.approx(0.5)
    assert per_class["b"].recall == 0.0


def test_percentile_of_observed_values() -> None:
    values = [0.1 * i for i in range(1, 21)]
    assert percentile(values, 50) == pytest.approx(1.0)
    assert percentile(values, 95) == pytest.approx(1.9)
    assert percentile([], 50) == 0.0


def test_few_shot_prompt_keeps_system_first_and_spreads_labels() -> None:
    train = [HeldOutRow([{"role": "user", "content": f"s{i}"}], _cls(lab), lab) for i, lab in enumerate("AAAIIP")]
    shots = choose_shots(train, 3, seed=1)
    assert sorted(s.label or "" for s in shots) == ["A", "I", "P"]
    row = HeldOutRow([{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}], _cls("AC"), "AC")
    prompt = few_shot_prompt(row, shots)
    assert prompt[0] == {"role": "system", "content": "sys"}
    assert prompt[-1] == {"role": "user", "content": "q"}
    assert [m["role"] for m in prompt[1:-1]] == ["user", "assistant"] * 3
