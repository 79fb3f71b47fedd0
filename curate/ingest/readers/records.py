"""JSONL and CSV records: one document per record, its text in `ingest.text_column`.

A bad record (a line that is not JSON, not an object, without the text column or with
empty text) becomes an error naming the file and the line (JSONL) or row (CSV); the
other records of the file still become documents. The record key is the value of
`ingest.id_column` when set, else `line-N` / `row-N`. Other columns go to metadata.
A JSONL file is read whole by polars where that gives the same documents and errors
(`jsonl_frame`: the conditions are there), else line by line.
CSV is parsed with polars (all columns as strings); a CSV polars refuses (ragged rows,
broken quoting) is re-read with the standard library to name the bad rows.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import polars as pl

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.normalize import encoding_notes, normalize_text, read_text_file
from curate.ingest.readers.base import Extracted, ReadResult
from curate.ingest.readers.jsonl_frame import jsonl_table


def _record(
    row: dict[str, Any], where: str, cfg: IngestConfig, default_key: str, out: ReadResult
) -> None:
    if cfg.text_column not in row or row[cfg.text_column] is None:
        out.errors.append((where, E.RECORD_MISSING_TEXT, f"{where}: no {cfg.text_column!r} field (set ingest.text_column)"))
        return
    value = row[cfg.text_column]
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    text = normalize_text(value)
    if not text.strip():
        out.errors.append((where, E.RECORD_EMPTY_TEXT, f"{where}: the {cfg.text_column!r} field is empty"))
        return
    key = default_key
    if cfg.id_column:
        if row.get(cfg.id_column) in (None, ""):
            out.errors.append((where, E.RECORD_MISSING_TEXT, f"{where}: no {cfg.id_column!r} id field (ingest.id_column)"))
            return
        key = str(row[cfg.id_column])
    title = row.get(cfg.title_column) if cfg.title_column else None
    skip = {cfg.text_column, cfg.id_column, cfg.title_column}
    metadata = {k: v for k, v in row.items() if k not in skip}
    out.documents.append(
        Extracted(text=text, title=str(title) if title not in (None, "") else None, record_key=key, metadata=metadata)
    )


def read_jsonl(path: Path, source: str, cfg: IngestConfig) -> ReadResult:
    decoded = read_text_file(path, source, cfg)
    content = decoded.text
    out = ReadResult([], encoding_notes(decoded, source)[1])
    fast = jsonl_table(content, source, cfg)
    if fast is not None:  # the whole file at once; else (a file it declines) line by line
        out.table, errors = fast
        out.errors.extend(errors)
        return out
    return read_jsonl_lines(content, source, cfg, out)


def read_jsonl_lines(content: str, source: str, cfg: IngestConfig, out: ReadResult) -> ReadResult:
    """The per-line reader: each line parsed by json.loads, a bad one named by its number."""
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            out.errors.append((where, E.RECORD_INVALID_JSON, f"{where}: line {number} is not valid JSON ({error.msg} at column {error.colno})"))
            continue
        if not isinstance(row, dict):
            out.errors.append((where, E.RECORD_NOT_OBJECT, f"{where}: line {number} is a JSON {type(row).__name__}, not an object"))
            continue
        _record(row, where, cfg, f"line-{number}", out)
    return out


def read_csv(path: Path, source: str, cfg: IngestConfig) -> ReadResult:
    decoded = read_text_file(path, source, cfg)
    content = decoded.text
    out = ReadResult([], encoding_notes(decoded, source)[1])
    try:
        frame = pl.read_csv(io.StringIO(content), infer_schema=False)
    except (pl.exceptions.PolarsError, ValueError):
        strict = _read_csv_strict(content, source, cfg)
        return ReadResult(strict.documents, out.errors + strict.errors)
    # data row N is line N+1 of the file (header on line 1) when no field spans lines
    for number, row in enumerate(frame.iter_rows(named=True), start=1):
        _record(row, f"{source}:row {number}", cfg, f"row-{number}", out)
    return out


def _read_csv_strict(content: str, source: str, cfg: IngestConfig) -> ReadResult:
    out = ReadResult([])
    try:
        reader = csv.reader(io.StringIO(content), strict=True)
        header = next(reader)
        for number, cells in enumerate(reader, start=1):
            where = f"{source}:row {number}"
            if len(cells) != len(header):
                out.errors.append((where, E.CSV_BAD_ROW, f"{where}: {len(cells)} fields where the header has {len(header)}"))
                continue
            _record(dict(zip(header, cells, strict=True)), where, cfg, f"row-{number}", out)
    except (csv.Error, StopIteration) as error:
        out.errors.append((source, E.CSV_CORRUPT, f"{source}: not a readable CSV ({error or 'no header'})"))
    return out


def read_records(path: Path, source: str, cfg: IngestConfig) -> ReadResult:
    if path.suffix.lower() == ".csv":
        return read_csv(path, source, cfg)
    return read_jsonl(path, source, cfg)
