"""Apply reviewers' decisions (and the config's policy where there are none) to examples.

A correction replaces the example's answer (its output, label, evidence and the chat's last
assistant turn) and nothing else: the system prompt, the user turn and so the source passage
stay byte for byte as the pipeline wrote them. The counts (accepted, corrected, rejected,
pending, never sent) and the audit are computed here once; pull, the review stage's report,
`curate status`, report.md and the dataset card all show these figures.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from curate.review.config import ReviewConfig
from curate.review.selection import is_audit, select_for_review
from schemas.records import Example, Rejection, frame_of, polars_schema

COUNTS = ("accepted", "corrected", "rejected", "pending", "never_sent")


def rewrite_messages(messages: list[dict[str, Any]], new_json: str) -> list[dict[str, Any]]:
    """The chat with `new_json` as the answer: the last assistant turn is replaced, every
    other turn is returned as it was (never searched and replaced: a quote or a label word
    can also occur in the passage)."""
    answers = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    if not answers:
        raise ValueError("the chat has no assistant turn to correct")
    return [
        {**message, "content": new_json} if index == answers[-1] else message
        for index, message in enumerate(messages)
    ]


def audit_gate(reason_of: dict[str, str], decided: dict[str, dict[str, Any]], review: ReviewConfig) -> dict[str, Any]:
    """Whether the audit of never-sent examples passed, failed or cannot decide yet.

    It decides only once `audit_min_reviewed` audit examples have a decision: before that,
    one early reject would drop every never-sent example, and one accept would pass them all."""
    audit_ids = [eid for eid, reason in reason_of.items() if is_audit(reason)]
    audited = [decided[eid]["decision"] for eid in audit_ids if eid in decided]
    errors = sum(1 for d in audited if d != "accept")
    error_rate = errors / len(audited) if audited else None
    needed = review.audit_min_reviewed
    if len(audited) < needed:
        status = "undecided"
        message = f"{len(audited)} of the {needed} reviewed audit examples it needs (review.audit_min_reviewed)"
        if len(audit_ids) < needed:
            message += (
                f"; only {len(audit_ids)} were sent: raise review.audit_fraction and push again, "
                "or lower review.audit_min_reviewed"
            )
        message += "; never-sent examples are kept until it decides"
    else:
        assert error_rate is not None
        status = "passed" if error_rate <= review.audit_max_error_rate else "failed"
        message = (
            f"{errors} of {len(audited)} reviewed audit examples corrected or rejected: error rate "
            f"{error_rate:.2f} {'<=' if status == 'passed' else '>'} {review.audit_max_error_rate:.2f}"
        )
    return {
        "status": status, "sent": len(audit_ids), "reviewed": len(audited), "needed": needed,
        "errors": errors, "error_rate": None if error_rate is None else round(error_rate, 4),
        "max_error_rate": review.audit_max_error_rate, "message": message,
    }


def apply_review(
    examples: pl.DataFrame,
    decisions: pl.DataFrame | None,
    pushed: pl.DataFrame | None,
    review: ReviewConfig,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """(examples kept, rejections, report).

    Examples sent for review and not decided get `review_status` "pending"; never-sent ones
    stay "auto". No decisions at all (nothing pulled yet): every example passes through,
    with those statuses, and the report counts them as such."""
    if pushed is None:
        pushed = select_for_review(examples, review) if decisions is not None else None
    reason_of = dict(pushed.select("example_id", "reason").iter_rows()) if pushed is not None else {}
    decided = {row["example_id"]: row for row in decisions.iter_rows(named=True)} if decisions is not None else {}
    audit = audit_gate(reason_of, decided, review)
    passthrough = decisions is None

    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    counts = dict.fromkeys(COUNTS, 0)
    left_out = {"pending": 0, "never_sent": 0}
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
            counts["pending"] += 1
            row["review_status"] = "pending"
            if passthrough or review.pending == "keep":
                kept.append(row)
            else:
                left_out["pending"] += 1
                rejected.append(_rejection(row, "review_pending", reason_of[row["example_id"]]))
        else:
            counts["never_sent"] += 1
            keep = passthrough or review.unreviewed == "keep" or (
                review.unreviewed == "audited" and audit["status"] != "failed"
            )
            if keep:
                kept.append(row)
            else:
                left_out["never_sent"] += 1
                why = "not_reviewed" if review.unreviewed == "drop" else "audit_failed"
                rejected.append(_rejection(row, why, "" if why == "not_reviewed" else audit["message"]))
    report: dict[str, Any] = {
        "decisions": 0 if decisions is None else decisions.height,
        "passthrough": passthrough,
        "counts": counts,
        "left_out": {"rejected": counts["rejected"], **left_out},
        "audit": audit,
    }
    out = pl.DataFrame(kept, schema=polars_schema(Example), orient="row") if kept else frame_of(Example, [])
    return out, frame_of(Rejection, rejected), report


def _apply_correction(row: dict[str, Any], decision: dict[str, Any]) -> None:
    new_json = decision["corrected_output_json"]
    row["messages"] = rewrite_messages(row["messages"], new_json)
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
