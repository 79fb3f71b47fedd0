"""Example frames for the dataset stages, built from the shared SP 800-53 corpus.

Until upstream stages produce real data, these stand in for `review/examples`: each control
statement becomes a classification example (statement -> control family), grouped by a
synthetic document id = the base control (AC-2 and its enhancements AC-2(1)... form one
document). The assistant answer is the *known* family, not a model output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curate.config import PipelineConfig, parse_config
from schemas.ids import content_id
from schemas.records import Example, frame_of

INSTRUCTION = "Which control family does this passage belong to? Answer with the label and a supporting quote."
SYSTEM = "You are a precise domain expert. Answer only from the given passage."


def load_controls(corpus: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (corpus / "controls.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    seen: set[str] = set()
    unique = []
    for row in rows:  # withdrawn controls share boilerplate statements: keep the first
        statement = " ".join(str(row.get("statement") or "").split())
        if statement and statement not in seen:
            seen.add(statement)
            unique.append(row)
    return unique


def base_control(control_id: str) -> str:
    return re.sub(r"\(.*$", "", control_id).strip()


def example_rows(controls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Known-label classification examples (family of each control), as Example dicts."""
    rows = []
    for control in controls:
        statement = " ".join(control["statement"].split())
        doc_id = content_id("doc", base_control(control["id"]))
        chunk_id = content_id(doc_id, control["id"])
        output = {"label": control["family"], "quote": statement[:80]}
        output_json = json.dumps(output, sort_keys=True)
        rows.append(
            Example(
                example_id=content_id(chunk_id, "classification", output_json),
                chunk_id=chunk_id,
                doc_id=doc_id,
                task_type="classification",
                label=control["family"],
                output_json=output_json,
                messages=[
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"{INSTRUCTION}\n\n{statement}"},
                    {"role": "assistant", "content": output_json},
                ],
                sample_ids=[content_id(chunk_id, "sample", 0)],
                grounding_score=1.0,
                cost_usd=0.001,
            ).model_dump(mode="json")
        )
    return rows


@pytest.fixture(scope="session")
def controls(shared_corpus: Path) -> list[dict[str, Any]]:
    return load_controls(shared_corpus)


@pytest.fixture(scope="session")
def families(controls: list[dict[str, Any]]) -> list[str]:
    return sorted({c["family"] for c in controls})


@pytest.fixture(scope="session")
def examples(controls: list[dict[str, Any]]) -> pl.DataFrame:
    return frame_of(Example, example_rows(controls))


def make_config(run_dir: Path, families: list[str], **sections: Any) -> PipelineConfig:
    data: dict[str, Any] = {
        "name": "sp800-53-test",
        "run_dir": str(run_dir),
        "task": {"type": "classification", "name": "family", "instruction": INSTRUCTION,
                 "system_prompt": SYSTEM, "labels": families},
    }
    data.update(sections)
    return parse_config(data, source="test", base_dir=run_dir)
