"""Configuration of discovery, ingestion and chunking."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.run.config import RunSettings


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    paths: tuple[str, ...] = Field(("docs",), description="Files or folders, relative to the config")
    include: tuple[str, ...] = Field(
        ("*.md", "*.markdown", "*.txt", "*.html", "*.htm", "*.pdf", "*.docx", "*.jsonl", "*.csv"),
        description="Glob patterns of files to read inside folders",
    )
    exclude: tuple[str, ...] = Field(
        (), description="Glob patterns (matched on the name and on the path below the folder) to skip"
    )
    max_file_mb: float = Field(50.0, gt=0, description="Larger files become errors")
    text_column: str = Field("text", description="Text column of JSONL/CSV records")
    id_column: str | None = Field(None, description="Record key column of JSONL/CSV records")
    title_column: str | None = Field(None, description="Title column of JSONL/CSV records")
    encoding: str | dict[str, str] | None = Field(
        None,
        description="Force an encoding for text files: one for all, or {glob: encoding} (first match wins); "
        "default: BOM, UTF-8, else detected and checked",
    )
    fix_mojibake: bool = Field(
        False, description="Repair double-encoded UTF-8 (\"cafÃ©\") with ftfy; the document records it"
    )
    ocr: Literal["off", "auto"] = Field(
        "off", description="auto: OCR the PDF pages without a text layer (the `ocr` extra: ocrmypdf + Tesseract)"
    )
    ocr_language: str = Field("eng", description="Tesseract language(s) for OCR, e.g. eng+deu")
    skip_duplicate_files: bool = Field(
        True, description="Read only the first of several files with identical bytes (same sha256)"
    )


class ChunkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_tokens: int = Field(384, gt=0, description="Token budget of one chunk")
    overlap_tokens: int = Field(0, ge=0, description="Tokens repeated from the previous chunk of the same section")
    min_tokens: int = Field(
        32, ge=0, description="A smaller section (e.g. a title and a preamble) joins the next one when both fit"
    )
    tokenizer: str = Field(
        "words",
        description='"words" (fast, regex word pieces), "tiktoken:<encoding>", or a tokenizer.json path',
    )

    @model_validator(mode="after")
    def _overlap_below_budget(self) -> ChunkConfig:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


class IngestSettings(RunSettings, Protocol):
    """What the ingest stages read of the pipeline config."""

    @property
    def ingest(self) -> IngestConfig: ...

    @property
    def chunk(self) -> ChunkConfig: ...

    @property
    def base_dir(self) -> str: ...
