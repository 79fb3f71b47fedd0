"""What every reader returns: the extracted documents of a file and its per-record errors.

Apart from the registry (`curate.ingest.readers`), so that a reader module imports this and
not the package that imports the readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


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
    # documents read as columns (text, title, record_key, metadata_json, line) by a reader's
    # fast path, besides `documents`
    table: pl.DataFrame | None = None
