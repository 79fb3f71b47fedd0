"""Baselines that need no language model, fitted on the training split only.

A fine-tune is worth shipping only if it beats what a data engineer could build in minutes
from the same rows: the majority class, a TF-IDF + logistic-regression classifier, and (for
extraction and QA) the answer of the most similar training example. Each baseline answers in
the task's JSON, so it is scored by exactly the code that scores the models.

Nothing here ever sees a test row's answer: ``fit`` takes training rows, ``answer`` takes
prompts.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Conversation = list[dict[str, str]]


def prompt_text(prompt: Conversation) -> str:
    """The text a baseline reads: the user turns (instruction and passage), not the system prompt."""
    return "\n\n".join(m["content"] for m in prompt if m["role"] == "user")


def label_answer(label: str) -> str:
    """A classification answer in the task's JSON; the quote is empty (baselines cite nothing)."""
    return json.dumps({"label": label, "quote": ""})


class Baseline(Protocol):
    name: str
    kind: str

    def answer(self, prompts: Sequence[Conversation]) -> list[str]: ...


@dataclass
class MajorityClass:
    """Always the most frequent label of the training split (ties: the first in label order)."""

    label: str
    name: str = "majority-class"
    kind: str = "trivial"

    @classmethod
    def fit(cls, labels: Sequence[str], taxonomy: Sequence[str]) -> MajorityClass:
        counts = Counter(labels)
        if not counts:
            raise ValueError("the majority-class baseline needs labelled training rows")
        top = max(counts.values())
        return cls(next(label for label in [*taxonomy, *sorted(counts)] if counts.get(label) == top))

    def answer(self, prompts: Sequence[Conversation]) -> list[str]:
        return [label_answer(self.label)] * len(prompts)


@dataclass
class TfidfLogisticRegression:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression, C chosen by cross-validation
    on the training split: the classical text classifier a fine-tune has to beat."""

    model: Any
    name: str = "tfidf-logreg"
    kind: str = "classical"

    @classmethod
    def fit(cls, prompts: Sequence[Conversation], labels: Sequence[str], seed: int = 0) -> TfidfLogisticRegression:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.pipeline import make_pipeline

        smallest = min(Counter(labels).values())
        classifier = (
            LogisticRegressionCV(
                Cs=[0.3, 1, 3, 10, 30, 100], cv=min(5, smallest), scoring="accuracy", max_iter=3000, random_state=seed
            )
            if smallest >= 2
            else LogisticRegression(max_iter=3000, C=10, random_state=seed)
        )
        model = make_pipeline(TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)), classifier)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # sklearn's notices about its future defaults
            model.fit([prompt_text(p) for p in prompts], list(labels))
        return cls(model)

    def answer(self, prompts: Sequence[Conversation]) -> list[str]:
        predicted = self.model.predict([prompt_text(p) for p in prompts])
        return [label_answer(str(label)) for label in predicted]


@dataclass
class NearestTrainingAnswer:
    """The answer of the training example whose prompt is most similar (TF-IDF cosine):
    retrieval instead of generation, the baseline for extraction and QA."""

    vectorizer: Any
    matrix: Any
    answers: list[str]
    name: str = "nearest-train-answer"
    kind: str = "classical"

    @classmethod
    def fit(cls, prompts: Sequence[Conversation], answers: Sequence[str]) -> NearestTrainingAnswer:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
        matrix = vectorizer.fit_transform([prompt_text(p) for p in prompts])
        return cls(vectorizer, matrix, list(answers))

    def answer(self, prompts: Sequence[Conversation]) -> list[str]:
        queries = self.vectorizer.transform([prompt_text(p) for p in prompts])
        nearest = (queries @ self.matrix.T).toarray().argmax(axis=1)
        return [self.answers[i] for i in nearest]
