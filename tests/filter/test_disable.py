"""`filter.disable`: switching a filter off changes what is kept, and only known names pass."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from curate.filter.checks import run_filters
from curate.filter.config import FilterConfig

from .conftest import make_env, sample, samples_frame

QUOTE_C1 = "requires multi-factor authentication"


def test_unknown_or_schema_names_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"unknown filter.*schema cannot be switched off"):
        FilterConfig(disable=("schema",))
    with pytest.raises(ValidationError, match="groundng"):
        FilterConfig(disable=("groundng",))
    assert FilterConfig(disable=("consistency", "grounding", "audit", "dedup")).disable


def test_consistency_off_keeps_the_first_valid_sample_not_the_majority() -> None:
    rows = [
        sample("c1", 0, "{broken"),
        sample("c1", 1, {"label": "data-protection", "quote": QUOTE_C1}),
        sample("c1", 2, {"label": "access-control", "quote": QUOTE_C1}),
        sample("c1", 3, {"label": "access-control", "quote": QUOTE_C1}),
    ]
    voted = run_filters(samples_frame(rows), make_env(samples=4)).examples
    assert [e.label for e in voted] == ["access-control"]
    outcome = run_filters(samples_frame(rows), make_env(samples=4, disable=("consistency",)))
    (example,) = outcome.examples
    assert example.label == "data-protection"  # schema still drops the broken sample 0
    reasons = sorted((r.filter, r.reason) for r in outcome.funnel.rejections)
    assert reasons == [("consistency", "unused_sample"), ("consistency", "unused_sample"), ("schema", "invalid_json")]


def test_grounding_off_keeps_a_quote_not_in_the_chunk_and_audit_off_keeps_leakage() -> None:
    foreign = {"label": "access-control", "quote": "As an AI language model, I think this is access control"}
    rows = [sample("c1", i, foreign) for i in range(3)]
    grounded = run_filters(samples_frame(rows), make_env())
    assert grounded.examples == [] and {r.reason for r in grounded.funnel.rejections} == {"quote_not_in_source"}
    no_grounding = run_filters(samples_frame(rows), make_env(disable=("grounding",)))
    assert no_grounding.examples == []
    assert {(r.filter, r.reason) for r in no_grounding.funnel.rejections} == {("audit", "identity_leakage")}
    neither = run_filters(samples_frame(rows), make_env(disable=("grounding", "audit")))
    assert len(neither.examples) == 1 and neither.funnel.rejections == []
