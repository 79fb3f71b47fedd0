"""Which provider errors are worth another attempt, how long to wait, and how to name a failure.

One policy owns the waits (the SDKs' own retries are off): tenacity with full-jitter
exponential backoff that honours the server's `retry-after`.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}


def _status_of(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(error: BaseException) -> bool:
    """429, 529 (overloaded), other 5xx, 408/409, timeouts and connection errors."""
    import anthropic
    import openai

    if isinstance(error, anthropic.APIConnectionError | openai.APIConnectionError):
        return True  # includes the SDKs' timeout errors
    status = _status_of(error)
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)


def retry_after_seconds(error: BaseException) -> float | None:
    """The server's `retry-after-ms` / `retry-after` (seconds or an HTTP date), if any."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        with contextlib.suppress(ValueError):
            return max(float(milliseconds) / 1000.0, 0.0)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


def backoff_wait(base_s: float, max_s: float) -> Callable[[Any], float]:
    """tenacity wait: `retry-after` when the server sent one, else full-jitter exponential."""

    def wait(retry_state: Any) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = retry_after_seconds(error) if error is not None else None
        if hinted is not None:
            return hinted + random.uniform(0, min(hinted * 0.1, 1.0))
        exponential = base_s * (2 ** (retry_state.attempt_number - 1))
        return random.uniform(0, min(exponential, max_s))

    return wait


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _api_cause(error: BaseException) -> BaseException | None:
    import anthropic
    import openai

    seen: set[int] = set()
    current: BaseException | None = error.__cause__ or error.__context__
    while current is not None and id(current) not in seen:
        if isinstance(current, anthropic.APIError | openai.APIError):
            return current
        if isinstance(current, ValidationError):
            return None
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _short(error: BaseException, limit: int = 600) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
