"""Files on a local disk or object storage: atomic writes, reads, listings (fsspec for URLs).

The run directory (`curate.run.rundir`) and the artifact datasets (`curate.run.dataset`)
are built on these. Atomicity: locally every file goes through a temp file and
`os.replace`; on object stores each object is written by one PUT (readers see the old or
the new object, never half of one).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from assay.files import atomic_write_text as write_local_atomic

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for `scheme://...` locations other than plain local files."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def filesystem(location: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of a URL and the path inside it."""
    from fsspec.core import url_to_fs

    options: dict[str, Any] = {}
    if location.startswith(("s3://", "s3a://")):
        # several processes write the same prefix: never trust a cached listing
        options["use_listings_cache"] = False
    fs, path = url_to_fs(location, **options)
    return fs, path.rstrip("/")


def _join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts])


def atomic_write_text(target: Path | str, text: str) -> None:
    """Write through a temp file in the same folder and rename: readers never see a half file.

    For a URL the object is written in one PUT, which object stores make atomic.
    """
    if is_url(target):
        fs, path = filesystem(str(target))
        fs.pipe_file(path, text.encode("utf-8"))
        return
    write_local_atomic(target, text)


Compression = Literal["zstd", "lz4"]  # zstd: artifacts (kept); lz4: scratch files read once (2x faster to write)


def parquet_bytes(frame: pl.DataFrame, metadata: dict[str, str] | None = None, compression: Compression = "zstd") -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression=compression, statistics=True, metadata=metadata)
    return buffer.getvalue()


def atomic_write_parquet(
    frame: pl.DataFrame, target: Path | str, metadata: dict[str, str] | None = None, compression: Compression = "zstd"
) -> None:
    """Write a frame as Parquet (with key-value `metadata` in its footer) so that readers
    never see a half-written file."""
    if is_url(target):
        fs, path = filesystem(str(target))
        fs.pipe_file(path, parquet_bytes(frame, metadata, compression))
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(tmp, compression=compression, statistics=True, metadata=metadata)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_parquet_file(location: Path | str, columns: list[str] | None = None) -> pl.DataFrame:
    """Read one Parquet file (or some of its columns) from a local path or a URL."""
    if is_url(location):
        fs, path = filesystem(str(location))
        with fs.open(path, "rb") as handle:
            return pl.read_parquet(handle, columns=columns)
    return pl.read_parquet(location, columns=columns)


def path_exists(location: Path | str) -> bool:
    if is_url(location):
        fs, path = filesystem(str(location))
        return bool(fs.exists(path))
    return Path(location).exists()


def file_size(location: Path | str) -> int:
    if is_url(location):
        fs, path = filesystem(str(location))
        return int(fs.size(path))
    return os.path.getsize(location)


def read_text(location: Path | str) -> str:
    if is_url(location):
        fs, path = filesystem(str(location))
        return bytes(fs.cat_file(path)).decode("utf-8")
    return Path(location).read_text(encoding="utf-8")


def remove_tree(location: Path | str) -> None:
    """Delete a folder (or prefix) and everything in it; a missing one is fine."""
    if is_url(location):
        fs, path = filesystem(str(location))
        if fs.exists(path):
            fs.rm(path, recursive=True)
        return
    shutil.rmtree(location, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A fresh folder beside `final` to fill; when the block ends it replaces `final` as a
    whole (rename), and when the block fails it is removed and `final` stays as it was."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    trash = final.with_name(f".{final.name}.{uuid.uuid4().hex}.old")
    if final.exists():
        os.replace(final, trash)
    os.replace(staging, final)
    shutil.rmtree(trash, ignore_errors=True)
