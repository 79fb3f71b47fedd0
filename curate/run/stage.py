"""How a stage is declared, once, for every executor.

A stage is a plain function over a Polars frame (a batch of its primary input) plus a
declaration of what kind of step it is. The local executor and the Ray executor read the
same declaration; the function never knows where it runs. Modelled on NeMo Curator's
stages and datatrove's steps.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

import polars as pl
from pydantic import BaseModel

from assay.errors import AssayError
from curate.run.config import RateLimits, RunSettings
from curate.run.dataset import scan_dataset
from curate.run.rundir import atomic_write_text, path_exists, read_parquet  # local paths or s3:// URLs
from curate.run.services import Limiter, LocalServices, StageServices, WorkerPool
from schemas.artifacts import Artifact, SideFile

T = TypeVar("T")
C = TypeVar("C", bound=RunSettings)  # the pipeline config a stage sees (a stage may name a narrower protocol)


class StepKind(StrEnum):
    """How a stage's work may be divided."""

    MAP = "map"  # any split of the rows works; results are concatenated
    SHUFFLE = "shuffle"  # rows sharing `key` must be in the same batch
    GLOBAL = "global"  # needs the whole input at once
    IO_POOL = "io_pool"  # MAP (keyed like SHUFFLE when `key` is set) whose work waits on I/O: many in flight


@dataclass(frozen=True)
class Output:
    """An artifact a stage writes: `<run_dir>/<stage>/<name>.parquet`, sorted by `key`, rows of
    `record` (a `schemas.records` model; None for a report frame)."""

    name: str
    key: str | None = None
    record: type[BaseModel] | None = None

    @classmethod
    def of(cls, artifact: Artifact) -> Output:
        return cls(artifact.name, artifact.key, artifact.record)


StageFn = Callable[[pl.DataFrame, "StageContext"], Mapping[str, pl.DataFrame]]
# a stage's report over its outputs, given as lazy scans (see `Stage`)
Summarize = Callable[[Mapping[str, pl.LazyFrame]], dict[str, Any]]


@dataclass(frozen=True)
class PartwiseSummary:
    """A report computed where the data is: `part` aggregates one part of the outputs (a few
    rows per output), on the workers, a part each; `combine` merges every part's aggregates,
    concatenated, into the report, on the driver. For stages whose outputs are large (ingest's
    documents, chunk's chunks): the report then costs no serial pass over the whole artifact
    after the stage. `part`'s aggregates must combine exactly: sums, counts, min/max, and
    distinct counts only of values that never span two parts (a shuffle's key, a file).
    Called like a `Summarize` it reports over the outputs as one part."""

    part: Callable[[Mapping[str, pl.LazyFrame]], Mapping[str, pl.DataFrame]]
    combine: Callable[[Mapping[str, pl.DataFrame]], dict[str, Any]]

    def __call__(self, outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
        return self.combine(dict(self.part(outputs)))


def collect(query: pl.LazyFrame) -> pl.DataFrame:
    """A summary query's result, computed by Polars' streaming engine: the scan reads only
    the columns the query uses, a batch of rows at a time."""
    return query.collect(engine="streaming")


def count(frame: pl.LazyFrame | pl.DataFrame) -> int:
    """Rows of a frame (of a Parquet scan: from the files' footers)."""
    return int(collect(frame.lazy().select(pl.len())).item())


@dataclass(frozen=True)
class Stage:
    """A pipeline step.

    `inputs[0]` is the primary input ("stage/output"), split into batches according to
    `kind`; further inputs are side inputs the function reads whole with `ctx.side()`.
    `config_sections` names the parts of the pipeline config whose change invalidates
    the stage's outputs. `passthrough` maps an output to a side input that it also
    carries whole (refine's examples: filter's plus the repaired ones): the function
    returns only its new rows and the executor adds the side input once, so the stage
    still splits into batches. `summarize` turns the outputs into a small JSON-able report
    (a funnel, counts per reason, cost) stored in the manifest. It gets each output as a
    `pl.LazyFrame` (a scan of the artifact's parts, in no particular row order) and is
    written as lazy queries run by `collect`: only the columns it names are read, a batch
    at a time, so its memory does not grow with the corpus (issue 19). A `PartwiseSummary`
    is computed part by part on the workers, then combined.
    """

    name: str
    kind: StepKind
    fn: StageFn
    inputs: tuple[Artifact | str, ...]  # `schemas.artifacts` handles ("stage/name" for ad-hoc stages)
    outputs: tuple[Artifact | Output, ...]  # handles, or `Output`s for ad-hoc stages
    config_sections: tuple[str, ...] = ()
    key: str | None = None
    summarize: Summarize | PartwiseSummary | None = None
    description: str = ""
    always_run: bool = False  # for steps that look outside the run (file discovery)
    passthrough: Mapping[str, str] = field(default_factory=dict, compare=False)  # output -> side input
    # a digest of what the stage reads or writes outside the run's artifacts (dedup's index,
    # review's decisions, export's folder); a change re-runs it. Read before the stage runs and
    # again after, for the manifest: what the stage wrote there itself is not a change.
    external: Callable[[Any], str | None] | None = None  # called with the run's config
    side_files: tuple[SideFile, ...] = ()  # listed and hashed in the manifest after the stage

    def __post_init__(self) -> None:
        if self.kind is StepKind.SHUFFLE and not self.key:
            raise ValueError(f"stage {self.name!r}: a shuffle step needs a key column")
        for output, artifact in self.passthrough.items():
            if output not in self.output_names or artifact not in self.input_paths[1:]:
                raise ValueError(f"stage {self.name!r}: passthrough {output!r} <- {artifact!r} must name "
                                 "one of its outputs and one of its side inputs")

    @property
    def input_paths(self) -> tuple[str, ...]:
        """The inputs as "stage/name" paths, the primary one first."""
        return tuple(str(i) for i in self.inputs)

    @property
    def input_records(self) -> dict[str, type[BaseModel] | None]:
        """The record type each input given by its handle is read as (the runner's graph check)."""
        return {i.path: i.record for i in self.inputs if isinstance(i, Artifact)}

    @property
    def declared_outputs(self) -> tuple[Output, ...]:
        return tuple(o if isinstance(o, Output) else Output.of(o) for o in self.outputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(out.name for out in self.declared_outputs)


class StageStopped(AssayError):
    """A stage stopped cleanly before finishing (a budget reached): keep what it did.

    The runner commits `outputs`, marks the stage partial and runs no later stage; the
    next run starts the stage again and, through its caches, pays for nothing twice.
    `exit_code` is the command's exit status (3: stopped early; 4: the teacher stopped on a
    fatal error such as a rejected key or an unreachable endpoint).
    """

    def __init__(self, reason: str, outputs: Mapping[str, pl.DataFrame], exit_code: int = 3):
        super().__init__(reason)
        self.reason = reason
        self.outputs = dict(outputs)
        self.exit_code = exit_code


@dataclass
class StageContext(Generic[C]):
    """What a stage function may use besides its batch. Picklable: it travels to workers.

    `services` are the executor's (`curate.run.services`): the stage asks `pool()` and
    `limiter()` and never learns which executor runs it.
    """

    config: C
    run_dir: str
    stage: str
    shard: int = 0
    num_shards: int = 1
    show_progress: bool = True
    services: StageServices = field(default_factory=LocalServices)
    _side_cache: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)

    def pool(self) -> contextlib.AbstractContextManager[WorkerPool]:
        """The executor's worker pool (`with ctx.pool() as pool: pool.map(fn, items)`): processes
        locally, Ray workers on a cluster, one process when the run has one worker."""
        return self.services.pool()

    def limiter(self, purpose: str, limits: RateLimits) -> Limiter | None:
        """The rate limiter every worker of the run shares for `purpose` ("teacher"), or None
        where the client's own limiter suffices (one process)."""
        return self.services.limiter(f"{self.config.name}-{purpose}-limiter", limits)

    def path(self, artifact: Artifact | str) -> str:
        """Path of an artifact (its handle, or "stage/name") in the run directory (Parquet)."""
        stage, name = str(artifact).split("/", 1)
        return f"{self.run_dir}/{stage}/{name}.parquet"

    @property
    def stage_dir(self) -> Path:
        """Folder for this stage's side files (caches, reports); survives re-runs."""
        directory = Path(self.run_dir) / f"{self.stage}.state"
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def side(self, handle: Artifact | str) -> pl.DataFrame:
        """A side input, read whole (cached per worker)."""
        artifact = str(handle)
        if artifact not in self._side_cache:
            self._side_cache[artifact] = read_parquet(self.path(artifact))
        return self._side_cache[artifact]

    def previous(self, output: Artifact | str) -> pl.LazyFrame | None:
        """This stage's own output (its handle, or its name) from the last completed run, for
        incremental work: a lazy scan of its parts (in no row order), so that a task reads only
        the rows and columns it asks for, not the whole artifact."""
        name = output.name if isinstance(output, Artifact) else output
        location = self.path(f"{self.stage}/{name}")
        return scan_dataset(location) if path_exists(location) else None

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """A progress bar over `items` (rich), silent on workers and in quiet runs."""
        if not self.show_progress:
            yield from items
            return
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task(description, total=total)
            for item in items:
                yield item
                progress.advance(task)

    def write_json(self, name: str, payload: Any) -> Path:
        """Write a side report into the stage's state folder, atomically."""
        target = self.stage_dir / name
        atomic_write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=str))
        return target
