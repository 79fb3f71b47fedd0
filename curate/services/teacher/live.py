"""The paid path of the teacher client: budget reservation, instructor's re-asks, retries, storage.

Split from `client.TeacherClient` (a mixin it inherits) so that the client reads as its
public API plus the local answers (cache, cassette), and this file as what one paid request
goes through: reserve its worst-case cost, send it with retries through instructor's
`patch_v2`, store every provider response the moment it arrives, log it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from curate.services.teacher.backends import _LiveBackend
from curate.services.teacher.config import Price, TeacherConfig
from curate.services.teacher.failures import (
    CircuitBreaker,
    Endpoint,
    TeacherFatal,
    fatal_for_status,
    is_timeout,
)
from curate.services.teacher.request import BudgetExceeded, ErrorKind, TeacherAnswer, TeacherRequest
from curate.services.teacher.retry import (
    _api_cause,
    _caused_by,
    _short,
    _status_of,
    backoff_wait,
    is_retryable,
)
from curate.services.teacher.store import RequestLog, ResponseCache, StoredAttempt, canonical_json
from curate.services.teacher.usage import add_usage, cost_usd, count_tokens
from schemas.ids import sha256_hex
from schemas.records import Usage

if TYPE_CHECKING:
    from curate.services.teacher.client import _LoopState


class LiveCalls:
    """What a live (paid) request goes through; `TeacherClient` supplies the state."""

    teacher: TeacherConfig
    run_dir: str
    purpose: str
    log: RequestLog
    price: Price | None
    counts: dict[str, int]
    cache: ResponseCache | None
    live: _LiveBackend | None
    backend_id: str
    breaker: CircuitBreaker
    fatal: TeacherFatal | None
    _spent: float
    _budget_hit: bool

    def _answer(
        self, request: TeacherRequest, rhash: str, *, output: Any, raw_json: str | None, error: str | None,
        error_kind: ErrorKind | None, usage: Usage, cached: bool,
    ) -> TeacherAnswer:
        raise NotImplementedError

    def _stopped_answer(self, request: TeacherRequest, rhash: str, usage: Usage) -> TeacherAnswer:
        raise NotImplementedError

    def _budget_answer(self, request: TeacherRequest, rhash: str, usage: Usage) -> TeacherAnswer:
        raise NotImplementedError

    def _endpoint(self, state: _LoopState) -> Endpoint:
        raise NotImplementedError

    def _stop(self, fatal: TeacherFatal) -> TeacherFatal:
        raise NotImplementedError

    def _reserve(self, estimated_input: int, *, request_hash: str = "", batch: bool = False) -> int | None:
        """Hold the worst-case cost of one request (a batch item: at batch prices) in the
        ledger before it is sent, or refuse it when it would cross the budget. The ledger
        row is durable: a process killed with the request in flight leaves it counted."""
        assert self.cache is not None
        budget = self.teacher.budget_usd
        worst = cost_usd(
            Usage(input_tokens=estimated_input, output_tokens=self.teacher.max_tokens), self.price, batch=batch
        )
        reservation = self.cache.reserve(self.run_dir, request_hash, worst, budget)
        if reservation is None:
            self._budget_hit = True
            raise BudgetExceeded(
                f"next request (worst case ${worst:.5f}) would cross teacher.budget_usd "
                f"${budget} (spent and in flight ${self.cache.committed(self.run_dir):.5f})"
            )
        return reservation

    async def _live_call(self, request: TeacherRequest, rhash: str, state: _LoopState) -> TeacherAnswer:
        from instructor.v2.core.errors import IncompleteOutputException, InstructorRetryException
        from instructor.v2.core.patch import patch_v2

        live = self.live
        assert live is not None and self.cache is not None
        create = live.create_fn(state.client)
        total_box = [Usage()]  # the answer's usage so far (re-asks and reused attempts included)
        attempt_counter = 0
        purpose = request.purpose or self.purpose

        async def guarded_create(*args: Any, **kwargs: Any) -> Any:
            nonlocal attempt_counter
            assert self.cache is not None
            payload = dict(kwargs)
            payload_text = canonical_json(payload)
            # keyed by the request too: Claude's n samples of a chunk are n identical payloads
            payload_hash = sha256_hex(rhash + "\n" + payload_text)
            stored = self.cache.get_attempt(self.backend_id, payload_hash)
            if stored is not None:  # paid in a run that died before the answer was final
                return self._reuse_attempt(stored, payload, request, rhash, purpose, total_box)
            if self.fatal is not None:
                raise TeacherFatal(self.fatal.cause, self.fatal.message)
            estimated = count_tokens(payload_text)
            reservation = self._reserve(estimated, request_hash=rhash)
            try:
                response = await self._send_with_retries(
                    create, args, kwargs, payload, estimated, request, rhash, state
                )
            except BaseException as error:
                if not (is_timeout(error) or is_timeout(error.__cause__)):  # a timed-out one may be billed: keep it
                    self.cache.release(reservation)
                raise
            usage = live.usage_of(response)
            usage = usage.model_copy(update={"cost_usd": cost_usd(usage, self.price)})
            self.cache.settle(
                reservation, run_dir=self.run_dir, backend=self.backend_id, request_hash=rhash,
                payload_hash=payload_hash, response_json=response.model_dump_json(), usage=usage,
            )
            total_box[0] = add_usage(total_box[0], usage)
            self._spent += usage.cost_usd
            attempt_counter += 1
            self.log.write(
                provider=live.name, model=self.teacher.model, base_url=self.teacher.base_url,
                purpose=purpose, chunk_id=request.chunk_id, sample_index=request.sample_index,
                round=request.round, request_hash=rhash, sent=True, cached=False, status="ok",
                attempt=attempt_counter, payload=payload, payload_kind="provider",
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
                cost_usd=usage.cost_usd, error=None,
            )
            return response

        patched = patch_v2(func=guarded_create, provider=live.provider, mode=live.mode)
        try:
            result = await patched(
                response_model=request.response_model,
                max_retries=self.teacher.max_reasks,
                **live.build_kwargs(request),
            )
        except IncompleteOutputException as truncated:
            return self._answer(
                request, rhash, output=None, raw_json=live.answer_json(truncated.last_completion),
                error=f"output truncated at max_tokens={self.teacher.max_tokens}",
                error_kind="schema", usage=total_box[0], cached=False,
            )
        except InstructorRetryException as failed:
            total = total_box[0]
            if _caused_by(failed, TeacherFatal):
                return self._stopped_answer(request, rhash, total)
            if _caused_by(failed, BudgetExceeded):
                return self._budget_answer(request, rhash, total)
            api_error = _api_cause(failed)
            if api_error is not None:
                return self._answer(
                    request, rhash, output=None, raw_json=None, error=_short(api_error),
                    error_kind="api", usage=total, cached=False,
                )
            attempts = failed.failed_attempts or []
            last = attempts[-1].completion if attempts else None
            return self._answer(
                request, rhash, output=None,
                raw_json=live.answer_json(last) if last is not None else None,
                error=f"schema validation failed after {failed.n_attempts} attempts: {_short(failed)}",
                error_kind="schema", usage=total, cached=False,
            )
        except BudgetExceeded:
            return self._budget_answer(request, rhash, total_box[0])
        except TeacherFatal:
            return self._stopped_answer(request, rhash, total_box[0])
        raw_json = result.model_dump_json()
        # A plain model (instructor's carries the raw response): the same as a cached answer.
        output = request.response_model.model_validate_json(raw_json)
        return self._answer(
            request, rhash, output=output, raw_json=raw_json, error=None,
            error_kind=None, usage=total_box[0], cached=False,
        )

    async def _send_with_retries(
        self,
        create: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        payload: dict[str, Any],
        estimated: int,
        request: TeacherRequest,
        rhash: str,
        state: _LoopState,
    ) -> Any:
        assert self.live is not None
        live = self.live
        attempt_number = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.teacher.max_retries + 1),
            wait=backoff_wait(self.teacher.retry_base_s, self.teacher.retry_max_wait_s),
            retry=retry_if_exception(is_retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self.fatal is not None:  # another request stopped the client while this one waited
                    raise TeacherFatal(self.fatal.cause, self.fatal.message)
                attempt_number += 1
                if attempt_number > 1:
                    self.counts["retries"] += 1
                if state.limiter is not None:
                    await state.limiter.acquire(estimated + self.teacher.expected_output_tokens)
                self.counts["sent"] += 1
                try:
                    response = await create(*args, **kwargs)
                except Exception as error:
                    status = _status_of(error)
                    self.log.write(
                        provider=live.name, model=self.teacher.model, base_url=self.teacher.base_url,
                        purpose=request.purpose or self.purpose, chunk_id=request.chunk_id,
                        sample_index=request.sample_index, round=request.round, request_hash=rhash,
                        sent=True, cached=False, status=f"http_{status}" if status else "error",
                        attempt=attempt_number, payload=payload, payload_kind="provider",
                        input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
                        cost_usd=0.0, error=_short(error),
                    )
                    where = self._endpoint(state)
                    fatal = fatal_for_status(error, where)
                    if fatal is None and is_retryable(error):
                        fatal = self.breaker.failure(error, where)
                    elif fatal is None:
                        self.breaker.success()  # an HTTP answer: the endpoint is there
                    if fatal is not None:
                        raise self._stop(fatal) from error
                    raise
                self.breaker.success()
                return response
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _reuse_attempt(
        self, stored: StoredAttempt, payload: dict[str, Any], request: TeacherRequest, rhash: str, purpose: str,
        total_box: list[Usage],
    ) -> Any:
        """A provider response stored by an earlier (killed) run for this exact payload."""
        assert self.live is not None
        total_box[0] = add_usage(total_box[0], stored.usage)
        self.counts["reused_attempts"] += 1
        self.log.write(
            provider=self.live.name, model=self.teacher.model, base_url=self.teacher.base_url,
            purpose=purpose, chunk_id=request.chunk_id, sample_index=request.sample_index,
            round=request.round, request_hash=rhash, sent=False, cached=True, status="ok",
            attempt=0, payload=payload, payload_kind="provider", input_tokens=0, output_tokens=0,
            cache_read_tokens=0, cache_write_tokens=0, cost_usd=0.0, error=None,
        )
        return self.live.parse_response(stored.response_json)
