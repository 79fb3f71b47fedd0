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

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from curate.run.dataset import commit_parts, read_dataset, write_part
from curate.run.storage import (  # re-exported: the run model's file helpers
    _join,
    atomic_write_parquet,
    atomic_write_text,
    file_size,
    filesystem,
    is_url,
    parquet_bytes,
    path_exists,
    read_parquet_file,
    read_text,
    remove_tree,
    staged_folder,
)

if TYPE_CHECKING:
    from curate.run.config import RunSettings

__all__ = [
    "MANIFEST", "RunDir", "atomic_write_parquet", "atomic_write_text", "file_size", "filesystem", "is_url",
    "parquet_bytes", "path_exists", "read_parquet", "read_parquet_file", "read_text", "remove_tree",
    "run_location", "staged_folder",
]

MANIFEST = "manifest.json"


def run_location(config: RunSettings) -> str:
    """Where a config's run directory lives: its URL as written, or the resolved local path.

    `PipelineConfig.run_path` is a `Path`, which would fold `s3://b/x` into `s3:/b/x`;
    use this for anything that may be remote.
    """
    raw = str(config.run_dir)
    return raw if is_url(raw) else str(config.run_path)


def read_parquet(location: Path | str, columns: list[str] | None = None) -> pl.DataFrame:
    """Read an artifact whole (or some of its columns): a Parquet file, or a partitioned
    dataset folder whose parts come back as one frame in the artifact's key order."""
    return read_dataset(str(location), columns)


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
