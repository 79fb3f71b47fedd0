"""One reader per format. A reader turns a file into extracted documents (usually one;
one per record for JSONL/CSV) or raises IngestError; record readers also return
per-record errors so that one bad line does not lose the rest of the file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from curate.ingest.config import IngestConfig

FORMAT_BY_SUFFIX: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}


def format_of(path: str | Path) -> str | None:
    return FORMAT_BY_SUFFIX.get(Path(path).suffix.lower())


@dataclass
class Extracted:
    """Normalised text of one document, before it gets its id."""

    text: str
    title: str | None = None
    pages: list[tuple[int, int, int]] = field(default_factory=list)  # (page, start, end)
    record_key: str | None = None
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass
class ReadResult:
    documents: list[Extracted]
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (source, reason, message)


Reader = Callable[[Path, str, IngestConfig], ReadResult]


def reader_for(fmt: str) -> Reader:
    if fmt in {"markdown", "text"}:
        from curate.ingest.readers.plain import read_plain

        return read_plain
    if fmt == "html":
        from curate.ingest.readers.html import read_html

        return read_html
    if fmt == "pdf":
        from curate.ingest.readers.pdf import read_pdf

        return read_pdf
    if fmt == "docx":
        from curate.ingest.readers.docx import read_docx

        return read_docx
    if fmt in {"jsonl", "csv"}:
        from curate.ingest.readers.records import read_records

        return read_records
    raise KeyError(fmt)
