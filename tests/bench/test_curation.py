"""bench/curation on a tiny corpus: the simulated faulty teacher, through the real pipeline,
leaves the kinds of rejections it plants, and the variants differ as their config says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.curation.run import CONTROLS, INSTRUCTION, curate_variants

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CONTROLS.exists(), reason=f"corpus not found: {CONTROLS}")]


def test_simulated_teacher_through_the_real_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "data"
    report = curate_variants(out, tmp_path / "work", variants=["raw", "full", "no-dedup"], limit=36,
                             copies_share=0.5)
    full, raw, no_dedup = (report["variants"][v] for v in ("full", "raw", "no-dedup"))
    reasons = {key.split("/")[0] for key in full["rejections"]} | set(full["rejections"])
    for expected in ("schema", "consistency/minority_label", "grounding/quote_not_in_source", "dedup/near_duplicate"):
        assert expected in reasons, (expected, full["rejections"])
    # one repair request per repaired chunk, three (teacher.samples) where the vote split (refine.revote)
    repaired, refine_requests = full["chunks_repaired"], report["simulator"]["by_purpose"]["refine"]
    assert 0 < repaired < refine_requests <= 3 * repaired
    assert full["refine_rejections"].get("consistency/minority_label", 0) + full["refine_rejections"].get(
        "consistency/no_majority", 0) > 0  # the voted repairs were voted on
    assert full["raw_samples"] == 3 * full["chunks"] and raw["raw_samples"] == raw["chunks"]
    # raw: one answer per chunk, only the unparsable ones dropped
    assert set(raw["rejections"]) <= {"schema/schema_error", "schema/invalid_json", "schema/missing_field",
                                      "schema/label_not_in_taxonomy"}
    assert raw["kept_examples"] == raw["samples_parsed"]
    assert no_dedup["kept_examples"] == full["kept_examples"] + full["rejections"]["dedup/near_duplicate"]
    assert "dedup/near_duplicate" not in no_dedup["rejections"]
    # the gold test set carries the corpus's labels and never a pool control
    gold = [json.loads(line) for line in (out / "gold_test.jsonl").read_text().splitlines()]
    assert gold and all(set(row) == {"id", "text", "label"} for row in gold)
    pool_texts = {json.loads(line)["messages"][1]["content"].removeprefix(INSTRUCTION + "\n\n")
                  for line in (out / "full" / "train.jsonl").open()}
    assert pool_texts and not pool_texts & {row["text"] for row in gold}
    saved = json.loads((out / "variants.json").read_text())
    assert saved["variants"]["full"]["kept_examples"] == full["kept_examples"]
