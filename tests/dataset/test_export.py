"""validate -> split -> export on the corpus examples: every format loads back and matches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from datasets import load_dataset, load_from_disk

from curate.dataset.splitting import SPLITS
from curate.dataset.stages import STAGES
from curate.run.rundir import RunDir
from curate.run.runner import Runner
from tests.dataset.conftest import INSTRUCTION, make_config

SECRET_ORIGINAL = "jane.doe.planted@example.org"
# The card's embedding measures (a sentence encoder over every instruction: about a minute for
# these 1,100 rows on 2 cores, per export) prove nothing here; tests/dataset/test_diversity.py
# and the demo run (tests/demo) cover them.
NO_EMBEDDINGS = {"diversity": {"embeddings": False}}


@pytest.fixture(scope="module")
def exported(examples: pl.DataFrame, families: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run directory where earlier stages are recorded in the manifest (a generate usage
    report, a redact report) and redaction state holds a planted mapping; then the three
    dataset stages run for real."""
    run_dir = tmp_path_factory.mktemp("run")
    rundir = RunDir(run_dir)
    rundir.commit_stage("review", {"examples": examples})
    (run_dir / "redact.state" / "mapping").mkdir(parents=True)
    (run_dir / "redact.state" / "mapping" / "doc-elsewhere.json").write_text(json.dumps({
        "doc_id": "doc-elsewhere",
        "entries": [{"placeholder": "<EMAIL_ADDRESS_1>", "entity": "EMAIL_ADDRESS", "value": SECRET_ORIGINAL,
                     "action": "replace"}],
    }), encoding="utf-8")
    rundir.save_manifest({"stages": {
        "generate": {"status": "complete", "rows_in": 900, "rows": {"samples": 2700, "errors": 3}, "errors": 3,
                     "finished_at": "2026-11-23T10:00:00+00:00",
                     "report": {"funnel": [{"step": "samples ok", "rows": 2697}],
                                "usage": {"generate": {"input_tokens": 123456, "output_tokens": 7890,
                                                       "cost_usd": 1.2345, "model": "m"}}}},
        "refine": {"status": "complete", "rows_in": 40, "rows": {"examples": 30}, "errors": 0,
                   "finished_at": "2026-11-23T11:00:00+00:00",
                   "report": {"usage": {"input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.5}}},
        "redact": {"status": "complete", "rows_in": 900, "rows": {"chunks": 900, "findings": 4}, "errors": 0,
                   "finished_at": "2026-11-23T09:00:00+00:00",
                   "report": {"mapping": {"<EMAIL_1>": SECRET_ORIGINAL}}},
    }})
    config = make_config(run_dir, families, export=NO_EMBEDDINGS)
    result = Runner(config, STAGES, show_progress=False).run()
    assert result.exit_code == 0
    return {"run_dir": run_dir, "config": config, "split": rundir.read("split/examples"),
            "folder": run_dir / config.export.dir, "manifest": rundir.load_manifest()}


def _source(exported: dict[str, Any], split: str) -> list[dict[str, Any]]:
    frame = exported["split"].filter(pl.col("split") == split).sort("example_id")
    return frame.to_dicts()


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in row["messages"]]


def test_export_folder_layout(exported: dict[str, Any]) -> None:
    folder: Path = exported["folder"]
    for split in SPLITS:
        assert (folder / f"{split}.jsonl").exists()
        for sub, ext in (("sharegpt", "jsonl"), ("alpaca", "jsonl"), ("parquet", "parquet")):
            assert (folder / sub / f"{split}.{ext}").exists()
    assert (folder / "hf" / "dataset_dict.json").exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]  # no temp left
    files = RunDir(exported["run_dir"]).read("export/manifest")
    assert files.filter(pl.col("format") == "openai")["rows"].sum() == exported["split"].height


@pytest.mark.parametrize("split", SPLITS)
def test_openai_jsonl_round_trip(exported: dict[str, Any], split: str, tmp_path: Path) -> None:
    loaded = load_dataset("json", data_files=str(exported["folder"] / f"{split}.jsonl"), split="train",
                          cache_dir=str(tmp_path))
    source = _source(exported, split)
    assert len(loaded) == len(source) > 0
    for got, want in zip(loaded, source, strict=True):
        assert got["messages"] == _messages(want)
        for key in ("example_id", "label", "task_type", "doc_id", "chunk_id"):
            assert got[key] == want[key]
        assert got["split"] == split


def test_sharegpt_round_trip(exported: dict[str, Any], tmp_path: Path) -> None:
    loaded = load_dataset("json", data_files=str(exported["folder"] / "sharegpt" / "train.jsonl"), split="train",
                          cache_dir=str(tmp_path))
    source = _source(exported, "train")
    role = {"system": "system", "user": "human", "assistant": "gpt"}
    assert len(loaded) == len(source)
    for got, want in zip(loaded, source, strict=True):
        assert got["id"] == want["example_id"]
        assert got["conversations"] == [{"from": role[m["role"]], "value": m["content"]} for m in want["messages"]]


def test_alpaca_round_trip(exported: dict[str, Any], tmp_path: Path) -> None:
    loaded = load_dataset("json", data_files=str(exported["folder"] / "alpaca" / "test.jsonl"), split="train",
                          cache_dir=str(tmp_path))
    source = _source(exported, "test")
    assert len(loaded) == len(source)
    for got, want in zip(loaded, source, strict=True):
        system, user, assistant = (m["content"] for m in want["messages"])
        assert got["instruction"] == INSTRUCTION
        assert f"{got['instruction']}\n\n{got['input']}" == user
        assert got["output"] == assistant and got["system"] == system
        assert got["example_id"] == want["example_id"] and got["label"] == want["label"]


def test_parquet_and_hf_round_trip(exported: dict[str, Any], tmp_path: Path) -> None:
    folder: Path = exported["folder"]
    parquet = load_dataset("parquet", data_files={s: str(folder / "parquet" / f"{s}.parquet") for s in SPLITS},
                           cache_dir=str(tmp_path))
    hf = load_from_disk(str(folder / "hf"))
    assert set(hf.keys()) == set(SPLITS)
    for split in SPLITS:
        source = _source(exported, split)
        for loaded in (parquet[split], hf[split]):
            assert len(loaded) == len(source)
            assert loaded["example_id"] == [r["example_id"] for r in source]
            assert loaded["label"] == [r["label"] for r in source]
            assert loaded["messages"] == [_messages(r) for r in source]
            assert loaded["output_json"] == [r["output_json"] for r in source]


def test_card_has_funnel_cost_distributions_validation_config(exported: dict[str, Any]) -> None:
    folder: Path = exported["folder"]
    card = (folder / "README.md").read_text(encoding="utf-8")
    for heading in ("## Funnel", "## Cost", "## Class distribution", "## Length distribution", "## Validation",
                    "## Split", "## Config"):
        assert heading in card
    assert "| generate | complete | 900 | samples=2700, errors=3 | 3 |" in card
    assert "| validate | complete |" in card and "| split | complete |" in card
    assert "| generate/generate | 123456 | 7890 | 1.2345 |" in card
    assert "| refine | 1000 | 100 | 0.5 |" in card and "Total teacher cost recorded: $1.7345" in card
    assert "| generate | samples ok |  | 2697 |  |" in card
    split = exported["split"]
    train_ac = split.filter((pl.col("split") == "train") & (pl.col("label") == "AC")).height
    assert f"| AC | {train_ac} (" in card
    report = exported["manifest"]["stages"]["validate"]["report"]["summary"]
    assert f"{report['passed']}/{report['evaluated']} expectations passed" in card
    assert "labels:\n  - AC" in card  # the config, as YAML
    for png in ("label_distribution.png", "length_distribution.png"):
        data = (folder / "plots" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and f"plots/{png}" in card


def test_card_never_contains_redaction_mappings(exported: dict[str, Any]) -> None:
    folder: Path = exported["folder"]
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in {".md", ".jsonl", ".json"}:
            assert SECRET_ORIGINAL not in path.read_text(encoding="utf-8"), path


def test_export_is_swapped_in_atomically(exported: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure midway leaves the previous export untouched and no temp folder behind."""
    import curate.dataset.stages as stages

    folder: Path = exported["folder"]
    before = (folder / "train.jsonl").read_bytes()

    def boom(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(stages, "render_card", boom)
    export = [s for s in STAGES if s.name == "export"]
    with pytest.raises(RuntimeError, match="simulated"):
        Runner(exported["config"], export, show_progress=False, force=True).run()
    assert (folder / "train.jsonl").read_bytes() == before
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


def test_qa_task_without_labels_round_trips(controls: list[dict[str, Any]], tmp_path: Path) -> None:
    """A non-classification task: label is null, strata are the task type, exports still load."""
    from curate.config import parse_config
    from schemas.ids import content_id
    from schemas.records import Example, frame_of

    instruction = "Answer the question from the passage."
    rows: list[dict[str, Any]] = []
    for control in controls[::6]:  # spread over the families: 18 documents
        statement = " ".join(control["statement"].split())
        output = {"question": f"What does {control['id']} ({control['title']}) require?", "answer": statement,
                  "quote": statement[:60]}
        output_json = json.dumps(output, sort_keys=True)
        doc_id = content_id("doc", control["family"])  # one document per family
        chunk_id = content_id(doc_id, control["id"])
        rows.append(Example(
            example_id=content_id(chunk_id, "qa", output_json), chunk_id=chunk_id, doc_id=doc_id, task_type="qa",
            output_json=output_json, sample_ids=[], messages=[
                {"role": "user", "content": f"{instruction}\n\n{statement}\n\nQuestion: {output['question']}"},
                {"role": "assistant", "content": statement},
            ],
        ).model_dump(mode="json"))
    run_dir = tmp_path / "run"
    RunDir(run_dir).commit_stage("review", {"examples": frame_of(Example, rows)})
    config = parse_config({"run_dir": str(run_dir), "task": {"type": "qa", "instruction": instruction},
                           "export": NO_EMBEDDINGS}, source="test", base_dir=tmp_path)
    assert Runner(config, STAGES, show_progress=False).run().exit_code == 0
    split = RunDir(run_dir).read("split/examples")
    assert split.group_by("doc_id").agg(pl.col("split").n_unique())["split"].max() == 1
    folder = run_dir / config.export.dir
    for name in SPLITS:
        source = split.filter(pl.col("split") == name).sort("example_id")
        loaded = load_dataset("json", data_files=str(folder / f"{name}.jsonl"), split="train", cache_dir=str(tmp_path / "c"))
        assert loaded["example_id"] == source["example_id"].to_list()
        assert all(label is None for label in loaded["label"])
        assert loaded["messages"] == [_messages(r) for r in source.to_dicts()]
    assert "| qa |" in (folder / "README.md").read_text(encoding="utf-8")  # strata: the task type


def test_card_guard_refuses_a_redacted_value(exported: dict[str, Any]) -> None:
    """If a redacted original would reach the card (here: a mapping value equal to the
    config's name, which the card prints), the export fails and the old folder stays."""
    folder: Path = exported["folder"]
    before = (folder / "README.md").read_text(encoding="utf-8")
    planted = exported["run_dir"] / "redact.state" / "mapping" / "doc-guard.json"
    planted.write_text(json.dumps({"doc_id": "doc-guard", "entries": [
        {"placeholder": "<ORG_1>", "entity": "ORGANIZATION", "value": exported["config"].name, "action": "replace"}]}))
    try:
        export = [s for s in STAGES if s.name == "export"]
        with pytest.raises(RuntimeError, match="redacted original"):
            Runner(exported["config"], export, show_progress=False, force=True).run()
    finally:
        planted.unlink()
    assert (folder / "README.md").read_text(encoding="utf-8") == before
