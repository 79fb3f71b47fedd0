"""The openai backend against a local OpenAI-compatible server started by the test
(MockTeacherServer: fills the tool schema mechanically, it is not a model), the generate
stage, cassette recording and the replay backend."""

from __future__ import annotations

import json

import polars as pl
import pytest

from curate.generate.stages import generate, summarize
from curate.run.stage import StageContext
from curate.services.teacher.factory import open_teacher
from curate.services.teacher.request import TeacherSetupError
from schemas.records import Sample, polars_schema
from schemas.tasks import output_model
from tests.generate.conftest import chunks_frame, make_config
from tests.servers.mock_teacher import MockTeacherServer


@pytest.fixture
def server():
    with MockTeacherServer() as running:
        yield running


def _ctx(config) -> StageContext:
    return StageContext(config=config, run_dir=str(config.run_path), stage="generate", show_progress=False)


def test_generate_stage_over_openai_compatible_server(tmp_path, server):
    config = make_config(tmp_path, {"backend": "openai", "model": "local-teacher", "base_url": server.openai_base_url,
                                    "samples": 3, "temperature": 0.9})
    chunks = chunks_frame(4)
    out = generate(chunks, _ctx(config))
    samples = out["samples"]
    assert samples.schema == polars_schema(Sample)
    assert samples.height == 12 and set(samples["status"]) == {"ok"}
    assert server.answered == 12
    body = server.bodies[0]
    assert body["model"] == "local-teacher" and body["temperature"] == 0.9
    assert body["tools"][0]["function"]["name"] == "ClassificationResult"
    assert body["messages"][0]["role"] == "system" and "<passage>" in body["messages"][1]["content"]
    first = json.loads(samples["output_json"][0])
    assert first["label"] == "access-control" and first["quote"] in chunks["text"].to_list()[0]
    # sample ids: content ids, one per (chunk, sample index)
    assert samples["sample_id"].n_unique() == 12
    report = summarize({name: frame.lazy() for name, frame in out.items()})["usage"]["generate"]
    assert report["answers"] == 12 and report["input_tokens"] == int(samples["input_tokens"].sum()) > 0
    # a re-run is answered from the response cache: no request leaves the machine
    again = generate(chunks, _ctx(config))
    assert server.received == 12 and again["samples"]["cached"].all()
    assert again["samples"].drop("cached").equals(samples.drop("cached"))


def test_json_mode_for_servers_without_tools(tmp_path):
    def answer(_body, passage):
        return {"label": "incident-response", "quote": passage[:20]}

    with MockTeacherServer(answer=answer) as server:
        config = make_config(tmp_path, {"backend": "openai", "model": "m", "base_url": server.openai_base_url,
                                        "openai_mode": "json", "samples": 1})
        out = generate(chunks_frame(2), _ctx(config))
    assert out["samples"]["status"].to_list() == ["ok", "ok"]
    assert "tools" not in server.bodies[0]
    assert json.loads(out["samples"]["output_json"][0])["label"] == "incident-response"


def test_server_errors_are_retried_and_logged(tmp_path, server):
    server.fail_next.extend([500, 429, 503])
    config = make_config(tmp_path, {"backend": "openai", "model": "m", "base_url": server.openai_base_url,
                                    "samples": 1, "max_concurrency": 1})
    out = generate(chunks_frame(1), _ctx(config))
    assert out["samples"]["status"].to_list() == ["ok"] and out["errors"].height == 0
    log = [json.loads(line) for line in (config.run_path / "generate.state" / "requests.jsonl").read_text().splitlines()]
    assert [line["status"] for line in log] == ["http_500", "http_429", "http_503", "ok"]


def test_record_then_replay_gives_the_same_samples_offline(tmp_path, server):
    cassette = tmp_path / "recorded.jsonl"
    live = make_config(tmp_path, {"backend": "openai", "model": "m", "base_url": server.openai_base_url,
                                  "cassette": str(cassette), "record": True})
    chunks = chunks_frame(3)
    recorded = generate(chunks, _ctx(live))["samples"]
    assert len(cassette.read_text().splitlines()) == 9
    replay = make_config(tmp_path / "r", {"backend": "replay", "model": "m", "cassette": str(cassette)})
    replayed = generate(chunks, _ctx(replay))["samples"]
    assert server.received == 9  # replay sends nothing
    columns = ["sample_id", "chunk_id", "sample_index", "status", "output_json", "request_hash"]
    assert replayed.select(columns).equals(recorded.select(columns))
    assert set(replayed["backend"]) == {"replay"} and replayed["cost_usd"].sum() == 0


def test_replay_miss_is_a_clear_error_never_an_answer(tmp_path):
    cassette = tmp_path / "empty.jsonl"
    cassette.write_text("")
    config = make_config(tmp_path, {"backend": "replay", "cassette": str(cassette), "samples": 1})
    out = generate(chunks_frame(2), _ctx(config))
    samples, errors = out["samples"], out["errors"]
    assert samples["status"].to_list() == ["failed", "failed"] and samples["output_json"].is_null().all()
    assert errors["reason"].to_list() == ["teacher_cassette_miss"] * 2
    message = errors["message"][0]
    assert "chunk000" in message and samples["request_hash"][0] in message and "empty.jsonl" in message


def test_replay_validates_recorded_answers(tmp_path):
    config = make_config(tmp_path, {"backend": "replay", "cassette": "c.jsonl", "samples": 1})
    chunks = chunks_frame(1)
    from curate.generate.stages import requests_for_chunks
    from curate.services.teacher.request import request_hash

    (request,) = requests_for_chunks(config, chunks)
    entry = {"request_hash": request_hash(config.teacher, request), "raw_json": '{"label": "physical-security"}'}
    (tmp_path / "c.jsonl").write_text(json.dumps(entry) + "\n")
    out = generate(chunks, _ctx(config))
    assert out["samples"]["status"].to_list() == ["schema_error"]
    assert out["samples"]["output_json"][0] == '{"label": "physical-security"}'


def test_replay_without_cassette_file_fails_at_open(tmp_path):
    config = make_config(tmp_path, {"backend": "replay", "cassette": "missing.jsonl"})
    with pytest.raises(TeacherSetupError, match="does not exist"):
        open_teacher(config, str(tmp_path / "run"))


def test_request_hash_is_backend_independent(tmp_path, server):
    """A replay finds what a live backend recorded: the hash ignores the backend."""
    live = make_config(tmp_path, {"backend": "openai", "model": "m", "base_url": server.openai_base_url, "samples": 1})
    replay = make_config(tmp_path, {"backend": "replay", "model": "m", "cassette": "x.jsonl", "samples": 1})
    from curate.generate.stages import requests_for_chunks
    from curate.services.teacher.request import request_hash

    (a,) = requests_for_chunks(live, chunks_frame(1))
    (b,) = requests_for_chunks(replay, chunks_frame(1))
    assert request_hash(live.teacher, a) == request_hash(replay.teacher, b)
    other_model = make_config(tmp_path, {"backend": "openai", "model": "other", "samples": 1})
    assert request_hash(other_model.teacher, a) != request_hash(live.teacher, a)


def test_output_model_schema_is_what_the_server_is_asked(tmp_path, server):
    config = make_config(tmp_path, {"backend": "openai", "model": "m", "base_url": server.openai_base_url, "samples": 1})
    generate(chunks_frame(1), _ctx(config))
    params = server.bodies[0]["tools"][0]["function"]["parameters"]
    assert params["properties"]["label"]["enum"] == list(config.task.labels)
    assert set(params["required"]) == set(output_model(config.task).model_json_schema()["required"])


def test_samples_frame_is_sorted_output_ready(tmp_path, server):
    config = make_config(tmp_path, {"backend": "openai", "model": "m", "base_url": server.openai_base_url, "samples": 2})
    out = generate(chunks_frame(3), _ctx(config))
    assert isinstance(out["samples"], pl.DataFrame) and out["errors"].height == 0


def test_anthropic_backend_over_http_with_base_url(tmp_path, server, monkeypatch):
    """The production backend end to end over real HTTP (the mock server's /v1/messages)."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
    config = make_config(tmp_path, {"backend": "anthropic", "base_url": server.url, "samples": 2})
    out = generate(chunks_frame(2), _ctx(config))
    assert out["samples"]["status"].to_list() == ["ok"] * 4 and server.answered == 4
    body = server.bodies[0]
    assert body["tool_choice"]["type"] == "tool" and "temperature" not in body
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert out["samples"]["cost_usd"].sum() > 0  # priced with the built-in claude-sonnet-4-5 price
