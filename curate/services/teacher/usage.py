"""Token counts, usage extraction from provider responses, and cost from the price table."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from curate.services.teacher.config import Price
from schemas.records import Usage

# Characters per token assumed when no tokenizer is available offline. English prose runs
# at about 4 characters per token for Claude and GPT tokenizers; 3.5 errs on the high
# side of the token count (and so of the cost) on purpose.
CHARS_PER_TOKEN = 3.5


@lru_cache(maxsize=1)
def _encoding() -> Any | None:
    """tiktoken's o200k_base/cl100k_base if its file is cached locally; None offline."""
    try:
        import tiktoken
    except ImportError:  # pragma: no cover - tiktoken is a dependency
        return None
    for name in ("o200k_base", "cl100k_base"):
        try:
            return tiktoken.get_encoding(name)
        except Exception:  # a download failure offline is expected
            continue
    return None


def token_method() -> str:
    """How `count_tokens` counts: a named tiktoken encoding, or the character heuristic."""
    encoding = _encoding()
    return f"tiktoken:{encoding.name}" if encoding is not None else f"chars/{CHARS_PER_TOKEN}"


def count_tokens(text: str) -> int:
    """Tokens of `text` (tiktoken when available, else a conservative character estimate).

    Claude's tokenizer is not public; both are estimates of Claude's count, and the
    estimate says which was used (`token_method`).
    """
    encoding = _encoding()
    if encoding is not None:
        return len(encoding.encode(text, disallowed_special=()))
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def cost_usd(usage: Usage, price: Price | None, *, batch: bool = False) -> float:
    """Cost of `usage` at `price` (USD per million tokens); Message Batches are half price."""
    if price is None:
        return 0.0
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    ) / 1_000_000
    return total * (0.5 if batch else 1.0)


def usage_from_anthropic(raw_usage: Any) -> Usage:
    """Usage of an Anthropic Message (`input_tokens` excludes the cache reads and writes)."""
    if raw_usage is None:
        return Usage()
    get = raw_usage.get if isinstance(raw_usage, dict) else lambda k: getattr(raw_usage, k, None)
    return Usage(
        input_tokens=int(get("input_tokens") or 0),
        output_tokens=int(get("output_tokens") or 0),
        cache_read_tokens=int(get("cache_read_input_tokens") or 0),
        cache_write_tokens=int(get("cache_creation_input_tokens") or 0),
    )


def usage_from_openai(raw_usage: Any) -> Usage:
    """Usage of an OpenAI chat completion (`prompt_tokens` includes the cached tokens)."""
    if raw_usage is None:
        return Usage()
    prompt = int(getattr(raw_usage, "prompt_tokens", 0) or 0)
    details = getattr(raw_usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=int(getattr(raw_usage, "completion_tokens", 0) or 0),
        cache_read_tokens=cached,
    )


def add_usage(total: Usage, extra: Usage) -> Usage:
    return Usage(
        input_tokens=total.input_tokens + extra.input_tokens,
        output_tokens=total.output_tokens + extra.output_tokens,
        cache_read_tokens=total.cache_read_tokens + extra.cache_read_tokens,
        cache_write_tokens=total.cache_write_tokens + extra.cache_write_tokens,
        cost_usd=total.cost_usd + extra.cost_usd,
    )
