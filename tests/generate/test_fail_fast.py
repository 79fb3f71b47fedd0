"""The teacher under real failures, through the command line, against MockTeacherServer (a
local server speaking the Anthropic Messages and OpenAI chat-completions wire formats; it
fills the schema mechanically and is not a model): a wrong key, a typo'd model, a server
that goes down mid-run and comes back, a sustained error rate. Every figure is the
server's own count of what it received."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from curate.cli import app
from curate.generate.stages import EXIT_TEACHER_FATAL
from curate.services.teacher.preflight import EXIT_PREFLIGHT
from tests.generate.conftest import LABELS, chunks_frame
from tests.servers.mock_teacher import MockTeacherServer, fill_schema

KEY = "sk-ant-right-key-for-the-mock-server"
PRICE = {"input": 3.0, "output": 15.0}


def write_run(tmp_path: Path, n_chunks: int, **teacher: Any) -> Path:
    """A pipeline YAML whose run directory already holds `redact/chunks` (generate's input)."""
    config = {
        "run_dir": "run",
        "task": {"type": "classification", "instruction": "Which policy area?", "labels": LABELS},
        "teacher": {"samples": 1, "max_tokens": 64, "retry_base_s": 0.01, "retry_max_wait_s": 0.02, **teacher},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    chunks_dir = tmp_path / "run" / "redact"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    chunks_frame(n_chunks).write_parquet(chunks_dir / "chunks.parquet")
    return path


@dataclass
class Outcome:
    exit_code: int
    output: str  # rich wraps long lines: whitespace runs folded to one space


def curate(*args: str, env: dict[str, str] | None = None) -> Outcome:
    result = CliRunner().invoke(app, [*args], env={"COLUMNS": "400", **(env or {})})
    return Outcome(result.exit_code, " ".join(result.output.split()))


def anthropic_teacher(server: MockTeacherServer, **extra: Any) -> dict[str, Any]:
    return {"backend": "anthropic", "model": "claude-sonnet-4-5", "base_url": server.url, **extra}


def openai_teacher(server: MockTeacherServer, **extra: Any) -> dict[str, Any]:
    return {"backend": "openai", "model": "mock-teacher", "base_url": server.openai_base_url,
            "prices": {"mock-teacher": PRICE}, **extra}


def test_wrong_key_is_caught_by_preflight_with_one_request(tmp_path):
    with MockTeacherServer(api_key=KEY) as server:
        config = write_run(tmp_path, 12, **anthropic_teacher(server))
        result = curate("generate", str(config), "--quiet", env={"ANTHROPIC_API_KEY": "sk-ant-wrong"})
        assert result.exit_code == EXIT_PREFLIGHT
        assert f"ANTHROPIC_API_KEY rejected by {server.url}: 401 (invalid x-api-key)" in result.output
        assert server.preflight_calls == 1 and server.received == 0  # one count_tokens call, no message


def test_wrong_key_stops_the_stage_after_one_request_without_preflight(tmp_path):
    with MockTeacherServer(api_key=KEY) as server:
        config = write_run(tmp_path, 12, **anthropic_teacher(server, preflight=False, max_concurrency=8))
        result = curate("generate", str(config), "--quiet", env={"ANTHROPIC_API_KEY": "sk-ant-wrong"})
        assert result.exit_code == EXIT_TEACHER_FATAL
        assert f"ANTHROPIC_API_KEY rejected by {server.url}: 401 (invalid x-api-key)" in result.output
        assert server.received == 1 and server.preflight_calls == 0  # the probe went alone; nothing after it
        run = tmp_path / "run"
        manifest = json.loads((run / "manifest.json").read_text())
        entry = manifest["stages"]["generate"]
        assert entry["status"] == "partial" and entry["exit_code"] == EXIT_TEACHER_FATAL
        assert entry["errors"] == 0  # a rejected key is not bad input
        pending = pl.read_parquet(run / "generate" / "pending.parquet")
        assert pending.height == 12 and set(pending["reason"]) == {"stopped"}

        # the key fixed: a plain re-run sends exactly the 12 pending requests
        fixed = curate("generate", str(config), "--quiet", env={"ANTHROPIC_API_KEY": KEY})
        assert fixed.exit_code == 0, fixed.output
        assert server.answered == 12 and server.received == 13
        assert pl.read_parquet(run / "generate" / "pending.parquet").height == 0


def test_typo_in_model_is_a_preflight_error_with_zero_requests(tmp_path):
    with MockTeacherServer(api_key=KEY, models={"claude-sonnet-4-5"}) as server:
        config = write_run(tmp_path, 4, **anthropic_teacher(server, model="claude-sonet-4-5"))
        (tmp_path / "docs").mkdir()  # ingest's own preflight (paths exist, hold input) passes first
        (tmp_path / "docs" / "policy.md").write_text("# Access\n\nAccounts are reviewed quarterly.\n")
        result = curate("run", str(config), "--quiet", env={"ANTHROPIC_API_KEY": KEY})
        assert result.exit_code == EXIT_PREFLIGHT
        assert "teacher.model 'claude-sonet-4-5' has no price" in result.output
        assert "did you mean 'claude-sonnet-4-5'" in result.output
        assert server.preflight_calls == 0 and server.received == 0
        assert not (tmp_path / "run" / "manifest.json").exists()  # no stage ran


def test_unpriced_model_allowed_explicitly_still_meets_the_endpoint_check(tmp_path):
    with MockTeacherServer(api_key=KEY, models={"claude-sonnet-4-5"}) as server:
        config = write_run(tmp_path, 4, **anthropic_teacher(server, model="claude-sonet-4-5", allow_unpriced=True))
        result = curate("generate", str(config), "--quiet", env={"ANTHROPIC_API_KEY": KEY})
        assert result.exit_code == EXIT_PREFLIGHT
        assert f"model 'claude-sonet-4-5' not found at {server.url}: 404" in result.output
        assert server.preflight_calls == 1 and server.received == 0


def test_openai_compatible_model_not_served_is_a_preflight_error(tmp_path):
    with MockTeacherServer(models={"mock-teacher"}) as server:
        config = write_run(tmp_path, 4, **openai_teacher(server, model="mock-teachr",
                                                          prices={"mock-teachr": PRICE}))
        result = curate("generate", str(config), "--quiet")
        assert result.exit_code == EXIT_PREFLIGHT
        assert "model 'mock-teachr' is not served by" in result.output and "'mock-teacher'" in result.output
        assert server.preflight_calls == 1 and server.received == 0


def test_missing_key_and_unreachable_endpoint_are_preflight_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    config = write_run(tmp_path, 2, backend="anthropic", model="claude-sonnet-4-5")
    result = curate("generate", str(config), "--quiet")
    assert result.exit_code == EXIT_PREFLIGHT and "needs an API key in $ANTHROPIC_API_KEY" in result.output

    with MockTeacherServer() as server:
        url = server.url
    config = write_run(tmp_path, 2, backend="anthropic", model="claude-sonnet-4-5", base_url=url)  # stopped: nothing listens
    result = curate("generate", str(config), "--quiet", env={"ANTHROPIC_API_KEY": KEY})
    assert result.exit_code == EXIT_PREFLIGHT and f"cannot reach {url}" in result.output


def test_server_down_mid_run_trips_the_breaker_and_a_plain_rerun_sends_exactly_the_failed(tmp_path):
    n_chunks, answered_before_down, breaker, concurrency = 30, 6, 3, 4
    calls = {"n": 0}

    def answer(body: dict[str, Any], passage: str) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == answered_before_down:
            server.down = True  # this answer still goes out; every later connection is dropped
        return fill_schema(body["tools"][0]["function"]["parameters"], passage)

    with MockTeacherServer(answer=answer, latency_s=0.01) as server:
        config = write_run(tmp_path, n_chunks, **openai_teacher(
            server, max_concurrency=concurrency, breaker_consecutive=breaker, max_retries=6))
        result = curate("generate", str(config), "--quiet")
        assert result.exit_code == EXIT_TEACHER_FATAL, result.output
        assert f"cannot reach {server.openai_base_url}" in result.output
        answered = server.answered
        assert answered >= answered_before_down
        # the breaker's bound: N failures in a row, plus the attempts already in flight when it tripped
        assert breaker <= server.dropped <= breaker + concurrency - 1
        run = tmp_path / "run"
        samples = pl.read_parquet(run / "generate" / "samples.parquet")
        pending = pl.read_parquet(run / "generate" / "pending.parquet")
        assert samples.height == answered and pending.height == n_chunks - answered  # nothing answered is lost

        status = curate("status", str(run))
        assert "generate: pending" in status.output and f"{pending.height}" in status.output

        server.down = False  # the server is back: a plain re-run, no --force
        again = curate("generate", str(config), "--quiet")
        assert again.exit_code == 0, again.output
        assert server.answered == n_chunks  # exactly the failed requests were sent again
        assert max(server.answered_by_body.values()) == 1  # and none of the answered ones
        final = pl.read_parquet(run / "generate" / "samples.parquet")
        assert final.height == n_chunks and int(final["cached"].sum()) == answered


def test_plain_run_resends_failed_requests_without_rerunning_upstream(tmp_path):
    """`curate run` on a run whose generate stage is incomplete: ingest and redact are skipped."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"policy{i}.md").write_text(
            f"# Policy {i}\n\n" + " ".join(f"Passwords must be rotated every {30 + i} days by every user." for _ in range(12)))
    with MockTeacherServer() as server:
        config = tmp_path / "pipeline.yaml"
        config.write_text(yaml.safe_dump({
            "run_dir": "run", "ingest": {"paths": ["docs"]},
            "task": {"type": "classification", "instruction": "Which policy area?", "labels": LABELS},
            "teacher": openai_teacher(server, samples=1, max_retries=0, breaker_error_rate=1.0),
            "refine": {"rounds": 0},
        }))
        server.fail_next.extend([500])  # the probe request fails once, with no retry allowed
        first = curate("run", str(config), "--quiet")
        assert first.exit_code == 3 and "failed after 0 retries" in first.output, first.output
        asked = server.received
        second = curate("run", str(config), "--quiet")
        assert "ingest: unchanged, skipped" in second.output and "redact: unchanged, skipped" in second.output
        assert "▶ generate" in second.output
        assert server.received == asked + 1  # exactly the one failed request


def test_sustained_error_rate_trips_the_breaker(tmp_path):
    with MockTeacherServer() as server:
        server.fail_next.extend([503] * 100)
        config = write_run(tmp_path, 20, **openai_teacher(
            server, max_retries=1, breaker_window=6, breaker_error_rate=0.8, max_concurrency=2))
        result = curate("generate", str(config), "--quiet")
        assert result.exit_code == EXIT_TEACHER_FATAL
        assert "failed 6 of the last 6 attempts" in result.output
        assert 6 <= server.received <= 6 + 2 - 1


@pytest.mark.parametrize("status", [403, 404])
def test_permission_and_not_found_stop_at_first_occurrence(tmp_path, status):
    with MockTeacherServer() as server:
        server.fail_next.extend([status] * 50)
        config = write_run(tmp_path, 10, **openai_teacher(server, preflight=False))
        result = curate("generate", str(config), "--quiet")
        assert result.exit_code == EXIT_TEACHER_FATAL
        assert (f"{status} (injected {status})") in result.output
        assert server.received == 1
