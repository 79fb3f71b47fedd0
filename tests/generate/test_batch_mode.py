"""Message Batches mode: the real AsyncAnthropic batch calls against respx-mocked
Message Batches API responses; submit, poll, collect, and resume by batch id."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from curate.services.teacher.request import TeacherRequest
from schemas.tasks import output_model
from tests.generate.conftest import make_config, tool_use_message

BATCH_ID = "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF"
BASE = "https://api.anthropic.com"


def batch_json(status: str, n: int) -> dict[str, Any]:
    ended = status == "ended"
    return {
        "id": BATCH_ID, "type": "message_batch", "processing_status": status,
        "request_counts": {"processing": 0 if ended else n, "succeeded": n if ended else 0,
                           "errored": 0, "canceled": 0, "expired": 0},
        "ended_at": "2026-11-23T14:10:00Z" if ended else None, "created_at": "2026-11-23T14:00:00Z",
        "expires_at": "2026-11-24T14:00:00Z", "archived_at": None, "cancel_initiated_at": None,
        "results_url": f"{BASE}/v1/messages/batches/{BATCH_ID}/results" if ended else None,
    }


class FakeBatchAPI:
    """respx routes that behave like the Message Batches API for one batch."""

    def __init__(self, router, *, errored: int = 0):
        self.submitted: list[dict[str, Any]] = []
        self.polls = 0
        self.errored = errored
        self.create = router.post("/v1/messages/batches").mock(side_effect=self._create)
        self.retrieve = router.get(f"/v1/messages/batches/{BATCH_ID}").mock(side_effect=self._retrieve)
        self.results = router.get(f"/v1/messages/batches/{BATCH_ID}/results").mock(side_effect=self._results)
        self.fail_polls = 0

    def _create(self, request: httpx.Request) -> httpx.Response:
        self.submitted = json.loads(request.content)["requests"]
        return httpx.Response(200, json=batch_json("in_progress", len(self.submitted)))

    def _retrieve(self, request: httpx.Request) -> httpx.Response:
        self.polls += 1
        if self.fail_polls:
            self.fail_polls -= 1
            raise httpx.ConnectError("connection lost (simulated crash while polling)")
        status = "ended" if self.polls >= 2 else "in_progress"
        return httpx.Response(200, json=batch_json(status, len(self.submitted)))

    def _results(self, request: httpx.Request) -> httpx.Response:
        lines = []
        for number, item in enumerate(self.submitted):
            if number < self.errored:
                result = {"type": "errored", "error": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}
            else:
                text = item["params"]["messages"][0]["content"][0]["text"]
                label = "data-protection" if "Section 1." in text else "access-control"
                result = {"type": "succeeded", "message": tool_use_message(
                    {"label": label, "quote": "Passwords must be"}, input_tokens=300, output_tokens=20)}
            lines.append(json.dumps({"custom_id": item["custom_id"], "result": result}))
        return httpx.Response(200, content=("\n".join(lines) + "\n").encode())


def requests_for(config, n: int) -> list[TeacherRequest]:
    model = output_model(config.task)
    return [
        TeacherRequest(f"c{i}", "sys", f"Section {i}. Passwords must be long.", "Which?", model, sample_index=0)
        for i in range(n)
    ]


def test_batch_submit_poll_collect(tmp_path, anthropic_router, anthropic_teacher):
    api = FakeBatchAPI(anthropic_router)
    teacher = anthropic_teacher(batch_mode=True, batch_poll_s=0.01)
    config = make_config(tmp_path)
    answers = teacher.ask_many(requests_for(config, 4))
    assert [a.output.label for a in answers] == ["access-control", "data-protection", "access-control", "access-control"]
    assert api.create.call_count == 1 and api.polls == 3  # in_progress, ended, + the one inside results()
    params = api.submitted[0]["params"]
    assert params["tool_choice"]["name"] == "ClassificationResult" and params["tools"][0]["input_schema"]
    assert params["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert {item["custom_id"] for item in api.submitted} == {a.request_hash for a in answers}
    # half price: (300 * $3 + 20 * $15) / 1e6 / 2
    assert answers[0].usage.cost_usd == pytest.approx((300 * 3 + 20 * 15) / 1e6 / 2)
    assert not any(a.cached for a in answers)
    again = teacher.ask_many(requests_for(config, 4))
    assert all(a.cached for a in again) and api.create.call_count == 1


def test_batch_resumes_by_id_after_a_crash(tmp_path, anthropic_router, anthropic_teacher):
    api = FakeBatchAPI(anthropic_router)
    api.fail_polls = 1
    config = make_config(tmp_path)
    first = anthropic_teacher(batch_mode=True, batch_poll_s=0.01, max_retries=0)
    with pytest.raises(Exception, match=r"[Cc]onnection"):
        first.ask_many(requests_for(config, 3))
    first.close()
    assert api.create.call_count == 1
    # a new process: the batch id is in the state folder, so it is polled, not submitted again
    second = anthropic_teacher(batch_mode=True, batch_poll_s=0.01)
    answers = second.ask_many(requests_for(config, 3))
    assert all(a.ok for a in answers) and api.create.call_count == 1 and api.results.call_count == 1


def test_errored_batch_items_are_api_errors_and_not_cached(tmp_path, anthropic_router, anthropic_teacher):
    FakeBatchAPI(anthropic_router, errored=1)
    teacher = anthropic_teacher(batch_mode=True, batch_poll_s=0.01)
    answers = teacher.ask_many(requests_for(make_config(tmp_path), 3))
    kinds = sorted(str(a.error_kind) for a in answers)
    assert kinds == ["None", "None", "api"]
    assert teacher.cache.count() == 2


def test_batch_stops_at_the_budget_before_submitting(tmp_path, anthropic_router, anthropic_teacher):
    """Each item holds its worst case at batch prices (1,024 output tokens x $15/2 per 1e6 =
    $0.00768 plus its input): $0.02 admits two items; the rest are budget stops, not sent."""
    api = FakeBatchAPI(anthropic_router)
    teacher = anthropic_teacher(batch_mode=True, batch_poll_s=0.01, budget_usd=0.02)
    answers = teacher.ask_many(requests_for(make_config(tmp_path), 4))
    assert len(api.submitted) == 2
    assert [str(a.error_kind) for a in answers].count("budget") == 2
    assert sum(a.ok for a in answers) == 2
