"""Fixtures of the review tests: a small run directory built from real NIST controls, and a
real Label Studio server (integration tests only)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import BaseModel

from curate.config import PipelineConfig, parse_config
from schemas.ids import content_id
from schemas.records import Chunk, Example, frame_of

FAMILIES = {"AC": "access-control", "IR": "incident-response", "CP": "contingency-planning", "AU": "audit"}
TASK = {
    "type": "classification",
    "name": "control-family",
    "instruction": "Which control family does this passage belong to? Answer with the label and a supporting quote.",
    "labels": list(FAMILIES.values()),
}
SYSTEM = "You are a precise domain expert. Answer only from the given passage."


def _controls(corpus: Path, per_family: int = 3) -> list[dict[str, Any]]:
    chosen: dict[str, list[dict[str, Any]]] = {family: [] for family in FAMILIES}
    with open(corpus / "controls.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            family = record["family"]
            if family in chosen and len(chosen[family]) < per_family and len(record["statement"]) > 120:
                chosen[family].append(record)
    return [record for records in chosen.values() for record in records]


def build_run(corpus: Path, run_dir: Path, review: dict[str, Any] | None = None) -> PipelineConfig:
    """A run directory holding `redact/chunks` and `dedup/examples` as the filters would leave
    them: one chunk per control statement, one example per chunk whose label is the control's
    true family and whose quote is the statement's first sentence (every other example, its
    evidence without the final ".") or its first words. Agreement and grounding vary
    so that some examples are borderline. (Hand-made stand-ins for teacher output.)"""
    chunks: list[BaseModel] = []
    examples: list[BaseModel] = []
    for index, record in enumerate(_controls(corpus)):
        text = record["statement"]
        doc_id = content_id("controls.jsonl", record["id"])
        chunk_id = content_id(doc_id, 0, len(text))
        chunks.append(Chunk(
            chunk_id=chunk_id, doc_id=doc_id, source_path="controls.jsonl", text=text, start=0,
            end=len(text), heading_path=[record["family_title"], f"{record['id']} {record['title']}"],
            n_tokens=len(text.split()),
        ))
        stop = text.find(". ", 40)
        if index % 2 == 0 and 20 < stop < 300:
            # a whole sentence, whose evidence leaves out the final "." as the grounding filter does
            quote, evidence_end = text[: stop + 1], stop
        else:
            quote = text[: text.rfind(" ", 0, 100)]
            evidence_end = len(quote)
        start = 0
        output = {"label": FAMILIES[record["family"]], "quote": quote}
        output_json = json.dumps(output, separators=(",", ":"), ensure_ascii=False)  # as model_dump_json
        agreement = 1.0 if index % 3 else 2 / 3
        grounding = 1.0 if index % 4 else 0.9
        examples.append(Example(
            example_id=content_id(chunk_id, "classification", output_json), chunk_id=chunk_id,
            doc_id=doc_id, task_type="classification", label=output["label"], output_json=output_json,
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"{TASK['instruction']}\n\n{text}"},
                {"role": "assistant", "content": output_json},
            ],
            sample_ids=[content_id(chunk_id, "sample", n) for n in range(3)], agreement=agreement,
            grounding_score=grounding,
            evidence=[{"field": "quote", "start": start, "end": evidence_end, "score": grounding}],
            quality_score=0.5 + 0.5 * agreement,
        ))
    for stage, name, frame in (("redact", "chunks", frame_of(Chunk, chunks)), ("dedup", "examples", frame_of(Example, examples))):
        (run_dir / stage).mkdir(parents=True, exist_ok=True)
        frame.write_parquet(run_dir / stage / f"{name}.parquet")
    return parse_config(
        {"name": "review-test", "run_dir": str(run_dir), "task": TASK, "review": review or {}},
        base_dir=run_dir,
    )


@pytest.fixture()
def review_run(shared_corpus: Path, tmp_path: Path) -> PipelineConfig:
    return build_run(shared_corpus, tmp_path / "run", {"audit_fraction": 0.5, "batch_size": 2})


@pytest.fixture()
def examples_frame(review_run: PipelineConfig) -> pl.DataFrame:
    return pl.read_parquet(review_run.run_path / "dedup" / "examples.parquet")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Label Studio server (installs .ls-venv on first use: a few minutes), on a free
    port with a fresh data folder, stopped at the end of the session."""
    from curate.review import server

    data_dir = tmp_path_factory.mktemp("label-studio")
    saved = {k: os.environ.pop(k, None) for k in ("LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN")}
    try:
        handle = server.start(port=server.free_port(), data_dir=data_dir, quiet=True, timeout=480)
    finally:
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value
    try:
        yield handle
    finally:
        server.stop(data_dir)
