"""The gate and its intervals on hand-built per-row scores (no model involved)."""

from __future__ import annotations

import random

import pytest

from train.evaluate.gate import Comparison, apply_gate, relative_rise
from train.evaluate.intervals import mean_interval, paired_difference


def _rows(share: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < share) for _ in range(n)]


def _compare(name: str, kind: str, tuned: list[float], other: list[float], required: bool = True) -> Comparison:
    return Comparison(name, kind, sum(other) / len(other), paired_difference(tuned, other, seed=0), required)


def test_intervals_are_reproducible_with_a_seed_and_move_with_it() -> None:
    scores = _rows(0.6, 85, seed=1)
    first, again = mean_interval(scores, seed=7), mean_interval(scores, seed=7)
    assert first == again
    assert first.low < first.estimate < first.high
    assert mean_interval(scores, seed=8) != first  # the seed is what fixes the resamples
    other = _rows(0.4, 85, seed=2)
    assert paired_difference(scores, other, seed=3) == paired_difference(scores, other, seed=3)


def test_interval_narrows_with_more_rows() -> None:
    small = mean_interval(_rows(0.5, 40, seed=1), seed=0)
    large = mean_interval(_rows(0.5, 4000, seed=1), seed=0)
    assert large.half_width < small.half_width / 5


def test_gate_fails_a_fine_tune_that_only_beats_a_zero_baseline() -> None:
    """Beating a prompted base that scores 0% is not enough when the majority class is not beaten."""
    n = 100
    tuned = [1.0] * 13 + [0.0] * (n - 13)  # 13%: what an untaught model gets by always saying one label
    prompted = [0.0] * n
    majority = [1.0] * 13 + [0.0] * (n - 13)  # the majority class right on the same 13 rows
    gate = apply_gate(
        0.13,
        [_compare("prompted-baseline", "prompted", tuned, prompted), _compare("majority-class", "trivial", tuned, majority)],
        margin=0.0,
        regression=None,
        tolerance=0.25,
    )
    assert not gate.passed
    assert len(gate.reasons) == 1 and "majority-class" in gate.reasons[0]


def test_gate_needs_the_whole_interval_above_the_margin() -> None:
    tuned, base = _rows(0.55, 40, seed=4), _rows(0.50, 40, seed=5)
    comparison = _compare("prompted-baseline", "prompted", tuned, base)
    assert comparison.difference.estimate > 0 > comparison.difference.low  # ahead, but within the noise
    gate = apply_gate(sum(tuned) / 40, [comparison], margin=0.0, regression=None, tolerance=0.25)
    assert not gate.passed
    assert "does not beat the prompted baseline" in gate.reasons[0]


def test_gate_passes_a_clear_win_and_reports_a_stronger_classical_baseline() -> None:
    tuned = [1.0] * 120 + [0.0] * 80
    prompted = [1.0] * 20 + [0.0] * 180
    majority = [1.0] * 26 + [0.0] * 174
    classical = [1.0] * 150 + [0.0] * 50
    comparisons = [
        _compare("prompted-baseline", "prompted", tuned, prompted),
        _compare("majority-class", "trivial", tuned, majority),
        _compare("tfidf-logreg", "classical", tuned, classical, required=False),
    ]
    gate = apply_gate(0.6, comparisons, margin=0.05, regression=relative_rise(2.0, 2.1), tolerance=0.25)
    assert gate.passed, gate.reasons
    assert any(note.startswith("tfidf-logreg (classical) beats the fine-tune beyond the interval") for note in gate.notes)
    strict = [*comparisons[:2], _compare("tfidf-logreg", "classical", tuned, classical, required=True)]
    assert not apply_gate(0.6, strict, margin=0.05, regression=None, tolerance=0.25).passed


def test_gate_fails_on_a_tie_and_on_general_regression() -> None:
    same = _rows(0.5, 50, seed=9)
    tie = _compare("prompted-baseline", "prompted", same, same)
    assert not apply_gate(0.5, [tie], margin=0.0, regression=None, tolerance=0.25).passed
    win = _compare("prompted-baseline", "prompted", [1.0] * 50, [0.0] * 50)
    regressed = apply_gate(1.0, [win], margin=0.0, regression=relative_rise(2.0, 3.0), tolerance=0.25)
    assert not regressed.passed
    assert regressed.reasons == ("general-set perplexity rose by 50.0%, beyond the tolerance 25.0%",)


def test_gate_cannot_pass_without_a_required_baseline() -> None:
    gate = apply_gate(0.9, [], margin=0.0, regression=None, tolerance=0.25)
    assert not gate.passed


@pytest.mark.parametrize("n", [1, 3])
def test_tiny_splits_give_degenerate_but_valid_intervals(n: int) -> None:
    interval = mean_interval([1.0] * n, seed=0)
    assert interval.low == interval.high == 1.0
