"""The model-free baselines: fitted on the training split only, scored like the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.tasks import TaskConfig, training_prompt
from train.evaluate.baselines import (
    MajorityClass,
    NearestTrainingAnswer,
    TfidfLogisticRegression,
    prompt_text,
)
from train.evaluate.config import EvalConfig
from train.evaluate.evaluate import HeldOutRow, fit_baselines, labelled_record_rows, read_held_out
from train.evaluate.metrics import score_predictions

TASK = TaskConfig(type="classification", instruction="Which family?", labels=("AC", "IR", "PE"))


def _row(text: str, label: str) -> HeldOutRow:
    return HeldOutRow(training_prompt(TASK, text), json.dumps({"label": label, "quote": text[:10]}), label)


@pytest.fixture(scope="module")
def controls(shared_corpus: Path) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in (shared_corpus / "controls.jsonl").read_text().splitlines()]
    return [r for r in rows if r["family"] in TASK.labels]


def test_majority_class_is_the_training_splits_and_breaks_ties_in_label_order() -> None:
    assert MajorityClass.fit(["IR", "PE", "IR", "AC"], TASK.labels).label == "IR"
    assert MajorityClass.fit(["PE", "AC"], TASK.labels).label == "AC"
    with pytest.raises(ValueError, match="labelled training rows"):
        MajorityClass.fit([], TASK.labels)


def test_classical_baseline_learns_from_the_training_split_only(controls: list[dict[str, str]]) -> None:
    train = [_row(c["statement"], c["family"]) for c in controls[::2]]
    test = [_row(c["statement"], c["family"]) for c in controls[1::2]]
    model = TfidfLogisticRegression.fit([r.prompt for r in train], [r.label or "" for r in train])
    vectorizer = model.model[0]
    analyse = vectorizer.build_analyzer()
    train_terms = {t for r in train for t in analyse(prompt_text(r.prompt))}
    test_terms = {t for r in test for t in analyse(prompt_text(r.prompt))}
    assert test_terms - train_terms  # the test rows have words of their own ...
    assert set(vectorizer.vocabulary_) <= train_terms  # ... and none of them was learnt
    answers = model.answer([r.prompt for r in test])
    flipped = [_row(prompt_text(r.prompt), "AC") for r in test]  # the test labels cannot change predictions
    assert model.answer([r.prompt for r in flipped]) == answers
    accuracy = score_predictions(TASK, answers, [r.reference for r in test]).score
    assert accuracy > 0.8  # three well-separated families: a real classifier, not a constant


def test_fit_baselines_per_task_type(controls: list[dict[str, str]]) -> None:
    train = [_row(c["statement"], c["family"]) for c in controls[::5][:30]]
    names = [b.name for b in fit_baselines(TASK, train, EvalConfig())]
    assert names == ["majority-class", "tfidf-logreg"]
    assert fit_baselines(TASK, train, EvalConfig(classical_baselines=False)) == []
    one_label = [r for r in train if r.label == "AC"]
    assert [b.name for b in fit_baselines(TASK, one_label, EvalConfig())] == ["majority-class"]
    qa = TaskConfig(type="qa", instruction="Answer.")
    qa_rows = [HeldOutRow(training_prompt(qa, f"passage {i}"), json.dumps({"answer": str(i), "quote": "q"}), None) for i in range(3)]
    assert [b.name for b in fit_baselines(qa, qa_rows, EvalConfig())] == ["nearest-train-answer"]


def test_nearest_training_answer_returns_the_most_similar_rows_answer() -> None:
    prompts = [training_prompt(TASK, t) for t in ("backups run nightly", "visitors sign the log", "keys rotate yearly")]
    baseline = NearestTrainingAnswer.fit(prompts, ["A1", "A2", "A3"])
    assert baseline.answer([training_prompt(TASK, "visitors must sign the visitor log")]) == ["A2"]


def test_any_labelled_jsonl_is_held_out_truth(tmp_path: Path) -> None:
    records = tmp_path / "held_out.jsonl"
    records.write_text(
        "\n".join(json.dumps({"passage": t, "family": f}) for t, f in [("Badges are checked.", "PE"), ("Report it.", "IR")])
    )
    config = EvalConfig(text_field="passage", label_field="family")
    rows = read_held_out(records, TASK, config)
    assert [r.label for r in rows] == ["PE", "IR"]
    assert rows[0].prompt == training_prompt(TASK, "Badges are checked.")  # prompted as the pipeline renders
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"passage": "x", "family": "ZZ"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: label 'ZZ' is not in the task's labels"):
        labelled_record_rows(bad, TASK, "passage", "family")
