"""MockTeacherServer: a local HTTP server that stands in for a teacher model.

It is NOT a model. It speaks the OpenAI chat-completions API (`POST /v1/chat/completions`,
tool calls or JSON content) and the Anthropic Messages API (`POST /v1/messages`, tool_use
blocks, usage with cache fields) and answers each request by filling the requested tool
schema mechanically (`fill_schema`: first enum value, a quote cut from the passage, ...)
or with a caller's `answer` function. Used by the tests, by `bench/teacher`, and by
anyone who wants to run the pipeline's live code path offline.

Knobs: `latency_s` per answer, `requests_per_minute` counted over a sliding window of
`rate_window_s` (over it: 429 with retry-after),
`fail_next` (status codes to return to the next requests: 429/500/529...), `hold_after`
(answer that many requests, then hold every later one open without answering, to
simulate a crash mid-run), `api_key` (any other key gets the provider's 401), `models`
(any other model gets the provider's 404), `down` (drop every connection without an HTTP
answer, as a dead upstream behind a proxy does). It counts requests received and answered
(`answered_by_body`: how often each distinct request body was answered, so a test can
count paid duplicates on the server's side; an answer whose client went away before it was
written is `abandoned`, not answered), and keeps their bodies (`bodies`). Preflight calls
(`POST /v1/messages/count_tokens`, `GET /v1/models`) are counted in `preflight_calls` only.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

AnswerFn = Callable[[dict[str, Any], str], dict[str, Any]]


def _passage_of(text: str) -> str:
    match = re.search(r"<passage>\n(.*?)\n</passage>", text, flags=re.S)
    return match.group(1) if match else text


def fill_schema(schema: dict[str, Any], passage: str, defs: dict[str, Any] | None = None, name: str = "") -> Any:
    """A value that satisfies a JSON schema, mechanically (no model): the stand-in answer."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return fill_schema(defs[schema["$ref"].split("/")[-1]], passage, defs, name)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return fill_schema(options[0], passage, defs, name)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: fill_schema(value, passage, defs, key) for key, value in properties.items()}
    if kind == "array":
        return [fill_schema(schema.get("items", {}), passage, defs, name)]
    if kind in ("integer", "number"):  # the lowest value the schema allows (0 if unbounded)
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return low + 1 if "exclusiveMinimum" in schema and "minimum" not in schema else low
    if kind == "boolean":
        return True
    words = passage.split()
    if name in ("quote", "value"):
        return " ".join(words[:8]) if words else "n/a"
    if name == "question":
        return "What does the passage require?"
    return " ".join(words[:16]) if words else "n/a"


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class MockTeacherServer:
    """Start with `with MockTeacherServer(...) as server:`; `server.url` is the base URL."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        requests_per_minute: float | None = None,
        rate_window_s: float = 60.0,
        answer: AnswerFn | None = None,
        hold_after: int | None = None,
        port: int = 0,
        api_key: str | None = None,
        models: set[str] | None = None,
    ):
        self.latency_s = latency_s
        self.requests_per_minute = requests_per_minute
        self.rate_window_s = rate_window_s
        self.answer = answer
        self.hold_after = hold_after
        self.port = port
        self.api_key = api_key
        self.models = models
        self.down = False
        self.dropped = 0
        self.abandoned = 0
        self.preflight_calls = 0
        self.answered_by_body: collections.Counter[str] = collections.Counter()
        self.answer_times: list[tuple[str, float]] = []  # (body hash, time.monotonic()) per answer
        self.billed_input_tokens = 0  # usage of every answer delivered: what a provider bills
        self.billed_output_tokens = 0
        self.fail_next: collections.deque[int] = collections.deque()
        self.received = 0
        self.answered = 0
        self.rate_limited = 0
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._window: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._release: asyncio.Event | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> MockTeacherServer:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("mock teacher server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            if self._release is not None:
                self._loop.call_soon_threadsafe(self._release.set)
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            future.result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> MockTeacherServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup())
        self._started.set()
        self._loop.run_forever()

    async def _startup(self) -> None:
        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---------------------------------------------------------------- behaviour

    def stats(self) -> dict[str, int]:
        return {"received": self.received, "answered": self.answered, "rate_limited": self.rate_limited,
                "max_in_flight": self.max_in_flight, "dropped": self.dropped, "abandoned": self.abandoned,
                "preflight_calls": self.preflight_calls,
                "paid_duplicates": sum(n - 1 for n in self.answered_by_body.values() if n > 1)}

    def _refusal(self, request: web.Request, body: dict[str, Any], anthropic: bool) -> web.Response | None:
        """The provider's own 401 (wrong key) or 404 (unknown model), in its wire format."""
        if self.api_key is not None:
            given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
            if given != self.api_key:
                if anthropic:
                    return web.json_response({"type": "error", "error": {
                        "type": "authentication_error", "message": "invalid x-api-key"}}, status=401)
                return web.json_response({"error": {
                    "message": "Incorrect API key provided.", "type": "invalid_request_error",
                    "param": None, "code": "invalid_api_key"}}, status=401)
        model = body.get("model")
        if self.models is not None and model is not None and model not in self.models:
            if anthropic:
                return web.json_response({"type": "error", "error": {
                    "type": "not_found_error", "message": f"model: {model}"}}, status=404)
            return web.json_response({"error": {
                "message": f"The model `{model}` does not exist or you do not have access to it.",
                "type": "invalid_request_error", "param": None, "code": "model_not_found"}}, status=404)
        return None

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.preflight_calls += 1
        refused = self._refusal(request, body, anthropic=True)
        return refused or web.json_response({"input_tokens": _tokens(json.dumps(body))})

    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            self.preflight_calls += 1
        refused = self._refusal(request, {}, anthropic="x-api-key" in request.headers)
        if refused is not None:
            return refused
        names = sorted(self.models) if self.models is not None else ["mock-teacher"]
        return web.json_response({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "mock"} for name in names]})

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _gate(self, request: web.Request, body: dict[str, Any], anthropic: bool) -> web.Response | None:
        """Down, key, model, rate limit, injected failures, hold: a response instead of an answer."""
        with self._lock:
            self.received += 1
            self.bodies.append(body)
            if self.down:
                self.dropped += 1
                assert request.transport is not None
                request.transport.abort()  # no HTTP answer at all: the client sees a dropped connection
                return web.Response(status=503)
        refused = self._refusal(request, body, anthropic)
        if refused is not None:
            return refused
        with self._lock:
            if self.fail_next:
                status = self.fail_next.popleft()
                return web.json_response(
                    {"error": {"type": "injected", "message": f"injected {status}"}},
                    status=status, headers={"retry-after": "0"} if status == 429 else None,
                )
            if self.requests_per_minute:
                now = time.monotonic()
                window = self.rate_window_s
                while self._window and now - self._window[0] >= window:
                    self._window.popleft()
                if len(self._window) >= self.requests_per_minute * window / 60.0:
                    self.rate_limited += 1
                    wait = window - (now - self._window[0])
                    return web.json_response(
                        {"error": {"type": "rate_limit_error", "message": "rate limited"}},
                        status=429, headers={"retry-after": f"{max(wait, 0.0):.3f}"},
                    )
                self._window.append(now)
            hold = self.hold_after is not None and self.answered >= self.hold_after
        if hold:
            assert self._release is not None
            await self._release.wait()
            return web.json_response({"error": {"message": "server stopped"}}, status=503)
        return None

    def _fill(self, schema: dict[str, Any], body: dict[str, Any], text: str) -> dict[str, Any]:
        passage = _passage_of(text)
        if self.answer is not None:
            return self.answer(body, passage)
        value = fill_schema(schema, passage)
        return value if isinstance(value, dict) else {"value": value}

    async def _respond(self, request: web.Request, body: dict[str, Any], payload: dict[str, Any]) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        transport = request.transport
        with self._lock:
            if transport is None or transport.is_closing():  # the client is gone: nothing is delivered
                self.abandoned += 1
                return web.Response(status=499)
            if self.hold_after is not None and self.answered >= self.hold_after:
                held = True
            else:
                held = False
                self.answered += 1
        if held:
            assert self._release is not None
            await self._release.wait()
            return web.json_response({"error": {"message": "server stopped"}}, status=503)
        response = web.json_response(payload)
        try:  # written here, not after the handler returns, so that the time below is the delivery's
            await response.prepare(request)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            with self._lock:
                self.abandoned += 1
            return response
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        usage = payload.get("usage", {})
        with self._lock:
            self.answered_by_body[key] += 1
            self.answer_times.append((key, time.monotonic()))
            self.billed_input_tokens += int(usage.get("input_tokens", usage.get("prompt_tokens", 0)))
            self.billed_output_tokens += int(usage.get("output_tokens", usage.get("completion_tokens", 0)))
        return response

    async def _openai(self, request: web.Request) -> web.Response:
        body = await request.json()
        blocked = await self._gate(request, body, anthropic=False)
        if blocked is not None:
            return blocked
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        tools = body.get("tools") or []
        if tools:
            function = tools[0]["function"]
            arguments = json.dumps(self._fill(function.get("parameters", {}), body, text))
            message: dict[str, Any] = {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": f"call_{self.received}", "type": "function",
                                "function": {"name": function["name"], "arguments": arguments}}],
            }
            finish, out = "tool_calls", arguments
        else:
            out = json.dumps(self._fill({"type": "object"}, body, text))
            message, finish = {"role": "assistant", "content": out}, "stop"
        prompt = _tokens(json.dumps(body))
        return await self._respond(request, body, {
            "id": f"chatcmpl-{self.received}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "mock"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": _tokens(out), "total_tokens": prompt + _tokens(out)},
        })

    async def _anthropic(self, request: web.Request) -> web.Response:
        body = await request.json()
        blocked = await self._gate(request, body, anthropic=True)
        if blocked is not None:
            return blocked
        parts: list[str] = []
        for message in body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            else:
                parts.extend(str(block.get("text", "")) for block in content if isinstance(block, dict))
        tool = (body.get("tools") or [{}])[0]
        answer = self._fill(tool.get("input_schema", {}), body, "\n".join(parts))
        prompt = _tokens(json.dumps(body))
        return await self._respond(request, body, {
            "id": f"msg_{self.received}", "type": "message", "role": "assistant",
            "model": body.get("model", "mock"),
            "content": [{"type": "tool_use", "id": f"toolu_{self.received}", "name": tool.get("name", "answer"),
                         "input": answer}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": _tokens(json.dumps(answer)),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        })


def main() -> None:  # pragma: no cover - used by bench/teacher in a process of its own
    import argparse

    parser = argparse.ArgumentParser(description="Run MockTeacherServer (a stand-in for a teacher model).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rpm", type=float, default=None)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    server = MockTeacherServer(latency_s=args.latency, requests_per_minute=args.rpm,
                               rate_window_s=args.window, port=args.port).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
