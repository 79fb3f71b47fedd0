"""Residual scan of a final dataset and restoring originals for `restore_in_final: true`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.services.pii.config import RedactConfig
from curate.services.pii.mapping import restore_placeholders, write_mapping
from curate.services.pii.rescan import ResidualFindingsError, check_residual, rescan, residual_report
from schemas.records import Example, frame_of


def _examples(outputs: list[tuple[str, str]]) -> pl.DataFrame:
    rows = [
        {
            "example_id": f"ex{i}",
            "chunk_id": f"c{i}",
            "doc_id": doc_id,
            "task_type": "freeform",
            "output_json": json.dumps({"answer": text}),
            "messages": [{"role": "user", "content": "Summarise."}, {"role": "assistant", "content": text}],
            "sample_ids": [f"s{i}"],
        }
        for i, (doc_id, text) in enumerate(outputs)
    ]
    return frame_of(Example, rows)


def test_rescan_counts_residuals_per_type_and_ignores_placeholders() -> None:
    frame = _examples(
        [
            ("d1", "Escalate to <EMAIL_ADDRESS_1> with card <CREDIT_CARD_1>."),
            ("d1", "Leaked: ops@example.com and key AKIAIOSFODNN7EXAMPLE."),
        ]
    )
    counts = rescan(frame, RedactConfig(enabled=True))
    # each value is in output_json and in the assistant message: two texts
    assert counts == {"API_KEY": 2, "EMAIL_ADDRESS": 2}
    kept = rescan(frame, RedactConfig(enabled=True, policies={"EMAIL_ADDRESS": "keep"}))
    assert kept == {"API_KEY": 2}


def test_residual_threshold_fails_only_past_the_limit() -> None:
    check_residual({}, RedactConfig(enabled=True, max_residual=0))
    check_residual({"EMAIL_ADDRESS": 2}, RedactConfig(enabled=True, max_residual=2))
    check_residual({"EMAIL_ADDRESS": 9}, RedactConfig(enabled=True, max_residual=None))
    check_residual({"EMAIL_ADDRESS": 9}, RedactConfig(enabled=False, max_residual=0))
    with pytest.raises(ResidualFindingsError, match="EMAIL_ADDRESS=3"):
        check_residual({"EMAIL_ADDRESS": 3}, RedactConfig(enabled=True, max_residual=2))


def test_restore_placeholders_per_document(tmp_path: Path) -> None:
    write_mapping(tmp_path, "d1", [
        {"placeholder": "<EMAIL_ADDRESS_1>", "entity": "EMAIL_ADDRESS", "value": "dana@example.com", "action": "replace"},
        {"placeholder": "<PRIVATE_KEY_1>", "entity": "PRIVATE_KEY", "value": "-----BEGIN \"KEY\"-----\nabc", "action": "replace"},
        {"placeholder": None, "entity": "IP_ADDRESS", "value": "10.0.0.1", "action": "mask"},
    ])
    write_mapping(tmp_path, "d2", [
        {"placeholder": "<EMAIL_ADDRESS_1>", "entity": "EMAIL_ADDRESS", "value": "lee@example.org", "action": "replace"},
    ])
    frame = _examples(
        [
            ("d1", "Ask <EMAIL_ADDRESS_1> about <PRIVATE_KEY_1> on ********."),
            ("d2", "Ask <EMAIL_ADDRESS_1>; <EMAIL_ADDRESS_7> is unknown."),
        ]
    )
    restored = restore_placeholders(frame, tmp_path)
    assert restored.schema == frame.schema
    first, second = restored.to_dicts()
    assert first["messages"][1]["content"] == 'Ask dana@example.com about -----BEGIN "KEY"-----\nabc on ********.'
    assert json.loads(first["output_json"])["answer"] == first["messages"][1]["content"]  # still valid JSON
    assert second["messages"][1]["content"] == "Ask lee@example.org; <EMAIL_ADDRESS_7> is unknown."
    assert first["example_id"] == "ex0"


def test_restore_without_mapping_is_identity(tmp_path: Path) -> None:
    frame = _examples([("d9", "Ask <EMAIL_ADDRESS_1>.")])
    assert restore_placeholders(frame, tmp_path).equals(frame)


def test_residual_report_for_the_card() -> None:
    frame = _examples([("d1", "Leaked: ops@example.com.")])
    report = residual_report(frame, RedactConfig(enabled=True, max_residual=1))
    assert report == {"counts": {"EMAIL_ADDRESS": 2}, "total": 2, "max_residual": 1, "enforced": True, "passed": False}
    assert residual_report(frame, RedactConfig(enabled=False))["passed"] is True
