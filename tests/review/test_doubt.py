"""The doubt score that orders the review queue (no server, no model: vectors made by hand)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest

from curate.config import PipelineConfig
from curate.review.config import DoubtConfig, ReviewConfig
from curate.review.doubt import nearest_labels, with_doubt
from curate.review.sync import build_tasks, examples_with_doubt, read_chunks, select_for_review


def _unit(rows: list[list[float]]) -> np.ndarray:
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_margins_are_measured_from_the_filters_floors() -> None:
    frame = pl.DataFrame({
        "example_id": ["a", "b", "c"], "agreement": [2 / 3, 1.0, 5 / 6], "grounding_score": [0.9, 1.0, 0.95],
    })
    scored = with_doubt(frame, DoubtConfig(weights={"votes": 1.0, "grounding": 1.0}), vote_floor=2 / 3,
                        grounding_floor=0.9)
    assert scored["doubt_votes"].round(6).to_list() == [1.0, 0.0, 0.5]
    assert scored["doubt_grounding"].round(6).to_list() == [1.0, 0.0, 0.5]
    assert scored["doubt"].round(6).to_list() == [1.0, 0.0, 0.5]
    # no judge ran and no neighbour was computed: those signals are left out of the mean, not counted 0
    assert scored["doubt_judge"].null_count() == 3 and scored["doubt_neighbour"].null_count() == 3


def test_the_judge_signal_counts_where_the_judge_scored() -> None:
    frame = pl.DataFrame({"example_id": ["a", "b"], "agreement": [1.0, 1.0], "grounding_score": [1.0, 1.0]})
    judge = pl.DataFrame({"example_id": ["a"], "mean_score": [3.5]})
    scored = with_doubt(frame, DoubtConfig(weights={"votes": 1.0, "judge": 1.0}), vote_floor=0.5,
                        grounding_floor=0.9, judge_floor=3.5, judge=judge)
    assert scored["doubt_judge"].to_list() == [1.0, None]
    assert scored["doubt"].to_list() == [0.5, 0.0]


def test_a_passage_like_others_but_labelled_otherwise_is_doubtful() -> None:
    # two topics; "a3" sits among the "x" passages but is labelled "y"
    vectors = _unit([[1, 0.1, 0], [1, 0.0, 0.1], [1, 0.05, 0.05], [0, 1, 0.1], [0.1, 1, 0]])
    ids = ["a1", "a2", "a3", "b1", "b2"]
    labels = ["x", "x", "y", "y", "y"]
    found = nearest_labels(vectors, labels, ids, k=2, min_similarity=0.5)
    share = dict(zip(found["example_id"], found["doubt_neighbour"], strict=True))
    assert share["a3"] == pytest.approx(1.0)
    assert share["b1"] == share["b2"] == 0.0
    assert 0.4 < share["a1"] < 0.6  # one of its two neighbours is the mislabelled a3
    near = dict(zip(found["example_id"], found["neighbour_label"], strict=True))
    assert near["a3"] == "x" and near["b1"] is None


def test_removed_duplicates_are_neighbours_but_never_of_themselves() -> None:
    vectors = _unit([[1, 0, 0], [0, 1, 0]])
    removed = _unit([[1, 0.01, 0], [0, 1, 0.01]])
    found = nearest_labels(
        vectors, ["x", "y"], ["a", "b"], candidates=removed, candidate_labels=["z", "y"],
        candidate_ids=["a-copy", "b"], k=1, min_similarity=0.9,
    )
    assert found["doubt_neighbour"].to_list() == [1.0, 0.0]  # a's copy said z; b's "copy" is b itself
    assert found["neighbour_similarity"][0] == pytest.approx(1.0, abs=1e-3)


def test_blocks_give_the_same_answer_as_one_pass() -> None:
    rng = np.random.default_rng(0)
    vectors = _unit(rng.normal(size=(50, 8)).tolist())
    labels = [str(i % 3) for i in range(50)]
    ids = [f"e{i}" for i in range(50)]
    whole = nearest_labels(vectors, labels, ids, k=4, min_similarity=0.0)
    blocked = nearest_labels(vectors, labels, ids, k=4, min_similarity=0.0, block=7)
    assert whole.equals(blocked)


def keyword_embed_stand_in(texts: Sequence[str]) -> np.ndarray:
    """A stand-in for the embedding model: one dimension per keyword family, so passages about
    the same family are alike (what a sentence embedding gives, by hand)."""
    words = ("access", "incident", "contingency", "audit")
    rows = [[1.0 + t.lower().count(w) for w in words] for t in texts]
    rows = [[v ** 4 for v in row] for row in rows]
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_push_side_tasks_carry_the_doubt_as_a_prediction_score(review_run: PipelineConfig) -> None:
    examples = pl.read_parquet(review_run.run_path / "dedup" / "examples.parquet")
    # plant a wrong label: the first access-control passage labelled incident-response
    wrong = examples.filter(pl.col("label") == "access-control")["example_id"][0]
    output = json.loads(examples.filter(pl.col("example_id") == wrong)["output_json"][0])
    output["label"] = "incident-response"
    examples = examples.with_columns(
        pl.when(pl.col("example_id") == wrong).then(pl.lit("incident-response")).otherwise(pl.col("label")).alias("label"),
        pl.when(pl.col("example_id") == wrong).then(pl.lit(json.dumps(output))).otherwise(pl.col("output_json")).alias("output_json"),
    )
    chunks = read_chunks(review_run)
    scored = examples_with_doubt(review_run, examples, chunks, embed=keyword_embed_stand_in)
    assert {"doubt", "doubt_votes", "doubt_grounding", "doubt_neighbour"} <= set(scored.columns)
    by_id = {r["example_id"]: r for r in scored.iter_rows(named=True)}
    assert by_id[wrong]["neighbour_label"] == "access-control"
    assert by_id[wrong]["doubt_neighbour"] > 0.5
    selection = select_for_review(scored, ReviewConfig(audit_fraction=1.0))
    tasks = build_tasks(review_run, scored, chunks, selection)
    assert [t["data"]["example_id"] for t in tasks] == selection["example_id"].to_list()
    for task in tasks:
        row = by_id[task["data"]["example_id"]]
        assert task["predictions"][0]["score"] == pytest.approx(1 - row["doubt"], abs=1e-4)
    (planted,) = [t for t in tasks if t["data"]["example_id"] == wrong]
    assert "a similar passage" in planted["data"]["reason"] and "is labelled access-control" in planted["data"]["reason"]
    # within its kind, the planted error is the most doubtful
    kind = selection.filter(pl.col("example_id") == wrong)["kind"][0]
    assert selection.filter(pl.col("kind") == kind)["example_id"][0] == wrong


def test_doubt_weights_name_known_signals_only() -> None:
    with pytest.raises(ValueError, match="unknown doubt signal"):
        DoubtConfig(weights={"votes": 1.0, "vibes": 2.0})


def test_a_removed_duplicate_labelled_otherwise_makes_its_survivor_doubtful(review_run: PipelineConfig) -> None:
    """dedup/rejected holds the duplicates dedup (MinHash or semantic) removed: an independent
    answer on (nearly) the same passage, the closest neighbour there is."""
    from schemas.records import Rejection, frame_of

    examples = pl.read_parquet(review_run.run_path / "dedup" / "examples.parquet")
    survivor = examples.row(0, named=True)
    other = next(label for label in ("access-control", "audit") if label != survivor["label"])
    removed = Rejection(
        item_id="removed-copy", chunk_id=survivor["chunk_id"], filter="dedup", reason="semantic_duplicate",
        detail=f"survivor {survivor['example_id']}", output_json=json.dumps({"label": other, "quote": "x"}),
    )
    frame_of(Rejection, [removed]).write_parquet(review_run.run_path / "dedup" / "rejected.parquet")
    config = review_run.model_copy(update={"review": ReviewConfig(doubt=DoubtConfig(neighbour_min_similarity=0.99))})
    scored = examples_with_doubt(config, examples, read_chunks(review_run), embed=keyword_embed_stand_in)
    row = scored.filter(pl.col("example_id") == survivor["example_id"]).row(0, named=True)
    assert row["neighbour_label"] == other and row["neighbour_similarity"] == pytest.approx(1.0, abs=1e-4)
    assert row["doubt_neighbour"] >= 0.5  # the copy, against at most one same-labelled passage as close
