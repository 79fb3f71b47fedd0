"""The anthropic backend: the real AsyncAnthropic + instructor code against respx-mocked
Messages API responses in the API's real shapes."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from curate.services.teacher import prompts
from curate.services.teacher.request import TeacherRequest
from curate.services.teacher.store import canonical_json
from schemas.ids import sha256_hex
from schemas.tasks import output_model
from tests.generate.conftest import api_error, make_config, tool_use_message

GOOD = {"label": "access-control", "quote": "Passwords must be at least 14 characters long"}


TASK = make_config(Path(tempfile.gettempdir())).task
MODEL = output_model(TASK)


def _ask(teacher, chunk_id="c1", text="Passwords must be at least 14 characters long.", index=0):
    return asyncio.run(
        teacher.ask(
            chunk_id=chunk_id, system="You are precise.", chunk_text=text,
            instruction="Which policy area?", response_model=MODEL, sample_index=index,
        )
    )


def _log(teacher) -> list[dict]:
    path = teacher.state_dir / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tool_use_answer_usage_cost_and_payload(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(
        return_value=httpx.Response(200, json=tool_use_message(GOOD, input_tokens=400, output_tokens=30, cache_write=1200))
    )
    teacher = anthropic_teacher()
    answer = _ask(teacher)
    assert answer.ok and answer.output.label == "access-control"
    assert (answer.usage.input_tokens, answer.usage.output_tokens, answer.usage.cache_write_tokens) == (400, 30, 1200)
    # claude-sonnet-4-5 default price: $3 in, $15 out, $3.75 cache write per million tokens
    assert answer.usage.cost_usd == pytest.approx((400 * 3 + 30 * 15 + 1200 * 3.75) / 1e6)
    body = json.loads(route.calls.last.request.content)
    assert body["system"] == [{"type": "text", "text": "You are precise."}]
    passage, instruction = body["messages"][0]["content"]
    assert passage["cache_control"] == {"type": "ephemeral"} and "<passage>" in passage["text"]
    assert instruction == {"type": "text", "text": "Which policy area?"}
    assert body["tool_choice"]["name"] == "ClassificationResult"
    assert body["tools"][0]["input_schema"]["properties"]["label"]["enum"] == list(TASK.labels)
    headers = route.calls.last.request.headers
    assert "sk-ant-test-not-a-real-key" in (headers.get("x-api-key") or headers.get("authorization", ""))
    (line,) = _log(teacher)
    assert line["sent"] and line["provider"] == "anthropic" and line["chunk_id"] == "c1"
    assert line["payload"] == body  # the exact request body is what is logged
    assert line["payload_sha256"] == sha256_hex(canonical_json(body))
    assert line["cost_usd"] == pytest.approx(answer.usage.cost_usd)


def test_cache_read_usage_is_priced_at_cache_rate(anthropic_router, anthropic_teacher):
    anthropic_router.post("/v1/messages").mock(
        return_value=httpx.Response(200, json=tool_use_message(GOOD, input_tokens=50, output_tokens=30, cache_read=1200))
    )
    answer = _ask(anthropic_teacher())
    assert answer.usage.cache_read_tokens == 1200
    assert answer.usage.cost_usd == pytest.approx((50 * 3 + 30 * 15 + 1200 * 0.30) / 1e6)


def test_429_retry_after_is_honoured(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(
        side_effect=[
            api_error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit",
                      {"retry-after": "0.4"}),
            httpx.Response(200, json=tool_use_message(GOOD)),
        ]
    )
    teacher = anthropic_teacher(retry_base_s=0.001)
    started = time.monotonic()
    answer = _ask(teacher)
    assert answer.ok
    assert time.monotonic() - started >= 0.4  # waited as told, not the 1 ms backoff
    assert route.call_count == 2 and teacher.counts["retries"] == 1
    statuses = [line["status"] for line in _log(teacher)]
    assert statuses == ["http_429", "ok"]


def test_529_overloaded_and_500_are_retried(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(
        side_effect=[
            api_error(529, "overloaded_error", "Overloaded"),
            api_error(500, "api_error", "Internal server error"),
            httpx.Response(200, json=tool_use_message(GOOD)),
        ]
    )
    teacher = anthropic_teacher()
    answer = _ask(teacher)
    assert answer.ok and route.call_count == 3
    assert [line["status"] for line in _log(teacher)] == ["http_529", "http_500", "ok"]


def test_retries_are_bounded_then_an_api_error(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(return_value=api_error(529, "overloaded_error", "Overloaded"))
    teacher = anthropic_teacher(max_retries=2)
    answer = _ask(teacher)
    assert answer.error_kind == "api" and "529" in answer.error
    assert route.call_count == 3  # 1 + 2 retries; the SDK's own retries are off
    assert teacher.cache.count() == 0  # an API failure is not cached: the next run asks again


def test_config_400_is_not_retried_and_stops_the_client(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(
        return_value=api_error(400, "invalid_request_error", "max_tokens: field required")
    )
    teacher = anthropic_teacher()
    answer = _ask(teacher)
    assert answer.error_kind == "stopped" and route.call_count == 1
    assert teacher.fatal is not None and teacher.fatal.cause == "config"
    assert "400 (max_tokens: field required)" in teacher.fatal.message
    later = _ask(teacher, chunk_id="c2", index=1)  # nothing more is sent after a fatal stop
    assert later.error_kind == "stopped" and route.call_count == 1


def test_a_too_long_prompt_400_fails_only_its_request(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(
        return_value=api_error(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum")
    )
    teacher = anthropic_teacher()
    answer = _ask(teacher)
    assert answer.error_kind == "api" and route.call_count == 1 and teacher.fatal is None


def test_malformed_tool_input_is_reasked_by_instructor(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(
        side_effect=[
            httpx.Response(200, json=tool_use_message({"label": "physical-security", "quote": "x"})),
            httpx.Response(200, json=tool_use_message(GOOD, input_tokens=500)),
        ]
    )
    teacher = anthropic_teacher(max_reasks=2)
    answer = _ask(teacher)
    assert answer.ok and route.call_count == 2
    reask = json.loads(route.calls[1].request.content)["messages"]
    assert reask[1]["role"] == "assistant" and reask[1]["content"][0]["type"] == "tool_use"
    result = reask[2]["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] is True
    assert "physical-security" in result["content"]
    # both attempts were paid: usage adds up
    assert answer.usage.input_tokens == 420 + 500


def test_reasks_exhausted_give_a_schema_error_with_the_raw_answer(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(
        return_value=httpx.Response(200, json=tool_use_message({"label": "nope"}))
    )
    teacher = anthropic_teacher(max_reasks=1)
    answer = _ask(teacher)
    assert answer.error_kind == "schema" and answer.output is None
    assert json.loads(answer.raw_json) == {"label": "nope"}
    assert route.call_count == 2
    # a paid schema failure is cached: asking again costs nothing
    again = _ask(teacher)
    assert again.error_kind == "schema" and again.cached and route.call_count == 2


def test_truncated_output_is_a_schema_error(anthropic_router, anthropic_teacher):
    anthropic_router.post("/v1/messages").mock(
        return_value=httpx.Response(200, json=tool_use_message({"label": "access-control"}, stop_reason="max_tokens"))
    )
    answer = _ask(anthropic_teacher())
    assert answer.error_kind == "schema" and "max_tokens" in answer.error


def test_response_cache_answers_repeat_requests_without_http(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(return_value=httpx.Response(200, json=tool_use_message(GOOD)))
    teacher = anthropic_teacher()
    first = _ask(teacher, index=0)
    second = _ask(teacher, index=0)
    other_sample = _ask(teacher, index=1)
    assert route.call_count == 2
    assert second.cached and not first.cached and not other_sample.cached
    assert second.output == first.output and second.request_hash == first.request_hash
    assert other_sample.request_hash != first.request_hash
    assert [line["sent"] for line in _log(teacher)] == [True, False, True]


def test_concurrency_is_bounded(anthropic_router, anthropic_teacher):
    in_flight = 0
    peak = 0

    async def slow(request):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return httpx.Response(200, json=tool_use_message(GOOD))

    anthropic_router.post("/v1/messages").mock(side_effect=slow)
    teacher = anthropic_teacher(max_concurrency=3)
    model = MODEL
    requests = [
        TeacherRequest(f"c{i}", "sys", f"text {i}", "Which?", model) for i in range(12)
    ]
    answers = teacher.ask_many(requests)
    assert all(a.ok for a in answers) and [a.chunk_id for a in answers] == [f"c{i}" for i in range(12)]
    assert peak == 3


def test_missing_api_key_is_a_clear_error(tmp_path, monkeypatch):
    from curate.services.teacher.factory import open_teacher
    from curate.services.teacher.request import TeacherSetupError

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    config = make_config(tmp_path, {"backend": "anthropic"})
    with pytest.raises(TeacherSetupError, match="ANTHROPIC_API_KEY"):
        open_teacher(config, str(tmp_path / "run"))


def test_prompts_put_chunk_before_instruction(tmp_path):
    task = make_config(tmp_path).task
    system = prompts.system_prompt(task)
    assert all(label in system for label in task.labels)
    assert prompts.instruction(task) == "Which policy area?"


def test_an_answer_that_failed_validation_is_durable_before_its_reask(anthropic_router, anthropic_teacher):
    """The re-ask never comes back (here: a 500, no retry); the next client, as after a crash,
    reuses the stored invalid answer and pays only for the re-ask."""
    invalid = tool_use_message({"label": "physical-security", "quote": "x"}, input_tokens=420)
    route = anthropic_router.post("/v1/messages").mock(
        side_effect=[httpx.Response(200, json=invalid), api_error(500, "api_error", "Internal server error")]
    )
    first = anthropic_teacher(max_reasks=2, max_retries=0)
    lost = _ask(first)
    assert lost.error_kind == "api" and route.call_count == 2
    assert first.cache.spent(first.run_dir) == pytest.approx((420 * 3 + 35 * 15) / 1e6)  # the paid answer is in the ledger

    route.side_effect = [httpx.Response(200, json=tool_use_message(GOOD, input_tokens=500))]
    second = anthropic_teacher(max_reasks=2, max_retries=0)
    answer = _ask(second)
    assert answer.ok and route.call_count == 3  # one new request: the re-ask
    reask = json.loads(route.calls[2].request.content)["messages"]
    assert reask[2]["content"][0]["is_error"] is True and "physical-security" in reask[2]["content"][0]["content"]
    assert second.counts["reused_attempts"] == 1
    assert second.cache.spent(second.run_dir) == pytest.approx((420 * 3 + 35 * 15 + 500 * 3 + 35 * 15) / 1e6)


def test_a_reservation_left_by_a_killed_process_counts_against_the_budget(anthropic_router, anthropic_teacher):
    route = anthropic_router.post("/v1/messages").mock(return_value=httpx.Response(200, json=tool_use_message(GOOD)))
    teacher = anthropic_teacher(budget_usd=0.02)
    # what a process killed with a request in flight leaves behind: a reservation, no spend
    assert teacher.cache.reserve(teacher.run_dir, "in-flight-when-killed", 0.019, 0.02) is not None
    fresh = anthropic_teacher(budget_usd=0.02)
    answer = _ask(fresh)
    assert answer.error_kind == "budget" and route.call_count == 0
    assert fresh.cache.committed(fresh.run_dir) == pytest.approx(0.019)
