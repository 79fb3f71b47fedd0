"""bench/semdedup's scoring, its scaled question set and its neighbour part at a small size (no model)."""

from __future__ import annotations

import numpy as np
import polars as pl

from bench.semdedup.run import build, neighbours_and_clusters, scaled_texts, score


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
    texts, copies, sources = scaled_texts(4000, seed=2)
    assert len(texts) == 4000 and len(copies) == 200 and (copies >= 3800).all() and (sources < 3800).all()
    assert len(set(texts[:3800])) == 3800  # the distinct part is distinct
    reworded = sum(texts[c] != texts[s] for c, s in zip(copies, sources, strict=True))
    assert reworded > 150  # most copies carry a synonym or another template
    rng = np.random.default_rng(0)  # stand-in vectors: copies near their source, the rest random
    vectors = rng.normal(size=(4000, 32)).astype(np.float32)
    vectors[copies] = vectors[sources] + 0.05 * rng.normal(size=(200, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    comp, figures = neighbours_and_clusters(vectors, 0.9, seed=2, nprobe=16)
    assert (comp[copies] == comp[sources]).all() and figures["method"] == "exact"
    assert figures["pairs"] == 200 and figures["removed"] == 200
