"""Evaluation metrics over parsed task outputs.

Each prediction is the raw text a model produced for one test example; it is parsed and
validated against the task's output model, so schema compliance is measured for every
task, and the task metric (exact match, field F1, answer F1) only counts what parsed.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from schemas.tasks import TaskConfig, TaskType, output_model

_TOKEN = re.compile(r"\w+", re.UNICODE)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def normalise_tokens(text: str | None) -> list[str]:
    if not text:
        return []
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _TOKEN.findall(folded)


def token_f1(predicted: str | None, reference: str | None) -> float:
    """SQuAD-style token F1; two empty values agree perfectly."""
    pred, ref = normalise_tokens(predicted), normalise_tokens(reference)
    if not pred and not ref:
        return 1.0
    if not pred or not ref:
        return 0.0
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def parse_output(text: str, task: TaskConfig) -> BaseModel | None:
    """The model's answer as the task's output model, or None if it is not valid JSON of it."""
    match = _JSON_OBJECT.search(text or "")
    if match is None:
        return None
    try:
        return output_model(task).model_validate(json.loads(match.group(0)))
    except (json.JSONDecodeError, ValidationError, TypeError):
        return None


@dataclass
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class TaskScores:
    """Scores of one system on one test set."""

    n: int
    schema_compliance: float
    score: float  # the task's headline metric: accuracy, mean field F1, answer F1
    metric: str
    per_class: dict[str, ClassMetrics] = field(default_factory=dict)
    per_field_f1: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    per_example: list[float] = field(default_factory=list)  # each row's score: what intervals resample

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "schema_compliance": self.schema_compliance,
            "metric": self.metric,
            "score": self.score,
            "per_class": {k: vars(v) for k, v in self.per_class.items()},
            "per_field_f1": self.per_field_f1,
            "confusion": self.confusion,
            "per_example": self.per_example,
        }


def score_predictions(task: TaskConfig, predictions: Sequence[str], references: Sequence[str]) -> TaskScores:
    """Score raw predictions against reference output JSON strings."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    parsed = [parse_output(p, task) for p in predictions]
    gold = [output_model(task).model_validate_json(r) for r in references]
    n = len(gold)
    compliance = sum(p is not None for p in parsed) / n if n else 0.0
    if task.type is TaskType.CLASSIFICATION:
        return _classification(task, parsed, gold, compliance)
    if task.type is TaskType.EXTRACTION:
        return _extraction(task, parsed, gold, compliance)
    key = "answer" if task.type is TaskType.QA else "response"
    f1s = [
        token_f1(getattr(p, key, None) if p else None, getattr(g, key))
        for p, g in zip(parsed, gold, strict=True)
    ]
    return TaskScores(n, compliance, sum(f1s) / n if n else 0.0, f"{key}_token_f1", per_example=f1s)


def classification_report(
    labels: Sequence[str], predicted: Sequence[str | None], gold: Sequence[str]
) -> tuple[float, dict[str, ClassMetrics], dict[str, dict[str, int]]]:
    """Accuracy, per-class precision/recall/F1 and a confusion matrix (gold -> predicted)."""
    invalid = "<invalid>"
    columns = [*labels, invalid]
    confusion = {g: dict.fromkeys(columns, 0) for g in labels}
    for p, g in zip(predicted, gold, strict=True):
        confusion.setdefault(g, dict.fromkeys(columns, 0))
        confusion[g][p if p in confusion[g] else invalid] += 1
    per_class = {}
    for label in labels:
        tp = confusion[label][label]
        predicted_as = sum(row.get(label, 0) for row in confusion.values())
        support = sum(confusion[label].values())
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = ClassMetrics(precision, recall, f1, support)
    correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
    accuracy = correct / len(gold) if gold else 0.0
    return accuracy, per_class, confusion


def _classification(
    task: TaskConfig, parsed: list[BaseModel | None], gold: list[BaseModel], compliance: float
) -> TaskScores:
    predicted = [getattr(p, "label", None) if p else None for p in parsed]
    gold_labels = [g.label for g in gold]  # type: ignore[attr-defined]
    accuracy, per_class, confusion = classification_report(task.labels, predicted, gold_labels)
    correct = [float(p == g) for p, g in zip(predicted, gold_labels, strict=True)]
    return TaskScores(len(gold), compliance, accuracy, "exact_match", per_class, {}, confusion, correct)


def _extraction(
    task: TaskConfig, parsed: list[BaseModel | None], gold: list[BaseModel], compliance: float
) -> TaskScores:
    per_field: dict[str, float] = {}
    rows = np.zeros((len(gold), len(task.fields)))
    for column, spec in enumerate(task.fields):
        for row, (p, g) in enumerate(zip(parsed, gold, strict=True)):
            gold_value = getattr(getattr(g, spec.name, None), "value", None)
            pred_value = getattr(getattr(p, spec.name, None), "value", None) if p else None
            rows[row, column] = token_f1(pred_value, gold_value) if p else 0.0
        per_field[spec.name] = float(rows[:, column].mean()) if len(gold) else 0.0
    mean = sum(per_field.values()) / len(per_field) if per_field else 0.0
    per_example = [float(v) for v in rows.mean(axis=1)] if task.fields else []
    return TaskScores(len(gold), compliance, mean, "field_token_f1", {}, per_field, {}, per_example)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (q in [0, 100]) of observed values, 0 for none."""
    return float(np.percentile(values, q, method="inverted_cdf")) if len(values) else 0.0
