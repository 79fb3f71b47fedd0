"""Refinement with a fake teacher: recovery counted, repairs re-filtered; the stages end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curate.config import parse_config
from curate.filter.base import records_frame
from curate.filter.checks import run_filters
from curate.filter.refine import refine, repair_targets
from curate.filter.stages import STAGES
from curate.run.rundir import RunDir
from curate.run.runner import Runner
from curate.services.teacher.request import TeacherRequest
from schemas.records import Chunk, Rejection

from .conftest import CHUNKS, LABELS, FakeTeacherRepairer, make_env, sample, samples_frame

GOOD = {"c1": ("access-control", "requires multi-factor authentication"),
        "c2": ("incident-response", "reported to the response team within 24 hours"),
        "c3": ("data-protection", "encrypted at rest with AES-256")}


def grounded_answer(request: TeacherRequest) -> dict[str, Any]:
    label, quote = GOOD[request.chunk_id]
    return {"label": label, "quote": quote}


def bad_then_good(request: TeacherRequest) -> dict[str, Any]:
    """Round 1 still invents a quote; round 2 copies one from the passage."""
    label, quote = GOOD[request.chunk_id]
    return {"label": label, "quote": quote if request.round >= 2 else "an invented sentence not in the text"}


def ungrounded_samples() -> pl.DataFrame:
    rows = [sample("c1", i, {"label": "access-control", "quote": "requires multi-factor authentication"}) for i in range(3)]
    rows += [sample("c2", i, {"label": "incident-response", "quote": "made-up words nowhere in it"}) for i in range(3)]
    rows += [sample("c3", i, {"label": label, "quote": "encrypted at rest with AES-256"})
             for i, label in enumerate(LABELS)]  # no majority
    return samples_frame(rows)


def test_repair_targets_pick_one_repairable_rejection_per_open_chunk() -> None:
    outcome = run_filters(ungrounded_samples(), make_env())
    rejected = records_frame(Rejection, outcome.funnel.rejections)
    targets = repair_targets(rejected, {"c1"})
    assert [(t["chunk_id"], t["reason"]) for t in targets] == [("c2", "quote_not_in_source"), ("c3", "no_majority")]


def test_refine_recovers_and_refilters() -> None:
    env = make_env()
    first = run_filters(ungrounded_samples(), env)
    assert [e.chunk_id for e in first.examples] == ["c1"]
    rejected = records_frame(Rejection, first.funnel.rejections)
    examples = pl.DataFrame({"chunk_id": [e.chunk_id for e in first.examples]})
    teacher = FakeTeacherRepairer(bad_then_good)
    outcome = refine(rejected, examples, {c: f"doc-{c}" for c in CHUNKS}, env, teacher, rounds=2)
    # round 1: both repairs still ungrounded -> rejected again by the same grounding filter
    round1 = [r for r in outcome.rejections if r.refine_round == 1]
    assert sorted((r.chunk_id, r.filter, r.reason) for r in round1) == [
        ("c2", "grounding", "quote_not_in_source"), ("c3", "grounding", "quote_not_in_source")]
    # round 2: repaired from the round-1 rejections, then accepted
    assert sorted(e.chunk_id for e in outcome.examples) == ["c2", "c3"]
    assert all(e.refine_round == 2 for e in outcome.examples)
    assert outcome.attempted_chunks == {"c2", "c3"} and outcome.recovered_chunks == {"c2", "c3"}
    # round 1: c2 (grounding) one answer, c3 (no majority) voted again with 3; round 2: one each
    assert sorted((r.round, r.chunk_id, r.sample_index) for r in teacher.requests) == [
        (1, "c2", 0), (1, "c3", 0), (1, "c3", 1), (1, "c3", 2), (2, "c2", 0), (2, "c3", 0)]
    reasons = [r.instruction for r in teacher.requests if r.round == 1]
    assert any("quote_not_in_source" in text for text in reasons)
    assert any("no_majority" in text for text in reasons)
    assert {s.round for s in outcome.samples} == {1, 2}
    assert all(s.parent_id for s in outcome.samples)
    assert abs(sum(s.cost_usd for s in outcome.samples) - 6 * teacher.cost_usd) < 1e-9


def no_majority_rejections() -> tuple[pl.DataFrame, pl.DataFrame]:
    first = run_filters(ungrounded_samples(), make_env())
    return records_frame(Rejection, first.funnel.rejections), pl.DataFrame({"chunk_id": ["c1", "c2"]})


def test_a_failed_vote_is_repaired_by_a_vote_that_must_agree() -> None:
    rejected, examples = no_majority_rejections()  # c3 open, rejected for no majority

    def split_vote(request: TeacherRequest) -> dict[str, Any]:  # the repair answers disagree again
        return {"label": LABELS[request.sample_index % len(LABELS)], "quote": "encrypted at rest with AES-256"}

    outcome = refine(rejected, examples, {c: f"doc-{c}" for c in CHUNKS}, make_env(), FakeTeacherRepairer(split_vote), 1)
    assert outcome.examples == []
    assert {(r.chunk_id, r.reason) for r in outcome.rejections} == {("c3", "no_majority")}

    def two_of_three(request: TeacherRequest) -> dict[str, Any]:
        label = "data-protection" if request.sample_index < 2 else "access-control"
        return {"label": label, "quote": "encrypted at rest with AES-256"}

    outcome = refine(rejected, examples, {c: f"doc-{c}" for c in CHUNKS}, make_env(), FakeTeacherRepairer(two_of_three), 1)
    [example] = outcome.examples
    assert (example.chunk_id, example.label, round(example.agreement, 2)) == ("c3", "data-protection", 0.67)


def test_without_revote_one_repaired_answer_passes_the_vote_alone() -> None:
    rejected, examples = no_majority_rejections()
    teacher = FakeTeacherRepairer(grounded_answer)
    outcome = refine(rejected, examples, {c: f"doc-{c}" for c in CHUNKS}, make_env(), teacher, 1, revote=False)
    assert [(e.chunk_id, e.agreement) for e in outcome.examples] == [("c3", 1.0)]
    assert len(teacher.requests) == 1


def test_a_repair_must_keep_the_label_the_vote_agreed_on() -> None:
    first = run_filters(ungrounded_samples(), make_env())
    rejected = records_frame(Rejection, first.funnel.rejections).filter(pl.col("chunk_id") == "c2")

    def relabel(request: TeacherRequest) -> dict[str, Any]:  # grounded, but not the label the vote chose
        return {"label": "data-protection", "quote": "reported to the response team within 24 hours"}

    outcome = refine(rejected, pl.DataFrame({"chunk_id": ["c1"]}), {c: f"doc-{c}" for c in CHUNKS}, make_env(),
                     FakeTeacherRepairer(relabel), 1)
    assert outcome.examples == []
    [rejection] = outcome.rejections
    assert (rejection.chunk_id, rejection.reason, rejection.repairable) == ("c2", "label_changed", False)
    assert "incident-response" in rejection.detail


def test_refine_stops_after_configured_rounds() -> None:
    env = make_env()
    first = run_filters(ungrounded_samples(), env)
    rejected = records_frame(Rejection, first.funnel.rejections)
    examples = pl.DataFrame({"chunk_id": ["c1"]})
    outcome = refine(rejected, examples, {}, env, FakeTeacherRepairer(bad_then_good), rounds=1)
    assert outcome.examples == [] and outcome.attempted_chunks == {"c2", "c3"}
    assert outcome.recovered_chunks == set()


def write_inputs(run: Path) -> None:
    run_dir = RunDir(run)
    chunks = [Chunk(chunk_id=c, doc_id=f"doc-{c}", source_path="policy.md", text=t, start=0, end=len(t), n_tokens=20)
              for c, t in CHUNKS.items()]
    run_dir.commit_stage("redact", {"chunks": records_frame(Chunk, chunks)})
    samples = ungrounded_samples()
    # an exact duplicate chunk text elsewhere: c4 repeats c1 and must be deduplicated
    run_dir.commit_stage("generate", {"samples": samples})


def test_stages_end_to_end_with_fake_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = FakeTeacherRepairer(grounded_answer)
    monkeypatch.setattr("curate.services.teacher.factory.open_teacher", lambda *a, **k: teacher)
    config = parse_config({
        "run_dir": str(tmp_path / "run"),
        "task": {"type": "classification", "name": "topic", "instruction": "Which policy area?", "labels": list(LABELS)},
        "teacher": {"backend": "replay", "samples": 3},
        "refine": {"rounds": 1},
    }, base_dir=tmp_path)
    write_inputs(tmp_path / "run")
    result = Runner(config, STAGES, show_progress=False).run()
    assert [s.status for s in result.stages] == ["complete"] * 4
    run_dir = RunDir(tmp_path / "run")
    final = run_dir.read("dedup/examples")
    assert sorted(final["chunk_id"].to_list()) == ["c1", "c2", "c3"]
    assert final.filter(pl.col("refine_round") == 1).height == 2
    manifest = run_dir.load_manifest()
    report = manifest["stages"]["dedup"]["report"]
    summary = report["summary"]
    assert summary["examples_accepted"] == 3 and summary["recovery_rate"] == 1.0
    # repairs: c2 (grounding) one answer, c3 (no majority) voted again with 3 answers
    assert summary["cost_total_usd"] == pytest.approx(9 * 0.01 + 4 * teacher.cost_usd)
    assert summary["cost_per_accepted_usd"] == pytest.approx(summary["cost_total_usd"] / 3)
    steps = {(row["stage"], row["step"]): row for row in report["funnel"]}
    assert steps[("filter", "grounding")]["rejected"] == 1
    assert steps[("refine", "repair")]["rows_out"] == 2
    reasons = {(r["filter"], r["reason"]): r["count"] for r in report["reasons"]}
    assert reasons[("consistency", "no_majority")] == 3
    refined = run_dir.read("refine/rejected")
    assert refined.filter(pl.col("recovered_by").is_not_null()).height == 2
    funnel_json = json.loads((tmp_path / "run" / "dedup.state" / "funnel.json").read_text())
    assert funnel_json["summary"] == summary
    # a second run changes nothing and asks the teacher nothing
    asked = len(teacher.requests)
    again = Runner(config, STAGES, show_progress=False).run()
    assert [s.status for s in again.stages] == ["skipped"] * 4 and len(teacher.requests) == asked


def test_judge_stage_scores_freeform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def scores(request: TeacherRequest) -> dict[str, Any]:
        good = "MFA" in request.instruction
        value = 5 if good else 2
        return {"accuracy": value, "completeness": value, "format": 4, "actionability": value, "rationale": "ok"}

    teacher = FakeTeacherRepairer(scores, cost_usd=0.001)
    monkeypatch.setattr("curate.services.teacher.factory.open_teacher", lambda *a, **k: teacher)
    config = parse_config({
        "run_dir": str(tmp_path / "run"),
        "task": {"type": "freeform", "name": "ff", "instruction": "Write a task and response."},
        "teacher": {"backend": "replay", "samples": 1},
        "filter": {"judge": {"enabled": True}},
        "refine": {"rounds": 0},
    }, base_dir=tmp_path)
    run_dir = RunDir(tmp_path / "run")
    chunks = [Chunk(chunk_id=c, doc_id=f"doc-{c}", source_path="p.md", text=t, start=0, end=len(t), n_tokens=20)
              for c, t in CHUNKS.items()]
    run_dir.commit_stage("redact", {"chunks": records_frame(Chunk, chunks)})
    run_dir.commit_stage("generate", {"samples": samples_frame([
        sample("c1", 0, {"instruction": "Explain MFA here", "response": "Administrators need MFA."}, task_type="freeform"),
        sample("c2", 0, {"instruction": "Explain reporting", "response": "Report within a day."}, task_type="freeform"),
    ])})
    Runner(config, STAGES, show_progress=False).run()
    final = run_dir.read("dedup/examples")
    assert final["chunk_id"].to_list() == ["c1"]
    judge_report = run_dir.load_manifest()["stages"]["judge"]["report"]["judge"]
    assert judge_report == {"judged": 2, "passed": 1, "mean_score": pytest.approx((4.75 + 2.5) / 2), "cost_usd": 0.002}
    rejected = run_dir.read("judge/rejected")
    assert rejected["reason"].to_list() == ["judge_below_threshold"]
    summary = run_dir.load_manifest()["stages"]["dedup"]["report"]["summary"]
    assert summary["cost_judge_usd"] == pytest.approx(0.002)


@pytest.mark.parametrize("partitions", [2, 5])
def test_filter_stage_output_does_not_depend_on_sharding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         partitions: int) -> None:
    monkeypatch.setattr("curate.services.teacher.factory.open_teacher", lambda *a, **k: FakeTeacherRepairer(grounded_answer))
    outputs = {}
    for shards in (1, partitions):
        run = tmp_path / f"run{shards}"
        config = parse_config({
            "run_dir": str(run),
            "task": {"type": "classification", "name": "topic", "instruction": "Which policy area?", "labels": list(LABELS)},
            "teacher": {"backend": "replay", "samples": 3},
            "executor": {"workers": 1, "partitions": shards},
        }, base_dir=tmp_path)
        write_inputs(run)
        Runner(config, STAGES, show_progress=False).run()
        outputs[shards] = {name: RunDir(run).read(name) for name in
                           ("filter/examples", "filter/rejected", "dedup/examples", "dedup/rejected")}
    for name, frame in outputs[1].items():
        assert frame.equals(outputs[partitions][name]), name


def test_refine_stops_cleanly_when_the_budget_is_reached() -> None:
    env = make_env()
    first = run_filters(ungrounded_samples(), env)
    rejected = records_frame(Rejection, first.funnel.rejections)

    class FakeTeacherOutOfBudget(FakeTeacherRepairer):
        """Stands in for a teacher whose budget is spent: every answer is a budget refusal."""

        def _answer(self, request: TeacherRequest) -> Any:
            answer = super()._answer(request)
            answer.output, answer.raw_json, answer.error_kind = None, None, "budget"
            answer.error = "teacher budget reached"
            return answer

    outcome = refine(rejected, pl.DataFrame({"chunk_id": ["c1"]}), {}, env,
                     FakeTeacherOutOfBudget(grounded_answer), rounds=3)
    assert outcome.stopped == "teacher budget reached"
    assert outcome.samples == [] and outcome.examples == [] and outcome.attempted_chunks == set()


def test_refine_sends_nothing_more_after_a_fatal_stop(tmp_path: Path) -> None:
    """The real teacher client against MockTeacherServer (a local OpenAI-compatible server,
    not a model) that rejects the key: one request, then no repair is sent, over 3 rounds."""
    from curate.services.teacher.factory import open_teacher
    from tests.servers.mock_teacher import MockTeacherServer

    env = make_env()
    rejected = records_frame(Rejection, run_filters(ungrounded_samples(), env).funnel.rejections)
    with MockTeacherServer(api_key="right-key") as server:
        config = parse_config({
            "run_dir": str(tmp_path / "run"),
            "task": {"type": "classification", "instruction": "Which policy area?", "labels": LABELS},
            "teacher": {"backend": "openai", "model": "mock-teacher", "base_url": server.openai_base_url,
                        "api_key_env": "MOCK_TEACHER_KEY_NOT_SET", "prices": {"mock-teacher": {"input": 1, "output": 1}}},
        }, base_dir=tmp_path)
        with open_teacher(config, str(config.run_path), purpose="refine") as teacher:
            outcome = refine(rejected, pl.DataFrame({"chunk_id": ["c1"]}), {}, env, teacher, rounds=3)
            assert teacher.fatal is not None and teacher.fatal.cause == "auth"
        assert server.received == 1
    assert outcome.stopped is not None and outcome.samples == [] and outcome.examples == []
