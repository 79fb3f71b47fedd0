"""Sampling, resolution of several reviewers, and the review stage's merge: no server needed."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from curate.config import PipelineConfig
from curate.review.config import ReviewConfig
from curate.review.merge import apply_review, rewrite_messages
from curate.review.stages import STAGES, review_stage, summarize
from curate.review.sync import (
    ANNOTATION_EXTRA,
    _schema,
    agreement,
    audit_draw,
    resolve,
    select_for_review,
)
from curate.run.stage import StageContext


def _ann(example_id: str, decision: str, reviewer: str, at: str, corrected: str | None = None, aid: int = 0) -> dict:
    return {
        "example_id": example_id, "decision": decision, "corrected_output_json": corrected, "note": None,
        "reviewer": reviewer, "reviewed_at": at, "annotation_id": aid, "task_id": 1, "valid": True,
        "error": None, "evidence_json": None, "grounding_score": None,
    }


def _annotations(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_schema(ANNOTATION_EXTRA), orient="row")


def test_selection_takes_every_borderline_and_a_seeded_audit_share(examples_frame: pl.DataFrame) -> None:
    review = ReviewConfig(audit_fraction=0.5)
    selected = select_for_review(examples_frame, review)
    borderline = examples_frame.filter((pl.col("agreement") < 1.0) | (pl.col("grounding_score") < 0.95))
    chosen = dict(selected.iter_rows())
    assert borderline.height > 0
    assert all(chosen[eid].startswith("borderline") for eid in borderline["example_id"])
    audits = {eid for eid, reason in chosen.items() if reason.startswith("audit")}
    expected = {eid for eid in examples_frame["example_id"] if eid not in set(borderline["example_id"]) and audit_draw(review.seed, eid) < 0.5}
    assert audits == expected
    # deterministic: row order and repetition change nothing; another seed changes the draw
    again = select_for_review(examples_frame.reverse(), review)
    assert dict(again.iter_rows()) == chosen
    assert select_for_review(examples_frame, ReviewConfig(audit_fraction=0.0)).height == borderline.height
    assert select_for_review(examples_frame, ReviewConfig(audit_fraction=1.0)).height == examples_frame.height


def test_audit_draw_is_uniform_enough() -> None:
    draws = [audit_draw("seed", f"example-{n}") for n in range(4000)]
    share = sum(d < 0.1 for d in draws) / len(draws)
    assert 0.085 < share < 0.115


def test_resolution_rules_and_agreement() -> None:
    fix = json.dumps({"label": "b", "quote": "q"})
    rows = [
        _ann("e1", "accept", "ann@x", "2026-01-01T10:00:00Z", aid=1),
        _ann("e1", "accept", "bob@x", "2026-01-01T11:00:00Z", aid=2),
        _ann("e1", "reject", "cy@x", "2026-01-01T12:00:00Z", aid=3),
        _ann("e2", "correct", "ann@x", "2026-01-01T10:00:00Z", fix, aid=4),
        _ann("e3", "accept", "ann@x", "2026-01-01T10:00:00Z", aid=5),
        _ann("e3", "reject", "bob@x", "2026-01-01T09:00:00Z", aid=6),
    ]
    frame = _annotations(rows)
    majority = {r["example_id"]: r for r in resolve(frame, "majority").iter_rows(named=True)}
    assert majority["e1"]["decision"] == "accept" and majority["e1"]["reviewer"] == "ann@x,bob@x"
    assert majority["e1"]["n_annotations"] == 3 and abs(majority["e1"]["agreement"] - 1 / 3) < 1e-9
    assert majority["e2"]["decision"] == "correct" and majority["e2"]["corrected_output_json"] == fix
    assert majority["e2"]["agreement"] is None
    assert majority["e3"]["decision"] == "reject"  # a tie goes to the stricter decision
    any_reject = {r["example_id"]: r["decision"] for r in resolve(frame, "any_reject").iter_rows(named=True)}
    assert any_reject == {"e1": "reject", "e2": "correct", "e3": "reject"}
    recent = {r["example_id"]: r["decision"] for r in resolve(frame, "most_recent").iter_rows(named=True)}
    assert recent == {"e1": "reject", "e2": "correct", "e3": "accept"}
    assert agreement([rows[3], {**rows[3], "corrected_output_json": "{}"}]) == 0.0


def test_rewrite_messages_json_and_freeform() -> None:
    old, new = {"label": "a", "quote": "x"}, {"label": "b", "quote": "x"}
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": json.dumps(old)}]
    assert json.loads(rewrite_messages(chat, json.dumps(old), json.dumps(new))[2]["content"]) == new
    free_old = {"instruction": "Summarise AC-2.", "response": "It is about accounts."}
    free_new = {"instruction": "Summarise AC-2.", "response": "It governs account management."}
    free_chat = [{"role": "user", "content": "Summarise AC-2."}, {"role": "assistant", "content": "It is about accounts."}]
    out = rewrite_messages(free_chat, json.dumps(free_old), json.dumps(free_new))
    assert out == [{"role": "user", "content": "Summarise AC-2."}, {"role": "assistant", "content": "It governs account management."}]


def _decisions(rows: list[dict]) -> pl.DataFrame:
    return resolve(_annotations(rows), "majority")


def test_no_decisions_passes_through(examples_frame: pl.DataFrame) -> None:
    kept, rejected, report = apply_review(examples_frame, None, None, ReviewConfig())
    assert kept.equals(examples_frame) and rejected.height == 0 and report["passthrough"]


def test_apply_review_accept_correct_reject_and_policies(examples_frame: pl.DataFrame) -> None:
    review = ReviewConfig(audit_fraction=0.5, pending="drop", unreviewed="audited", audit_max_error_rate=0.0)
    pushed = select_for_review(examples_frame, review)
    reasons = dict(pushed.iter_rows())
    borderline = [eid for eid, r in reasons.items() if r.startswith("borderline")]
    audits = [eid for eid, r in reasons.items() if r.startswith("audit")]
    row = {r["example_id"]: r for r in examples_frame.iter_rows(named=True)}
    target = borderline[1]
    old = json.loads(row[target]["output_json"])
    new = json.dumps({"label": "incident-response", "quote": old["quote"]})
    anns = [
        _ann(borderline[0], "reject", "ann@x", "2026-01-01T10:00:00Z"),
        _ann(target, "correct", "ann@x", "2026-01-01T10:00:00Z", new),
        *[_ann(eid, "accept", "bob@x", "2026-01-01T11:00:00Z") for eid in audits],
    ]
    kept, rejected, report = apply_review(examples_frame, _decisions(anns), pushed, review)
    by_id = {r["example_id"]: r for r in kept.iter_rows(named=True)}
    assert borderline[0] not in by_id
    assert rejected.filter(pl.col("item_id") == borderline[0])["reason"].to_list() == ["rejected_by_reviewer"]
    fixed = by_id[target]
    assert fixed["review_status"] == "corrected" and fixed["label"] == "incident-response"
    assert json.loads(fixed["messages"][-1]["content"])["label"] == "incident-response"
    assert (fixed["reviewer"], fixed["reviewed_at"]) == ("ann@x", "2026-01-01T10:00:00Z")
    assert all(by_id[eid]["review_status"] == "accepted" for eid in audits)
    pending = set(borderline[2:])
    assert pending and not pending & by_id.keys()
    assert set(rejected.filter(pl.col("reason") == "review_pending")["item_id"]) == pending
    unreviewed = set(examples_frame["example_id"]) - set(reasons)
    assert unreviewed <= by_id.keys()  # audit passed: the auto-accepts stay
    assert all(by_id[eid]["review_status"] == "auto" for eid in unreviewed)
    assert report["audit_passed"] and report["audit_error_rate"] == 0.0
    assert kept.height + rejected.height == examples_frame.height

    # one audited example corrected: the audit fails and the unreviewed auto-accepts leave
    failing = [*anns[:-1], _ann(audits[-1], "reject", "bob@x", "2026-01-01T12:00:00Z")]
    kept2, rejected2, report2 = apply_review(examples_frame, _decisions(failing), pushed, review)
    assert not report2["audit_passed"]
    assert set(rejected2.filter(pl.col("reason") == "audit_failed")["item_id"]) == unreviewed
    assert not unreviewed & set(kept2["example_id"])


def test_stage_reads_decisions_from_the_run(review_run: PipelineConfig, examples_frame: pl.DataFrame) -> None:
    (stage,) = STAGES
    assert stage.inputs == ("dedup/examples",) and stage.external is not None and not stage.always_run
    no_decisions = stage.external(review_run)
    ctx = StageContext(config=review_run, run_dir=str(review_run.run_path), stage="review", show_progress=False)
    out = review_stage(examples_frame, ctx)
    assert out["examples"].height == examples_frame.height  # no decisions: pass through
    victim = examples_frame["example_id"][0]
    state = Path(review_run.run_path) / "review.state"
    state.mkdir(exist_ok=True)
    _decisions([_ann(victim, "reject", "ann@x", "2026-01-01T10:00:00Z")]).write_parquet(state / "decisions.parquet")
    assert stage.external(review_run) != no_decisions  # new decisions re-run the stage
    out = review_stage(examples_frame, ctx)
    assert victim not in set(out["examples"]["example_id"])
    summary = summarize(out)
    assert summary["removed"]["rejected_by_reviewer"] == 1
    assert sum(summary["review_status"].values()) == out["examples"].height
