"""Fixtures of the teacher tests: configs, Anthropic API response shapes, a respx router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import polars as pl
import pytest
import respx

from curate.config import PipelineConfig, parse_config
from curate.services.teacher.client import TeacherClient
from curate.services.teacher.factory import open_teacher
from tests.generate.respx_bridge import client_factory

LABELS = ["access-control", "incident-response", "data-protection"]


def make_config(tmp_path, teacher: dict[str, Any] | None = None, **sections: Any) -> PipelineConfig:
    data: dict[str, Any] = {
        "run_dir": str(tmp_path / "run"),
        "task": {"type": "classification", "instruction": "Which policy area?", "labels": LABELS},
        "teacher": {"retry_base_s": 0.01, "retry_max_wait_s": 0.05, **(teacher or {})},
        **sections,
    }
    return parse_config(data, base_dir=tmp_path)


def chunks_frame(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "chunk_id": [f"chunk{i:03d}" for i in range(n)],
            "doc_id": [f"doc{i // 4}" for i in range(n)],
            "text": [
                f"Section {i}. Passwords must be at least {8 + i} characters long and MFA is mandatory."
                for i in range(n)
            ],
        }
    )


def tool_use_message(
    tool_input: dict[str, Any] | str,
    *,
    name: str = "ClassificationResult",
    input_tokens: int = 420,
    output_tokens: int = 35,
    cache_write: int = 0,
    cache_read: int = 0,
    stop_reason: str = "tool_use",
) -> dict[str, Any]:
    """A Messages API response with one tool_use block, in the API's real shape."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": name, "input": tool_input}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
            "service_tier": "standard",
        },
    }


def api_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """An Anthropic error response ({"type": "error", "error": {...}})."""
    return httpx.Response(
        status,
        headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy", **(headers or {})},
        json={"type": "error", "error": {"type": kind, "message": message}},
    )


@pytest.fixture
def anthropic_router(monkeypatch) -> respx.Router:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
    return respx.Router(base_url="https://api.anthropic.com", assert_all_called=False)


@pytest.fixture
def anthropic_teacher(tmp_path, anthropic_router) -> Callable[..., TeacherClient]:
    def factory(**teacher: Any) -> TeacherClient:
        config = make_config(tmp_path, {"backend": "anthropic", **teacher})
        return open_teacher(config, str(config.run_path), http_client_factory=client_factory(anthropic_router))

    return factory
