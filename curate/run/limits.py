"""Rate limits shared by every worker of a cluster: requests and tokens per minute.

`RateLimiter` is a sliding-window log: a request is admitted only when the requests (and
tokens) admitted in the last window, plus this one, stay within the limit. Unlike a
leaky bucket, which lets a full bucket through on top of the steady rate, no window of
the given length ever holds more than the limit, which is what a provider's counter
checks. Waiters are served first come, first served (one lock around the admission).

On a cluster, one `RateLimiter` lives in a named Ray actor (`cluster_limiter`): every
worker's teacher client holds a `ClusterLimiter` (a picklable handle whose
`async acquire(tokens)` awaits the actor), so the limit is the cluster's, not each
worker's. The teacher client takes any object with `async acquire(tokens)`; a stage gets
the run's limiter from its executor: `open_teacher(..., limiter=ctx.limiter("teacher",
config.teacher))` (`curate.run.services`).
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

ACTOR_NAMESPACE = "assay"


class SlidingWindow:
    """At most `limit` units admitted in any `window_s` seconds (a log of admissions)."""

    def __init__(self, limit: float, window_s: float):
        if limit <= 0 or window_s <= 0:
            raise ValueError("limit and window must be positive")
        self.limit = float(limit)
        self.window_s = float(window_s)
        self._log: collections.deque[tuple[float, float]] = collections.deque()
        self._total = 0.0

    def _expire(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - self.window_s:
            _, amount = self._log.popleft()
            self._total -= amount

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until `amount` more units fit (0 when they fit now)."""
        amount = min(amount, self.limit)  # one request larger than the limit waits for an empty window
        self._expire(now)
        if self._total + amount <= self.limit:
            return 0.0
        excess = self._total + amount - self.limit
        freed = 0.0
        for stamp, used in self._log:
            freed += used
            if freed >= excess - 1e-9:
                return max(stamp + self.window_s - now, 1e-4)
        return self.window_s  # pragma: no cover - the loop always frees enough

    def record(self, amount: float, now: float) -> None:
        amount = min(amount, self.limit)
        self._log.append((now, amount))
        self._total += amount


class RateLimiter:
    """Requests per minute and tokens per minute, enforced over sliding windows.

    `request_window_s` (default 1 s) is the window the request limit is enforced over,
    scaled from per-minute (600/min becomes 10 per second): a run starts at the rate
    instead of sending a minute's worth at once. `margin` widens each window by that
    fraction, leaving room for the delay between admission and arrival at the server.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        request_window_s: float = 1.0,
        token_window_s: float = 60.0,
        margin: float = 0.0,
    ):
        stretch = 1.0 + margin
        self.requests = (
            SlidingWindow(requests_per_minute * request_window_s / 60.0, request_window_s * stretch)
            if requests_per_minute
            else None
        )
        self.tokens = (
            SlidingWindow(tokens_per_minute * token_window_s / 60.0, token_window_s * stretch)
            if tokens_per_minute
            else None
        )
        # requests are also spaced evenly (window / limit apart): no burst at the start
        self.interval = (
            request_window_s / (requests_per_minute * request_window_s / 60.0) if requests_per_minute else 0.0
        )
        self._next_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.admitted = 0

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one request of `tokens` tokens fits in both windows, then count it."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = time.monotonic()
                wait = max(0.0, self._next_at - now)
                if self.requests is not None:
                    wait = max(wait, self.requests.wait_time(1, now))
                if self.tokens is not None:
                    wait = max(wait, self.tokens.wait_time(tokens, now))
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.requests is not None:
                self.requests.record(1, now)
                self._next_at = now + self.interval
            if self.tokens is not None:
                self.tokens.record(tokens, now)
            self.admitted += 1

    def stats(self) -> dict[str, Any]:
        return {"admitted": self.admitted}


class ClusterLimiter:
    """A handle on the cluster's `RateLimiter` actor; picklable, so it travels to workers."""

    def __init__(self, actor: Any):
        self.actor = actor

    async def acquire(self, tokens: int = 0) -> None:
        await self.actor.acquire.remote(tokens)

    def stats(self) -> dict[str, Any]:
        import ray

        result: dict[str, Any] = ray.get(self.actor.stats.remote())
        return result


def cluster_limiter(
    name: str,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    **options: Any,
) -> ClusterLimiter:
    """The named limiter actor of the connected cluster, created by the first caller.

    Later callers get the same actor (same name): its limits are those of the first call.
    The actor asks for no CPU (an I/O-bound helper must not take a CPU from the work).
    """
    import ray

    actor_cls = ray.remote(RateLimiter)
    actor = actor_cls.options(
        name=name,
        namespace=ACTOR_NAMESPACE,
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=10_000,
    ).remote(requests_per_minute, tokens_per_minute, **options)
    return ClusterLimiter(actor)
