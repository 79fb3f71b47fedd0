"""Configuration of expert review in Label Studio."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field("http://127.0.0.1:8080", description="Label Studio server")
    token_env: str = Field("LABEL_STUDIO_API_KEY", description="Environment variable with the token")
