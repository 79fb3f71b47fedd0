"""Bootstrap confidence intervals for every figure in an evaluation report.

Test splits of curated datasets are small (tens to hundreds of rows), so a point score alone
says little: one row of 85 is 1.2 points. Every score gets a percentile-bootstrap interval
over test rows, and every comparison between two systems a *paired* interval (the same
resampled rows for both), which is much tighter than two separate intervals and is what the
gate decides on. scipy's ``bootstrap`` does the resampling; a fixed seed makes it reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap

Statistic = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "confidence": self.confidence}


def _interval(
    data: tuple[np.ndarray, ...], statistic: Statistic, *, paired: bool, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    if len(data[0]) < 2 or all(np.ptp(d) == 0 for d in data):
        value = float(statistic(*data))  # nothing varies: every resample gives the same value
        return value, value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resamples where all rows agree warn; the interval is still right
        result = bootstrap(
            data,
            statistic,
            paired=paired,
            vectorized=True,
            n_resamples=resamples,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    return float(low), float(high)


def _mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(values, axis=axis)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def mean_interval(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """The mean of per-row scores with its percentile-bootstrap interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(0.0, 0.0, 0.0, confidence)
    low, high = _interval((data,), _mean, paired=False, confidence=confidence, resamples=resamples, seed=seed)
    return Interval(float(data.mean()), low, high, confidence)


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """mean(a) - mean(b) over the same rows, with a paired bootstrap interval."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired scores need the same rows: {x.size} vs {y.size}")
    if x.size == 0:
        return Interval(0.0, 0.0, 0.0, confidence)
    if np.array_equal(x, y):
        return Interval(0.0, 0.0, 0.0, confidence)
    low, high = _interval(
        (x, y), _mean_difference, paired=True, confidence=confidence, resamples=resamples, seed=seed
    )
    return Interval(float(x.mean() - y.mean()), low, high, confidence)
