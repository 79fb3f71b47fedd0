"""Which teacher failures stop a stage at once, and the circuit breaker for the rest.

A request that fails for a reason every other request shares (a rejected key, a model the
endpoint does not know, a request the config makes invalid, an endpoint that cannot be
reached) must not be repeated for every chunk: the first occurrence stops the stage
(`TeacherFatal`), what was answered is kept, and the message names the cause and the fix.
Failures that may be the server's passing trouble (5xx, 529, timeouts, refused
connections) are retried by the tenacity policy; the `CircuitBreaker` turns them into a
stop when they come N in a row (connection failures and timeouts) or make up a sustained
share of recent attempts. 429 is pacing (the server answered and said when to come back),
so it neither trips nor feeds the breaker.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass

from assay.errors import AssayError

# A 400 that comes from one request's content (its size), not from the configuration.
_PER_REQUEST_400 = re.compile(r"prompt is too long|too many tokens|context length|maximum context|too large", re.I)


class TeacherFatal(AssayError):
    """The teacher cannot answer any request as configured: stop the stage now.

    `cause`: "auth" | "permission" | "model" | "config" | "unreachable" | "error_rate".
    """

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    """What a message about a failure names: where, with which key variable and model."""

    url: str
    key_env: str
    model: str


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def _server_message(error: BaseException) -> str:
    """The provider's own error text (`{"error": {"message": ...}}`), else the SDK's."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(error, "message", None) or error)[:300]


def is_connection_failure(error: BaseException) -> bool:
    """Refused/reset connections, DNS failures and timeouts (the SDKs' APIConnectionError)."""
    import anthropic
    import openai

    return isinstance(error, anthropic.APIConnectionError | openai.APIConnectionError)


def is_timeout(error: BaseException | None) -> bool:
    import anthropic
    import openai

    return isinstance(error, anthropic.APITimeoutError | openai.APITimeoutError)


def fatal_for_status(error: BaseException, where: Endpoint) -> TeacherFatal | None:
    """A stop for 401, 403, 404 and a 400/422 that the config causes; None for the rest."""
    status = _status(error)
    said = _server_message(error)
    if status == 401:
        return TeacherFatal(
            "auth",
            f"{where.key_env} rejected by {where.url}: 401 ({said}). Set a valid key in ${where.key_env} "
            "(or name another variable in teacher.api_key_env) and run again.",
        )
    if status == 403:
        return TeacherFatal(
            "permission",
            f"{where.key_env} not allowed by {where.url}: 403 ({said}). The key has no access to model "
            f"{where.model!r} or to this API: use a key that has, or another teacher.model.",
        )
    if status == 404:
        return TeacherFatal(
            "model",
            f"model {where.model!r} not found at {where.url}: 404 ({said}). Check teacher.model "
            "(and teacher.base_url) and run again.",
        )
    if status in (400, 422) and not _PER_REQUEST_400.search(said):
        return TeacherFatal(
            "config",
            f"{where.url} rejected the request as invalid: {status} ({said}). Every request is built "
            "the same way from the teacher config (model, max_tokens, openai_mode, ...): fix it and run again.",
        )
    return None


class CircuitBreaker:
    """Trips after `consecutive` connection failures/timeouts in a row, or when `rate` of the
    last `window` attempts failed (5xx, 529, connection failures, timeouts)."""

    def __init__(self, consecutive: int, window: int, rate: float):
        self.consecutive = consecutive
        self.rate = rate
        self.in_a_row = 0
        self.recent: collections.deque[bool] = collections.deque(maxlen=window)

    def success(self) -> None:
        """An answer, or any HTTP status that proves the endpoint is there (429 included)."""
        self.in_a_row = 0
        self.recent.append(False)

    def failure(self, error: BaseException, where: Endpoint) -> TeacherFatal | None:
        """Count a failed attempt; a stop when the breaker trips."""
        status = _status(error)
        if status in (408, 409, 429):
            self.success()
            return None
        connection = is_connection_failure(error)
        self.in_a_row = self.in_a_row + 1 if connection else 0
        self.recent.append(True)
        if connection and self.in_a_row >= self.consecutive:
            kind = "timed out" if is_timeout(error) else "failed"
            return TeacherFatal(
                "unreachable",
                f"cannot reach {where.url}: {self.in_a_row} connections in a row {kind} "
                f"(last: {type(error).__name__}: {_server_message(error)}). Check that the server is up "
                "and teacher.base_url (and teacher.timeout_s), then run again: answered requests are kept, "
                "the rest are sent again.",
            )
        failed = sum(self.recent)
        if len(self.recent) == self.recent.maxlen and failed >= self.rate * len(self.recent):
            return TeacherFatal(
                "error_rate",
                f"{where.url} failed {failed} of the last {len(self.recent)} attempts (last: "
                f"{type(error).__name__}: {_server_message(error)}). The endpoint is unhealthy: try again "
                "later (answered requests are kept), or raise teacher.breaker_error_rate.",
            )
        return None
