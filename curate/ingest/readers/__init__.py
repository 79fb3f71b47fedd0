"""One reader per format. A reader turns a file into extracted documents (usually one;
one per record for JSONL/CSV) or raises IngestError; record readers also return
per-record errors so that one bad line does not lose the rest of the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from curate.ingest.config import IngestConfig
from curate.ingest.readers.base import Extracted, ReadResult

__all__ = ["FORMAT_BY_SUFFIX", "Extracted", "ReadResult", "Reader", "format_of"]

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
