"""Artifacts as partitioned Parquet datasets: parts, their digests, canonical reads, commits.

An artifact is a folder `<run_dir>/<stage>/<name>.parquet/` of parts `part-NNNNN.parquet`,
one per task of the stage that wrote it (the folder keeps the `.parquet` suffix, as Spark's
datasets do, so `pl.read_parquet(folder)`, duckdb and every `exists()` check take it as one
dataset). Workers write the parts; the driver only links them into place.

- Each part is written in its artifact's key order and names that key in its footer
  (`assay.key`); a part's digest is `rows:sum0:sum1:schema`: the sums (mod 2**64) of
  Polars' per-row hashes under two seeds, and a hash of its columns and dtypes.
- The artifact's content hash is a sha256 over the total rows, the summed sums and the
  schema: a hash of the *multiset* of rows. It is the same at any worker count and any
  partitioning, and the driver computes it from the parts' digests alone. (A row's hash
  does not depend on the other rows of its frame, and an all-null column hashes the same
  as a null of any type.) Where non-empty parts disagree on the schema, the artifact is
  read whole once to hash it (`commit_parts` does so; no stage of the pipeline does this).
- Reading an artifact whole concatenates its parts and sorts by the key, ties broken by
  the row hash: one canonical order, whatever the partitioning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xxhash

from curate.run.storage import (
    atomic_write_parquet,
    filesystem,
    is_url,
    read_parquet_file,
    staged_folder,
)

KEY_META = "assay.key"
PART_PATTERN = "part-*.parquet"
TIE_COLUMN = "__assay_tie"


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass(frozen=True)
class PartInfo:
    """One part of an artifact: where it lies now, its rows and its digest."""

    location: str
    rows: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location, "rows": self.rows, "digest": self.digest}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartInfo:
        return cls(str(data["location"]), int(data["rows"]), str(data["digest"]))


# ------------------------------------------------------------------ digests and order
def schema_id(frame: pl.DataFrame) -> str:
    return xxhash.xxh3_64_hexdigest(json.dumps([[n, str(t)] for n, t in frame.schema.items()]).encode())


def row_digest(frame: pl.DataFrame) -> str:
    """`rows:sum0:sum1:schema` of a frame; independent of its row order."""
    sums = []
    for seed in (0, 1):
        if frame.height and frame.width:
            hashes = frame.hash_rows(seed=seed).to_numpy()
            sums.append(int(np.sum(hashes, dtype=np.uint64)))  # wraps mod 2**64
        else:
            sums.append(0)
    return f"{frame.height}:{sums[0]:016x}:{sums[1]:016x}:{schema_id(frame)}"


def dataset_hash(digests: Sequence[str]) -> str | None:
    """The content hash of an artifact from its parts' digests (None: the non-empty parts
    disagree on the schema, so the artifact must be read whole to hash it)."""
    fields = [d.split(":") for d in digests]
    full = [f for f in fields if int(f[0])]
    schemas = {f[3] for f in full} or {f[3] for f in fields[:1]}
    if len(schemas) > 1:
        return None
    rows = sum(int(f[0]) for f in fields)
    sum0 = sum(int(f[1], 16) for f in fields) % 2**64
    sum1 = sum(int(f[2], 16) for f in fields) % 2**64
    payload = f"{rows}:{sum0:016x}:{sum1:016x}:{schemas.pop() if schemas else ''}"
    return hashlib.sha256(payload.encode()).hexdigest()


def frame_hash(frame: pl.DataFrame) -> str:
    """The content hash `dataset_hash` gives an artifact holding these rows."""
    value = dataset_hash([row_digest(frame)])
    assert value is not None
    return value


def canonical_order(frame: pl.DataFrame, key: str | None) -> pl.DataFrame:
    """Rows sorted by `key`; equal keys ordered by the row hash (so the order depends on
    the rows only, not on how they were partitioned). Without a key: as given."""
    if not key or key not in frame.columns or frame.height < 2:
        return frame
    if not frame[key].is_duplicated().any():
        return frame.sort(key, maintain_order=True)
    tie = pl.Series(TIE_COLUMN, frame.hash_rows(seed=0))
    return frame.with_columns(tie).sort([key, TIE_COLUMN], maintain_order=True).drop(TIE_COLUMN)


# ------------------------------------------------------------------ writing and reading parts
def write_part(frame: pl.DataFrame, location: str, key: str | None) -> PartInfo:
    """Write one part, in key order, naming its key in the footer; return its digest."""
    frame = canonical_order(frame, key)
    atomic_write_parquet(frame, location, metadata={KEY_META: key or ""})
    return PartInfo(location, frame.height, row_digest(frame))


def part_files(location: str) -> list[str]:
    """The Parquet files of an artifact: its parts (a dataset folder) or the file itself."""
    if is_url(location):
        fs, path = filesystem(location)
        protocol = location.split("://", 1)[0]
        if fs.isdir(path):
            return sorted(f"{protocol}://{p}" for p in fs.glob(f"{path}/{PART_PATTERN}"))
        return [location] if fs.exists(path) else []
    local = Path(location)
    if local.is_dir():
        return sorted(str(p) for p in local.glob(PART_PATTERN))
    return [location] if local.exists() else []


def parquet_footer(location: str) -> tuple[int, dict[bytes, bytes]]:
    """Rows and key-value metadata of a Parquet file (its footer only)."""
    import pyarrow.parquet as pq

    if is_url(location):
        fs, path = filesystem(location)
        with fs.open(path, "rb") as handle:
            meta = pq.read_metadata(handle)
    else:
        meta = pq.read_metadata(location)
    return meta.num_rows, dict(meta.metadata or {})


def dataset_key(files: Sequence[str]) -> str | None:
    """The key named by an artifact's parts (the last part's, where a passthrough put a side
    input's parts first)."""
    if not files:
        return None
    key = parquet_footer(files[-1])[1].get(KEY_META.encode(), b"").decode()
    return key or None


def read_dataset(location: str, columns: list[str] | None = None) -> pl.DataFrame:
    """An artifact whole (or some of its columns), in canonical order when it has parts."""
    files = part_files(location)
    if not files:
        raise FileNotFoundError(location)
    if len(files) == 1:
        return read_parquet_file(files[0], columns)
    key = dataset_key(files)
    wanted = None if columns is None else list(dict.fromkeys([*columns, *([key] if key else [])]))
    frames = [read_parquet_file(f, wanted) for f in files]
    frame = canonical_order(pl.concat(frames, how="diagonal_relaxed"), key)
    return frame if columns is None else frame.select(columns)


def scan_dataset(location: str) -> pl.LazyFrame:
    """An artifact as a lazy scan over its parts, in no particular row order: a query reads
    only the columns it uses and, collected with the streaming engine, holds a bounded part
    of the rows. Object-store parts are read eagerly, one file at a time (fsspec paths such
    as `memory://` have no lazy reader)."""
    files = part_files(location)
    if not files:
        raise FileNotFoundError(location)
    scans = [scan_part(f) for f in files]
    return scans[0] if len(scans) == 1 else pl.concat(scans, how="diagonal_relaxed")


def scan_part(file: str) -> pl.LazyFrame:
    """One part file as a lazy scan (an object-store part: read eagerly)."""
    return read_parquet_file(file).lazy() if is_url(file) else pl.scan_parquet(file)


def read_slice(location: str, offset: int, length: int) -> pl.DataFrame:
    """Rows [offset, offset + length) of one Parquet file (only the row groups needed)."""
    if is_url(location):
        return read_parquet_file(location).slice(offset, length)
    return pl.scan_parquet(location).slice(offset, length).collect()


# ------------------------------------------------------------------ committing parts
def link_or_copy(source: str, target: Path) -> None:
    """A hard link where the filesystem allows one (free, and the task's copy may be
    removed afterwards), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def artifact_entry(parts: Sequence[PartInfo], key: str | None) -> dict[str, Any]:
    return {
        "key": key,
        "rows": sum(p.rows for p in parts),
        "hash": dataset_hash([p.digest for p in parts]),
        "parts": [{"file": part_name(i), "rows": p.rows, "digest": p.digest} for i, p in enumerate(parts)],
    }


def commit_parts(
    root: str, stage: str, outputs: Mapping[str, Sequence[PartInfo]], keys: Mapping[str, str | None]
) -> dict[str, dict[str, Any]]:
    """Put each output's parts in place as `<stage>/<name>.parquet/part-NNNNN.parquet` and
    replace the stage's folder as a whole (locally: a folder swap; on object storage:
    copied to a staging prefix first, then into place). Returns each artifact's manifest
    entry: its parts (file, rows, digest), total rows, key and content hash."""
    entries = {name: artifact_entry(parts, keys.get(name)) for name, parts in outputs.items()}
    if is_url(root):
        _commit_remote(root, stage, outputs)
    else:
        with staged_folder(Path(root) / stage) as staging:
            for name, parts in outputs.items():
                folder = staging / f"{name}.parquet"
                folder.mkdir()
                for index, part in enumerate(parts):
                    link_or_copy(part.location, folder / part_name(index))
    for name, entry in entries.items():
        if entry["hash"] is None:  # parts of different schemas: hash the artifact as read whole
            entry["hash"] = frame_hash(read_dataset(f"{root.rstrip('/')}/{stage}/{name}.parquet"))
    return entries


def _commit_remote(root: str, stage: str, outputs: Mapping[str, Sequence[PartInfo]]) -> None:
    fs, base = filesystem(root)
    staging = f"{base}/.{stage}.{uuid.uuid4().hex}.tmp"
    final = f"{base}/{stage}"
    names = {f"{name}.parquet/{part_name(i)}": part for name, parts in outputs.items() for i, part in enumerate(parts)}
    try:
        for name, part in names.items():
            fs.copy(filesystem(part.location)[1], f"{staging}/{name}")
        # every object is complete in staging: now replace the stage's objects
        if fs.exists(final):
            for old in fs.find(final):
                if old.removeprefix(f"{final}/") not in names:
                    fs.rm_file(old)
        for name in names:
            fs.copy(f"{staging}/{name}", f"{final}/{name}")
    finally:
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
