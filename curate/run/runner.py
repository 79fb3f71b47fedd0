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
from curate.run.executor import Executor, LocalExecutor, input_hashes
from curate.run.executor_services import services_for
from curate.run.graph import check_graph, side_file_hash
from curate.run.rundir import RunDir, is_url, run_location
from curate.run.stage import Stage, StageContext, StageStopped
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


def make_executor(config: RunSettings) -> Executor:
    if config.executor.kind == "ray":
        from curate.run.ray_executor import RayExecutor

        return RayExecutor.from_config(config)
    return LocalExecutor(workers=config.executor.workers, partitions=config.executor.partitions)


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
        for stage in self.stages:
            if only and stage.name not in only:
                continue
            result = self._run_stage(stage, manifest)
            results.append(result)
            if result.status in {"partial", "failed"}:
                break
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
        primary = self._primary_input(stage)
        ctx = StageContext(
            config=self.config,
            run_dir=self.run_dir.location,
            stage=stage.name,
            show_progress=self.show_progress,
            services=services_for(self.executor, self.config),
        )
        status, message, exit_code = "complete", "", 0
        try:
            outputs = self.executor.execute(stage, primary, ctx)
        except StageStopped as stop:
            outputs, status, message, exit_code = stop.outputs, "partial", stop.reason, stop.exit_code
        except Exception as error:  # recorded in the manifest, previous outputs kept, then raised
            self._record_failure(stage, manifest, primary.height, started, error)
            raise
        hashes = self.run_dir.commit_stage(stage.name, outputs)
        seconds = time.perf_counter() - started
        rows = {name: frame.height for name, frame in outputs.items()}
        errors = outputs["errors"].height if "errors" in outputs else 0
        if stage.external is not None:  # what the stage itself wrote outside the run counts as unchanged
            fingerprint = self.fingerprint(stage, manifest)
        entry: dict[str, Any] = {
            "fingerprint": fingerprint,
            "status": status,
            "message": message,
            "exit_code": exit_code,
            "kind": stage.kind.value,
            "inputs": input_hashes(stage, manifest),
            "rows_in": primary.height,
            "rows": rows,
            "errors": errors,
            "output_hashes": hashes,
            "seconds": round(seconds, 3),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        if stage.summarize is not None:
            entry["report"] = stage.summarize(outputs)
        if stage.side_files and not is_url(self.run_dir.location):
            entry["side_files"] = {
                side.path: side_file_hash(Path(self.run_dir.location) / side.path) for side in stage.side_files
            }
        manifest["stages"][stage.name] = entry
        self.run_dir.save_manifest(manifest)  # after every stage: a crash loses no finished stage
        colour = "green" if status == "complete" else "yellow"
        self.console.print(
            f"[{colour}]✓ {stage.name}[/{colour}] {primary.height} in → "
            + ", ".join(f"{n}={c}" for n, c in rows.items())
            + f" ({seconds:.1f}s){' — ' + message if message else ''}"
        )
        return StageResult(stage.name, status, rows, errors, seconds, message, exit_code)

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

    def _primary_input(self, stage: Stage) -> pl.DataFrame:
        if not stage.inputs:
            return pl.DataFrame()
        return self.run_dir.read(stage.input_paths[0])
