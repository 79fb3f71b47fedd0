"""`curate audit`: totals per provider/model, and the leak check over logged payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.redact.audit import run_audit
from curate.redact.stages import STAGES
from curate.run.executor import LocalExecutor
from curate.run.rundir import atomic_write_parquet
from curate.run.runner import Runner
from curate.services.teacher.store import RequestLog
from tests.redact.conftest import chunk_frame, pipeline_config

EMAIL = "dana.whitfield@northwind-freight.example"
DOCS = {"doc-a": [f"Escalate to {EMAIL} when card 4111 1111 1111 1111 is lost.", " Rotate keys yearly."]}


# Every type the default detector has a recognizer for: ORGANIZATION and LOCATION need an NER model.
CHECKABLE = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL", "US_SSN",
             "API_KEY", "PRIVATE_KEY", "CONNECTION_STRING", "PERSON"]


@pytest.fixture
def redacted_run(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, pl.DataFrame]:
    cfg = pipeline_config(tmp_path, **getattr(request, "param", {}))
    atomic_write_parquet(chunk_frame(DOCS), cfg.run_path / "chunk" / "chunks.parquet")
    Runner(cfg, STAGES, executor=LocalExecutor(), show_progress=False).run()
    return cfg.run_path, pl.read_parquet(cfg.run_path / "redact" / "chunks.parquet")


def _payload(text: str) -> dict[str, Any]:
    return {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "You label policy passages."},
            {"role": "user", "content": f"<passage>\n{text}\n</passage>"},
        ],
    }


def _log(run_dir: Path, texts: list[tuple[str, str]], provider: str = "openai", model: str = "gpt-test") -> None:
    log = RequestLog(run_dir / "generate.state" / "requests.jsonl")
    for chunk_id, text in texts:
        log.write(provider=provider, model=model, chunk_id=chunk_id, sent=True, cached=False, payload=_payload(text),
                  payload_kind="provider", input_tokens=100, output_tokens=20, cache_read_tokens=0,
                  cache_write_tokens=0, cost_usd=0.0015)


@pytest.mark.parametrize("redacted_run", [{"entities": CHECKABLE}], indirect=True)
def test_audit_passes_on_redacted_payloads(redacted_run: tuple[Path, pl.DataFrame]) -> None:
    run_dir, chunks = redacted_run
    _log(run_dir, list(zip(chunks["chunk_id"], chunks["text"], strict=True)))
    _log(run_dir, [(chunks["chunk_id"][0], chunks["text"][0])], provider="anthropic", model="claude-test")
    result = run_audit(run_dir)
    assert result.ok(strict=True), result
    assert result.requests == 3 and result.sent == 3
    assert result.values_checked == 2 and result.payloads_checked == 3
    assert result.per_target[("openai", "gpt-test")]["input_tokens"] == 200
    assert result.per_target[("anthropic", "claude-test")]["cost_usd"] == pytest.approx(0.0015)
    outcome = CliRunner().invoke(app, ["audit", str(run_dir)])
    assert outcome.exit_code == 0, outcome.output
    assert "no redacted value appears" in outcome.output and "gpt-test" in outcome.output
    assert result.unchecked == [] and "ORGANIZATION" in result.not_requested


def test_audit_names_what_it_did_not_check_and_strict_fails_on_it(redacted_run: tuple[Path, pl.DataFrame]) -> None:
    """Default config, no NER model: organisations and places are looked for by nothing, so
    the audit cannot say they did not leak. It says so, and --strict fails."""
    run_dir, chunks = redacted_run
    _log(run_dir, list(zip(chunks["chunk_id"], chunks["text"], strict=True)))
    result = run_audit(run_dir)
    assert result.leaks == [] and result.residual == {}
    assert result.unchecked == ["LOCATION", "ORGANIZATION"]
    assert result.ok() and not result.ok(strict=True)
    by_type = {c.entity: c for c in result.coverage}
    assert by_type["EMAIL_ADDRESS"].values_searched == 1 and by_type["EMAIL_ADDRESS"].status == "checked"
    assert by_type["CREDIT_CARD"].values_searched == 1
    assert by_type["PERSON"].detectors == ["NameListRecognizer (name-lists)"]
    assert by_type["PHONE_NUMBER"].detectors == ["PhoneRecognizer (presidio)", "PlausiblePhoneRecognizer (phone-form)"]
    assert by_type["ORGANIZATION"].detectors == [] and by_type["ORGANIZATION"].status == "NOT CHECKED"
    plain = CliRunner().invoke(app, ["audit", str(run_dir)])
    assert plain.exit_code == 0 and "NOT CHECKED in the payloads: LOCATION, ORGANIZATION" in plain.output
    strict = CliRunner().invoke(app, ["audit", str(run_dir), "--strict"])
    assert strict.exit_code == 1 and "audit FAILED" in strict.output


@pytest.mark.parametrize("redacted_run", [{"entities": CHECKABLE}], indirect=True)
def test_strict_audit_without_rescan_fails_every_type_is_unchecked(redacted_run: tuple[Path, pl.DataFrame]) -> None:
    run_dir, chunks = redacted_run
    _log(run_dir, [(chunks["chunk_id"][0], chunks["text"][0])])
    result = run_audit(run_dir, rescan_payloads=False)
    assert result.unchecked == sorted(CHECKABLE) and result.ok() and not result.ok(strict=True)


@pytest.mark.parametrize("redacted_run", [{"entities": CHECKABLE, "secrets": False}], indirect=True)
def test_types_requested_without_a_detector_are_unchecked(redacted_run: tuple[Path, pl.DataFrame]) -> None:
    run_dir, chunks = redacted_run
    _log(run_dir, [(chunks["chunk_id"][0], chunks["text"][0])])
    assert run_audit(run_dir).unchecked == ["API_KEY", "CONNECTION_STRING", "PRIVATE_KEY"]


def test_audit_fails_when_an_original_value_was_sent(redacted_run: tuple[Path, pl.DataFrame]) -> None:
    run_dir, chunks = redacted_run
    _log(run_dir, [(chunks["chunk_id"][0], chunks["text"][0])])
    _log(run_dir, [("leaky", f"Escalate to {EMAIL}.")])  # as if a stage had read chunk/chunks
    result = run_audit(run_dir)
    assert not result.ok()
    assert [(leak.line, leak.chunk_id, leak.entity) for leak in result.leaks] == [(2, "leaky", "EMAIL_ADDRESS")]
    assert result.residual == {"EMAIL_ADDRESS": 1}
    outcome = CliRunner().invoke(app, ["audit", str(run_dir)])
    assert outcome.exit_code == 1
    assert "LEAK" in outcome.output
    assert EMAIL not in outcome.output  # the audit names the type and placeholder, never the value


def test_audit_detects_an_edited_log(redacted_run: tuple[Path, pl.DataFrame]) -> None:
    run_dir, chunks = redacted_run
    _log(run_dir, [(chunks["chunk_id"][0], chunks["text"][0])])
    path = run_dir / "generate.state" / "requests.jsonl"
    record = json.loads(path.read_text())
    record["payload"]["messages"][1]["content"] = "something else"
    path.write_text(json.dumps(record) + "\n")
    assert run_audit(run_dir).hash_mismatches == [1]


@pytest.mark.parametrize("redacted_run", [{"entities": CHECKABLE}], indirect=True)
def test_strict_audit_fails_on_entities_the_detector_still_finds(redacted_run: tuple[Path, pl.DataFrame]) -> None:
    run_dir, _chunks = redacted_run
    _log(run_dir, [("other", "Contact nobody@example.com about it.")])  # never in the mapping: no leak
    result = run_audit(run_dir)
    assert result.leaks == [] and result.residual == {"EMAIL_ADDRESS": 1}
    assert result.unchecked == [] and result.ok() and not result.ok(strict=True)
    assert CliRunner().invoke(app, ["audit", str(run_dir), "--strict"]).exit_code == 1


def test_audit_without_a_request_log_fails(tmp_path: Path) -> None:
    result = run_audit(tmp_path)
    assert not result.ok() and "no request log" in result.problems[0]
