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
- fail fast (`curate.generate.failures`): 401/403/404 and a config-caused 400 stop the
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
import email.utils
import functools
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from curate.generate.config import Price, TeacherConfig
from curate.generate.failures import CircuitBreaker, Endpoint, TeacherFatal, fatal_for_status, is_timeout
from curate.generate.prompts import passage_block
from curate.generate.store import Cassette, RequestLog, ResponseCache, StoredAttempt, canonical_json, now_iso
from curate.generate.usage import (
    add_usage,
    cost_usd,
    count_tokens,
    usage_from_anthropic,
    usage_from_openai,
)
from schemas.ids import sha256_hex
from schemas.records import Usage

if TYPE_CHECKING:
    from curate.config import PipelineConfig

# schema: answered, invalid after re-asks (kept); api: failed after retries (pending);
# budget: not sent, the budget is reached (pending); stopped: not sent (or failed) because the
# client stopped on a fatal error (pending); cassette_miss: replay has no answer.
ErrorKind = Literal["schema", "api", "budget", "cassette_miss", "stopped"]
PENDING_KINDS = ("api", "budget", "stopped")  # not done: the next run asks again
STATE_DIR = "generate.state"


class BudgetExceeded(Exception):
    """The next request's worst-case cost would cross `teacher.budget_usd`."""


class TeacherSetupError(ValueError):
    """The teacher cannot be opened as configured (missing key, cassette or price)."""


class Limiter(Protocol):
    """A client-side rate limit; the scale engineer may pass a cluster-wide one."""

    async def acquire(self, tokens: int) -> None: ...


@dataclass(frozen=True)
class TeacherRequest:
    chunk_id: str
    system: str
    chunk_text: str
    instruction: str
    response_model: type[BaseModel]
    sample_index: int = 0
    round: int = 0
    purpose: str | None = None


@dataclass
class TeacherAnswer:
    output: BaseModel | None
    raw_json: str | None
    error: str | None
    error_kind: ErrorKind | None
    usage: Usage
    request_hash: str
    cached: bool
    model: str
    backend: str
    chunk_id: str = ""
    sample_index: int = 0
    round: int = 0
    purpose: str = "generate"

    @property
    def ok(self) -> bool:
        return self.output is not None and self.error_kind is None


# ---------------------------------------------------------------- request identity


def canonical_request(
    teacher: TeacherConfig,
    *,
    system: str,
    chunk_text: str,
    instruction: str,
    response_model: type[BaseModel],
    sample_index: int,
) -> dict[str, Any]:
    """The backend-independent request: what any backend would be asked, plus the sample index."""
    return {
        "model": teacher.model,
        "params": {"temperature": teacher.temperature, "max_tokens": teacher.max_tokens},
        "system": system,
        "passage": chunk_text,
        "instruction": instruction,
        "schema": _schema_of(response_model),
        "sample_index": sample_index,
    }


@functools.lru_cache(maxsize=256)
def _schema_of(response_model: type[BaseModel]) -> dict[str, Any]:
    return response_model.model_json_schema()


def request_hash(teacher: TeacherConfig, request: TeacherRequest) -> str:
    """sha256 of the canonical request: the cache key and the cassette key."""
    return sha256_hex(
        canonical_json(
            canonical_request(
                teacher,
                system=request.system,
                chunk_text=request.chunk_text,
                instruction=request.instruction,
                response_model=request.response_model,
                sample_index=request.sample_index,
            )
        )
    )


# ---------------------------------------------------------------- limits and retries


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


# ---------------------------------------------------------------- backends


def cache_id_of(backend: str, teacher: TeacherConfig) -> str:
    """The response cache's key space of a live backend: one per provider and endpoint."""
    return f"{backend}@{teacher.base_url}" if teacher.base_url else backend


def response_cache_path(config: PipelineConfig, run_dir: str | Path) -> Path:
    """Where a run's teacher answers are cached (`teacher.cache_path` shares one between runs)."""
    teacher = config.teacher
    return config.resolve(teacher.cache_path) if teacher.cache_path else Path(run_dir) / STATE_DIR / "responses.sqlite"


class _LiveBackend:
    """What differs between Anthropic and OpenAI-compatible backends."""

    name: str
    provider: Any
    mode: Any

    def __init__(self, teacher: TeacherConfig):
        self.teacher = teacher
        self.http_client_factory: Callable[[], Any] | None = None

    @property
    def cache_id(self) -> str:
        return cache_id_of(self.name, self.teacher)

    def make_client(self) -> Any:
        raise NotImplementedError

    def create_fn(self, client: Any) -> Callable[..., Awaitable[Any]]:
        raise NotImplementedError

    def build_kwargs(self, request: TeacherRequest) -> dict[str, Any]:
        raise NotImplementedError

    def usage_of(self, response: Any) -> Usage:
        raise NotImplementedError

    def answer_json(self, response: Any) -> str | None:
        raise NotImplementedError

    def parse_response(self, text: str) -> Any:
        """A stored response (`model_dump_json` of the SDK object) as the SDK object again."""
        raise NotImplementedError

    def _api_key(self, default_env: str, required: bool) -> str:
        env = self.teacher.api_key_env or default_env
        self.key_env = env
        key = os.environ.get(env)
        if key:
            return key
        if required:
            raise TeacherSetupError(
                f"teacher.backend {self.name!r} needs an API key in ${env} "
                f"(set it, or name another variable in teacher.api_key_env)"
            )
        return "not-needed"


class AnthropicBackend(_LiveBackend):
    name = "anthropic"

    def __init__(self, teacher: TeacherConfig):
        super().__init__(teacher)
        from instructor.v2.core.mode import Mode
        from instructor.v2.core.providers import Provider

        self.provider, self.mode = Provider.ANTHROPIC, Mode.TOOLS
        self.api_key = self._api_key("ANTHROPIC_API_KEY", required=True)

    def make_client(self) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(
            api_key=self.api_key,
            base_url=self.teacher.base_url,
            max_retries=0,  # our tenacity policy owns retries (see module docstring)
            timeout=self.teacher.timeout_s,
            http_client=self.http_client_factory() if self.http_client_factory else None,
        )

    def create_fn(self, client: Any) -> Callable[..., Awaitable[Any]]:
        return client.messages.create

    def build_kwargs(self, request: TeacherRequest) -> dict[str, Any]:
        passage: dict[str, Any] = {"type": "text", "text": passage_block(request.chunk_text)}
        if self.teacher.prompt_caching:
            passage["cache_control"] = {"type": "ephemeral"}
        # anthropic 2.x `messages.create` has no `temperature` (nor top_p/top_k): Claude
        # samples at its default, which is what self-consistency needs; the n samples of a
        # chunk are n identical requests. `teacher.temperature` applies to openai backends.
        return {
            "model": self.teacher.model,
            "max_tokens": self.teacher.max_tokens,
            "system": [{"type": "text", "text": request.system}],
            "messages": [
                {
                    "role": "user",
                    "content": [passage, {"type": "text", "text": request.instruction}],
                }
            ],
        }

    def usage_of(self, response: Any) -> Usage:
        return usage_from_anthropic(getattr(response, "usage", None))

    def parse_response(self, text: str) -> Any:
        from anthropic.types import Message

        return Message.model_validate_json(text)

    def answer_json(self, response: Any) -> str | None:
        for block in getattr(response, "content", None) or []:
            if getattr(block, "type", None) == "tool_use":
                return canonical_json(block.input)
        texts = [getattr(b, "text", "") for b in getattr(response, "content", None) or []]
        return "".join(texts) or None


class OpenAIBackend(_LiveBackend):
    name = "openai"

    def __init__(self, teacher: TeacherConfig):
        super().__init__(teacher)
        from instructor.v2.core.mode import Mode
        from instructor.v2.core.providers import Provider

        self.provider = Provider.OPENAI
        self.mode = Mode.TOOLS if teacher.openai_mode == "tools" else Mode.JSON
        # Local servers (vLLM, Ollama, llama.cpp) take any key; the OpenAI API needs one.
        self.api_key = self._api_key("OPENAI_API_KEY", required=teacher.base_url is None)

    def make_client(self) -> Any:
        import openai

        return openai.AsyncOpenAI(
            api_key=self.api_key,
            base_url=self.teacher.base_url,
            max_retries=0,
            timeout=self.teacher.timeout_s,
            http_client=self.http_client_factory() if self.http_client_factory else None,
        )

    def create_fn(self, client: Any) -> Callable[..., Awaitable[Any]]:
        return client.chat.completions.create

    def build_kwargs(self, request: TeacherRequest) -> dict[str, Any]:
        return {
            "model": self.teacher.model,
            "max_tokens": self.teacher.max_tokens,
            "temperature": self.teacher.temperature,
            "messages": [
                {"role": "system", "content": request.system},
                {
                    "role": "user",
                    "content": passage_block(request.chunk_text) + "\n\n" + request.instruction,
                },
            ],
        }

    def usage_of(self, response: Any) -> Usage:
        return usage_from_openai(getattr(response, "usage", None))

    def parse_response(self, text: str) -> Any:
        from openai.types.chat import ChatCompletion

        return ChatCompletion.model_validate_json(text)

    def answer_json(self, response: Any) -> str | None:
        choices = getattr(response, "choices", None) or []
        if not choices:
            return None
        message = choices[0].message
        calls = getattr(message, "tool_calls", None) or []
        if calls:
            return str(calls[0].function.arguments)
        return getattr(message, "content", None)


# ---------------------------------------------------------------- the client


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


class TeacherClient:
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
        self.log = RequestLog(self.state_dir / "requests.jsonl")
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
            from curate.generate.batch import ask_many_batched

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

    def _from_recorded(
        self, request: TeacherRequest, rhash: str, raw_json: str | None, error: str | None,
        error_kind: str | None, usage: Usage,
    ) -> TeacherAnswer:
        """An answer served locally (response cache or cassette): validated again here."""
        if error_kind is None and raw_json is not None:
            try:
                output = request.response_model.model_validate_json(raw_json)
            except ValidationError as invalid:
                return self._answer(
                    request, rhash, output=None, raw_json=raw_json, error=_short(invalid),
                    error_kind="schema", usage=usage, cached=True,
                )
            return self._answer(
                request, rhash, output=output, raw_json=raw_json, error=None, error_kind=None,
                usage=usage, cached=True,
            )
        kind: ErrorKind = error_kind if error_kind in ("schema", "api") else "schema"  # type: ignore[assignment]
        return self._answer(
            request, rhash, output=None, raw_json=raw_json, error=error or "recorded failure",
            error_kind=kind, usage=usage, cached=True,
        )

    def _log_local(self, request: TeacherRequest, rhash: str, answer: TeacherAnswer, provider: str) -> None:
        self.log.write(
            provider=provider, model=self.teacher.model, base_url=self.teacher.base_url,
            purpose=answer.purpose, chunk_id=request.chunk_id, sample_index=request.sample_index,
            round=request.round, request_hash=rhash, sent=False,
            cached=answer.error_kind != "cassette_miss",
            status="ok" if answer.error_kind is None else answer.error_kind, attempt=0,
            payload=canonical_request(
                self.teacher, system=request.system, chunk_text=request.chunk_text,
                instruction=request.instruction, response_model=request.response_model,
                sample_index=request.sample_index,
            ),
            payload_kind="canonical", input_tokens=0, output_tokens=0, cache_read_tokens=0,
            cache_write_tokens=0, cost_usd=0.0, error=answer.error,
        )

    def _replay(self, request: TeacherRequest, rhash: str) -> TeacherAnswer:
        assert self.cassette is not None
        entry = self.cassette.get(rhash)
        if entry is None:
            answer = self._answer(
                request, rhash, output=None, raw_json=None,
                error=(
                    f"cassette miss: {self.cassette.path} has no answer for chunk {request.chunk_id} "
                    f"sample {request.sample_index} round {request.round} "
                    f"({request.purpose or self.purpose}), request hash {rhash}. "
                    "Record one with a live backend and teacher.record: true."
                ),
                error_kind="cassette_miss", usage=Usage(), cached=False,
            )
            self._log_local(request, rhash, answer, "replay")
            return answer
        usage = Usage.model_validate(entry.get("usage") or {})
        usage = usage.model_copy(update={"cost_usd": 0.0})  # replay pays nothing
        answer = self._from_recorded(
            request, rhash, entry.get("raw_json"), entry.get("error"), entry.get("error_kind"), usage
        )
        self.counts["replayed"] += 1
        self._log_local(request, rhash, answer, "replay")
        return answer

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

    def _record(self, request: TeacherRequest, answer: TeacherAnswer) -> None:
        if self.cassette is None or not self.teacher.record:
            return
        self.cassette.append(
            {
                "request_hash": answer.request_hash, "chunk_id": request.chunk_id,
                "sample_index": request.sample_index, "round": request.round,
                "purpose": answer.purpose, "model": self.teacher.model, "raw_json": answer.raw_json,
                "error": answer.error, "error_kind": answer.error_kind,
                "usage": answer.usage.model_dump(), "recorded_at": now_iso(),
                "source": f"recorded from {self.backend_id}",
            }
        )

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


def _for_request(answer: TeacherAnswer, request: TeacherRequest) -> TeacherAnswer:
    """A shared answer, relabelled for a second identical request (same hash)."""
    return TeacherAnswer(**{**answer.__dict__, "chunk_id": request.chunk_id, "cached": True})


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


def open_teacher(
    config: PipelineConfig,
    run_dir: str,
    *,
    purpose: str = "generate",
    limiter: Limiter | None = None,
    http_client_factory: Callable[[], Any] | None = None,
) -> TeacherClient:
    """The teacher of this pipeline config, with its state in `<run_dir>/generate.state/`.

    `limiter`: an object with `async acquire(tokens: int)` shared by several clients (a
    cluster-wide limit); default: `teacher.requests_per_minute` / `tokens_per_minute`.
    `http_client_factory`: returns an `httpx2.AsyncClient` for the SDK (tests, proxies).
    """
    teacher = config.teacher
    cache_path = response_cache_path(config, run_dir)
    cassette_path = config.resolve(teacher.cassette) if teacher.cassette else None
    return TeacherClient(
        teacher, run_dir=run_dir, cache_path=cache_path, cassette_path=cassette_path,
        purpose=purpose, limiter=limiter, http_client_factory=http_client_factory,
    )
