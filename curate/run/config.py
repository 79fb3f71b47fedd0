"""What the run model needs of a config: its own section (`executor`) and a few questions.

The run model knows no stage and no pipeline config: `RunSettings` is a protocol that the
pipeline's config (`curate.config.PipelineConfig`, which assembles every stage's section)
satisfies, so the runner, the executors and the run directory are typed without importing
the stages' configs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class ExecutorConfig(BaseModel):
    """Where the stages run: the local executor, or Ray."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=1, description="Processes (local) or workers (ray)")
    partitions: int | None = Field(None, ge=1, description="Shards per stage (default: workers)")
    threads_per_worker: int | None = Field(
        None, ge=1,
        description="Threads each worker's native libraries (polars, BLAS) may use "
        "(default: the machine's CPUs divided among the workers; on ray, 1 per task CPU)",
    )
    ray_address: str | None = Field(None, description='"auto", "ray://host:port", or none for a local cluster')


class RunSettings(Protocol):
    """The part of a pipeline config the run model reads."""

    @property
    def name(self) -> str: ...

    @property
    def run_dir(self) -> str: ...

    @property
    def executor(self) -> ExecutorConfig: ...

    @property
    def run_path(self) -> Path: ...

    def resolve(self, path: str) -> Path: ...

    def section_hash(self, *sections: str) -> str: ...

    def config_hash(self) -> str: ...

    def model_dump(
        self, *, mode: str = ..., by_alias: bool | None = ..., exclude: set[str] | None = ...
    ) -> dict[str, Any]: ...


class RateLimits(Protocol):
    """Client-side request limits (the teacher section has them), shared across a cluster."""

    @property
    def requests_per_minute(self) -> float | None: ...

    @property
    def tokens_per_minute(self) -> float | None: ...
