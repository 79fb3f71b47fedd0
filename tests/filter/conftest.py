"""Builders for the filter tests: tasks, chunks, samples, and a fake teacher."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pytest

from curate.filter.base import records_frame
from curate.filter.checks import FilterEnv
from curate.filter.config import FilterConfig
from curate.services.teacher.request import TeacherAnswer, TeacherRequest
from schemas.ids import content_id
from schemas.records import Sample, Usage
from schemas.tasks import TaskConfig

LABELS = ("access-control", "incident-response", "data-protection")

CHUNKS = {
    "c1": "Access to the payroll system requires multi-factor authentication for every administrator.",
    "c2": "Security incidents must be reported to the response team within 24 hours of detection.",
    "c3": "Customer records are encrypted at rest with AES-256 and retained for 1,024 days.",
}


def classification_task() -> TaskConfig:
    return TaskConfig(type="classification", name="topic", instruction="Which policy area?", labels=LABELS)


def make_env(task: TaskConfig | None = None, *, samples: int = 3, chunks: dict[str, str] | None = None,
             **config: Any) -> FilterEnv:
    return FilterEnv(task=task or classification_task(), config=FilterConfig(**config),
                     chunks=dict(CHUNKS if chunks is None else chunks), expected_samples=samples)


def sample(chunk_id: str, index: int, output: dict[str, Any] | str | None, *, status: str = "ok",
           round_: int = 0, cost: float = 0.01, task_type: str = "classification",
           error: str | None = None) -> Sample:
    raw = output if isinstance(output, str) or output is None else json.dumps(output)
    return Sample(
        sample_id=content_id(chunk_id, "topic", index, round_), chunk_id=chunk_id, doc_id=f"doc-{chunk_id}",
        task_type=task_type, sample_index=index, round=round_, status=status, output_json=raw,
        error=error, request_hash=content_id("req", chunk_id, index), backend="fake", model="fake-model",
        cost_usd=cost,
    )


def samples_frame(rows: Sequence[Sample]) -> pl.DataFrame:
    return records_frame(Sample, rows)


@dataclass
class FakeTeacherRepairer:
    """Stands in for a teacher model: answers each request with `respond(request)`.

    It implements the `TeacherClient.ask_many` protocol (and `ask`), returns real
    `TeacherAnswer` objects, validates answers with the request's response model the way
    instructor would, and records every request it was sent.
    """

    respond: Callable[[TeacherRequest], dict[str, Any] | None]
    cost_usd: float = 0.002
    requests: list[TeacherRequest] = field(default_factory=list)

    def __enter__(self) -> FakeTeacherRepairer:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def ask_many(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]:
        return [self._answer(request) for request in requests]

    async def ask(self, **kwargs: Any) -> TeacherAnswer:
        return self._answer(TeacherRequest(**kwargs))

    def _answer(self, request: TeacherRequest) -> TeacherAnswer:
        self.requests.append(request)
        payload = self.respond(request)
        usage = Usage(input_tokens=100, output_tokens=20, cost_usd=self.cost_usd)
        common = dict(usage=usage, request_hash=content_id("fake", request.chunk_id, request.round, request.instruction),
                      cached=False, model="fake-model", backend="fake", chunk_id=request.chunk_id,
                      sample_index=request.sample_index, round=request.round, purpose=request.purpose or "refine")
        if payload is None:
            return TeacherAnswer(output=None, raw_json=None, error="fake teacher gave no answer", error_kind="api", **common)  # type: ignore[arg-type]
        raw = json.dumps(payload)
        output = request.response_model.model_validate(payload)
        return TeacherAnswer(output=output, raw_json=raw, error=None, error_kind=None, **common)  # type: ignore[arg-type]


@pytest.fixture
def env() -> FilterEnv:
    return make_env()
