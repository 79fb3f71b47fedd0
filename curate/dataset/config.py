"""Configuration of validation, splitting and export."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ValidateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_response_chars: int = Field(1, ge=0)
    max_response_chars: int = Field(8000, gt=0)


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    train: float = Field(0.8, gt=0, lt=1)
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    seed: int = 13


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dir: str = Field("export", description="Export folder, relative to the run directory")
    formats: tuple[str, ...] = ("openai", "sharegpt", "alpaca", "parquet", "hf")
