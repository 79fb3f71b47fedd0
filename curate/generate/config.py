"""Configuration of the teacher and of generation."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float = Field(0.0, ge=0)
    cache_write: float = Field(0.0, ge=0)


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    backend: Literal["anthropic", "openai", "replay"] = "anthropic"
    model: str = "claude-sonnet-4-5"
    base_url: str | None = Field(None, description="OpenAI-compatible server (vLLM, Ollama, llama.cpp)")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key")
    cassette: str | None = Field(None, description="Replay: recorded responses (JSONL); live: record here")
    samples: int = Field(3, ge=1, description="Self-consistency samples per chunk")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(1024, gt=0)
    max_concurrency: int = Field(8, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    max_retries: int = Field(6, ge=0)
    timeout_s: float = Field(120.0, gt=0)
    max_reasks: int = Field(2, ge=0, description="instructor validation re-asks per request")
    prompt_caching: bool = True
    batch_mode: bool = Field(False, description="Anthropic Message Batches (half price, slower)")
    budget_usd: float | None = Field(None, gt=0)
    prices: dict[str, Price] = Field(default_factory=dict, description="Model name -> price")
