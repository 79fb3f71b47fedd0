"""The run directory: atomic stage outputs and the manifest.

Layout:
    <run_dir>/manifest.json          per-stage fingerprint, row counts, timings, report
    <run_dir>/<stage>/<name>.parquet  stage outputs, replaced as a whole, never half-written
    <run_dir>/<stage>.state/          side files a stage keeps across runs (caches, reports)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from schemas.ids import file_sha256

MANIFEST = "manifest.json"


def atomic_write_text(target: Path, text: str) -> None:
    """Write through a temp file in the same folder and rename: readers never see a half file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_parquet(frame: pl.DataFrame, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def artifact_path(self, artifact: str) -> Path:
        stage, name = artifact.split("/", 1)
        return self.root / stage / f"{name}.parquet"

    def read(self, artifact: str) -> pl.DataFrame:
        path = self.artifact_path(artifact)
        if not path.exists():
            raise FileNotFoundError(f"{artifact}: no such artifact in {self.root} (run its stage first)")
        return pl.read_parquet(path)

    def exists(self, artifact: str) -> bool:
        return self.artifact_path(artifact).exists()

    def commit_stage(self, stage: str, outputs: Mapping[str, pl.DataFrame]) -> dict[str, str]:
        """Write all outputs of a stage into a fresh folder and swap it in as a whole.

        A stage killed midway leaves its previous outputs (or none) in place: the new
        folder only replaces the old one once every file in it is complete.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{stage}.{uuid.uuid4().hex}.tmp"
        staging.mkdir()
        try:
            hashes = {}
            for name, frame in outputs.items():
                path = staging / f"{name}.parquet"
                frame.write_parquet(path, compression="zstd", statistics=True)
                hashes[name] = file_sha256(str(path))
            final = self.root / stage
            trash = self.root / f".{stage}.{uuid.uuid4().hex}.old"
            if final.exists():
                os.replace(final, trash)
            os.replace(staging, final)
            shutil.rmtree(trash, ignore_errors=True)
            return hashes
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def load_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not path.exists():
            return {"stages": {}}
        return json.loads(path.read_text(encoding="utf-8"))

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(
            self.root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str)
        )
