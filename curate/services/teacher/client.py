"""The teacher client: one interface over Claude, OpenAI-compatible servers and cassettes.

`open_teacher(config, run_dir)` gives a `TeacherClient`; `await client.ask(...)` returns a
`TeacherAnswer` (a validated task output, or a named error) and never raises for a bad
answer, an API failure, a cassette miss or the budget. Around every request it adds:

- the persistent response cache (`store.ResponseCache`): an answered request is never
  paid twice, also after a crash (`<run_dir>/generate.state/responses.sqlite`, or
  `teacher.cache_path` to share it between runs);
- bounded concurrency (`teacher.max_concurrency`), client-side limits on requests and
  tokens per minute (aiolimiter; or a caller's `limiter` with `async acquire(tokens)`);
- retries with exponential backoff and jitter on 408/409/429/5xx/529 and timeouts that
  honour `retry-after` (tenacity; the SDKs' own retries are switched off, max_retries=0,
  so that one policy owns the waits and every attempt is logged and rate limited);
- fail fast (`curate.services.teacher.failures`): 401/403/404 and a config-caused 400 stop the
  client at their first occurrence, a circuit breaker stops it after connection failures
  in a row or a sustained error rate; afterwards no request is sent (`fatal`, answers of
  kind "stopped"). The first request of a run goes alone (a probe), so a wrong key costs
  one request, not `max_concurrency`;
- every paid provider response stored the moment it arrives (`ResponseCache.settle`),
  re-ask attempts included, and reused by payload hash after a crash;
- instructor's validation re-ask for schema failures (`teacher.max_reasks`), in tool mode;
- usage and cost per response (`teacher.prices`, built-in Claude prices), the spend
  ledger and the budget (`teacher.budget_usd`: no request starts whose worst-case cost
  would cross it; the spend of earlier runs of the same run directory counts);
- the request log `<run_dir>/generate.state/requests.jsonl` (see `store.RequestLog`);
- recording a cassette (`teacher.record`) that the `replay` backend answers from.

How instructor is used: `instructor.from_anthropic(client)` is `patch_v2(client.messages.
create, Provider.ANTHROPIC, Mode.TOOLS)` wrapped in an AsyncInstructor. We call `patch_v2`
directly on a guarded `create` (budget, rate limit, retries, usage, log around the SDK's
`messages.create` / `chat.completions.create`), so each HTTP attempt, re-asks included,
passes through our policy. Request construction, tool schemas, parsing and re-asks are
instructor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from curate.services.teacher.backends import AnthropicBackend, OpenAIBackend, _LiveBackend
from curate.services.teacher.batch import ask_many_batched
from curate.services.teacher.config import Price, TeacherConfig
from curate.services.teacher.failures import CircuitBreaker, Endpoint, TeacherFatal
from curate.services.teacher.limits import DefaultLimiter, Limiter
from curate.services.teacher.live import LiveCalls
from curate.services.teacher.local import LocalAnswers
from curate.services.teacher.request import (
    STATE_DIR,
    ErrorKind,
    TeacherAnswer,
    TeacherRequest,
    TeacherSetupError,
    request_hash,
)
from curate.services.teacher.store import Cassette, RequestLog, ResponseCache
from schemas.artifacts import REQUEST_LOG
from schemas.records import Usage


@dataclass
class _LoopState:
    """SDK client, semaphore and limiter of one event loop (httpx pools are loop-bound)."""

    loop: asyncio.AbstractEventLoop
    client: Any
    semaphore: asyncio.Semaphore
    limiter: Limiter | None
    inflight: dict[str, asyncio.Future[TeacherAnswer]] = field(default_factory=dict)
    probe: asyncio.Lock = field(default_factory=asyncio.Lock)
    opened: bool = False  # a request was answered: the others may go out concurrently


class TeacherClient(LiveCalls, LocalAnswers):
    """Backend + response cache + limits + retries + usage + request log + budget."""

    def __init__(
        self,
        teacher: TeacherConfig,
        *,
        run_dir: str,
        cache_path: Path,
        cassette_path: Path | None,
        purpose: str = "generate",
        limiter: Limiter | None = None,
        http_client_factory: Callable[[], Any] | None = None,
    ):
        self.teacher = teacher
        self.run_dir = str(Path(run_dir).resolve())
        self.purpose = purpose
        self.state_dir = Path(run_dir) / STATE_DIR
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log = RequestLog(Path(run_dir) / REQUEST_LOG.path)
        self.backend_name = teacher.backend
        self.price: Price | None = teacher.price_for()
        self.counts: dict[str, int] = {"sent": 0, "cached": 0, "replayed": 0, "retries": 0, "reused_attempts": 0}
        self._external_limiter = limiter
        self._state: _LoopState | None = None
        self._budget_hit = False
        self.fatal: TeacherFatal | None = None
        self.breaker = CircuitBreaker(teacher.breaker_consecutive, teacher.breaker_window, teacher.breaker_error_rate)
        self.cassette: Cassette | None = None
        self.live: _LiveBackend | None = None
        if teacher.backend == "replay":
            if cassette_path is None:
                raise TeacherSetupError("teacher.backend 'replay' needs teacher.cassette (a JSONL file)")
            if not cassette_path.exists():
                raise TeacherSetupError(f"teacher.cassette {cassette_path} does not exist")
            self.cassette = Cassette(cassette_path)
            self.cache: ResponseCache | None = None
            self.backend_id = f"replay:{cassette_path.name}"
        else:
            self.live = AnthropicBackend(teacher) if teacher.backend == "anthropic" else OpenAIBackend(teacher)
            self.live.http_client_factory = http_client_factory
            if teacher.record and cassette_path is not None:
                self.cassette = Cassette(cassette_path)
            if teacher.budget_usd is not None and self.price is None:
                raise TeacherSetupError(
                    f"teacher.budget_usd is set but model {teacher.model!r} has no price: "
                    "add it to teacher.prices (USD per million tokens)"
                )
            self.cache = ResponseCache(cache_path)
            self.backend_id = self.live.cache_id
        self._spent = self.cache.spent(self.run_dir) if self.cache is not None else 0.0

    # -------------------------------------------------------------- public API

    @property
    def spent_usd(self) -> float:
        """What this run directory has paid the teacher, earlier runs included."""
        return self._spent

    async def ask(
        self,
        *,
        chunk_id: str,
        system: str,
        chunk_text: str,
        instruction: str,
        response_model: type[BaseModel],
        sample_index: int = 0,
        round: int = 0,
        purpose: str | None = None,
    ) -> TeacherAnswer:
        request = TeacherRequest(
            chunk_id, system, chunk_text, instruction, response_model, sample_index, round,
            purpose or self.purpose,
        )
        return await self.ask_request(request)

    async def ask_request(self, request: TeacherRequest) -> TeacherAnswer:
        rhash = request_hash(self.teacher, request)
        if self.cassette is not None and self.live is None:
            return self._replay(request, rhash)
        assert self.cache is not None and self.live is not None
        state = self._loop_state()
        pending = state.inflight.get(rhash)
        if pending is not None:  # the same request is already on its way: share its answer
            return _for_request(await asyncio.shield(pending), request)
        future: asyncio.Future[TeacherAnswer] = state.loop.create_future()
        state.inflight[rhash] = future
        try:
            answer = await self._cached_or_live(request, rhash, state)
            future.set_result(answer)
            return answer
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved
            raise
        finally:
            state.inflight.pop(rhash, None)

    def ask_many(
        self,
        requests: Sequence[TeacherRequest],
        *,
        show_progress: bool = False,
        description: str = "teacher",
    ) -> list[TeacherAnswer]:
        """Answers to `requests` in order (bounded concurrency inside; sync helper)."""
        coroutine = self._ask_many_and_close(requests, show_progress=show_progress, description=description)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)
        result: list[list[TeacherAnswer]] = []
        errors: list[BaseException] = []

        def runner() -> None:  # called from inside a running loop: use a thread of our own
            try:
                result.append(asyncio.run(coroutine))
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=runner)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return result[0]

    async def _ask_many_and_close(self, requests: Sequence[TeacherRequest], **kwargs: Any) -> list[TeacherAnswer]:
        try:
            return await self.ask_many_async(requests, **kwargs)
        finally:
            await self.aclose_loop()

    async def aclose_loop(self) -> None:
        """Close the SDK client of the running event loop (its connections are loop-bound)."""
        state = self._state
        if state is not None and state.loop is asyncio.get_running_loop():
            self._state = None
            await state.client.close()

    async def ask_many_async(
        self,
        requests: Sequence[TeacherRequest],
        *,
        show_progress: bool = False,
        description: str = "teacher",
    ) -> list[TeacherAnswer]:
        if self.teacher.batch_mode and isinstance(self.live, AnthropicBackend):
            return await ask_many_batched(self, requests)
        progress_cm: Any = contextlib.nullcontext()
        advance: Callable[[], None] = lambda: None  # noqa: E731
        if show_progress:
            from rich.progress import Progress

            progress_cm = Progress(transient=True)
        with progress_cm as progress:
            if progress is not None:
                task = progress.add_task(description, total=len(requests))

                def advance() -> None:
                    progress.advance(task)

            async def one(request: TeacherRequest) -> TeacherAnswer:
                answer = await self.ask_request(request)
                advance()
                return answer

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> TeacherClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- internals

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            assert self.live is not None
            limiter = self._external_limiter
            if limiter is None and (self.teacher.requests_per_minute or self.teacher.tokens_per_minute):
                limiter = DefaultLimiter(self.teacher.requests_per_minute, self.teacher.tokens_per_minute)
            self._state = _LoopState(
                loop=loop,
                client=self.live.make_client(),
                semaphore=asyncio.Semaphore(self.teacher.max_concurrency),
                limiter=limiter,
            )
        return self._state

    def _answer(
        self,
        request: TeacherRequest,
        rhash: str,
        *,
        output: BaseModel | None,
        raw_json: str | None,
        error: str | None,
        error_kind: ErrorKind | None,
        usage: Usage,
        cached: bool,
    ) -> TeacherAnswer:
        return TeacherAnswer(
            output=output, raw_json=raw_json, error=error, error_kind=error_kind, usage=usage,
            request_hash=rhash, cached=cached, model=self.teacher.model, backend=self.backend_name,
            chunk_id=request.chunk_id, sample_index=request.sample_index, round=request.round,
            purpose=request.purpose or self.purpose,
        )

    async def _cached_or_live(self, request: TeacherRequest, rhash: str, state: _LoopState) -> TeacherAnswer:
        assert self.cache is not None and self.live is not None
        hit = self.cache.get(self.backend_id, rhash)
        if hit is not None:
            answer = self._from_recorded(request, rhash, hit.raw_json, hit.error, hit.error_kind, hit.usage)
            self.counts["cached"] += 1
            self._log_local(request, rhash, answer, self.live.name)
            self._record(request, answer)
            return answer
        if not state.opened:  # the first request goes alone: a wrong key or URL costs one request
            async with state.probe:
                if not state.opened:
                    answer = await self._send_one(request, rhash, state)
                    state.opened = answer.error_kind in (None, "schema")
                    return answer
        return await self._send_one(request, rhash, state)

    async def _send_one(self, request: TeacherRequest, rhash: str, state: _LoopState) -> TeacherAnswer:
        assert self.cache is not None
        if self.fatal is not None:
            return self._stopped_answer(request, rhash, Usage())
        if self._budget_hit:
            return self._budget_answer(request, rhash, Usage())
        async with state.semaphore:
            if self.fatal is not None:
                return self._stopped_answer(request, rhash, Usage())
            if self._budget_hit:
                return self._budget_answer(request, rhash, Usage())
            answer = await self._live_call(request, rhash, state)
        if answer.error_kind in (None, "schema"):  # paid answers are kept; API failures retried next run
            self.cache.put(
                self.backend_id, rhash, model=self.teacher.model, chunk_id=request.chunk_id,
                sample_index=request.sample_index, purpose=answer.purpose, raw_json=answer.raw_json,
                error=answer.error, error_kind=answer.error_kind, usage=answer.usage,
            )
            self._record(request, answer)
        return answer

    def _stopped_answer(self, request: TeacherRequest, rhash: str, usage: Usage) -> TeacherAnswer:
        assert self.fatal is not None
        return self._answer(
            request, rhash, output=None, raw_json=None, error=f"not answered, teacher stopped: {self.fatal.message}",
            error_kind="stopped", usage=usage, cached=False,
        )

    def _endpoint(self, state: _LoopState) -> Endpoint:
        assert self.live is not None
        url = str(getattr(state.client, "base_url", None) or self.teacher.base_url or "").rstrip("/")
        return Endpoint(url=url, key_env=getattr(self.live, "key_env", "the API key"), model=self.teacher.model)

    def _stop(self, fatal: TeacherFatal) -> TeacherFatal:
        """Record the first fatal error: from now on no request of this client is sent."""
        if self.fatal is None:
            self.fatal = fatal
        return fatal

    def _budget_answer(self, request: TeacherRequest, rhash: str, usage: Usage) -> TeacherAnswer:
        return self._answer(
            request, rhash, output=None, raw_json=None,
            error=f"teacher budget ${self.teacher.budget_usd} reached (spent ${self._spent:.4f})",
            error_kind="budget", usage=usage, cached=False,
        )

def _for_request(answer: TeacherAnswer, request: TeacherRequest) -> TeacherAnswer:
    """A shared answer, relabelled for a second identical request (same hash)."""
    return TeacherAnswer(**{**answer.__dict__, "chunk_id": request.chunk_id, "cached": True})
