"""bench/decontam at a tiny size: the planted answers are built as the README says, and the
default check finds at least what plain 13-gram matching finds, with no false positive."""

from __future__ import annotations

import polars as pl
import pytest

from bench.decontam.run import CORPUS, build, evaluate
from curate.filter.similarity_config import DecontaminateConfig, EvalSet
from curate.services.similarity.ngrams import text_ngrams

pytestmark = pytest.mark.skipif(not CORPUS.exists(), reason=f"corpus not found: {CORPUS}")


def test_planted_items_and_the_methods_side_by_side() -> None:
    answers, items = build(300, 12, seed=3)
    counts = answers.group_by("variant").len().sort("variant")
    assert dict(counts.iter_rows()) == {"clean": 264, "number": 12, "paraphrase": 12, "verbatim": 12}
    clean = answers.filter(pl.col("variant") == "clean")
    answer_grams, _ = text_ngrams(clean["text"], 8)
    item_grams, _ = text_ngrams(items["text"], 8)
    assert not set(answer_grams.tolist()) & set(item_grams.tolist())  # a flagged clean answer is a real error
    verbatim = answers.filter(pl.col("variant") == "verbatim").join(items.rename({"text": "item_text"}), on="item")
    assert all(i in t for t, i in zip(verbatim["text"], verbatim["item_text"], strict=True))
    spec = (EvalSet(path="bench", name="bench"),)
    base = evaluate(answers, items, DecontaminateConfig(eval_sets=spec, minhash=False))
    full = evaluate(answers, items, DecontaminateConfig(eval_sets=spec))
    assert base["verbatim"] == full["verbatim"] == (12, 12)
    for variant in ("paraphrase", "number"):
        assert full[variant][0] >= base[variant][0]
    assert base["fp"] == full["fp"] == 0
