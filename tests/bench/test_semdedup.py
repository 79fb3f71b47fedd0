"""bench/semdedup's scoring and its scaled neighbour part at a small size (no model)."""

from __future__ import annotations

import numpy as np
import polars as pl

from bench.semdedup.run import build, scaled, score


def test_score_counts_planted_pairs_and_justified_removals() -> None:
    frame = pl.DataFrame({"example_id": ["a", "b", "c", "d"], "source": [None, "a", None, None],
                          "quality_score": [0.9, 0.1, 0.5, 0.4]})
    figures = score(frame, np.array([0, 0, 2, 2]))  # a+b (planted, right), c+d (distinct, wrong)
    assert (figures["found"], figures["planted"], figures["removed"]) == (1, 1, 2)
    assert figures["precision"] == 0.5


def test_paraphrases_name_their_source_and_scaled_copies_are_found() -> None:
    questions = build(0.25, seed=1)
    planted = questions.filter(pl.col("source").is_not_null())
    assert planted.height > 0 and set(planted["source"]) <= set(questions["example_id"])
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    figures = scaled(vectors, 4000, 0.9, seed=2)
    assert figures["copies"] == 200 and figures["recall"] == 1.0 and figures["method"] == "exact"
