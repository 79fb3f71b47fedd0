"""Configuration of the quality filters, deduplication and refinement."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.filter.similarity_config import DecontaminateConfig, SemanticDedupConfig
from curate.run.config import RunSettings
from curate.services.teacher.config import TeacherConfig
from curate.services.teacher.judge import DEFAULT_RUBRIC, JudgeConfig
from schemas.tasks import TaskConfig

__all__ = ["DEFAULT_RUBRIC", "FilterConfig", "FilterSettings", "JudgeConfig", "RefineConfig"]



# Filters `filter.disable` may switch off. Schema validation is not one: an answer that does
# not parse is no example.
SWITCHABLE_FILTERS = ("consistency", "grounding", "audit", "dedup")


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_votes: int = Field(
        2, ge=1,
        description="Self-consistency: votes the consensus needs (capped at teacher.samples)",
    )
    qa_similarity: float = Field(
        70.0, ge=0, le=100,
        description="QA: rapidfuzz token_set_ratio at which two answers count as agreeing",
    )
    grounding_threshold: float = Field(
        90.0, ge=0, le=100,
        description="rapidfuzz partial_ratio a quote or text value needs when not found verbatim",
    )
    min_quote_chars: int = Field(8, ge=1, description="Shorter quotes are rejected (quote_too_short)")
    min_response_chars: int = Field(2, ge=0, description="Audit: assistant message lower bound")
    max_response_chars: int = Field(8000, ge=1, description="Audit: assistant message upper bound")
    max_prompt_chars: int = Field(60000, ge=1, description="Audit: user message upper bound")
    label_imbalance_ratio: float = Field(
        10.0, ge=1, description="Warn when the largest label outnumbers the smallest by this much"
    )
    dedup_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard threshold")
    num_perm: int = Field(128, ge=16, description="MinHash permutations")
    shingle_size: int = Field(5, ge=1, description="Words per shingle")
    lsh_bands: int | None = Field(
        None, ge=1,
        description="LSH bands (default: chosen so a pair at the threshold is a candidate with p>=0.99)",
    )
    dedup_verify: str = Field(
        "exact",
        description="Candidate pairs kept by: estimate (MinHash, signatures only) or exact "
        "(shingle-set Jaccard of the two texts: higher recall near the threshold)",
    )
    dedup_seed: int = Field(1, description="Seed of the MinHash permutations (datasketch's default)")
    dedup_field: str = Field(
        "conversation", description="What dedup compares: assistant | user | conversation (user+assistant)"
    )
    dedup_index: str | None = Field(
        None,
        description="Folder or URL of a dedup index of earlier accepted datasets (`curate index add`): "
        "examples that duplicate one of them are rejected (indexed_duplicate)",
    )
    judge: JudgeConfig = JudgeConfig()
    decontaminate: DecontaminateConfig = Field(
        DecontaminateConfig(), description="Reject examples containing an item of an evaluation set (contaminated)")
    semantic_dedup: SemanticDedupConfig = Field(
        SemanticDedupConfig(), description="Embedding dedup of instructions, then answers (semantic_duplicate)")
    disable: tuple[str, ...] = Field(
        (),
        description="Filters switched off, to measure what each one is worth (bench/curation): "
        "consistency (keep the first valid sample of a chunk instead of voting), grounding, audit, "
        "dedup (the dedup stage passes everything). Schema validation cannot be switched off",
    )

    @model_validator(mode="after")
    def _bounds(self) -> FilterConfig:
        unknown = sorted(set(self.disable) - set(SWITCHABLE_FILTERS))
        if unknown:
            raise ValueError(
                f"filter.disable: unknown filter(s) {', '.join(unknown)}; "
                f"known: {', '.join(SWITCHABLE_FILTERS)} (schema cannot be switched off)"
            )
        if self.min_response_chars > self.max_response_chars:
            raise ValueError("min_response_chars must not exceed max_response_chars")
        if self.lsh_bands is not None and self.lsh_bands > self.num_perm:
            raise ValueError("lsh_bands must not exceed num_perm")
        if self.dedup_verify not in {"exact", "estimate"}:
            raise ValueError("dedup_verify must be exact or estimate")
        if self.dedup_field not in {"assistant", "user", "conversation"}:
            raise ValueError("dedup_field must be assistant, user or conversation")
        return self


class RefineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rounds: int = Field(1, ge=0, description="Repair rounds for rejected examples")
    round_penalty: float = Field(
        0.95, gt=0, le=1,
        description="quality_score factor per repair round (originals win dedup ties)",
    )
    revote: bool = Field(
        True,
        description="Hold repairs to the vote: a chunk whose samples disagreed is repaired with teacher.samples "
        "answers that must agree again; a repair of a later rejection must keep the label the vote agreed on "
        "(label_changed); false: one repaired answer passes the vote alone (the behaviour before 2026-12-02)",
    )


class FilterSettings(RunSettings, Protocol):
    """What the filter stages read of the pipeline config."""

    @property
    def filter(self) -> FilterConfig: ...

    @property
    def refine(self) -> RefineConfig: ...

    @property
    def task(self) -> TaskConfig: ...

    @property
    def teacher(self) -> TeacherConfig: ...
