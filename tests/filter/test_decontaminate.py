"""filter.decontaminate: n-gram, MinHash and embedding matches against evaluation sets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from curate.config import load_config
from curate.filter.decontaminate import EvalIndex, EvalSetError, decontaminate, read_eval_set, read_eval_sets
from curate.filter.similarity_config import DecontaminateConfig, EvalSet
from curate.pipeline import all_stages
from curate.run.runner import Runner
from curate.services.similarity.ngrams import ngram_hashes, text_ngrams, word_hashes, words_of

LONG_ITEM = ("How often must the organization review and update the access control policy according to the "
             "moderate baseline? It must review and update the policy every 365 days.")
SHORT_ITEM = "Which control requires the information system to lock a session after 15 minutes of inactivity?"
TOO_SHORT = "What is MFA?"
FILLER = "The passage describes the account provisioning steps in detail for the dispatch platform team."


def index_of(*texts: str, **config: object) -> EvalIndex:
    items = pl.DataFrame({"set": "sec-eval", "item": [f"q{i + 1}" for i in range(len(texts))], "text": list(texts)})
    cfg = DecontaminateConfig(eval_sets=(EvalSet(path="unused.jsonl", name="sec-eval"),), **config)  # type: ignore[arg-type]
    return EvalIndex.build(cfg, items)


def check(index: EvalIndex, texts: dict[str, str]) -> pl.DataFrame:
    frame = pl.DataFrame({"example_id": list(texts), "text": list(texts.values())})
    return decontaminate(frame, text="text", index=index).rejected


def test_ngram_hashes_are_order_sensitive_and_only_full_length() -> None:
    hashes, lengths = word_hashes(words_of(pl.Series(["a b c d", "d c b a", "a b"])))
    grams, doc = ngram_hashes(hashes, lengths, 3)
    assert doc.tolist() == [0, 0, 1, 1]  # a text shorter than n has no n-gram
    assert len(set(grams.tolist())) == 4
    same, _ = text_ngrams(pl.Series(["A  b, C!"]), 3)
    assert same[0] == grams[0]  # normalised words: case, punctuation, spacing do not matter
    assert grams.dtype == np.uint64


def test_a_verbatim_item_is_found_by_its_ngrams_and_named() -> None:
    rejected = check(index_of(LONG_ITEM, SHORT_ITEM), {
        "planted": f"{FILLER} {LONG_ITEM} Then more text follows here.",
        "clean": FILLER,
    })
    assert rejected["example_id"].to_list() == ["planted"]
    row = rejected.row(0, named=True)
    assert (row["eval_set"], row["eval_item"], row["method"]) == ("sec-eval", "q1", "ngram")
    assert row["detail"].startswith("sec-eval item q1 (ngram: ") and "13-gram" in row["detail"]


def test_a_changed_number_escapes_13_grams_but_not_the_minhash_near_match() -> None:
    changed = SHORT_ITEM.replace("15 minutes", "30 minutes")
    planted = {"changed": f"{FILLER}\n{changed}"}
    assert check(index_of(SHORT_ITEM, minhash=False), planted).height == 0  # every 13-gram holds the number
    rejected = check(index_of(SHORT_ITEM), planted)
    assert rejected["method"].to_list() == ["minhash"]
    assert "Jaccard" in rejected["detail"][0]


def test_an_item_shorter_than_n_is_matched_whole_and_a_tiny_one_is_counted_not_matched() -> None:
    short = "Contractor accounts expire after ninety days unless renewed"  # 8 words < 13
    index = index_of(short, TOO_SHORT, minhash=False)
    rejected = check(index, {"a": "Note that contractor accounts expire after ninety days unless renewed by sponsors.",
                             "b": "What is MFA? It is a second factor."})
    assert rejected["example_id"].to_list() == ["a"] and rejected["detail"][0].endswith("8-gram(s))")
    assert index.skipped_short == {"sec-eval": 1}


def test_the_report_counts_per_set_and_method() -> None:
    index = index_of(LONG_ITEM, SHORT_ITEM)
    frame = pl.DataFrame({"example_id": ["a", "b", "c"], "text": [LONG_ITEM, SHORT_ITEM.replace("15", "20"), FILLER]})
    report = decontaminate(frame, text="text", index=index).report
    assert report["sets"]["sec-eval"]["examples_matched"] == 2
    assert report["sets"]["sec-eval"]["by_ngram"] == 1
    assert report["sets"]["sec-eval"]["items"] == 2


@pytest.mark.slow
def test_a_paraphrase_needs_the_embedding_check() -> None:
    """Real all-MiniLM-L6-v2 (from its PyPI wheel): a reworded item shares too few words for MinHash."""
    paraphrase = "How many days may pass before the organization must revisit and refresh its access control policy?"
    item = "How often must the organization review and update the access control policy?"
    planted = {"p": f"{FILLER}\n{paraphrase}", "clean": f"{FILLER}\nBackups run nightly to the secondary site."}
    assert check(index_of(item), planted).height == 0
    rejected = check(index_of(item, embedding=True, embedding_threshold=0.75), planted)
    assert rejected["example_id"].to_list() == ["p"] and rejected["method"][0] == "embedding"


# ------------------------------------------------------------------------- eval set files
def test_eval_sets_in_every_format(tmp_path: Path) -> None:
    rows = [{"id": "e1", "question": "Q one?", "answer": "A one."}, {"id": "e2", "question": "Q two?", "answer": None}]
    (tmp_path / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    pl.DataFrame(rows).write_parquet(tmp_path / "set.parquet")
    pl.DataFrame(rows).write_csv(tmp_path / "set.csv")
    (tmp_path / "bench.txt").write_text("First item\nstill first.\n\n\nSecond item.\n", encoding="utf-8")
    for suffix in ("jsonl", "parquet", "csv"):
        spec = EvalSet(path=f"set.{suffix}", fields=("question", "answer"), id_field="id")
        items = read_eval_set(spec, tmp_path / f"set.{suffix}")
        assert items["item"].to_list() == ["e1", "e2"], suffix
        assert items["text"][0] == "Q one?\nA one." and items["text"][1] == "Q two?", suffix
    text = read_eval_set(EvalSet(path="bench.txt"), tmp_path / "bench.txt")
    assert text["text"].to_list() == ["First item\nstill first.", "Second item."]
    assert text["item"].to_list() == ["paragraph 1", "paragraph 2"]
    config = DecontaminateConfig(eval_sets=(EvalSet(path="set.jsonl", fields=("question",)),
                                            EvalSet(path="bench.txt", name="bench")))
    both = read_eval_sets(config, lambda p: tmp_path / p)
    assert both["set"].unique(maintain_order=True).to_list() == ["set.jsonl", "bench"]
    (tmp_path / "mc.jsonl").write_text(json.dumps({"q": "Pick one.", "choices": ["alpha", "beta"]}) + "\n", encoding="utf-8")
    choices = read_eval_set(EvalSet(path="mc.jsonl", fields=("q", "choices")), tmp_path / "mc.jsonl")
    assert choices["text"].to_list() == ["Pick one.\nalpha\nbeta"]  # a list field, one element a line


def test_a_missing_field_or_file_names_the_file_and_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "set.jsonl").write_text(json.dumps({"prompt": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(EvalSetError, match=r"set\.jsonl: no field\(s\) question; the records have: prompt"):
        read_eval_set(EvalSet(path="set.jsonl", fields=("question",)), tmp_path / "set.jsonl")
    with pytest.raises(EvalSetError, match="no file"):
        read_eval_set(EvalSet(path="gone.jsonl"), tmp_path / "gone.jsonl")
    with pytest.raises(ValueError, match="names must be unique"):
        DecontaminateConfig(eval_sets=(EvalSet(path="a/x.jsonl"), EvalSet(path="b/x.jsonl")))


# ------------------------------------------------------------------------- in the pipeline
def through_dedup() -> list:
    stages = all_stages()
    return stages[: [s.name for s in stages].index("dedup") + 1]


@pytest.mark.integration
def test_the_demo_rejects_contaminated_examples_and_reports_per_set(demo_config_path: Path, tmp_path: Path) -> None:
    """Demo through dedup with an eval set holding one passage of a demo document verbatim:
    the examples of that passage are rejected `contaminated`, the funnel has the step (and the
    semantic dedup's), the dedup report counts per set; editing the eval set re-runs dedup and
    nothing else."""
    demo = tmp_path / "demo"
    shutil.copytree(demo_config_path.parent, demo, ignore=shutil.ignore_patterns("__pycache__"))
    passage = ("Accounts for contractors expire automatically after 90 days unless the sponsor renews them. "
               "When a person changes role, access belonging to the old role is removed within 5 working days.")
    (demo / "eval.jsonl").write_text(json.dumps({"id": "leak-1", "question": passage}) + "\n"
                                     + json.dumps({"id": "clean-1", "question": "What colour is the sky on Mars at noon?"}) + "\n",
                                     encoding="utf-8")
    config_file = demo / "pipeline.yaml"
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    data["run_dir"] = str(tmp_path / "run")
    data.setdefault("filter", {})["decontaminate"] = {
        "eval_sets": [{"path": "eval.jsonl", "name": "held-out", "fields": ["question"], "id_field": "id"}]}
    data["filter"]["semantic_dedup"] = {"enabled": True, "threshold": 0.97}  # runs after MinHash, in the same stage
    config_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    config = load_config(config_file)

    assert Runner(config, through_dedup(), show_progress=False).run().exit_code == 0
    rejected = pl.read_parquet(tmp_path / "run/dedup/rejected.parquet").filter(pl.col("reason") == "contaminated")
    assert rejected.height >= 1
    assert set(rejected["filter"]) == {"decontaminate"}
    assert all(d.startswith("held-out item leak-1 (ngram") for d in rejected["detail"])
    funnel = pl.read_parquet(tmp_path / "run/dedup/funnel.parquet")
    step = funnel.filter(pl.col("step") == "decontaminate").row(0, named=True)
    assert step["rejected"] == rejected.height
    semantic = funnel.filter(pl.col("step") == "semantic").row(0, named=True)
    all_rejected = pl.read_parquet(tmp_path / "run/dedup/rejected.parquet")
    assert semantic["rejected"] == all_rejected.filter(pl.col("reason") == "semantic_duplicate").height
    assert semantic["rows_out"] == pl.read_parquet(tmp_path / "run/dedup/examples.parquet").height
    manifest = json.loads((tmp_path / "run/manifest.json").read_text(encoding="utf-8"))
    counts = manifest["stages"]["dedup"]["report"]["contamination"]["sets"]["held-out"]
    assert counts["examples_matched"] == rejected.height and counts["items"] == 2 and counts["items_matched"] == 1

    (demo / "eval.jsonl").write_text(json.dumps({"id": "clean-1", "question": "What colour is the sky?"}) + "\n",
                                     encoding="utf-8")
    again = Runner(config, through_dedup(), show_progress=False).run()
    statuses = {s.name: s.status for s in again.stages}
    assert statuses["dedup"] == "complete" and statuses["filter"] == "skipped"
    rejected = pl.read_parquet(tmp_path / "run/dedup/rejected.parquet")
    assert rejected.filter(pl.col("reason") == "contaminated").height == 0
