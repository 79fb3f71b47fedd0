"""The redact stage through the runner: passthrough, redaction, mapping kept out of artifacts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from curate.redact.stages import STAGES, redact_chunks
from curate.run.executor import LocalExecutor
from curate.run.rundir import atomic_write_parquet
from curate.run.runner import Runner
from curate.run.stage import StageContext
from curate.services.pii.mapping import load_mappings, mapping_dir
from curate.services.pii.redactor import RedactionPolicyError, document_span
from schemas.records import Chunk, polars_schema
from tests.redact.conftest import chunk_frame, pipeline_config

PLANTED = {
    "email": "dana.whitfield@northwind-freight.example",
    "card": "4111 1111 1111 1111",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "dsn": "postgres://etl:Tr0ub4dor@db.internal.example.com:5432/ledger",
}

DOCS = {
    "doc-a": [
        f"Escalate to {PLANTED['email']} when the card {PLANTED['card']} is reported lost. ",
        f"The loader reads {PLANTED['dsn']} nightly. ",
        f"Again, only {PLANTED['email']} may approve; key {PLANTED['aws']} is revoked.",
    ],
    "doc-b": [f"Nothing personal here. Contact {PLANTED['email']} for questions.", " The end."],
}


def _run(tmp_path: Path, chunks: pl.DataFrame, partitions: int = 1, **redact: object) -> tuple[Runner, Path]:
    cfg = pipeline_config(tmp_path, **redact)
    run_dir = cfg.run_path
    atomic_write_parquet(chunks, run_dir / "chunk" / "chunks.parquet")
    runner = Runner(cfg, STAGES, executor=LocalExecutor(workers=1, partitions=partitions), show_progress=False)
    return runner, run_dir


def test_disabled_passes_chunks_through(make_ctx: Callable[..., StageContext]) -> None:
    chunks = chunk_frame(DOCS)
    out = redact_chunks(chunks, make_ctx(enabled=False))
    assert out["chunks"].drop("redactions").equals(chunks)
    assert out["chunks"]["redactions"].list.len().sum() == 0
    assert out["findings"].height == 0


def test_stage_redacts_and_keeps_ids_and_schema(tmp_path: Path) -> None:
    chunks = chunk_frame(DOCS)
    runner, run_dir = _run(tmp_path, chunks)
    result = runner.run()
    assert result.exit_code == 0
    redacted = pl.read_parquet(run_dir / "redact" / "chunks.parquet")
    assert sorted(redacted["chunk_id"]) == sorted(chunks["chunk_id"])
    for name, dtype in polars_schema(Chunk).items():
        assert redacted.schema[name] == dtype
    text = "\n".join(redacted["text"])
    for value in PLANTED.values():
        assert value not in text
    doc_a = redacted.filter(pl.col("doc_id") == "doc-a").sort("start")["text"].to_list()
    assert "<EMAIL_ADDRESS_1>" in doc_a[0] and "<EMAIL_ADDRESS_1>" in doc_a[2]  # same person, same placeholder
    assert "<CONNECTION_STRING_1>" in doc_a[1] and "<API_KEY_1>" in doc_a[2]
    report = json.loads((run_dir / "manifest.json").read_text())["stages"]["redact"]["report"]
    assert {"entity_type": "EMAIL_ADDRESS", "action": "replace", "count": 3} in report["per_entity"]
    sources = {item["source"] for item in report["active_recognizers"]}
    assert {"presidio", "detect-secrets"} <= sources and "spacy-ner" not in sources
    assert report["summary"]["ner"].startswith("NOT active")


def test_offsets_of_a_redacted_chunk_map_into_the_original_document(tmp_path: Path) -> None:
    chunks = chunk_frame(DOCS)
    original = "".join(DOCS["doc-a"])
    runner, run_dir = _run(tmp_path, chunks)
    runner.run()
    redacted = pl.read_parquet(run_dir / "redact" / "chunks.parquet").filter(pl.col("doc_id") == "doc-a")
    for row in redacted.iter_rows(named=True):
        for item in row["redactions"]:
            start, end = document_span(row, item["start"], item["end"])
            assert original[start:end] in PLANTED.values()
        tail = max([len(row["text"]) - 12, *(item["end"] for item in row["redactions"])])
        quote = row["text"][tail:]  # a quote outside placeholders maps to the same text
        start, end = document_span(row, tail, len(row["text"]))
        assert quote and original[start:end] == quote


def test_mapping_only_in_state_folder(tmp_path: Path) -> None:
    runner, run_dir = _run(tmp_path, chunk_frame(DOCS))
    runner.run()
    mappings = load_mappings(run_dir)
    assert {e["value"] for e in mappings["doc-a"]} == set(PLANTED.values())
    state = Path(mapping_dir(run_dir)).resolve()
    for path in run_dir.rglob("*"):
        if path.is_relative_to(run_dir / "chunk"):  # the original chunks stay as they were
            continue
        if path.is_file() and state not in path.resolve().parents:
            raw = path.read_bytes()
            if path.suffix == ".parquet":
                frame = pl.read_parquet(path)
                raw = frame.write_json().encode()
            for value in PLANTED.values():
                assert value.encode() not in raw, f"{value!r} in {path}"


def test_same_output_whatever_the_sharding(tmp_path: Path) -> None:
    chunks = chunk_frame(DOCS)
    one, dir_one = _run(tmp_path / "one", chunks, partitions=1)
    three, dir_three = _run(tmp_path / "three", chunks, partitions=3)
    one.run()
    three.run()
    for name in ("chunks", "findings"):
        assert pl.read_parquet(dir_one / "redact" / f"{name}.parquet").equals(
            pl.read_parquet(dir_three / "redact" / f"{name}.parquet")
        )


def test_fail_policy_stops_the_run(tmp_path: Path) -> None:
    runner, run_dir = _run(tmp_path, chunk_frame(DOCS), policies={"API_KEY": "fail"})
    with pytest.raises(RedactionPolicyError, match="API_KEY"):
        runner.run()
    assert not (run_dir / "redact" / "chunks.parquet").exists()
