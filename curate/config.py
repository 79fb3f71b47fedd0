"""The pipeline config: one YAML file, validated by pydantic.

Every section belongs to the stage package that reads it; this module only assembles
them and turns validation errors into messages that name the file, the key and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assay.config_files import error_lines, read_mapping
from assay.errors import ConfigError
from curate.dataset.config import ExportConfig, SplitConfig, ValidateConfig
from curate.filter.config import FilterConfig, RefineConfig
from curate.ingest.config import ChunkConfig, IngestConfig
from curate.review.config import ReviewConfig
from curate.run.config import ExecutorConfig
from curate.services.pii.config import RedactConfig
from curate.services.teacher.config import TeacherConfig
from schemas.ids import sha256_hex
from schemas.tasks import TaskConfig


class PipelineConfig(BaseModel):
    name: str = "assay"
    run_dir: str = Field("runs/default", description="Relative to the config file's folder")
    base_dir: str = Field(".", description="Folder relative paths resolve against (set by the loader)")
    executor: ExecutorConfig = ExecutorConfig()
    ingest: IngestConfig = IngestConfig()
    chunk: ChunkConfig = ChunkConfig()
    redact: RedactConfig = RedactConfig()
    task: TaskConfig
    teacher: TeacherConfig = TeacherConfig()
    filter: FilterConfig = FilterConfig()
    refine: RefineConfig = RefineConfig()
    review: ReviewConfig = ReviewConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    split: SplitConfig = SplitConfig()
    export: ExportConfig = ExportConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (Path(self.base_dir) / candidate).resolve()

    @property
    def run_path(self) -> Path:
        return self.resolve(self.run_dir)

    def section_hash(self, *sections: str) -> str:
        dumped = self.model_dump(mode="json", by_alias=True)
        return sha256_hex(json.dumps({s: dumped[s] for s in sections}, sort_keys=True))

    def config_hash(self) -> str:
        dumped = self.model_dump(mode="json", by_alias=True, exclude={"base_dir"})
        return sha256_hex(json.dumps(dumped, sort_keys=True))


def format_validation_error(source: str, error: ValidationError) -> str:
    lines = error_lines(error, PipelineConfig, hidden=frozenset({"base_dir"}))
    return "\n".join([f"{source}: invalid pipeline config", *lines])


def parse_config(data: dict[str, Any], *, source: str = "<config>", base_dir: Path | None = None) -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    payload = dict(data)
    payload.setdefault("base_dir", str(base_dir or Path.cwd()))
    try:
        return PipelineConfig.model_validate(payload)
    except ValidationError as error:
        raise ConfigError(format_validation_error(source, error)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a pipeline YAML; relative paths in it resolve against its folder."""
    config_path = Path(path)
    data = read_mapping(config_path, overrides)
    return parse_config(data, source=str(config_path), base_dir=config_path.resolve().parent)


__all__ = ["ConfigError", "ExecutorConfig", "PipelineConfig", "load_config", "parse_config"]
