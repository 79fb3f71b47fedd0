"""Client-side rate limits: requests and tokens per minute (aiolimiter), or a caller's limiter."""

from __future__ import annotations

from typing import Protocol


class Limiter(Protocol):
    """A client-side rate limit; the scale engineer may pass a cluster-wide one."""

    async def acquire(self, tokens: int) -> None: ...


class DefaultLimiter:
    """Requests per minute and tokens per minute (aiolimiter leaky buckets)."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        from aiolimiter import AsyncLimiter

        self._requests: AsyncLimiter | None = None
        if requests_per_minute:
            # A one-second bucket (not a one-minute one) so that a run starts at the rate
            # instead of bursting a whole minute's worth of requests.
            if requests_per_minute >= 60:
                self._requests = AsyncLimiter(requests_per_minute / 60.0, 1.0)
            else:
                self._requests = AsyncLimiter(1, 60.0 / requests_per_minute)
        self._tokens = AsyncLimiter(tokens_per_minute, 60.0) if tokens_per_minute else None

    async def acquire(self, tokens: int) -> None:
        if self._requests is not None:
            await self._requests.acquire(1)
        if self._tokens is not None:
            await self._tokens.acquire(min(float(tokens), self._tokens.max_rate))
