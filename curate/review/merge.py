"""Apply reviewers' decisions (and the config's policy where there are none) to examples."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from curate.review.config import ReviewConfig
from curate.review.sync import is_audit, select_for_review
from schemas.records import Example, Rejection, frame_of, polars_schema


def rewrite_messages(messages: list[dict[str, Any]], old_json: str, new_json: str) -> list[dict[str, Any]]:
    """The chat with the corrected output in place of the candidate.

    An assistant message that holds the output as JSON gets `new_json` (the output model's
    own serialisation, as `curate.filters` renders it); any
    other message has each changed string value of the output replaced verbatim (freeform
    chats put the instruction in the user turn and the response in the assistant turn).
    """
    old, new = json.loads(old_json), json.loads(new_json)
    replacements = _changed_strings(old, new)
    out = []
    for message in messages:
        content = message["content"]
        if message["role"] == "assistant":
            try:
                parsed = json.loads(content)
            except ValueError:
                parsed = None
            if parsed == old:
                out.append({"role": message["role"], "content": new_json})
                continue
        if message["role"] != "system":
            for before, after in replacements:
                content = content.replace(before, after)
        out.append({"role": message["role"], "content": content})
    return out


def _changed_strings(old: Any, new: Any) -> list[tuple[str, str]]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [pair for key in old if key in new for pair in _changed_strings(old[key], new[key])]
    if isinstance(old, str) and isinstance(new, str) and old != new and old:
        return [(old, new)]
    return []


def apply_review(
    examples: pl.DataFrame,
    decisions: pl.DataFrame | None,
    pushed: pl.DataFrame | None,
    review: ReviewConfig,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """(examples kept, rejections, report). No decisions at all: every example passes through."""
    if decisions is None:
        return examples, frame_of(Rejection, []), {"decisions": 0, "passthrough": True}
    if pushed is None:
        pushed = select_for_review(examples, review).with_columns(pl.lit(None, pl.Int64).alias("task_id"))
    reason_of = dict(pushed.select("example_id", "reason").iter_rows())
    decided = {row["example_id"]: row for row in decisions.iter_rows(named=True)}

    audit_ids = [eid for eid, reason in reason_of.items() if is_audit(reason)]
    audited = [decided[eid]["decision"] for eid in audit_ids if eid in decided]
    errors = sum(1 for d in audited if d != "accept")
    error_rate = errors / len(audited) if audited else None
    audit_passed = error_rate is None or error_rate <= review.audit_max_error_rate

    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    counts = {"accepted": 0, "corrected": 0, "rejected": 0, "pending_kept": 0, "pending_dropped": 0,
              "unreviewed_kept": 0, "unreviewed_dropped": 0}
    for row in examples.iter_rows(named=True):
        decision = decided.get(row["example_id"])
        if decision is not None:
            row.update(reviewer=decision["reviewer"], reviewed_at=decision["reviewed_at"])
            if decision["decision"] == "reject":
                counts["rejected"] += 1
                rejected.append(_rejection(row, "rejected_by_reviewer", decision["note"] or ""))
                continue
            if decision["decision"] == "correct":
                counts["corrected"] += 1
                _apply_correction(row, decision)
            else:
                counts["accepted"] += 1
                row["review_status"] = "accepted"
            kept.append(row)
        elif row["example_id"] in reason_of:
            if review.pending == "keep":
                counts["pending_kept"] += 1
                kept.append(row)
            else:
                counts["pending_dropped"] += 1
                rejected.append(_rejection(row, "review_pending", reason_of[row["example_id"]]))
        else:
            keep = review.unreviewed == "keep" or (review.unreviewed == "audited" and audit_passed)
            if keep:
                counts["unreviewed_kept"] += 1
                kept.append(row)
            else:
                counts["unreviewed_dropped"] += 1
                why = "not_reviewed" if review.unreviewed == "drop" else "audit_failed"
                detail = "" if error_rate is None else f"audit error rate {error_rate:.2f} > {review.audit_max_error_rate:.2f}"
                rejected.append(_rejection(row, why, detail))
    report: dict[str, Any] = {
        "decisions": decisions.height,
        "passthrough": False,
        **counts,
        "audit_reviewed": len(audited),
        "audit_error_rate": None if error_rate is None else round(error_rate, 4),
        "audit_passed": audit_passed,
    }
    out = pl.DataFrame(kept, schema=polars_schema(Example), orient="row") if kept else frame_of(Example, [])
    return out, frame_of(Rejection, rejected), report


def _apply_correction(row: dict[str, Any], decision: dict[str, Any]) -> None:
    new_json = decision["corrected_output_json"]
    row["messages"] = rewrite_messages(row["messages"], row["output_json"], new_json)
    row["output_json"] = new_json
    parsed = json.loads(new_json)
    if isinstance(parsed, dict) and isinstance(parsed.get("label"), str):
        row["label"] = parsed["label"]
    if decision.get("evidence_json"):
        row["evidence"] = json.loads(decision["evidence_json"])
    if decision.get("grounding_score") is not None:
        row["grounding_score"] = decision["grounding_score"]
    row["review_status"] = "corrected"


def _rejection(row: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
    return {
        "item_id": row["example_id"], "chunk_id": row["chunk_id"], "filter": "review", "reason": reason,
        "detail": detail, "repairable": False, "output_json": row["output_json"],
        "refine_round": row["refine_round"],
    }
