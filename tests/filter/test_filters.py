"""Each filter on hand-made cases: reason codes, voting, grounding offsets, audit."""

from __future__ import annotations

import json

from curate.filter.base import Funnel, Item
from curate.filter.checks import AuditFilter, FilterEnv, FilterOutcome, GroundingFilter, run_filters
from curate.filter.funnel import label_warning
from curate.services.similarity.grounding import NormalisedText, locate
from schemas.tasks import FieldSpec, TaskConfig

from .conftest import CHUNKS, make_env, sample, samples_frame

QUOTE_C1 = "requires multi-factor authentication"


def reasons(outcome: FilterOutcome) -> list[tuple[str, str]]:
    return sorted((r.filter, r.reason) for r in outcome.funnel.rejections)


def test_schema_filter_reason_codes(env: FilterEnv) -> None:
    rows = [
        sample("c1", 0, "{not json"),
        sample("c1", 1, {"label": "finance", "quote": QUOTE_C1}),
        sample("c1", 2, {"label": "access-control"}),
        sample("c2", 0, None, status="failed", error="HTTP 529"),
        sample("c2", 1, None, status="schema_error", error="no tool call"),
    ]
    outcome = run_filters(samples_frame(rows), env)
    assert outcome.examples == []
    assert reasons(outcome) == [
        ("schema", "invalid_json"), ("schema", "label_not_in_taxonomy"), ("schema", "missing_field"),
        ("schema", "schema_error"), ("schema", "teacher_failed"),
    ]
    assert all(r.repairable for r in outcome.funnel.rejections)


def test_classification_majority_vote_keeps_consensus_with_agreement(env: FilterEnv) -> None:
    rows = [
        sample("c1", 0, {"label": "access-control", "quote": QUOTE_C1}),
        sample("c1", 1, {"label": "access-control", "quote": "multi-factor authentication for every administrator"}),
        sample("c1", 2, {"label": "data-protection", "quote": QUOTE_C1}),
    ]
    outcome = run_filters(samples_frame(rows), env)
    (example,) = outcome.examples
    assert example.label == "access-control"
    assert abs(example.agreement - 2 / 3) < 1e-6
    assert sorted(example.sample_ids) == sorted([rows[0].sample_id, rows[1].sample_id])
    assert json.loads(example.output_json)["quote"] == QUOTE_C1  # lowest sample index of the majority
    assert reasons(outcome) == [("consistency", "minority_label")]
    assert abs(example.cost_usd - 0.02) < 1e-9
    roles = [m.role for m in example.messages]
    assert roles == ["system", "user", "assistant"]
    assert CHUNKS["c1"] in example.messages[1].content


def test_no_majority_rejects_all_samples_as_repairable(env: FilterEnv) -> None:
    rows = [sample("c1", i, {"label": label, "quote": QUOTE_C1}) for i, label in
            enumerate(["access-control", "incident-response", "data-protection"])]
    outcome = run_filters(samples_frame(rows), env)
    assert outcome.examples == []
    assert reasons(outcome) == [("consistency", "no_majority")] * 3
    assert all(r.repairable for r in outcome.funnel.rejections)


def test_votes_needed_are_capped_by_samples_requested() -> None:
    env = make_env(samples=1)
    outcome = run_filters(samples_frame([sample("c1", 0, {"label": "access-control", "quote": QUOTE_C1})]), env)
    assert len(outcome.examples) == 1


def extraction_task() -> TaskConfig:
    return TaskConfig(
        type="extraction", name="retention", instruction="Extract the retention facts.",
        fields=(FieldSpec(name="cipher", description="cipher", kind="identifier"),
                FieldSpec(name="days", description="retention days", kind="number")),
    )


def extraction(cipher: str, days: str, days_quote: str = "retained for 1,024 days") -> dict[str, object]:
    return {"cipher": {"value": cipher, "quote": "encrypted at rest with AES-256"},
            "days": {"value": days, "quote": days_quote}}


def test_extraction_fieldwise_agreement_after_normalisation() -> None:
    env = make_env(extraction_task())
    rows = [sample("c3", 0, extraction("AES-256", "1,024"), task_type="extraction"),
            sample("c3", 1, extraction("aes-256", "1024"), task_type="extraction"),
            sample("c3", 2, extraction("AES-128", "1024"), task_type="extraction")]
    outcome = run_filters(samples_frame(rows), env)
    (example,) = outcome.examples
    assert abs(example.agreement - (2 / 3 + 1) / 2) < 1e-6
    fields = {e.field: CHUNKS["c3"][e.start:e.end] for e in example.evidence}
    assert fields["days.value"] == "1,024"
    assert fields["cipher.value"] == "AES-256"


def test_extraction_exact_kinds_must_match_exactly() -> None:
    env = make_env(extraction_task(), samples=1)
    outcome = run_filters(samples_frame([sample("c3", 0, extraction("AES-256", "1025"), task_type="extraction")]), env)
    assert reasons(outcome) == [("grounding", "value_not_in_source")]
    # a number may not be found inside a longer number
    outcome = run_filters(samples_frame([sample("c3", 0, extraction("AES-256", "24"), task_type="extraction")]), env)
    assert reasons(outcome) == [("grounding", "value_not_in_source")]


def test_extraction_disagreement_is_repairable() -> None:
    env = make_env(extraction_task())
    rows = [sample("c3", i, extraction("AES-256", days), task_type="extraction") for i, days in enumerate(["1", "2", "3"])]
    outcome = run_filters(samples_frame(rows), env)
    assert reasons(outcome) == [("consistency", "field_disagreement")] * 3


def test_qa_answers_agree_by_similarity() -> None:
    task = TaskConfig(type="qa", name="qa", instruction="Ask and answer.")
    env = make_env(task)
    q = "How fast must incidents be reported?"
    quote = "reported to the response team within 24 hours"
    rows = [
        sample("c2", 0, {"question": q, "answer": "Within 24 hours of detection.", "quote": quote}, task_type="qa"),
        sample("c2", 1, {"question": q, "answer": "within 24 hours of detection", "quote": quote}, task_type="qa"),
        sample("c2", 2, {"question": q, "answer": "Annually by the auditor.", "quote": quote}, task_type="qa"),
    ]
    outcome = run_filters(samples_frame(rows), env)
    (example,) = outcome.examples
    assert abs(example.agreement - 2 / 3) < 1e-6
    assert reasons(outcome) == [("consistency", "minority_answer")]


def test_grounding_offsets_survive_normalisation() -> None:
    chunk = "Access  to the\npayroll system requires “multi-factor” authentication."
    haystack = NormalisedText.of(chunk)
    match, score = locate('requires "Multi-Factor" authentication', haystack, threshold=90)
    assert match is not None and match.exact and score == 100
    assert chunk[match.start:match.end] == "requires “multi-factor” authentication"
    fuzzy, _ = locate("payroll system require multi-factor", haystack, threshold=90)
    assert fuzzy is not None and not fuzzy.exact
    assert "payroll system require" in chunk[fuzzy.start:fuzzy.end]


def test_grounding_reason_codes(env: FilterEnv) -> None:
    grounding = GroundingFilter()
    cases = {
        "quote_not_in_source": {"label": "access-control", "quote": "passwords rotate every ninety days"},
        "quote_too_short": {"label": "access-control", "quote": "payroll"},
    }
    for reason, output in cases.items():
        item = Item(item_id="x", chunk_id="c1", doc_id="d", task_type="classification", raw_json=None, sample_ids=["x"])
        item.output = env.model.model_validate(output)
        verdict = grounding.check(item, env)
        assert verdict is not None and verdict.reason == reason and verdict.repairable
    ok = Item(item_id="y", chunk_id="c1", doc_id="d", task_type="classification", raw_json=None, sample_ids=["y"])
    ok.output = env.model.model_validate({"label": "access-control", "quote": "Requires Multi-Factor authentication."})
    assert grounding.check(ok, env) is None
    (evidence,) = ok.evidence
    assert CHUNKS["c1"][evidence.start:evidence.end] == "requires multi-factor authentication"


def test_audit_leakage_refusal_and_source_exception() -> None:
    task = TaskConfig(type="freeform", name="ff", instruction="Write a task and response.")
    chunks = dict(CHUNKS, c4="The vendor's large language model must not process customer records.")
    env = make_env(task, chunks=chunks)
    rows = [
        sample("c1", 0, {"instruction": "Summarise", "response": "As an AI language model, I think MFA is used."}, task_type="freeform"),
        sample("c2", 0, {"instruction": "Summarise", "response": "I'm sorry, but I cannot help with that."}, task_type="freeform"),
        sample("c4", 0, {"instruction": "What may the large language model process?", "response": "Not customer records."}, task_type="freeform"),
    ]
    outcome = run_filters(samples_frame(rows), env)
    assert reasons(outcome) == [("audit", "identity_leakage"), ("audit", "refusal")]
    assert [e.chunk_id for e in outcome.examples] == ["c4"]


def test_audit_structure_and_length() -> None:
    env = make_env(max_response_chars=40)
    audit = AuditFilter()
    item = Item(item_id="x", chunk_id="c1", doc_id="d", task_type="classification", raw_json=None, sample_ids=["x"])
    item.output = env.model.model_validate({"label": "access-control", "quote": QUOTE_C1})
    from curate.filter.checks import render_messages

    item.messages = render_messages(env.task, CHUNKS["c1"], item.output)
    verdict = audit.check(item, env)
    assert verdict is not None and verdict.reason == "response_too_long"
    item.messages = item.messages[1:]
    verdict = audit.check(item, env)
    assert verdict is not None and verdict.reason == "bad_role_structure"


def test_funnel_counts_every_filter(env: FilterEnv) -> None:
    rows = [
        sample("c1", 0, {"label": "access-control", "quote": QUOTE_C1}),
        sample("c1", 1, {"label": "access-control", "quote": QUOTE_C1}),
        sample("c1", 2, "{broken"),
        sample("c2", 0, {"label": "incident-response", "quote": "never written anywhere in it"}),
        sample("c2", 1, {"label": "incident-response", "quote": "never written anywhere in it"}),
        sample("c2", 2, {"label": "incident-response", "quote": "never written anywhere in it"}),
    ]
    outcome = run_filters(samples_frame(rows), env)
    funnel: Funnel = outcome.funnel
    by_step = {row["step"]: row for row in funnel.rows}
    assert (by_step["schema"]["rows_in"], by_step["schema"]["rows_out"], by_step["schema"]["rejected"]) == (6, 5, 1)
    assert (by_step["consistency"]["rows_in"], by_step["consistency"]["rows_out"]) == (5, 2)
    assert (by_step["grounding"]["rows_in"], by_step["grounding"]["rows_out"], by_step["grounding"]["rejected"]) == (2, 1, 1)
    assert len(outcome.examples) == 1


def test_example_ids_come_from_content(env: FilterEnv) -> None:
    rows = [sample("c1", i, {"label": "access-control", "quote": QUOTE_C1}) for i in range(3)]
    first = run_filters(samples_frame(rows), env).examples
    second = run_filters(samples_frame(list(reversed(rows))), make_env()).examples
    assert [e.example_id for e in first] == [e.example_id for e in second]
    assert first[0].model_dump() == second[0].model_dump()


def test_label_imbalance_warning() -> None:
    labels = ("a", "b", "c")
    assert label_warning({"a": 10, "b": 10, "c": 10}, labels, 10) is None
    assert "no examples" in (label_warning({"a": 10, "b": 10}, labels, 10) or "")
    assert "imbalance" in (label_warning({"a": 100, "b": 10, "c": 9}, labels, 10) or "")
