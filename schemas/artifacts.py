"""Every artifact of a run, declared once: which stage writes it, its name, its columns.

A stage declares its outputs with these handles and a consumer names the producer's handle
(`REDACTED_CHUNKS`), never a string such as "redact/chunks", so a renamed artifact or a
changed record type is one edit here and the runner's graph check (`curate.run.graph`)
catches a consumer that no longer matches. The handles live in `schemas/` because stages
never import one another: producer and consumer both import this module.

An artifact's columns are its record model's (`schemas.records`, through `polars_schema`) plus
the `columns` declared here; a report frame that no record models declares all of its columns
here. Stages build their frames from `artifact.schema`, so no stage module holds a polars
schema of an artifact (tests/test_artifacts.py holds both rules).

Side files are what a stage keeps beside its Parquet outputs (the redaction mapping, the
review decisions, the teacher's request log); declaring them lets the manifest list and hash
them after the stage that writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pydantic import BaseModel

from schemas.records import (
    Chunk,
    Document,
    ErrorRecord,
    Example,
    Rejection,
    ReviewDecision,
    Sample,
    SourceFile,
    polars_schema,
)

SPLITS = ("train", "validation", "test")  # the dataset's splits, in this order everywhere


def _columns(record: type[BaseModel] | None, columns: Mapping[str, pl.DataType] | None) -> pl.Schema:
    return pl.Schema({**(polars_schema(record) if record is not None else {}), **(columns or {})})


def _frame(schema: pl.Schema, rows: Sequence[Mapping[str, Any]] | None) -> pl.DataFrame:
    """Rows as a frame of `schema`; a key the schema does not declare is an error, not dropped."""
    if not rows:
        return pl.DataFrame(schema=schema)
    undeclared = {key for row in rows for key in row} - set(schema)
    if undeclared:
        raise ValueError(f"columns not declared in schemas.artifacts: {sorted(undeclared)}")
    return pl.DataFrame(list(rows), schema=schema, orient="row")


@dataclass(frozen=True)
class Artifact:
    """`<run_dir>/<stage>/<name>.parquet`, rows of `record` (None: a report frame) with `columns`
    beside the record's, sorted by `key`."""

    stage: str
    name: str
    record: type[BaseModel] | None = None
    key: str | None = None
    columns: Mapping[str, pl.DataType] | None = field(default=None, compare=False)

    @property
    def path(self) -> str:
        return f"{self.stage}/{self.name}"

    @property
    def schema(self) -> pl.Schema:
        """The artifact's polars schema: the record's columns, then the declared ones."""
        return _columns(self.record, self.columns)

    def frame(self, rows: Sequence[Mapping[str, Any]] | None = None) -> pl.DataFrame:
        """A frame of `rows` (dicts) with exactly the declared schema; empty without rows."""
        return _frame(self.schema, rows)

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class SideFile:
    """A file or folder a stage keeps beside its outputs, relative to the run directory (a
    Parquet side file declares its columns like an artifact)."""

    path: str
    what: str
    record: type[BaseModel] | None = None
    columns: Mapping[str, pl.DataType] | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        """The file's name in its stage's state folder."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def schema(self) -> pl.Schema:
        return _columns(self.record, self.columns)

    def frame(self, rows: Sequence[Mapping[str, Any]] | None = None) -> pl.DataFrame:
        return _frame(self.schema, rows)


# columns shared by several artifacts
STEP_FUNNEL = pl.Schema({  # one filter step's rows in and out (per shard; summed by the report)
    "stage": pl.String(), "round": pl.Int64(), "order": pl.Int64(), "step": pl.String(),
    "unit_in": pl.String(), "unit_out": pl.String(), "rows_in": pl.Int64(),
    "rows_out": pl.Int64(), "rejected": pl.Int64(),
})
JSON_REPORT = pl.Schema({"json": pl.String()})  # one row: a report too nested for columns
REDACTION = pl.Struct({  # one replaced span of a redacted chunk (its `redactions` column)
    "entity": pl.String, "start": pl.Int64, "end": pl.Int64, "placeholder": pl.String,
    "orig_start": pl.Int64, "orig_end": pl.Int64, "action": pl.String,
})
EXPORT_FILES = pl.Schema({  # one exported file of the dataset
    "format": pl.String(), "split": pl.String(), "path": pl.String(), "rows": pl.Int64(), "sha256": pl.String(),
})
VALIDATION_CHECKS = pl.Schema({  # one great-expectations expectation's result
    "check": pl.String(), "expectation": pl.String(), "column": pl.String(), "severity": pl.String(),
    "success": pl.Boolean(), "element_count": pl.Int64(), "unexpected_count": pl.Int64(),
    "unexpected_examples": pl.String(),
})


# ingest
FILES = Artifact("discover", "files", SourceFile, "path")
DISCOVER_ERRORS = Artifact("discover", "errors", ErrorRecord, "source")
DOCUMENTS = Artifact("ingest", "documents", Document, "doc_id", {"reader_config": pl.String()})  # which settings read it
INGEST_ERRORS = Artifact("ingest", "errors", ErrorRecord, "source")
MERGED_SMALL = {"merged_small": pl.Int32()}  # how many pieces under chunk.min_tokens were joined into it
CHUNKS = Artifact("chunk", "chunks", Chunk, "chunk_id", MERGED_SMALL)
# redact
REDACTED_CHUNKS = Artifact("redact", "chunks", Chunk, "chunk_id", {**MERGED_SMALL, "redactions": pl.List(REDACTION)})
FINDINGS = Artifact("redact", "findings", None, "chunk_id", {  # one detected value, whatever its policy
    "chunk_id": pl.String(), "doc_id": pl.String(), "entity_type": pl.String(), "recognizer": pl.String(),
    "detail": pl.String(), "score": pl.Float64(), "action": pl.String(), "start": pl.Int64(), "end": pl.Int64(),
    "placeholder": pl.String(),
})
RECOGNIZERS = Artifact("redact", "recognizers", None, "name",
                       {"name": pl.String(), "entities": pl.List(pl.String()), "source": pl.String()})
# generate
SAMPLES = Artifact("generate", "samples", Sample, "sample_id")
GENERATE_ERRORS = Artifact("generate", "errors", ErrorRecord, "source")
# a request not done (failed after retries, refused by the budget, not sent after a fatal stop):
# the stage is incomplete while any is left, and the next run sends exactly these
PENDING = Artifact("generate", "pending", None, "request_hash", {
    "request_hash": pl.String(), "chunk_id": pl.String(), "doc_id": pl.String(), "sample_index": pl.Int64(),
    "round": pl.Int64(), "reason": pl.String(), "error": pl.String(),
})
# filter, refine, judge, dedup
FILTERED = Artifact("filter", "examples", Example, "example_id")
FILTER_REJECTED = Artifact("filter", "rejected", Rejection, "item_id")
FILTER_FUNNEL = Artifact("filter", "funnel", columns=STEP_FUNNEL)
REFINED = Artifact("refine", "examples", Example, "example_id")
REFINE_REJECTED = Artifact("refine", "rejected", Rejection, "item_id", {"recovered_by": pl.String()})
REFINED_SAMPLES = Artifact("refine", "samples", Sample, "sample_id")
REFINE_FUNNEL = Artifact("refine", "funnel", columns={  # the steps of each round, and the repair row
    **STEP_FUNNEL, "skipped": pl.Int64(), "cost_usd": pl.Float64(),
})
JUDGED = Artifact("judge", "examples", Example, "example_id")
JUDGE_REJECTED = Artifact("judge", "rejected", Rejection, "item_id")
JUDGMENTS = Artifact("judge", "judgments", None, "example_id", {
    "example_id": pl.String(), "chunk_id": pl.String(), "scores_json": pl.String(), "mean_score": pl.Float64(),
    "passed": pl.Boolean(), "cost_usd": pl.Float64(), "cached": pl.Boolean(), "error": pl.String(),
})
DEDUPED = Artifact("dedup", "examples", Example, "example_id")
DEDUP_REJECTED = Artifact("dedup", "rejected", Rejection, "item_id")
DEDUP_FUNNEL = Artifact("dedup", "funnel", columns={  # the whole filter package, generate to dedup
    "stage": pl.String(), "step": pl.String(), "unit": pl.String(), "rows_in": pl.Int64(),
    "rows_out": pl.Int64(), "rejected": pl.Int64(), "survival": pl.Float64(),
})
DEDUP_REASONS = Artifact("dedup", "reasons", columns={
    "filter": pl.String(), "reason": pl.String(), "repairable": pl.Boolean(), "count": pl.Int64(),
})
DEDUP_SUMMARY = Artifact("dedup", "summary", columns={
    "chunks_in": pl.Int64(), "examples_accepted": pl.Int64(), "chunk_yield": pl.Float64(),
    "chunks_repaired": pl.Int64(), "recovery_rate": pl.Float64(), "cost_generate_usd": pl.Float64(),
    "cost_refine_usd": pl.Float64(), "cost_judge_usd": pl.Float64(), "cost_total_usd": pl.Float64(),
    "cost_per_accepted_usd": pl.Float64(), "label_warning": pl.String(),
})
DEDUP_SIMILARITY = Artifact("dedup", "similarity", columns=JSON_REPORT)  # contamination, semantic dedup
# review
REVIEWED = Artifact("review", "examples", Example, "example_id")
REVIEW_REJECTED = Artifact("review", "rejected", Rejection, "item_id")
REVIEW_SUMMARY = Artifact("review", "summary", columns={"report_json": pl.String()})
# dataset
VALIDATED = Artifact("validate", "examples", Example, "example_id")
VALIDATION_RESULTS = Artifact("validate", "results", columns={**VALIDATION_CHECKS, "rejected_dropped": pl.Int64()})
SPLIT_EXAMPLES = Artifact("split", "examples", Example, "example_id", {"split": pl.String()})
LEAKS = Artifact("split", "leaks", None, "example_id", {  # a validation/test example that repeats another
    "example_id": pl.String(), "split": pl.String(), "other_example_id": pl.String(),
    "other_split": pl.String(), "similarity": pl.Float64(), "action": pl.String(),
})
SPLIT_REPORT = Artifact("split", "report", columns=JSON_REPORT)
EXPORT_MANIFEST = Artifact("export", "manifest", columns={**EXPORT_FILES, "export_dir": pl.String()})
EXPORT_DIVERSITY = Artifact("export", "diversity", columns=JSON_REPORT)

ARTIFACTS: tuple[Artifact, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Artifact))  # all, in order
INPUT_ERRORS = tuple(a for a in ARTIFACTS if a.record is ErrorRecord)  # each stage's bad input, one row a problem

# side files
REDACTION_MAPPING = SideFile("redact.state/mapping", "placeholder -> original value, per document (never sent)")
REQUEST_LOG = SideFile("generate.state/requests.jsonl", "every teacher request: provider, payload, tokens, cost")
REVIEW_DECISIONS = SideFile("review.state/decisions.parquet", "one resolved reviewer decision per example",
                            ReviewDecision, {"n_annotations": pl.Int64(), "agreement": pl.Float64(),
                                             "evidence_json": pl.String(), "grounding_score": pl.Float64()})
REVIEW_PUSHED = SideFile("review.state/pushed.parquet", "the examples sent to Label Studio: task id and reason",
                         columns={"example_id": pl.String(), "task_id": pl.Int64(), "reason": pl.String()})
REVIEW_ANNOTATIONS = SideFile("review.state/annotations.parquet", "every reviewer's annotation as pulled",
                              ReviewDecision, {"task_id": pl.Int64(), "valid": pl.Boolean(), "error": pl.String(),
                                               "evidence_json": pl.String(), "grounding_score": pl.Float64()})
