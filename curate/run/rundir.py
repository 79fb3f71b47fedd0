"""The run directory: atomic stage outputs and the manifest, on a local disk or object storage.

Layout:
    <run_dir>/manifest.json          per-stage fingerprint, row counts, timings, report, and
                                     each artifact's parts (file, rows, digest) and content hash
    <run_dir>/<stage>/<name>.parquet/part-NNNNN.parquet
                                     stage outputs: a partitioned Parquet dataset, one part per
                                     task, written by the workers (`curate.run.dataset`);
                                     the stage folder is replaced as a whole, never half-written
    <run_dir>/<stage>.state/          side files a stage keeps across runs (caches, reports),
                                     and `shards/`: the tasks' parts and completion markers
                                     until the stage is committed (resume at partition grain)

An artifact location may also be a single Parquet file (written by hand or by an older
version): `read_parquet` reads either, and a dataset whole comes back in its key order.

The run directory may be a local path, a shared filesystem, or a URL (`s3://bucket/prefix`,
`gs://`, `memory://`...) opened through fsspec, so that cluster nodes without a shared disk
work on the same run. Credentials and endpoints come from the usual environment variables
of the filesystem (for S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`).

Atomicity: locally every file goes through a temp file and `os.replace`, and a stage's
outputs are swapped in as one folder. Object stores have no rename: there each object is
written by one PUT (readers see the old or the new object, never half of one) and the
stage's objects are written to a staging prefix first and copied into place only when all
of them are complete; the manifest, written last by the driver, names the hashes of the
outputs it vouches for.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from assay.files import atomic_write_text as write_local_atomic

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from curate.run.config import RunSettings

MANIFEST = "manifest.json"


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for `scheme://...` locations other than plain local files."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def run_location(config: RunSettings) -> str:
    """Where a config's run directory lives: its URL as written, or the resolved local path.

    `PipelineConfig.run_path` is a `Path`, which would fold `s3://b/x` into `s3:/b/x`;
    use this for anything that may be remote.
    """
    raw = str(config.run_dir)
    return raw if is_url(raw) else str(config.run_path)


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


def parquet_bytes(frame: pl.DataFrame, metadata: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True, metadata=metadata)
    return buffer.getvalue()


def atomic_write_parquet(frame: pl.DataFrame, target: Path | str, metadata: dict[str, str] | None = None) -> None:
    """Write a frame as Parquet (with key-value `metadata` in its footer) so that readers
    never see a half-written file."""
    if is_url(target):
        fs, path = filesystem(str(target))
        fs.pipe_file(path, parquet_bytes(frame, metadata))
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True, metadata=metadata)
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


def read_parquet(location: Path | str, columns: list[str] | None = None) -> pl.DataFrame:
    """Read an artifact whole (or some of its columns): a Parquet file, or a partitioned
    dataset folder whose parts come back as one frame in the artifact's key order."""
    from curate.run.dataset import read_dataset

    return read_dataset(str(location), columns)


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


class RunDir:
    """A run directory at a local path or a URL.

    `root` is the local folder (for a remote run: the key prefix inside the bucket, not to be
    opened locally); `location` is the string to hand to workers and `StageContext`.
    """

    def __init__(self, root: Path | str):
        text = str(root)
        self.remote = is_url(text)
        if self.remote:
            self.location = text.rstrip("/")
            self.root: Path = Path(filesystem(self.location)[1])  # a key prefix, not a local folder
        else:
            self.root = Path(root)
            self.location = str(self.root)

    def __repr__(self) -> str:
        return f"RunDir({self.location!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.location == self.location

    def __hash__(self) -> int:
        return hash(self.location)

    def path(self, *parts: str) -> str:
        return _join(self.location, *parts)

    def artifact_location(self, artifact: str) -> str:
        stage, name = artifact.split("/", 1)
        return self.path(stage, f"{name}.parquet")

    def read(self, artifact: str) -> pl.DataFrame:
        location = self.artifact_location(artifact)
        if not path_exists(location):
            raise FileNotFoundError(
                f"{artifact}: no such artifact in {self.location} (run its stage first)"
            )
        return read_parquet(location)

    def exists(self, artifact: str) -> bool:
        return path_exists(self.artifact_location(artifact))

    def commit_stage(self, stage: str, outputs: Mapping[str, pl.DataFrame]) -> dict[str, str]:
        """Write whole frames as a stage's outputs (one part each; for tests, tools and
        GLOBAL results) and swap them in as a whole; returns each output's content hash.

        A stage killed midway leaves its previous outputs (or none) in place: the new
        folder only replaces the old one once every file in it is complete.
        """
        from curate.run.dataset import commit_parts, write_part

        scratch = self.path(f"{stage}.state", "commit", uuid.uuid4().hex)
        try:
            parts = {name: [write_part(frame, f"{scratch}/{name}.parquet", None)] for name, frame in outputs.items()}
            entries = commit_parts(self.location, stage, parts, {})
        finally:
            remove_tree(scratch)
        return {name: entry["hash"] for name, entry in entries.items()}

    def load_manifest(self) -> dict[str, Any]:
        location = self.path(MANIFEST)
        if not path_exists(location):
            return {"stages": {}}
        loaded: dict[str, Any] = json.loads(read_text(location))
        return loaded

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(
            self.path(MANIFEST),
            json.dumps(manifest, indent=2, sort_keys=False, default=str),
        )
