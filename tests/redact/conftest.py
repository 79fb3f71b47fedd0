"""Fixtures of the redaction tests: one detector per test session (building it loads spaCy)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curate.config import PipelineConfig, parse_config
from curate.run.stage import StageContext
from curate.services.pii.config import RedactConfig
from curate.services.pii.engine import RedactEngine, get_engine
from schemas.ids import content_id
from schemas.records import Chunk, frame_of


@pytest.fixture(scope="session")
def engine() -> RedactEngine:
    return get_engine(RedactConfig(enabled=True))


def pipeline_config(tmp_path: Path, **redact: Any) -> PipelineConfig:
    return parse_config(
        {
            "run_dir": str(tmp_path / "run"),
            "task": {"type": "freeform", "instruction": "Summarise the passage."},
            "redact": {"enabled": True, **redact},
        },
        base_dir=tmp_path,
    )


def chunk_frame(docs: dict[str, list[str]]) -> pl.DataFrame:
    """Chunks of documents given as lists of consecutive pieces (doc_id -> pieces)."""
    rows = []
    for doc_id, pieces in docs.items():
        offset = 0
        for piece in pieces:
            rows.append(
                {
                    "chunk_id": content_id(doc_id, offset, offset + len(piece)),
                    "doc_id": doc_id,
                    "source_path": f"{doc_id}.md",
                    "text": piece,
                    "start": offset,
                    "end": offset + len(piece),
                    "heading_path": [],
                    "page": None,
                    "n_tokens": len(piece.split()),
                }
            )
            offset += len(piece)
    return frame_of(Chunk, rows)


@pytest.fixture
def make_ctx(tmp_path: Path) -> Callable[..., StageContext]:
    def make(**redact: Any) -> StageContext:
        cfg = pipeline_config(tmp_path, **redact)
        return StageContext(config=cfg, run_dir=str(tmp_path / "run"), stage="redact", show_progress=False)

    return make
