"""Sampling, resolution of several reviewers, and the review stage's merge: no server needed."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from curate.config import PipelineConfig
from curate.review.config import ReviewConfig
from curate.review.labeling import check_correction, read_annotation, task_payload
from curate.review.merge import apply_review, rewrite_messages
from curate.review.stages import STAGES, review_stage, summarize
from curate.review.sync import (
    agreement,
    audit_draw,
    resolve,
    select_for_review,
)
from curate.run.stage import StageContext
from schemas.artifacts import REVIEW_ANNOTATIONS


def _ann(example_id: str, decision: str, reviewer: str, at: str, corrected: str | None = None, aid: int = 0) -> dict:
    return {
        "example_id": example_id, "decision": decision, "corrected_output_json": corrected, "note": None,
        "reviewer": reviewer, "reviewed_at": at, "annotation_id": aid, "task_id": 1, "valid": True,
        "error": None, "evidence_json": None, "grounding_score": None,
    }


def _annotations(rows: list[dict]) -> pl.DataFrame:
    return REVIEW_ANNOTATIONS.frame(rows)


def test_selection_takes_every_borderline_and_a_seeded_audit_share(examples_frame: pl.DataFrame) -> None:
    review = ReviewConfig(audit_fraction=0.5)
    selected = select_for_review(examples_frame, review)
    borderline = examples_frame.filter((pl.col("agreement") < 1.0) | (pl.col("grounding_score") < 0.95))
    chosen = dict(selected.select("example_id", "reason").iter_rows())
    assert borderline.height > 0
    assert all(chosen[eid].startswith("borderline") for eid in borderline["example_id"])
    audits = {eid for eid, reason in chosen.items() if reason.startswith("audit")}
    expected = {eid for eid in examples_frame["example_id"] if eid not in set(borderline["example_id"]) and audit_draw(review.seed, eid) < 0.5}
    assert audits == expected
    # deterministic: row order and repetition change nothing; another seed changes the draw
    again = select_for_review(examples_frame.reverse(), review)
    assert again.equals(selected)
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


def test_selection_is_ordered_most_doubtful_first(examples_frame: pl.DataFrame) -> None:
    selected = select_for_review(examples_frame, ReviewConfig(audit_fraction=0.5))
    metrics = {r["example_id"]: r for r in examples_frame.iter_rows(named=True)}
    kinds = selected["kind"].to_list()
    assert kinds == sorted(kinds, key=lambda k: k != "borderline")  # borderline before audit
    for kind in ("borderline", "audit"):
        ids = selected.filter(pl.col("kind") == kind)["example_id"].to_list()
        keys = [(metrics[e]["agreement"], metrics[e]["grounding_score"]) for e in ids]
        assert keys == sorted(keys)  # lowest agreement first, then lowest grounding
    assert selected["doubt"].is_sorted(descending=True)


def test_a_doubt_score_on_the_examples_orders_within_each_kind(examples_frame: pl.DataFrame) -> None:
    """The hook for the doubt score of issue 20: a `doubt` column replaces agreement/grounding."""
    scored = examples_frame.with_columns(pl.col("example_id").rank("ordinal").truediv(examples_frame.height).alias("doubt"))
    selected = select_for_review(scored, ReviewConfig(audit_fraction=0.5))
    for kind in ("borderline", "audit"):
        ids = selected.filter(pl.col("kind") == kind)["example_id"].to_list()
        assert ids == sorted(ids, reverse=True)  # highest doubt (latest id here) first
    assert selected["kind"].to_list() == sorted(selected["kind"].to_list(), key=lambda k: k != "borderline")


def test_rewrite_messages_replaces_only_the_answer() -> None:
    old, new = {"label": "a", "quote": "x"}, {"label": "b", "quote": "x"}
    chat = [{"role": "system", "content": "s a"}, {"role": "user", "content": "u x a"}, {"role": "assistant", "content": json.dumps(old)}]
    out = rewrite_messages(chat, json.dumps(new))
    assert out[:2] == chat[:2] and json.loads(out[2]["content"]) == new
    free_new = {"instruction": "Summarise AC-2.", "response": "It governs account management."}
    free_chat = [{"role": "user", "content": "Summarise AC-2. It is about accounts."}, {"role": "assistant", "content": "{}"}]
    assert rewrite_messages(free_chat, json.dumps(free_new)) == [free_chat[0], {"role": "assistant", "content": json.dumps(free_new)}]


def _decisions(rows: list[dict]) -> pl.DataFrame:
    return resolve(_annotations(rows), "majority")


def test_no_decisions_passes_through(examples_frame: pl.DataFrame) -> None:
    kept, rejected, report = apply_review(examples_frame, None, None, ReviewConfig())
    assert kept.equals(examples_frame) and rejected.height == 0 and report["passthrough"]


def test_apply_review_accept_correct_reject_and_policies(examples_frame: pl.DataFrame) -> None:
    review = ReviewConfig(audit_fraction=0.5, pending="drop", unreviewed="audited", audit_max_error_rate=0.0)
    pushed = select_for_review(examples_frame, review)
    reasons = dict(pushed.select("example_id", "reason").iter_rows())
    borderline = [eid for eid, r in reasons.items() if r.startswith("borderline")]
    audits = [eid for eid, r in reasons.items() if r.startswith("audit")]
    review = review.model_copy(update={"audit_min_reviewed": len(audits)})
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
    assert report["audit"]["status"] == "passed" and report["audit"]["error_rate"] == 0.0
    assert report["counts"] == {"accepted": len(audits), "corrected": 1, "rejected": 1, "pending": len(pending),
                                "never_sent": len(unreviewed)}
    assert report["left_out"] == {"rejected": 1, "pending": len(pending), "never_sent": 0}
    assert kept.height + rejected.height == examples_frame.height

    # one audited example corrected: the audit fails and the unreviewed auto-accepts leave
    failing = [*anns[:-1], _ann(audits[-1], "reject", "bob@x", "2026-01-01T12:00:00Z")]
    kept2, rejected2, report2 = apply_review(examples_frame, _decisions(failing), pushed, review)
    assert report2["audit"]["status"] == "failed" and report2["left_out"]["never_sent"] == len(unreviewed)
    assert set(rejected2.filter(pl.col("reason") == "audit_failed")["item_id"]) == unreviewed
    assert not unreviewed & set(kept2["example_id"])


def test_stage_reads_decisions_from_the_run(review_run: PipelineConfig, examples_frame: pl.DataFrame) -> None:
    (stage,) = STAGES
    assert stage.input_paths == ("dedup/examples",) and stage.external is not None and not stage.always_run
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
    summary = summarize({name: frame.lazy() for name, frame in out.items()})
    assert summary["counts"]["rejected"] == 1 and summary["left out"]["rejected"] == 1
    assert sum(summary["counts"].values()) == examples_frame.height
    assert summary["audit"]["status"] == "undecided"


def test_the_audit_waits_for_its_minimum_of_reviewed_examples(examples_frame: pl.DataFrame) -> None:
    review = ReviewConfig(audit_fraction=0.5, unreviewed="audited", audit_max_error_rate=0.1, audit_min_reviewed=2)
    pushed = select_for_review(examples_frame, review)
    audits = pushed.filter(pl.col("kind") == "audit")["example_id"].to_list()
    never_sent = set(examples_frame["example_id"]) - set(pushed["example_id"])
    assert len(audits) >= 2 and never_sent
    one_bad = _decisions([_ann(audits[0], "reject", "bob@x", "2026-01-01T10:00:00Z")])
    kept, _, report = apply_review(examples_frame, one_bad, pushed, review)
    assert report["audit"]["status"] == "undecided" and report["audit"]["reviewed"] == 1
    assert report["audit"]["message"].startswith("1 of the 2 reviewed audit examples it needs")
    assert never_sent <= set(kept["example_id"])  # one early reject does not drop them all
    one_good = _decisions([_ann(audits[0], "accept", "bob@x", "2026-01-01T10:00:00Z")])
    assert apply_review(examples_frame, one_good, pushed, review)[2]["audit"]["status"] == "undecided"
    corrected = examples_frame.filter(pl.col("example_id") == audits[1])["output_json"][0]
    two = _decisions([_ann(audits[0], "accept", "bob@x", "2026-01-01T10:00:00Z"),
                      _ann(audits[1], "correct", "bob@x", "2026-01-01T10:00:00Z", corrected)])
    _, rejected3, report3 = apply_review(examples_frame, two, pushed, review)
    assert report3["audit"]["status"] == "failed" and "1 of 2 reviewed audit examples" in report3["audit"]["message"]
    assert set(rejected3.filter(pl.col("reason") == "audit_failed")["item_id"]) == never_sent
    short = review.model_copy(update={"audit_min_reviewed": len(audits) + 5})
    assert "raise review.audit_fraction" in apply_review(examples_frame, one_good, pushed, short)[2]["audit"]["message"]


def test_pending_examples_are_marked_and_counted_even_before_a_pull(examples_frame: pl.DataFrame) -> None:
    review = ReviewConfig(audit_fraction=0.5)
    pushed = select_for_review(examples_frame, review)
    kept, rejected, report = apply_review(examples_frame, None, pushed, review)
    assert report["passthrough"] and kept.height == examples_frame.height and rejected.height == 0
    statuses = dict(kept.select("example_id", "review_status").iter_rows())
    assert {statuses[eid] for eid in pushed["example_id"]} == {"pending"}
    assert report["counts"]["pending"] == pushed.height
    assert report["counts"]["never_sent"] == examples_frame.height - pushed.height


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_correction_leaves_the_user_turn_and_the_chunk_byte_identical(
    review_run: PipelineConfig, examples_frame: pl.DataFrame, data: st.DataObject
) -> None:
    """Property: whatever a reviewer does under "correct" (another label, the quote region
    moved anywhere, or both), the merge changes the answer only."""
    chunks = pl.read_parquet(review_run.run_path / "redact" / "chunks.parquet")
    chunk_text = dict(chunks.select("chunk_id", "text").iter_rows())
    row = data.draw(st.sampled_from(list(examples_frame.iter_rows(named=True))))
    chunk = chunk_text[row["chunk_id"]]
    payload = task_payload(
        review_run.task, example_id=row["example_id"], output_json=row["output_json"], chunk=chunk,
        source="s", reason="r", evidence=list(row["evidence"]),
    )
    result = [json.loads(json.dumps(item)) for item in payload["predictions"][0]["result"]]
    result.append({"from_name": "decision", "type": "choices", "value": {"choices": ["correct"]}})
    label = data.draw(st.one_of(st.none(), st.sampled_from(review_run.task.labels)))
    if label:
        result.append({"from_name": "fix_label", "type": "choices", "value": {"choices": [label]}})
    if data.draw(st.booleans()):
        start = data.draw(st.integers(0, len(chunk) - 1))
        end = data.draw(st.integers(start + 1, min(len(chunk), start + 200)))
        result[0]["value"].update(start=start, end=end, text=chunk[start:end])
    read = read_annotation(review_run.task, row["output_json"], result, chunk=chunk, regions=payload["data"]["regions"])
    checked = check_correction(review_run.task, read.corrected or {}, chunk, 0.9, read.spans)
    assume(read.changed and checked.error is None)
    decision = _ann(row["example_id"], "correct", "ann@x", "2026-01-01T10:00:00Z", checked.output_json)
    decision["evidence_json"] = json.dumps([e.model_dump() for e in checked.evidence])
    kept, _, _ = apply_review(examples_frame, _decisions([decision]), None, ReviewConfig())
    after = kept.filter(pl.col("example_id") == row["example_id"]).row(0, named=True)
    assert after["review_status"] == "corrected"
    assert [m for m in after["messages"] if m["role"] != "assistant"] == [m for m in row["messages"] if m["role"] != "assistant"]
    user = next(m["content"] for m in after["messages"] if m["role"] == "user")
    assert user.encode() == next(m["content"] for m in row["messages"] if m["role"] == "user").encode()
    assert user.endswith(chunk) and chunk_text[row["chunk_id"]] == chunk
    assert json.loads(after["messages"][-1]["content"]) == json.loads(checked.output_json or "")
    for item in after["evidence"]:  # the new evidence points into the unchanged chunk
        assert 0 <= item["start"] < item["end"] <= len(chunk)
