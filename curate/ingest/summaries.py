"""The reports of discover, ingest and chunk (the manifest's `report`, the run report).

Ingest's and chunk's are `PartwiseSummary`s: each part is aggregated on a worker and the
parts combined on the driver, so a report costs no serial pass over millions of documents
or chunks after the stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from curate.run.stage import PartwiseSummary, collect

MERGED_COLUMN = "merged_small"  # extra column of chunk/chunks: small sections or pieces joined into it


def summarize_discover(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    by_format = (
        outputs["files"].group_by("format")
        .agg(pl.len().alias("files"), pl.col("size_bytes").sum().alias("bytes")).sort("format")
    )
    return {
        "files by format": collect(by_format).to_dicts(),
        "errors by reason": _combined_reasons(_reason_counts(outputs["errors"])),
    }


def _ingest_part(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    # the one summary that reads `text` (for the characters): on the workers, a part each;
    # a file's documents never span two parts (a file is one row of ingest's input)
    by_format = outputs["documents"].group_by("format").agg(
        pl.col("source_path").n_unique().cast(pl.Int64).alias("files"),
        pl.len().cast(pl.Int64).alias("documents"),
        pl.col("text").str.len_chars().cast(pl.Int64).sum().alias("chars"),
    )
    return {"by_format": collect(by_format), "errors": _reason_counts(outputs["errors"])}


def _ingest_combine(parts: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    by_format = parts["by_format"].group_by("format").agg(pl.col("files", "documents", "chars").sum()).sort("format")
    return {"documents by format": by_format.to_dicts(), "errors by reason": _combined_reasons(parts["errors"])}


def _reason_counts(errors: pl.LazyFrame) -> pl.DataFrame:
    return collect(errors.group_by("reason").agg(pl.len().cast(pl.Int64).alias("len")))


def _combined_reasons(counts: pl.DataFrame) -> dict[str, int]:
    totals = counts.group_by("reason").agg(pl.col("len").sum()).sort("reason")
    return {row["reason"]: int(row["len"]) for row in totals.iter_rows(named=True)}


summarize_ingest = PartwiseSummary(_ingest_part, _ingest_combine)


def _chunk_part(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    # a document's chunks never span two parts (chunk is keyed by doc_id)
    chunks = outputs["chunks"]
    tokens = pl.col("n_tokens").cast(pl.Int64)
    merged = pl.col(MERGED_COLUMN).cast(pl.Int64).sum() if MERGED_COLUMN in chunks.collect_schema().names() else pl.lit(0, pl.Int64)
    return {"chunks": collect(chunks.select(
        pl.len().cast(pl.Int64).alias("chunks"), pl.col("doc_id").n_unique().cast(pl.Int64).alias("documents"),
        tokens.sum().alias("total"), tokens.max().alias("max"), tokens.min().alias("min"), merged.alias("merged"),
    ))}


def _chunk_combine(parts: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    stats = parts["chunks"].select(
        pl.col("chunks", "documents", "total", "merged").sum(), pl.col("max").max(), pl.col("min").min()
    ).row(0, named=True)
    rows = int(stats["chunks"])
    if rows == 0:
        return {"chunks": {"chunks": 0}}
    return {
        "chunks": {
            "chunks": rows,
            "documents": int(stats["documents"]),
            "tokens_total": int(stats["total"]),
            "tokens_mean": round(stats["total"] / rows, 1),
            "tokens_max": int(stats["max"] or 0),
            "tokens_min": int(stats["min"] or 0),
            "small_pieces_merged": int(stats["merged"]),
        }
    }


summarize_chunk = PartwiseSummary(_chunk_part, _chunk_combine)
