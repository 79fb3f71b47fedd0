"""The records that flow between stages.

Each model is the contract of one artifact (a Parquet file in the run directory). The
Polars schema of an artifact is derived from its model with `polars_schema`, so the two
can never drift apart. Every record carries the ids it came from (lineage): a final
example names its chunk, the chunk names its document and its character offsets.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from enum import StrEnum
from typing import Any, Union, get_args, get_origin

import polars as pl
from pydantic import BaseModel, Field


class SourceFile(BaseModel):
    """A file found by discovery; its `file_hash` decides whether it must be re-read."""

    path: str = Field(description="Path as given or found, relative to the config's folder")
    file_hash: str = Field(description="sha256 of the file bytes")
    size_bytes: int
    format: str = Field(description="markdown | text | html | pdf | docx | jsonl | csv")


class PageSpan(BaseModel):
    page: int = Field(description="1-based page number in the source PDF")
    start: int
    end: int


class Document(BaseModel):
    """Normalised text of one source document (or one record of a JSONL/CSV file)."""

    doc_id: str = Field(description="content_id of the normalised text")
    source_path: str
    file_hash: str
    format: str
    record_key: str | None = Field(None, description="Row key within a JSONL/CSV file")
    title: str | None = None
    text: str = Field(description="Unicode NFC, LF line endings, no BOM")
    pages: list[PageSpan] = Field(default_factory=list, description="PDF page offsets")
    metadata_json: str = Field("{}", description="Extra columns of a record, as JSON")


class Chunk(BaseModel):
    """A span of a document: `document.text[start:end] == text` always holds."""

    chunk_id: str = Field(description="content_id(doc_id, start, end)")
    doc_id: str
    source_path: str
    text: str
    start: int
    end: int
    heading_path: list[str] = Field(default_factory=list)
    page: int | None = Field(None, description="PDF page where the chunk starts (= page_start)")
    page_start: int | None = Field(None, description="PDF page where the chunk starts")
    page_end: int | None = Field(None, description="PDF page where it ends: chunks may cross pages")
    n_tokens: int


class ErrorRecord(BaseModel):
    """Bad input: kept, named and shown, never silently dropped."""

    stage: str
    source: str = Field(description="File path, or record/chunk/example id")
    reason: str = Field(description="Stable reason code, e.g. pdf_encrypted")
    message: str = Field(description="What a person needs to know to fix it")


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0


class SampleStatus(StrEnum):
    OK = "ok"
    SCHEMA_ERROR = "schema_error"
    FAILED = "failed"


class Sample(BaseModel):
    """One teacher answer for one chunk (one of n self-consistency samples)."""

    sample_id: str = Field(description="content_id(chunk_id, task, sample_index, round)")
    chunk_id: str
    doc_id: str
    task_type: str
    sample_index: int
    round: int = Field(0, description="0 for generation, r for the r-th refinement")
    parent_id: str | None = Field(None, description="Example id this sample repairs")
    status: SampleStatus
    output_json: str | None = Field(None, description="Task output model as JSON")
    error: str | None = None
    request_hash: str = Field(description="Cache key of the teacher request")
    backend: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = Field(False, description="Answered from the response cache (not paid)")


class Message(BaseModel):
    role: str
    content: str


class Evidence(BaseModel):
    """Where a quote or extracted value was found in the chunk (chunk-relative offsets)."""

    field: str
    start: int
    end: int
    score: float


class Example(BaseModel):
    """A candidate training example: a task output rendered as a chat."""

    example_id: str = Field(description="content_id(chunk_id, task_type, normalised output)")
    chunk_id: str
    doc_id: str
    task_type: str
    label: str | None = Field(None, description="Class label, for classification")
    output_json: str
    messages: list[Message]
    sample_ids: list[str] = Field(description="Teacher samples this example came from")
    agreement: float = Field(1.0, description="Self-consistency agreement in [0, 1]")
    grounding_score: float = Field(1.0, description="Lowest evidence match score in [0, 1]")
    evidence: list[Evidence] = Field(default_factory=list)
    quality_score: float = Field(1.0, description="Used to pick dedup survivors")
    refine_round: int = 0
    review_status: str = Field("auto", description="auto (never sent for review) | pending (sent, not decided) | accepted | corrected | rejected")
    reviewer: str | None = None
    reviewed_at: str | None = None
    cost_usd: float = 0.0


class Rejection(BaseModel):
    """Why a sample or example left the pipeline; every rejection has one."""

    item_id: str = Field(description="sample_id or example_id")
    chunk_id: str
    filter: str = Field(description="schema | consistency | grounding | dedup | judge | ...")
    reason: str = Field(description="Stable reason code")
    detail: str = ""
    repairable: bool = False
    output_json: str | None = None
    refine_round: int = 0


class ReviewDecision(BaseModel):
    example_id: str
    decision: str = Field(description="accept | correct | reject")
    corrected_output_json: str | None = None
    note: str | None = None
    reviewer: str
    reviewed_at: str
    annotation_id: int | None = None


def polars_schema(model: type[BaseModel]) -> pl.Schema:
    """The Polars schema of a record model (nested models become structs)."""
    hints = typing.get_type_hints(model)
    return pl.Schema({name: _dtype(hints[name]) for name in model.model_fields})


def empty_frame(model: type[BaseModel]) -> pl.DataFrame:
    return pl.DataFrame(schema=polars_schema(model))


def frame_of(model: type[BaseModel], rows: list[BaseModel] | list[dict[str, Any]]) -> pl.DataFrame:
    """A frame of records with the model's exact schema (also when `rows` is empty)."""
    dicts = [row.model_dump(mode="json") if isinstance(row, BaseModel) else row for row in rows]
    return pl.DataFrame(dicts, schema=polars_schema(model), orient="row") if dicts else empty_frame(model)


_SCALARS: dict[Any, pl.DataType] = {
    str: pl.String(),
    int: pl.Int64(),
    float: pl.Float64(),
    bool: pl.Boolean(),
    dt.datetime: pl.Datetime("us", "UTC"),
}


def _dtype(hint: Any) -> pl.DataType:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in get_args(hint) if arg is not type(None)]
        return _dtype(inner)
    if origin is list:
        return pl.List(_dtype(get_args(hint)[0]))
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return pl.String()
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return pl.Struct(polars_schema(hint))
    if hint in _SCALARS:
        return _SCALARS[hint]
    raise TypeError(f"no Polars type for {hint!r}")
