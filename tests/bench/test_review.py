"""bench/review's arithmetic: the budget, the random expectation and the ratio's interval, on
queues whose answer is known (the full run is `bench/review/run.py`)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from bench.review.pool import pool
from bench.review.run import found, measure, reviewer_verdicts


def _queue(n: int = 200, errors: int = 20, informative: bool = True) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    wrong = np.zeros(n, dtype=bool)
    wrong[rng.choice(n, errors, replace=False)] = True
    key = wrong + rng.random(n) * 0.5 if informative else rng.random(n)  # errors on top, or noise
    return pl.DataFrame({"example_id": [f"e{i}" for i in range(n)], "key": key, "wrong": wrong,
                         "tiebreak": rng.random(n)})


def test_found_reviews_the_top_of_the_queue_only() -> None:
    key = np.array([0.9, 0.1, 0.8, 0.2, 0.7])
    caught = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    assert found(key, np.zeros(5), caught, 0.4) == 1.0  # the top 2: 0.9 (caught) and 0.8 (not an error)
    assert found(key, np.zeros(5), caught, 1.0) == 4.0


def test_a_perfect_order_beats_random_by_the_inverse_error_rate() -> None:
    results = measure(reviewer_verdicts(_queue(), 1.0, 0), {"perfect": "key"}, seed=0)
    ten = results["budgets"]["10%"]
    assert ten["budget_items"] == 20 and ten["random_expected"] == pytest.approx(2.0)
    perfect = ten["orders"]["perfect"]
    assert perfect["found"] == 20 and perfect["ratio"] == pytest.approx(10.0)
    low, high = perfect["ratio_ci95"]
    assert low > 5 and high >= 10 - 1e-6


def test_an_uninformative_order_is_about_as_good_as_random() -> None:
    results = measure(reviewer_verdicts(_queue(informative=False), 1.0, 0), {"noise": "key"}, seed=0)
    noise = results["budgets"]["20%"]["orders"]["noise"]
    low, high = noise["ratio_ci95"]
    assert low < 1.0 < high


def _trial(seed: int, informative: bool) -> pl.DataFrame:
    frame = reviewer_verdicts(_queue(informative=informative), 1.0, seed)
    key = pl.col("key")
    return frame.with_columns(key.alias("queue"), key.alias("doubt"), key.alias("doubt_votes"),
                              pl.lit(0.0).alias("doubt_neighbour"), pl.lit(seed).alias("seed"))


def test_pooled_trials_sum_what_each_finds_and_bound_the_ratio() -> None:
    """Two trials of 200 with 20 errors each: a perfect order finds 40 at 10% where random finds 4."""
    results = pool([_trial(0, True), _trial(1, True)], resamples=500)
    assert results["trials"] == [0, 1] and results["wrong_labels"] == 40
    perfect = results["budgets"]["10%"]["doubt (product order)"]
    assert perfect["found"] == 40 and perfect["random_expected"] == pytest.approx(4.0)
    assert perfect["ratio"] == pytest.approx(10.0) and perfect["at_least_2x"]
    low, high = perfect["ratio_ci95"]
    assert 5 < low <= 10.0 + 1e-6 <= high + 1e-6
    tied = results["budgets"]["10%"]["neighbour only"]  # every key 0: the order is the id hash, i.e. random
    assert tied["ratio_ci95"][0] < 2.0 and not tied["at_least_2x"]
