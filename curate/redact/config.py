"""Configuration of redaction before the teacher (issue 11 extends this)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RedactConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(False, description="Redact personal data and secrets before generation")
