"""Configuration of expert review in Label Studio."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from curate.run.config import RunSettings
from curate.services.teacher.config import TeacherConfig
from schemas.tasks import TaskConfig


class DoubtConfig(BaseModel):
    """How the review queue's doubt score is made (curate/review/doubt.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    weights: dict[str, float] = Field(
        default_factory=lambda: {"votes": 1.0, "grounding": 0.5, "judge": 0.5, "neighbour": 1.0},
        description="Weight of each signal in the doubt score: votes (self-consistency agreement above the "
        "consistency floor), grounding (grounding score above the grounding floor), judge (the judge's mean "
        "score above its threshold), neighbour (similar passages labelled otherwise); 0 switches one off",
    )
    neighbour: bool = Field(
        True, description="Compute the neighbour signal with sentence embeddings (classification tasks only)"
    )
    neighbour_k: int = Field(5, ge=1, description="Nearest neighbours the neighbour signal looks at")
    neighbour_min_similarity: float = Field(
        0.5, ge=-1, le=1, description="Neighbours less alike than this (embedding cosine) are not counted"
    )
    embedding_model: str | None = Field(
        None, description="Embedding model (a folder or Hugging Face name); default: the packaged all-MiniLM-L6-v2"
    )

    @field_validator("weights")
    @classmethod
    def _known_signals(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - {"votes", "grounding", "judge", "neighbour"})
        if unknown:
            raise ValueError(f"unknown doubt signal(s) {', '.join(unknown)}; known: votes, grounding, judge, neighbour")
        if any(w < 0 for w in weights.values()):
            raise ValueError("doubt weights must not be negative")
        return weights


class ReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field("http://127.0.0.1:8080", description="Label Studio server")
    token_env: str = Field(
        "LABEL_STUDIO_API_KEY",
        description="Environment variable with the token (falls back to LABEL_STUDIO_USER_TOKEN)",
    )
    project_title: str | None = Field(
        None, min_length=3, max_length=50, description='Label Studio project title (default "assay: <name>/<task name>"); matched exactly'
    )
    borderline_agreement: float = Field(
        1.0, ge=0, le=1, description="Examples whose self-consistency agreement is below this are borderline"
    )
    borderline_grounding: float = Field(
        0.95, ge=0, le=1, description="Examples whose grounding score is below this are borderline"
    )
    audit_fraction: float = Field(
        0.1, ge=0, le=1, description="Share of the non-borderline (auto-accepted) examples sent for audit"
    )
    seed: str = Field("assay-review", description="Seed of the audit sample (hashed with each example id)")
    batch_size: int = Field(50, ge=1, description="Tasks per import request (an interrupted push resumes per batch)")
    annotations_per_task: int = Field(
        1, ge=1, description="Reviewers Label Studio assigns to each task (its project overlap)"
    )
    resolution: Literal["majority", "any_reject", "most_recent"] = Field(
        "majority", description="How several reviewers' decisions on one example become one"
    )
    unreviewed: Literal["keep", "drop", "audited"] = Field(
        "audited",
        description="Examples not sent for review: keep, drop, or keep only while the audit passes",
    )
    pending: Literal["keep", "drop"] = Field(
        "keep", description="Examples sent for review but not decided yet"
    )
    audit_max_error_rate: float = Field(
        0.1, ge=0, le=1, description="The audit passes while rejected+corrected audited examples stay at or below this share"
    )
    audit_min_reviewed: int = Field(
        10, ge=1,
        description="Reviewed audit examples the audit needs before it passes or fails; until then it is undecided "
        "and never-sent examples are kept",
    )
    guidelines: dict[str, str] = Field(
        default_factory=dict,
        description="One-line definition per label (classification) or field (extraction), shown in Label Studio's "
        "instructions panel and as hints on the choices; falls back to task.label_descriptions / the field descriptions",
    )
    min_grounding: float = Field(
        0.9, ge=0, le=1, description="A corrected quote must match the chunk at least this well (rapidfuzz, 0-1)"
    )
    timeout_s: float = Field(60.0, gt=0, description="HTTP timeout of one Label Studio request")
    doubt: DoubtConfig = Field(
        default_factory=DoubtConfig, description="The doubt score that orders the review queue (most doubtful first)"
    )


class ReviewSettings(RunSettings, Protocol):
    """What the review stage and `curate review` read of the pipeline config."""

    @property
    def review(self) -> ReviewConfig: ...

    @property
    def task(self) -> TaskConfig: ...

    @property
    def teacher(self) -> TeacherConfig: ...

    @property
    def filter(self) -> FilterFloors: ...


class JudgeFloor(Protocol):
    @property
    def threshold(self) -> float: ...


class FilterFloors(Protocol):
    """The filters' floors that the doubt score measures margins above (filter.*)."""

    @property
    def min_votes(self) -> int: ...

    @property
    def grounding_threshold(self) -> float: ...

    @property
    def judge(self) -> JudgeFloor: ...
