"""A demo-like run against the local mock teacher server: no planted value leaves the machine.

The corpus is two of the demo's policy documents plus a document with personal data and
secrets planted in it. The pipeline runs ingest -> chunk -> redact -> generate -> filter ->
refine -> dedup (every stage that sends requests) with the real OpenAI client pointed at
MockTeacherServer (a local HTTP server that fills the answer schema mechanically; it is
NOT a model). Then every body the server received and every payload in the request log is
searched for every planted value, and `curate audit` must pass.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import yaml
from rich.console import Console

from curate.config import load_config
from curate.pipeline import stage_groups
from curate.redact.audit import payload_strings, run_audit
from curate.run.runner import Runner
from curate.services.pii.rescan import rescan
from tests.servers.mock_teacher import MockTeacherServer

REPO = Path(__file__).resolve().parents[2]

PLANTED = {
    "email": "priya.raman@northwind-freight.example",
    "email2": "it-helpdesk@contoso.com",
    "phone": "+44 20 7946 0958",
    "card": "4539 1488 0343 6467",
    "iban": "GB33 BUKB 2020 1555 5555 55",
    "ip": "10.20.30.41",
    "aws": "AKIAZ7Q3EXAMPLEKEY42",
    "github": "ghp_R4nd0mT0k3nF0rT3st1ngPurp0s3sOnly123",
    "slack": "xoxb-210987654321-3456789012345-QwErTyUiOpAsDfGhJkLzXcVb",
    "postgres": "postgres://svc_billing:Wint3r!2024@pg-prod.internal.example.com:5432/billing",
    # what reached the teacher before issue 16: a name, a JWT's signature, a drama-range mobile
    "person": "Chidi Okafor",
    "jwt_signature": "868Y_kVZSflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "drama_phone": "+44 7700 900123",
}
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwicm9sZSI6Im9wcyJ9." + PLANTED["jwt_signature"]

PLANTED_DOC = f"""# Payment Operations Runbook

## Contacts

The payment operations lead, {PLANTED['person']}, is reachable at {PLANTED['email']} or on
{PLANTED['phone']} during the working week, and out of hours on {PLANTED['drama_phone']}. Access requests for the billing systems go to {PLANTED['email2']}, which opens a ticket
in the access-control queue and records the approver, the date and the systems concerned.

## Test data

The card number {PLANTED['card']} was used in a production test in March and must be purged from
every log; refunds for the test go to the settlement account {PLANTED['iban']}. The staging
gateway at {PLANTED['ip']} still accepts connections from the office network and must be closed.

## Credentials found in the repository

The audit found the key {PLANTED['aws']}, the GitHub token {PLANTED['github']} and the Slack bot
token {PLANTED['slack']} in the deployment scripts. The billing loader connects with
{PLANTED['postgres']} and that password must be rotated. Each credential is revoked, rotated and
recorded in the incident log, and the owners confirm the rotation in writing within five days.
The session token {JWT} was pasted into the ticket and must be revoked too.
"""


def test_no_planted_value_in_any_request(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("access-control-policy.md", "employee-security-handbook.md"):
        shutil.copy(REPO / "data" / "demo" / "docs" / name, docs / name)
    (docs / "payment-runbook.md").write_text(PLANTED_DOC, encoding="utf-8")
    with MockTeacherServer() as server:
        config = {
            "run_dir": "run",
            "ingest": {"paths": ["docs"]},
            "chunk": {"max_tokens": 256, "overlap_tokens": 0},
            "redact": {"enabled": True, "policies": {"URL": "keep"}},
            "task": {
                "type": "classification",
                "instruction": "Which policy area does this passage belong to? Answer with the label and a quote.",
                "labels": ["access-control", "incident-response", "data-protection"],
            },
            "teacher": {"backend": "openai", "model": "mock-teacher", "base_url": server.openai_base_url,
                        "samples": 2, "max_tokens": 128, "retry_base_s": 0.01},
        }
        path = tmp_path / "pipeline.yaml"
        path.write_text(yaml.safe_dump(config))
        cfg = load_config(path)
        groups = stage_groups()
        stages = groups["ingest"] + groups["redact"] + groups["generate"] + groups["filter"]
        result = Runner(cfg, stages, console=Console(quiet=True), show_progress=False).run()
        bodies = list(server.bodies)

    assert result.stopped is None, [(s.name, s.status, s.message) for s in result.stages]
    run_dir = cfg.run_path
    redacted = pl.read_parquet(run_dir / "redact" / "chunks.parquet")
    assert redacted["redactions"].list.len().sum() >= len(PLANTED)
    assert bodies, "the teacher server received no request"
    sent_text = "\n".join(s for body in bodies for s in payload_strings(body))
    assert "<EMAIL_ADDRESS_1>" in sent_text  # the runbook's chunks did go to the teacher, redacted
    log = [json.loads(line) for line in (run_dir / "generate.state" / "requests.jsonl").read_text().splitlines()]
    logged_text = "\n".join(s for record in log for s in payload_strings(record.get("payload")))
    for name, value in PLANTED.items():
        assert value not in sent_text, f"planted {name} reached the teacher server"
        assert value not in logged_text, f"planted {name} is in the request log"
    audit = run_audit(run_dir)
    assert audit.ok() and audit.residual == {}, audit
    # no NER model: organisations and places were looked for by nothing, and the audit says so
    assert audit.unchecked == ["LOCATION", "ORGANIZATION"] and not audit.ok(strict=True)
    assert audit.payloads_checked == len(log) and audit.values_checked >= len(PLANTED)
    final = pl.read_parquet(run_dir / "dedup" / "examples.parquet")
    assert rescan(final, cfg) == {}
