"""The gate: a fine-tune that does not beat prompting, or that lost general ability, fails."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateResult:
    passed: bool
    improvement: float
    margin: float
    regression: float | None
    tolerance: float
    reasons: tuple[str, ...]


def relative_rise(base: float | None, tuned: float | None) -> float | None:
    """How much worse (relative) the tuned model finds the general set than the base does."""
    if base is None or tuned is None or base <= 0:
        return None
    return (tuned - base) / base


def apply_gate(
    tuned_score: float,
    baseline_score: float,
    *,
    margin: float,
    regression: float | None,
    tolerance: float,
) -> GateResult:
    reasons = []
    improvement = tuned_score - baseline_score
    if improvement <= margin:  # "beat": a tie with the baseline is not a win
        reasons.append(
            f"fine-tuned score {tuned_score:.4f} does not beat the prompted baseline "
            f"{baseline_score:.4f} by the margin {margin:.4f}"
        )
    if regression is not None and regression > tolerance:
        reasons.append(
            f"general-set perplexity rose by {regression:.1%}, beyond the tolerance {tolerance:.1%}"
        )
    return GateResult(not reasons, improvement, margin, regression, tolerance, tuple(reasons))
