"""Markdown and plain text: decoded (any encoding) and normalised; Markdown is kept as
written, since its headings (`#` lines) are what the chunker splits sections on."""

from __future__ import annotations

import re
from pathlib import Path

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.errors import IngestError
from curate.ingest.normalize import encoding_notes, normalize_text, read_text_file
from curate.ingest.readers.base import Extracted, ReadResult

_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def read_plain(path: Path, source: str, cfg: IngestConfig) -> ReadResult:
    decoded = read_text_file(path, source, cfg)
    text = normalize_text(decoded.text)
    if not text.strip():
        raise IngestError(E.EMPTY_FILE, f"{source}: only whitespace")
    title = None
    if path.suffix.lower() in {".md", ".markdown"}:
        match = _TITLE.search(text)
        title = match.group(1) if match else None
    meta, warnings = encoding_notes(decoded, source)
    return ReadResult([Extracted(text=text, title=title, metadata=meta)], warnings)
