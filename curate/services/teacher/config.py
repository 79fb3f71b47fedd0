"""Configuration of the teacher and of generation."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0, description="Uncached input tokens")
    output: float = Field(ge=0, description="Output tokens")
    cache_read: float = Field(0.0, ge=0, description="Input tokens read from the prompt cache")
    cache_write: float = Field(0.0, ge=0, description="Input tokens written to the prompt cache (5 min)")


# Anthropic list prices (USD per million tokens) for current Claude models, as published on
# https://docs.anthropic.com/en/docs/about-claude/pricing (5-minute cache writes = 1.25x
# input, cache reads = 0.1x input). A model name matches its longest prefix here, so
# "claude-sonnet-4-5-20250929" uses "claude-sonnet-4-5". `teacher.prices` overrides these.
DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-4-5": Price(input=5.0, output=25.0, cache_read=0.50, cache_write=6.25),
    "claude-opus-4-1": Price(input=15.0, output=75.0, cache_read=1.50, cache_write=18.75),
    "claude-opus-4": Price(input=15.0, output=75.0, cache_read=1.50, cache_write=18.75),
    "claude-sonnet-4-5": Price(input=3.0, output=15.0, cache_read=0.30, cache_write=3.75),
    "claude-sonnet-4": Price(input=3.0, output=15.0, cache_read=0.30, cache_write=3.75),
    "claude-3-7-sonnet": Price(input=3.0, output=15.0, cache_read=0.30, cache_write=3.75),
    "claude-haiku-4-5": Price(input=1.0, output=5.0, cache_read=0.10, cache_write=1.25),
    "claude-3-5-haiku": Price(input=0.80, output=4.0, cache_read=0.08, cache_write=1.0),
}

# Anthropic's minimum cacheable prefix (tokens); shorter prefixes are sent but not cached.
MIN_CACHEABLE_TOKENS: dict[str, int] = {
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-3-5-haiku": 2048,
    "claude-": 1024,
}


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    backend: Literal["anthropic", "openai", "replay"] = Field(
        "anthropic", description="anthropic (Claude), openai (any OpenAI-compatible server), replay (cassette)"
    )
    model: str = Field("claude-sonnet-4-5", description="Teacher model name, as the backend knows it")
    base_url: str | None = Field(None, description="OpenAI-compatible server (vLLM, Ollama, llama.cpp); or an Anthropic-compatible URL")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (default ANTHROPIC_API_KEY / OPENAI_API_KEY)"
    )
    openai_mode: Literal["tools", "json"] = Field(
        "tools", description="instructor mode for the openai backend: tool calls, or JSON mode for servers without tools"
    )
    cassette: str | None = Field(None, description="Replay: recorded responses (JSONL); live: record here when `record`")
    record: bool = Field(False, description="Live backends: append every answer to `cassette`")
    samples: int = Field(3, ge=1, description="Self-consistency samples per chunk")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature (> 0 for self-consistency)")
    max_tokens: int = Field(1024, gt=0, description="Output token limit of one teacher answer")
    expected_output_tokens: int = Field(
        200, gt=0, description="Typical output tokens of one answer, for the cost estimate"
    )
    max_concurrency: int = Field(8, ge=1, description="Teacher requests in flight at once")
    requests_per_minute: float | None = Field(None, gt=0, description="Client-side request rate limit")
    tokens_per_minute: float | None = Field(None, gt=0, description="Client-side input+output token rate limit")
    max_retries: int = Field(6, ge=0, description="Retries of one request on 429/529/5xx/timeouts (SDK retries are off)")
    retry_base_s: float = Field(1.0, gt=0, description="First backoff step (doubles per retry, full jitter)")
    retry_max_wait_s: float = Field(60.0, gt=0, description="Longest wait between two retries")
    timeout_s: float = Field(120.0, gt=0, description="HTTP timeout of one request")
    max_reasks: int = Field(2, ge=0, description="instructor validation re-asks per request")
    prompt_caching: bool = Field(True, description="Anthropic cache_control on the system+chunk prefix")
    batch_mode: bool = Field(False, description="Anthropic Message Batches (half price, slower)")
    batch_poll_s: float = Field(30.0, gt=0, description="Seconds between two polls of a message batch")
    budget_usd: float | None = Field(None, gt=0, description="Stop before a request would cross this spend")
    cache_path: str | None = Field(
        None, description="SQLite response cache shared between runs (default <run_dir>/generate.state/responses.sqlite)"
    )
    prices: dict[str, Price] = Field(
        default_factory=dict, description="Model name (or prefix) -> price; overrides the built-in Claude prices"
    )
    price: Price | None = Field(
        None, description="Price of `model` itself (USD per million tokens); overrides `prices` and the built-in table"
    )
    allow_unpriced: bool = Field(
        False, description="Run a model with no known price (its cost counts as $0 and no budget can hold): "
        "otherwise an unknown price stops the run at preflight"
    )
    preflight: bool = Field(
        True, description="Before any stage: one cheap call to the endpoint (Anthropic count_tokens, "
        "OpenAI-compatible models list) to check the key, the endpoint and the model"
    )
    breaker_consecutive: int = Field(
        5, ge=1, description="Stop the stage after this many connection failures or timeouts in a row"
    )
    breaker_window: int = Field(
        50, ge=2, description="Attempts in the sliding window of the error-rate breaker"
    )
    breaker_error_rate: float = Field(
        0.5, gt=0, le=1, description="Stop the stage when this share of the last `breaker_window` attempts "
        "failed (5xx, 529, connection errors, timeouts; 429 is pacing, not counted)"
    )

    def price_for(self, model: str | None = None) -> Price | None:
        """The price of `model` (default: the teacher model), by longest prefix; None if unknown."""
        name = model or self.model
        if self.price is not None and name == self.model:
            return self.price
        table = {**DEFAULT_PRICES, **self.prices}
        if name in table:
            return table[name]
        matches = [key for key in table if name.startswith(key)]
        return table[max(matches, key=len)] if matches else None
