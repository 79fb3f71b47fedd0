"""Runs a list of stages over a run directory, skipping what is already done.

A stage is skipped when its fingerprint (its config sections, the hashes of its inputs,
what it reads outside the run when it declares that (`Stage.external`),
the package version) equals the one in the manifest and its outputs exist. Only the
runner (the driver) writes the manifest.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console

from curate.run.config import RunSettings
from curate.run.dataset import commit_parts
from curate.run.executor import (
    Executor,
    InputSource,
    LocalExecutor,
    StageOutcome,
    execute_stage,
    input_source,
    run_global,
    summarize_outcome,
)
from curate.run.executor_services import services_for
from curate.run.graph import check_graph, side_file_hash
from curate.run.rundir import RunDir, is_url, run_location
from curate.run.stage import Stage, StageContext, StepKind
from curate.run.tasks import ShardStore, input_hashes, stage_token
from schemas.ids import sha256_hex

TRACKED_LIBRARIES = (
    "assay", "polars", "pyarrow", "pydantic", "instructor", "anthropic", "openai",
    "datasketch", "rapidfuzz", "great-expectations", "label-studio-sdk",
)


@dataclass
class StageResult:
    name: str
    status: str  # complete | skipped | partial | failed
    rows: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    seconds: float = 0.0
    message: str = ""
    exit_code: int = 0  # of a partial stage: StageStopped.exit_code


@dataclass
class RunResult:
    stages: list[StageResult]

    @property
    def errors(self) -> int:
        return sum(stage.errors for stage in self.stages)

    @property
    def stopped(self) -> StageResult | None:
        return next((s for s in self.stages if s.status in {"partial", "failed"}), None)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 a stage failed, 2 finished with bad-input errors, 3 stopped early,
        4 the teacher stopped on a fatal error (key, model, config, unreachable endpoint)."""
        stopped = self.stopped
        if stopped is not None:
            return 1 if stopped.status == "failed" else (stopped.exit_code or 3)
        return 2 if self.errors else 0


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def stage_timing(
    started: float, executed: float, committed: float, finished: float, outcome: StageOutcome
) -> dict[str, float]:
    """Where a stage's wall time went: planning and running its tasks, committing their parts,
    its summary; and the tasks' own times (their sum against workers x the run's wall time
    says how busy the workers were; their max, how long the slowest held the stage; their
    CPU time against their wall time, whether they computed or waited), and a keyed stage's
    bucketing round."""
    seconds = outcome.task_seconds
    return {
        "run": round(executed - started, 3),
        "commit": round(committed - executed, 3),
        "summary": round(finished - committed, 3),
        "task_sum": round(sum(seconds), 3),
        "task_max": round(max(seconds, default=0.0), 3),
        "task_min": round(min(seconds, default=0.0), 3),
        "task_cpu_sum": round(sum(outcome.task_cpu_seconds), 3),
        "bucketing_sum": round(sum(outcome.bucketing_seconds), 3),
    }


def make_executor(config: RunSettings) -> Executor:
    if config.executor.kind == "ray":
        from curate.run.ray_executor import RayExecutor

        return RayExecutor.from_config(config)
    return LocalExecutor(workers=config.executor.workers, partitions=config.executor.partitions,
                         threads_per_worker=config.executor.threads_per_worker)


class Runner:
    def __init__(
        self,
        config: RunSettings,
        stages: Sequence[Stage],
        *,
        executor: Executor | None = None,
        console: Console | None = None,
        show_progress: bool = True,
        force: bool = False,
    ):
        self.config = config
        self.stages = list(stages)
        self.executor = executor or make_executor(config)
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.force = force
        self.run_dir = RunDir(run_location(config))  # a local path or an s3:// (fsspec) URL
        self.libraries = library_versions()

    def fingerprint(self, stage: Stage, manifest: dict[str, Any]) -> str:
        payload: dict[str, Any] = {
            "stage": stage.name,
            "config": self.config.section_hash(*stage.config_sections),
            "inputs": input_hashes(stage, manifest),
            "version": self.libraries.get("assay", "dev"),
        }
        if stage.external is not None:
            payload["external"] = stage.external(self.config)
        return sha256_hex(json.dumps(payload, sort_keys=True))

    def run(self, only: Sequence[str] | None = None) -> RunResult:
        manifest = self.run_dir.load_manifest()
        manifest["config_hash"] = self.config.config_hash()
        manifest["config"] = self.config.model_dump(mode="json", by_alias=True)
        manifest["libraries"] = self.libraries
        selected = [stage for stage in self.stages if not only or stage.name in only]
        check_graph(selected, manifest, self.run_dir.exists)  # before anything runs
        results: list[StageResult] = []
        try:
            if any(stage.kind in (StepKind.MAP, StepKind.SHUFFLE) for stage in selected):
                self.executor.warm_up()  # workers start while the first (driver) stages run
            for stage in self.stages:
                if only and stage.name not in only:
                    continue
                result = self._run_stage(stage, manifest)
                results.append(result)
                if result.status in {"partial", "failed"}:
                    break
        finally:
            self.executor.close()  # the worker pool lives for one run
        manifest["updated_at"] = dt.datetime.now(dt.UTC).isoformat()
        self.run_dir.save_manifest(manifest)
        return RunResult(results)

    def _run_stage(self, stage: Stage, manifest: dict[str, Any]) -> StageResult:
        fingerprint = self.fingerprint(stage, manifest)
        previous = manifest["stages"].get(stage.name, {})
        if (
            not self.force
            and not stage.always_run
            and previous.get("fingerprint") == fingerprint
            and previous.get("status") == "complete"
            and all(self.run_dir.exists(f"{stage.name}/{o}") for o in stage.output_names)
        ):
            self.console.print(f"[dim]· {stage.name}: unchanged, skipped[/dim]")
            return StageResult(stage.name, "skipped", previous.get("rows", {}), previous.get("errors", 0))

        self.console.print(f"[bold]▶ {stage.name}[/bold] {stage.description}")
        started = time.perf_counter()
        source = self._source(stage, manifest)
        rows_in = source.rows if source is not None else 0
        ctx = StageContext(
            config=self.config,
            run_dir=self.run_dir.location,
            stage=stage.name,
            show_progress=self.show_progress,
            services=services_for(self.executor, self.config),
        )
        store = ShardStore(self.run_dir.location, stage.name, stage_token(stage, ctx, manifest))
        try:
            outcome = self._execute(stage, source, ctx, store)
            executed = time.perf_counter()
            entries = commit_parts(self.run_dir.location, stage.name, outcome.parts,
                                   {o.name: o.key for o in stage.declared_outputs})
        except Exception as error:  # recorded in the manifest, previous outputs kept, then raised
            self._record_failure(stage, manifest, rows_in, started, error)
            raise
        if outcome.stopped is None:
            store.clear()
        status = "complete" if outcome.stopped is None else "partial"
        message = outcome.stopped.reason if outcome.stopped is not None else ""
        exit_code = outcome.stopped.exit_code if outcome.stopped is not None else 0
        if stage.external is not None:  # what the stage itself wrote outside the run counts as unchanged
            fingerprint = self.fingerprint(stage, manifest)
        rows = {name: entry["rows"] for name, entry in entries.items()}
        entry: dict[str, Any] = {
            "fingerprint": fingerprint,
            "status": status,
            "message": message,
            "exit_code": exit_code,
            "kind": stage.kind.value,
            "inputs": input_hashes(stage, manifest),
            "rows_in": rows_in,
            "bytes_in": source.bytes if source is not None else 0,
            "tasks": outcome.tasks,
            "tasks_reused": outcome.reused,
            "rows": rows,
            "errors": rows.get("errors", 0),
            "output_hashes": {name: e["hash"] for name, e in entries.items()},
            "artifacts": entries,
        }
        committed = time.perf_counter()
        if stage.summarize is not None:
            entry["report"] = self._summary(stage, outcome, entries)
        entry["seconds"] = round(time.perf_counter() - started, 3)
        entry["timing"] = stage_timing(started, executed, committed, time.perf_counter(), outcome)
        entry["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
        if stage.side_files and not is_url(self.run_dir.location):
            entry["side_files"] = {
                side.path: side_file_hash(Path(self.run_dir.location) / side.path) for side in stage.side_files
            }
        manifest["stages"][stage.name] = entry
        self.run_dir.save_manifest(manifest)  # after every stage: a crash loses no finished stage
        self._print_done(stage, entry, source)
        return StageResult(stage.name, status, rows, entry["errors"], entry["seconds"], message, exit_code)

    def _execute(
        self, stage: Stage, source: InputSource | None, ctx: StageContext, store: ShardStore
    ) -> StageOutcome:
        """GLOBAL stages (and sources) on the driver, the input read whole; the others as
        tasks planned from the input's part metadata, run by the executor."""
        if stage.kind is StepKind.GLOBAL or source is None:
            frame = self.run_dir.read(source.artifact) if source is not None else pl.DataFrame()
            outcome = run_global(stage, frame, ctx, store)
        else:
            reuse = bool(getattr(self.executor, "checkpoint", True))
            outcome = execute_stage(self.executor, stage, source, ctx, store, reuse=reuse)
        for output, side in stage.passthrough.items():  # the side input's parts, as they are
            outcome.parts[output] = [*self._parts(side).part_infos(), *outcome.parts[output]]
        return outcome

    def _summary(self, stage: Stage, outcome: StageOutcome, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The stage's report: from its frames when it ran on the driver, else on the workers
        (over lazy scans of the outputs: only the columns the report uses, a batch at a time;
        a `PartwiseSummary` a part per job)."""
        assert stage.summarize is not None
        if outcome.frames is not None:
            return stage.summarize({name: frame.lazy() for name, frame in outcome.frames.items()})
        locations = {n: self.run_dir.artifact_location(f"{stage.name}/{n}") for n in stage.output_names}
        parts = {n: [f"{locations[n]}/{p['file']}" for p in entries[n]["parts"]] for n in stage.output_names}
        return summarize_outcome(self.executor, stage, locations, parts)

    def _print_done(self, stage: Stage, entry: dict[str, Any], source: InputSource | None) -> None:
        colour = "green" if entry["status"] == "complete" else "yellow"
        message = entry["message"]
        size = ""
        if source is not None and stage.kind is StepKind.GLOBAL:
            size = f" (whole input on the driver: {source.bytes / 2**20:,.1f} MiB on disk)"
        elif entry["tasks_reused"]:
            size = f" ({entry['tasks_reused']} of {entry['tasks']} tasks reused)"
        self.console.print(
            f"[{colour}]✓ {stage.name}[/{colour}] {entry['rows_in']} in{size} → "
            + ", ".join(f"{n}={c}" for n, c in entry["rows"].items())
            + f" ({entry['seconds']:.1f}s){' — ' + message if message else ''}"
        )

    def _record_failure(
        self,
        stage: Stage,
        manifest: dict[str, Any],
        rows_in: int,
        started: float,
        error: Exception,
    ) -> None:
        seconds = time.perf_counter() - started
        message = f"{type(error).__name__}: {error}"
        previous = manifest["stages"].get(stage.name, {})
        manifest["stages"][stage.name] = {
            **previous,
            "fingerprint": None,  # never skipped next time
            "status": "failed",
            "message": message,
            "traceback": traceback.format_exc(),
            "rows_in": rows_in,
            "seconds": round(seconds, 3),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        self.run_dir.save_manifest(manifest)
        self.console.print(f"[red]✗ {stage.name} failed after {seconds:.1f}s[/red]")

    def _source(self, stage: Stage, manifest: dict[str, Any]) -> InputSource | None:
        return self._parts(stage.input_paths[0], manifest) if stage.inputs else None

    def _parts(self, artifact: str, manifest: dict[str, Any] | None = None) -> InputSource:
        """An artifact's parts from its files' footers (rows, key), digests from the manifest."""
        return input_source(self.run_dir, artifact, manifest if manifest is not None else self.run_dir.load_manifest())
