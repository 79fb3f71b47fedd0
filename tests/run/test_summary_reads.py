"""Stage summaries read only the columns they use (issue 19: no process holds the corpus).

The outputs come as lazy frames; here a frame's source raises if a query asks it for the
`text` column, so a summary that reads `text` fails instead of passing unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.io.plugins import register_io_source

from curate.filter.base import reason_counts
from curate.filter.funnel import label_counts
from curate.ingest.stages import STAGES as INGEST_STAGES
from curate.ingest.stages import summarize_chunk
from curate.redact.stages import summarize as summarize_redact
from curate.run.dataset import read_dataset, write_part
from curate.run.executor import SummaryJob, run_summary

CHUNKS = pl.DataFrame({
    "chunk_id": ["c1", "c2", "c3", "c4"],
    "doc_id": ["a", "a", "b", "c"],
    "text": ["one", "two", "three", "four"],
    "n_tokens": [10, 20, 30, 60],
    "merged_small": [True, False, True, False],
})
CHUNK_REPORT = {"chunks": {
    "chunks": 4, "documents": 3, "tokens_total": 120, "tokens_mean": 30.0, "tokens_max": 60, "tokens_min": 10,
    "small_pieces_merged": 2,
}}


def no_text(frame: pl.DataFrame, asked: list[list[str]]) -> pl.LazyFrame:
    """`frame` as a lazy source that records the columns each read asks for and raises on `text`."""

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        columns = frame.columns if with_columns is None else with_columns
        asked.append(list(columns))
        if "text" in columns:
            raise AssertionError(f"the summary read the text column (asked for {columns})")
        out = frame.select(columns)
        out = out if predicate is None else out.filter(predicate)
        yield out if n_rows is None else out.head(n_rows)

    return register_io_source(source, schema=frame.schema)


def test_chunk_summary_never_reads_text() -> None:
    asked: list[list[str]] = []
    assert summarize_chunk({"chunks": no_text(CHUNKS, asked)}) == CHUNK_REPORT
    assert asked and all("text" not in columns for columns in asked)
    assert {"doc_id", "n_tokens", "merged_small"} <= {c for columns in asked for c in columns}


def test_the_guard_catches_a_read_of_text() -> None:
    with pytest.raises(Exception, match="text column"):
        no_text(CHUNKS, []).select(pl.col("text").str.len_chars().sum()).collect(engine="streaming")


def test_redact_summary_counts_chunks_without_their_text() -> None:
    findings = pl.DataFrame({
        "chunk_id": ["c1", "c1", "c3"], "entity_type": ["PERSON", "EMAIL", "PERSON"],
        "action": ["replace", "mask", "replace"], "text": ["x", "y", "z"],
    })
    recognizers = pl.DataFrame({"name": ["b", "a", "b"], "entities": [["EMAIL"], ["PERSON"], ["EMAIL"]],
                                "source": ["regex", "name-lists", "regex"]})
    report = summarize_redact({
        "chunks": no_text(CHUNKS, []), "findings": no_text(findings, []), "recognizers": recognizers.lazy(),
    })
    assert report["summary"]["chunks"] == 4
    assert report["summary"]["chunks_with_findings"] == 2
    assert report["summary"]["findings"] == 3
    assert report["per_action"] == {"mask": 1, "replace": 2}
    assert report["per_entity"] == [
        {"entity_type": "EMAIL", "action": "mask", "count": 1},
        {"entity_type": "PERSON", "action": "replace", "count": 2},
    ]
    assert [r["recognizer"] for r in report["active_recognizers"]] == ["a", "b"]


def test_filter_counts_read_only_their_columns() -> None:
    rejected = pl.DataFrame({"filter": ["len", "len", "lang"], "reason": ["short", "short", "en"],
                             "repairable": [True, True, False], "text": ["a", "b", "c"]})
    examples = pl.DataFrame({"label": ["x", None, "y", "x"], "text": ["a", "b", "c", "d"]})
    assert reason_counts(no_text(rejected, [])) == [
        {"filter": "len", "reason": "short", "repairable": True, "count": 2},
        {"filter": "lang", "reason": "en", "repairable": False, "count": 1},
    ]
    assert label_counts(no_text(examples, [])) == {"x": 2, "y": 1}


def test_worker_summary_over_parts_equals_the_whole_artifact(tmp_path: Path) -> None:
    """`run_summary` scans the parts; the report is the one of the artifact read whole."""
    folder = tmp_path / "chunks.parquet"
    folder.mkdir()
    write_part(CHUNKS.slice(2), str(folder / "part-00000.parquet"), "chunk_id")
    write_part(CHUNKS.slice(0, 2), str(folder / "part-00001.parquet"), "chunk_id")
    chunk = next(stage for stage in INGEST_STAGES if stage.name == "chunk")
    report = run_summary(SummaryJob(chunk, {"chunks": str(folder)}))
    assert report == CHUNK_REPORT
    assert report == summarize_chunk({"chunks": read_dataset(str(folder)).lazy()})
