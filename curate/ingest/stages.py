"""The ingestion stages: discover files, read them into documents, cut documents into chunks.

discover (GLOBAL, always runs: it looks at the file system) -> files, errors
ingest   (MAP over files; only new or changed files are read again) -> documents, errors
chunk    (SHUFFLE on doc_id, so that identical documents meet and are chunked once) -> chunks
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.ingest import errors as E
from curate.ingest.chunker import HEADED_FORMATS, Span, chunk_text
from curate.ingest.config import IngestConfig, IngestSettings
from curate.ingest.errors import IngestError
from curate.ingest.preflight import no_input_message
from curate.ingest.readers import Extracted, format_of, reader_for
from curate.ingest.summaries import MERGED_COLUMN, summarize_chunk, summarize_discover, summarize_ingest
from curate.ingest.tokenize import get_tokenizer
from curate.ingest.walk import iter_files
from curate.run.stage import Stage, StageContext, StepKind, collect
from schemas.artifacts import CHUNKS, DISCOVER_ERRORS, DOCUMENTS, FILES, INGEST_ERRORS
from schemas.ids import content_id, content_ids, file_sha256, sha256_hex
from schemas.records import (
    Chunk,
    Document,
    ErrorRecord,
    PageSpan,
    SourceFile,
    empty_frame,
    frame_of,
    polars_schema,
)

READER_VERSION = "2"  # bump when a reader's output changes: previous documents are then re-read
CONFIG_COLUMN = "reader_config"  # extra column of ingest/documents: which settings read it


def _error(stage: str, source: str, reason: str, message: str) -> dict[str, str]:
    return ErrorRecord(stage=stage, source=source, reason=reason, message=message).model_dump()


def _display_path(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


# --------------------------------------------------------------------------- discover


def discover(batch: pl.DataFrame, ctx: StageContext[IngestSettings]) -> dict[str, pl.DataFrame]:
    """Files under `ingest.paths` with their sha256, size and format."""
    cfg = ctx.config
    icfg = cfg.ingest
    base = Path(cfg.base_dir)
    limit = int(icfg.max_file_mb * 1024 * 1024)
    candidates: list[tuple[Path, bool]] = []
    errors: list[dict[str, str]] = []
    for given in icfg.paths:
        root = cfg.resolve(given)
        if root.is_file():
            candidates.append((root, True))
        elif root.is_dir():
            candidates.extend((path, False) for path in iter_files(root, icfg.include, icfg.exclude))
        else:
            errors.append(_error("discover", given, E.PATH_NOT_FOUND, f"{given}: no such file or folder (resolved to {root})"))
    accepted: list[tuple[Path, str, str, int]] = []  # path, shown, format, size
    seen_paths: set[str] = set()
    for path, explicit in candidates:
        shown = _display_path(path, base)
        if shown in seen_paths:
            continue
        seen_paths.add(shown)
        fmt = format_of(path)
        if fmt is None:
            if explicit:
                errors.append(_error("discover", shown, E.UNSUPPORTED_FORMAT, f"{shown}: no reader for {path.suffix or 'files without an extension'}"))
            continue
        size = path.stat().st_size
        if size > limit:
            errors.append(
                _error("discover", shown, E.FILE_TOO_LARGE, f"{shown}: {size / 1048576:.1f} MB is over ingest.max_file_mb = {icfg.max_file_mb:g}")
            )
            continue
        accepted.append((path, shown, fmt, size))
    # hashing is most of discover's time; hashlib releases the GIL, so the files hash side by side
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(accepted)))) as hashers:
        digests = list(ctx.track(hashers.map(file_sha256, [str(a[0]) for a in accepted]), "discover", total=len(accepted)))
    files: list[dict[str, Any]] = []
    seen_hashes: dict[str, str] = {}
    duplicates = 0
    for (_, shown, fmt, size), digest in zip(accepted, digests, strict=True):
        if icfg.skip_duplicate_files and size > 0 and digest in seen_hashes:  # empty files: each an error
            duplicates += 1
            continue
        seen_hashes.setdefault(digest, shown)
        files.append(SourceFile(path=shown, file_hash=digest, size_bytes=size, format=fmt).model_dump())
    if not files:  # never a silent 0: the run exits 2 with this row
        errors.append(_error("discover", ",".join(icfg.paths), E.NO_INPUT, no_input_message(cfg)))
    frame = frame_of(SourceFile, files)
    ctx.write_json("discover.json", {"duplicate_files_skipped": duplicates, "files": len(files)})
    return {"files": frame, "errors": frame_of(ErrorRecord, errors)}


# --------------------------------------------------------------------------- ingest


def reader_config_hash(ctx: StageContext[IngestSettings]) -> str:
    section = ctx.config.ingest.model_dump(mode="json", exclude={"paths", "include", "exclude", "max_file_mb"})
    return sha256_hex(json.dumps({"reader": READER_VERSION, "ingest": section}, sort_keys=True))[:16]


def document_row(extracted: Extracted, source: str, file_hash: str, fmt: str) -> dict[str, Any]:
    return Document(
        doc_id=content_id(extracted.text),
        source_path=source,
        file_hash=file_hash,
        format=fmt,
        record_key=extracted.record_key,
        title=extracted.title,
        text=extracted.text,
        pages=[PageSpan(page=p, start=s, end=e) for p, s, e in extracted.pages],
        metadata_json=json.dumps(extracted.metadata, sort_keys=True, ensure_ascii=False, default=str),
    ).model_dump()


def read_one(path: Path, source: str, file_hash: str, fmt: str, ctx_cfg: IngestConfig) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Documents and error rows of one file; never raises for bad input."""
    rows, table, errs = read_file(path, source, file_hash, fmt, ctx_cfg)
    return rows + (table.to_dicts() if table is not None else []), errs


def read_file(
    path: Path, source: str, file_hash: str, fmt: str, ctx_cfg: IngestConfig
) -> tuple[list[dict[str, Any]], pl.DataFrame | None, list[dict[str, str]]]:
    """(document rows, documents a reader gave as columns, error rows) of one file; never
    raises for bad input."""
    try:
        result = reader_for(fmt)(path, source, ctx_cfg)
    except IngestError as error:
        return [], None, [_error("ingest", source, error.reason, error.message)]
    except FileNotFoundError:
        return [], None, [_error("ingest", source, E.PATH_NOT_FOUND, f"{source}: the file disappeared after discovery")]
    except Exception as error:  # a reader bug or an exotic file: named, never fatal
        return [], None, [_error("ingest", source, E.READ_FAILED, f"{source}: {type(error).__name__}: {error}")]
    docs = [document_row(item, source, file_hash, fmt) for item in result.documents]
    table = None if result.table is None else _documents_of(result.table, source, file_hash, fmt)
    errs = [_error("ingest", where, reason, message) for where, reason, message in result.errors]
    if not docs and (table is None or table.height == 0) and not errs:
        errs.append(_error("ingest", source, E.NO_TEXT, f"{source}: no document could be read from it"))
    return docs, table, errs


def _documents_of(table: pl.DataFrame, source: str, file_hash: str, fmt: str) -> pl.DataFrame:
    """`document_row` over a reader's columns (text, title, record_key, metadata_json)."""
    schema = polars_schema(Document)
    return table.select(
        pl.Series("doc_id", content_ids(table["text"]), dtype=pl.String),
        pl.lit(source).alias("source_path"),
        pl.lit(file_hash).alias("file_hash"),
        pl.lit(fmt).alias("format"),
        "record_key",
        "title",
        "text",
        pl.lit([], dtype=schema["pages"]).alias("pages"),
        "metadata_json",
    ).cast(dict(schema))  # type: ignore[arg-type]


def _previous_by_file(
    ctx: StageContext[IngestSettings], config_hash: str, batch: pl.DataFrame
) -> dict[tuple[str, str], pl.DataFrame]:
    """Last run's documents of this batch's files that gave no error, by (path, file_hash), if
    read with these settings. Only those documents are read (streamed), not the last run's all."""
    scan = ctx.previous(DOCUMENTS)
    if scan is None or CONFIG_COLUMN not in scan.collect_schema().names():
        return {}
    files = batch.select(pl.col("path").alias("source_path"), "file_hash").lazy()
    previous = collect(
        scan.filter(pl.col(CONFIG_COLUMN) == config_hash).join(files, on=["source_path", "file_hash"], how="semi")
    )
    if previous.height == 0:
        return {}
    errors = ctx.previous(INGEST_ERRORS)
    failed: set[str] = set()
    if errors is not None:  # a file with any error (a bad record: "path:line") is read again
        sources = collect(errors.select("source"))["source"].to_list()
        failed = set(sources) | {source.rsplit(":", 1)[0] for source in sources}
    groups = previous.partition_by(["source_path", "file_hash"], as_dict=True)
    return {
        (str(key[0]), str(key[1])): frame
        for key, frame in groups.items()
        if str(key[0]) not in failed
    }


def ingest(batch: pl.DataFrame, ctx: StageContext[IngestSettings]) -> dict[str, pl.DataFrame]:
    """Read each file with its format's reader; reuse unchanged files' documents."""
    config_hash = reader_config_hash(ctx)
    reuse = _previous_by_file(ctx, config_hash, batch)
    docs: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    reused: list[pl.DataFrame] = []
    tables: list[pl.DataFrame] = []
    for row in ctx.track(batch.iter_rows(named=True), "ingest", total=batch.height):
        key = (row["path"], row["file_hash"])
        if key in reuse:
            reused.append(reuse[key])
            continue
        path = ctx.config.resolve(row["path"])
        file_docs, table, file_errors = read_file(path, row["path"], row["file_hash"], row["format"], ctx.config.ingest)
        docs.extend(file_docs)
        tables += [table] if table is not None else []
        errors.extend(file_errors)
    fresh = pl.concat([frame_of(Document, docs), *tables]).with_columns(pl.lit(config_hash).alias(CONFIG_COLUMN))
    documents = pl.concat([fresh, *(f.select(fresh.columns).cast(fresh.schema) for f in reused)])
    ctx.write_json(
        f"incremental.{ctx.shard}.json",
        {"files": batch.height, "files_reused": len(reused), "files_read": batch.height - len(reused)},
    )
    return {"documents": documents, "errors": frame_of(ErrorRecord, errors)}


# --------------------------------------------------------------------------- chunk


def chunk(batch: pl.DataFrame, ctx: StageContext[IngestSettings]) -> dict[str, pl.DataFrame]:
    """Structure-aware chunks of each document (identical documents chunked once)."""
    ccfg = ctx.config.chunk
    tokenizer = get_tokenizer(ccfg.tokenizer, ctx.config.base_dir)
    if batch.height:
        sort_cols = [c for c in ("doc_id", "source_path", "record_key") if c in batch.columns]
        batch = batch.sort(sort_cols, nulls_last=True).unique("doc_id", keep="first", maintain_order=True)
    # the spans of every document, then the frame column by column (no row dicts)
    owner: list[int] = []
    spans: list[Span] = []
    texts: list[str] = []
    columns = ["text", "format", "pages"]
    for index, (text, fmt, pages) in enumerate(ctx.track(batch.select(columns).iter_rows(), "chunk", total=batch.height)):
        page_spans = [(p["page"], p["start"], p["end"]) for p in pages or []]
        found = chunk_text(text, tokenizer, ccfg, headed=fmt in HEADED_FORMATS, pages=page_spans)
        owner += [index] * len(found)
        spans += found
        texts += [text[span.start:span.end] for span in found]
    if not spans:
        return {"chunks": empty_frame(Chunk).with_columns(pl.Series(MERGED_COLUMN, [], dtype=pl.Int32))}
    starts, ends, paths, pages_from, pages_to, n_tokens, merged = (list(map(operator.attrgetter(name), spans)) for name in _SPAN_FIELDS)
    rows = batch.select("doc_id", "source_path")[owner]
    spans_frame = pl.DataFrame(
        {"text": texts, "start": starts, "end": ends, "heading_path": _string_lists(paths), "page": pages_from, "page_end": pages_to, "n_tokens": n_tokens},
        schema_overrides={"page": pl.Int64, "page_end": pl.Int64},
    )
    chunks = pl.concat([rows, spans_frame], how="horizontal")
    chunks = chunks.with_columns(
        pl.Series("chunk_id", content_ids(chunks["doc_id"], chunks["start"], chunks["end"]), dtype=pl.String),
        pl.col("page").alias("page_start"),
        # beside the schema (like ingest's reader_config): how many pieces under chunk.min_tokens joined each
        pl.Series(MERGED_COLUMN, merged, dtype=pl.Int32),
    )
    schema = polars_schema(Chunk)
    return {"chunks": chunks.select(*schema, MERGED_COLUMN).cast(dict(schema))}  # type: ignore[arg-type]


_SPAN_FIELDS = ("start", "end", "heading_path", "page", "page_end", "n_tokens", "merged")  # one C-level pass each


def _string_lists(lists: Sequence[Sequence[str]]) -> pl.Series:
    """A List(String) column from Python sequences: one flat array and offsets, where a
    Series of lists converts each list on its own. (pyarrow is imported only here, where a
    list is not empty: a worker that never needs it does not load it; its arrays are built
    from buffers, since `pa.array` on Python objects imports pandas.)"""
    if not any(lists):
        return pl.select(pl.repeat(pl.lit([], dtype=pl.List(pl.String)), len(lists))).to_series()
    import pyarrow as pa

    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(item) for item in lists], out=offsets[1:])
    values = pl.Series(list(itertools.chain.from_iterable(lists)), dtype=pl.String).to_arrow().cast(pa.large_string())
    positions = pa.Array.from_buffers(pa.int64(), len(offsets), [None, pa.py_buffer(offsets)])
    return pl.Series(pa.LargeListArray.from_arrays(positions, values))


STAGES: list[Stage] = [
    Stage(
        name="discover",
        kind=StepKind.GLOBAL,
        fn=discover,
        inputs=(),
        outputs=(FILES, DISCOVER_ERRORS),
        config_sections=("ingest",),
        summarize=summarize_discover,
        description="find files to read",
        always_run=True,
    ),
    Stage(
        name="ingest",
        kind=StepKind.MAP,
        fn=ingest,
        inputs=(FILES,),
        outputs=(DOCUMENTS, INGEST_ERRORS),
        config_sections=("ingest",),
        summarize=summarize_ingest,
        description="read files into normalised documents",
    ),
    Stage(
        name="chunk",
        kind=StepKind.SHUFFLE,
        key="doc_id",
        fn=chunk,
        inputs=(DOCUMENTS,),
        outputs=(CHUNKS,),
        config_sections=("chunk",),
        summarize=summarize_chunk,
        description="cut documents into structure-aware chunks",
    ),
]

