"""The stage graph, checked before a run starts: every input produced, every record type matching.

A stage names its inputs by the producer's handle (`schemas.artifacts`); here each input must
be an output of an earlier stage of this run, or already in the run directory (a stage of an
earlier run wrote it), and when both sides declare a record type, they must be the same.
A mistake here is found in a second, not after an hour of teacher calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from assay.errors import AssayError
from curate.run.stage import Stage


class StageGraphError(AssayError):
    """A stage reads an artifact nothing writes, or reads it as another record type."""


def graph_problems(
    stages: Sequence[Stage], manifest: Mapping[str, Any], exists: Callable[[str], bool] = lambda _: False
) -> list[str]:
    """What is wrong with running `stages` in order against a run whose manifest is `manifest`
    (`exists(path)`: whether the run directory already holds that artifact)."""
    produced: dict[str, type[BaseModel] | None] = {}
    done = manifest.get("stages", {})
    problems = []
    for stage in stages:
        records = stage.input_records
        for path in stage.input_paths:
            producer = path.split("/", 1)[0]
            earlier = done.get(producer, {}).get("status") in ("complete", "partial") or exists(path)
            if path not in produced and not earlier:
                problems.append(f"stage {stage.name!r} reads {path}, which no earlier stage writes "
                                f"and no earlier run of {producer!r} finished")
                continue
            expected, given = records.get(path), produced.get(path)
            if expected is not None and given is not None and expected is not given:
                problems.append(f"stage {stage.name!r} reads {path} as {expected.__name__}, "
                                f"but {producer!r} writes {given.__name__}")
        for output in stage.declared_outputs:
            produced[f"{stage.name}/{output.name}"] = output.record
    return problems


def check_graph(
    stages: Sequence[Stage], manifest: Mapping[str, Any], exists: Callable[[str], bool] = lambda _: False
) -> None:
    problems = graph_problems(stages, manifest, exists)
    if problems:
        raise StageGraphError("the stage graph does not hold:\n  " + "\n  ".join(problems))


def side_file_hash(path: Path) -> str | None:
    """sha256 over a file, or over a folder's files (relative names and contents, sorted)."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if not path.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()
