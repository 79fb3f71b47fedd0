"""Configuration of `train eval`: what is compared, on what, and the gate."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    test_file: str | None = Field(
        None,
        description=(
            "Held-out rows: chat JSONL (default: the run's export test.jsonl), or any labelled JSONL "
            "of plain records (text_field + label_field) for a classification task"
        ),
    )
    text_field: str = Field("text", description="Plain labelled records: the field with the passage")
    label_field: str = Field("label", description="Plain labelled records: the field with the gold label")
    train_file: str | None = Field(
        None,
        description="Rows few-shot examples and baselines learn from (default: train.jsonl beside the test file, else the export's)",
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
    classical_baselines: bool = Field(
        True,
        description="Fit the majority class and TF-IDF + logistic regression (classification) or the "
        "nearest training answer (other tasks) on the training split and report them",
    )
    margin: float = Field(
        0.0,
        description="The fine-tune must beat each required baseline by more than this, with the whole "
        "confidence interval of the difference above it",
    )
    require_classical: bool = Field(
        False, description="The gate also requires beating the classical baselines (not only prompting and majority)"
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of every bootstrap interval")
    bootstrap_resamples: int = Field(2000, ge=100, description="Bootstrap resamples per interval")
    seed: int = Field(0, description="Seed of the bootstrap and of the classical baselines")
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
