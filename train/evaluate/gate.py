"""The gate: a fine-tune ships only if it beats what it must beat, beyond doubt.

"Beat" means the paired bootstrap interval of the score difference lies wholly above the
margin: a tie, a win inside the noise of a small test split, or a win over a strawman alone
all fail. Required by default: the same base model prompted with few-shot examples and, for
classification, the majority class. ``eval.require_classical`` adds the classical baselines
(TF-IDF + logistic regression, nearest training answer). Whatever is not required is still
reported, in words, when it beats the fine-tune.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from train.evaluate.intervals import Interval


@dataclass(frozen=True)
class Comparison:
    """The fine-tune against one other system, on the same test rows."""

    baseline: str
    kind: str  # prompted | trivial | classical
    baseline_score: float
    difference: Interval  # fine-tuned minus baseline
    required: bool

    def beaten(self, margin: float) -> bool:
        return self.difference.low > margin

    def as_dict(self, margin: float) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "kind": self.kind,
            "baseline_score": self.baseline_score,
            "difference": self.difference.as_dict(),
            "required": self.required,
            "beaten": self.beaten(margin),
        }


@dataclass(frozen=True)
class GateResult:
    passed: bool
    margin: float
    comparisons: tuple[Comparison, ...]
    regression: float | None
    tolerance: float
    reasons: tuple[str, ...]
    notes: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "margin": self.margin,
            "comparisons": [c.as_dict(self.margin) for c in self.comparisons],
            "regression": self.regression,
            "tolerance": self.tolerance,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
        }


def relative_rise(base: float | None, tuned: float | None) -> float | None:
    """How much worse (relative) the tuned model finds the general set than the base does."""
    if base is None or tuned is None or base <= 0:
        return None
    return (tuned - base) / base


def _points(value: float) -> str:
    return f"{100 * value:+.1f} points"


def _interval_words(interval: Interval) -> str:
    return f"{_points(interval.estimate)}, {interval.confidence:.0%} CI [{100 * interval.low:+.1f}, {100 * interval.high:+.1f}]"


def _failure(c: Comparison, tuned_score: float, margin: float) -> str:
    name = "the prompted baseline" if c.kind == "prompted" else f"the {c.baseline} baseline"
    return (
        f"fine-tuned score {tuned_score:.4f} does not beat {name} {c.baseline_score:.4f} by the margin "
        f"{margin:.4f} beyond the interval (difference {_interval_words(c.difference)})"
    )


def _note(c: Comparison) -> str | None:
    if c.difference.estimate >= 0:
        return None
    how = "beats the fine-tune beyond the interval" if c.difference.high < 0 else "scores above the fine-tune"
    return f"{c.baseline} ({c.kind}) {how}: {c.baseline_score:.4f}, difference {_interval_words(c.difference)}"


def apply_gate(
    tuned_score: float,
    comparisons: Sequence[Comparison],
    *,
    margin: float,
    regression: float | None,
    tolerance: float,
) -> GateResult:
    reasons = [_failure(c, tuned_score, margin) for c in comparisons if c.required and not c.beaten(margin)]
    if not any(c.required for c in comparisons):
        reasons.append("no baseline to compare with: the gate cannot pass on nothing")
    if regression is not None and regression > tolerance:
        reasons.append(f"general-set perplexity rose by {regression:.1%}, beyond the tolerance {tolerance:.1%}")
    notes = [note for c in comparisons if (note := _note(c))]
    return GateResult(not reasons, margin, tuple(comparisons), regression, tolerance, tuple(reasons), tuple(notes))
