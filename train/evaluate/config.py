"""Configuration of `train eval`: what is compared, on what, and the gate."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    test_file: str | None = Field(
        None, description="Chat JSONL test split (default: the run's export test.jsonl)"
    )
    train_file: str | None = Field(
        None, description="Where few-shot examples come from (default: train.jsonl beside the test file)"
    )
    task_config: str | None = Field(
        None, description="Pipeline YAML with the task (default: the export's pipeline.yaml)"
    )
    few_shot: int = Field(3, ge=0, description="Training examples in the prompted baseline")
    max_examples: int | None = Field(None, ge=1, description="Evaluate on at most this many test rows")
    max_new_tokens: int = Field(128, gt=0)
    batch_size: int = Field(8, ge=1)
    latency_samples: int = Field(16, ge=1, description="Examples timed one at a time for p50/p95")
    label_scoring: bool = Field(True, description="Classification: also rank labels by likelihood")
    general_set: str | None = Field(None, description="General instructions JSONL for the regression check")
    margin: float = Field(0.0, description="Fine-tuned must beat the prompted baseline by this much")
    regression_tolerance: float = Field(
        0.25, ge=0, description="Allowed relative rise of perplexity on the general set"
    )
    hardware_usd_per_hour: float = Field(
        0.0, ge=0, description="Price of the machine serving the fine-tuned model, for cost per 1k calls"
    )
    judge: bool = Field(False, description="Freeform tasks: score with the teacher's judge rubric")


def load_eval_config(path: str | Path | None) -> EvalConfig:
    if path is None:
        return EvalConfig()
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return EvalConfig.model_validate(data.get("eval", data))
