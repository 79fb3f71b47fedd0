"""The split: documents never span splits, class proportions hold, no near-duplicate leaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.dataset.splitting import SPLITS, assert_disjoint, assign_groups, split_frame
from curate.dataset.stages import split_examples, summarize_split
from curate.run.stage import StageContext
from schemas.records import Example, frame_of
from tests.dataset.conftest import make_config

RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def synthetic(groups: list[tuple[int, int]], n_classes: int) -> pl.DataFrame:
    """Rows of `len(groups)` documents; group i has `size` rows, labels cycling from `offset`."""
    rows = []
    for g, (size, offset) in enumerate(groups):
        for r in range(size):
            rows.append({"example_id": f"e{g:04d}-{r:03d}", "doc_id": f"doc{g:04d}",
                         "label": f"c{(offset + r) % n_classes}"})
    return pl.DataFrame(rows)


group_lists = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5)), min_size=1, max_size=120)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=group_lists, n_classes=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_no_document_in_two_splits(groups: list[tuple[int, int]], n_classes: int, seed: int) -> None:
    frame = split_frame(synthetic(groups, n_classes), ratios=RATIOS, seed=seed, group_by="doc_id", stratify_by="label")
    assert frame.height == sum(size for size, _ in groups)
    assert set(frame.get_column("split").unique().to_list()) <= set(SPLITS)
    per_doc = frame.group_by("doc_id").agg(pl.col("split").n_unique().alias("n"))
    assert per_doc.get_column("n").max() == 1
    assert_disjoint(frame, "doc_id")
    if len(groups) >= len(SPLITS):  # every split gets a document when there are enough
        assert set(frame.get_column("split").unique().to_list()) == set(SPLITS)


@settings(max_examples=40, deadline=None)
@given(
    groups=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 5)), min_size=150, max_size=300),
    n_classes=st.integers(2, 4),
    seed=st.integers(0, 2**31),
)
def test_class_proportions_within_tolerance(groups: list[tuple[int, int]], n_classes: int, seed: int) -> None:
    """With many small documents every split's class mix stays near the overall mix."""
    frame = split_frame(synthetic(groups, n_classes), ratios=RATIOS, seed=seed, group_by="doc_id", stratify_by="label")
    overall = frame.get_column("label").value_counts(normalize=True)
    share = dict(zip(overall["label"].to_list(), overall["proportion"].to_list(), strict=True))
    for split, ratio in RATIOS.items():
        part = frame.filter(pl.col("split") == split)
        # split sizes within 3 percentage points of the ratio
        assert abs(part.height / frame.height - ratio) <= 0.03, (split, part.height, frame.height)
        for label, p in share.items():
            q = float((part.get_column("label") == label).mean())
            assert abs(q - p) <= 0.05, (split, label, q, p)


@settings(max_examples=100, deadline=None)
@given(groups=group_lists, seed=st.integers(0, 2**31), data=st.data())
def test_split_depends_on_content_not_row_order(groups: list[tuple[int, int]], seed: int, data: st.DataObject) -> None:
    frame = synthetic(groups, 3)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=data.draw(st.integers(0, 1000)))
    a = split_frame(frame, ratios=RATIOS, seed=seed, group_by="doc_id", stratify_by="label")
    b = split_frame(shuffled, ratios=RATIOS, seed=seed, group_by="doc_id", stratify_by="label")
    assert a.select("example_id", "split").equals(b.select("example_id", "split"))


def test_zero_ratio_split_stays_empty() -> None:
    counts = {f"d{i}": {"a": 1 + i % 3, "b": i % 2} for i in range(50)}
    assignment = assign_groups(counts, {"train": 0.9, "validation": 0.1, "test": 0.0}, seed=1)
    assert set(assignment.values()) == {"train", "validation"}


def test_corpus_split_is_grouped_and_stratified(examples: pl.DataFrame, families: list[str], tmp_path: Path) -> None:
    ctx = StageContext(config=make_config(tmp_path, families), run_dir=str(tmp_path), stage="split", show_progress=False)
    outputs = split_examples(examples, ctx)
    frame = outputs["examples"]
    assert_disjoint(frame, "doc_id")
    report = summarize_split({name: frame.lazy() for name, frame in outputs.items()})
    assert sum(report["rows"].values()) == frame.height
    ac = next(row for row in report["distribution"] if row["class"] == "AC")
    assert ac["train"] == frame.filter((pl.col("split") == "train") & (pl.col("label") == "AC")).height
    assert sum(row["test"] for row in report["distribution"]) == report["rows"]["test"]
    for split, ratio in RATIOS.items():
        assert abs(report["rows"][split] / frame.height - ratio) < 0.03
    assert report["leakage"]["pairs_remaining"] == 0
    assert json.loads((tmp_path / "split.state" / "split_report.json").read_text())["summary"]["seed"] == 13


def _leaky_frame(examples: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Copies of the 24 longest passages, lightly edited, under new documents (planted leaks)."""
    length = pl.col("messages").list.get(1).struct.field("content").str.len_chars()
    base = examples.sort(length, "example_id", descending=[True, False]).head(24).to_dicts()
    planted: list[dict[str, Any]] = []
    for row in base:
        copy = dict(row)
        messages = [dict(m) for m in row["messages"]]
        messages[1]["content"] = messages[1]["content"] + " Reviewed annually."
        copy.update(example_id="leak-" + row["example_id"], doc_id="leakdoc-" + row["doc_id"],
                    chunk_id="leakchunk-" + row["chunk_id"], messages=messages)
        planted.append(copy)
    frame = pl.concat([examples, frame_of(Example, planted)])
    return frame, [p["example_id"] for p in planted]


@pytest.mark.parametrize("policy", ["drop", "report"])
def test_planted_near_duplicates_across_splits_are_found(
    examples: pl.DataFrame, families: list[str], tmp_path: Path, policy: str
) -> None:
    frame, planted = _leaky_frame(examples)
    config = make_config(tmp_path, families, split={"leak_policy": policy})
    ctx = StageContext(config=config, run_dir=str(tmp_path), stage="split", show_progress=False)
    outputs = split_examples(frame, ctx)
    out, leaks = outputs["examples"], outputs["leaks"]
    report = summarize_split({name: frame.lazy() for name, frame in outputs.items()})
    # every planted copy whose original landed in another split is a reported pair
    before = split_frame(frame, ratios=RATIOS, seed=13, group_by="doc_id", stratify_by="label")
    where = dict(zip(before["example_id"], before["split"], strict=True))
    crossing = {p for p in planted if where[p] != where[p.removeprefix("leak-")]}
    assert crossing, "the planted copies should land in other splits for some documents"
    found = {tuple(sorted((a, b))) for a, b in leaks.select("example_id", "other_example_id").iter_rows()}
    for p in crossing:
        assert tuple(sorted((p, p.removeprefix("leak-")))) in found
    assert report["leakage"]["pairs_found"] >= len(crossing)
    if policy == "drop":
        assert report["leakage"]["pairs_remaining"] == 0
        dropped = set(leaks.filter(pl.col("action") == "dropped")["example_id"].to_list())
        assert dropped and not dropped & set(out["example_id"].to_list())
        # the train member of a pair is kept; the other one goes
        assert all(where[d] != "train" for d in dropped)
    else:
        assert report["leakage"]["pairs_remaining"] == report["leakage"]["pairs_found"] > 0
        assert out.height == frame.height


def _frame(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    """(doc_id, label, split) rows."""
    return pl.DataFrame(rows, schema={"doc_id": pl.String, "label": pl.String, "split": pl.String}, orient="row")


def test_split_warnings_name_missing_classes_and_small_splits() -> None:
    from curate.dataset.splitting import split_warnings

    # the demo's shape: validation and test each hold one document of one class
    rows = [(f"d{i}", label, "train") for i, label in enumerate(["a", "b", "c"] * 4)]
    rows += [("dv", "a", "validation"), ("dv", "a", "validation"), ("dt", "b", "test"), ("dt", "b", "test")]
    warnings = split_warnings(_frame(rows), ratios={"train": 0.8, "validation": 0.1, "test": 0.1},
                              by="label", group_by="doc_id", min_eval_rows=20)
    text = "\n".join(warnings)
    assert "validation (2 rows) has no example of 2 of 3 classes: b, c" in text
    assert "test (2 rows) has no example of 2 of 3 classes: a, c" in text
    assert "validation holds 2 example(s), fewer than split.min_eval_rows=20" in text
    assert "at least 3 distinct doc_id values and at least 10 rows" in text
    assert "the dataset needs about 200 examples (it has 16)" in text


def test_a_healthy_split_has_no_warnings() -> None:
    from curate.dataset.splitting import split_warnings

    rows = [(f"{split}-{label}-{i}", label, split) for split, n in (("train", 40), ("validation", 10), ("test", 10))
            for label in ("a", "b") for i in range(n)]
    assert split_warnings(_frame(rows), ratios={"train": 0.67, "validation": 0.165, "test": 0.165},
                          by="label", group_by="doc_id", min_eval_rows=20) == []


def test_a_test_example_contained_in_a_train_example_leaks_by_ngrams_not_minhash() -> None:
    """A short test example copied inside a long train example: Jaccard is low, containment is 1."""
    from curate.dataset.splitting import cross_split_pairs, leak_pairs, ngram_train_leaks

    copied = "Audit records are retained for ninety days and reviewed weekly by the security operations team lead."
    words = [f"filler{i}" for i in range(200)]
    frame = pl.DataFrame({
        "example_id": ["train-long", "test-copy", "test-own", "val-partial"],
        "split": ["train", "test", "test", "validation"],
        "text": [" ".join(words[:100]) + " " + copied + " " + " ".join(words[100:]),
                 copied,
                 "Backups of the warehouse database run nightly and are kept offsite for a full year at least.",
                 copied + " " + " ".join(f"new{i}" for i in range(40))],
    })
    assert cross_split_pairs(frame, text="text", threshold=0.8, num_perm=128, shingle_words=5).height == 0
    leaks = ngram_train_leaks(frame, text="text", n=13, share=0.5)
    assert leaks["example_id"].to_list() == ["test-copy"]  # val-partial: 5 of 45 13-grams from train
    assert leaks.row(0, named=True) == {"example_id": "test-copy", "split": "test", "other_example_id": "train-long",
                                        "other_split": "train", "similarity": 1.0, "action": ""}
    assert ngram_train_leaks(frame, text="text", n=13, share=0.05)["example_id"].to_list() == ["test-copy", "val-partial"]
    both = leak_pairs(frame, text="text", threshold=0.8, num_perm=128, shingle_words=5, ngram_words=13, ngram_share=0.5)
    assert both["example_id"].to_list() == ["test-copy"]
