"""Configuration of the quality filters, deduplication and refinement."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_votes: int = Field(2, ge=1, description="Classification: votes the majority label needs")
    grounding_threshold: float = Field(90.0, ge=0, le=100, description="rapidfuzz partial ratio")
    dedup_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard threshold")
    num_perm: int = Field(128, ge=16)
    shingle_size: int = Field(5, ge=1)


class RefineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rounds: int = Field(1, ge=0, description="Repair rounds for rejected examples")
