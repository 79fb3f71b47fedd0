"""`curate audit RUN_DIR`: what left the machine, to whom, proof that no redacted value did,
and what the audit could not look for.

Reads the request log the teacher client writes (`<run_dir>/generate.state/requests.jsonl`,
one JSON per request: provider, model, chunk_id, payload, payload_sha256, tokens, cost,
sent/cached) and the placeholder mapping of the redact stage
(`<run_dir>/redact.state/mapping/`). It

1. totals requests, tokens and cost per provider and model (sent vs answered locally);
2. checks each logged payload against its recorded sha256 (the log was not edited);
3. searches every payload's strings for every original value of the mapping (each
   replaced or masked value): one hit is a leak, and the audit fails;
4. re-scans every payload with the redact stage's detector and counts what it still finds
   per entity type (types whose policy is `keep` aside), shown as a warning, or failing
   the audit with `--strict`;
5. reports per entity type what was checked and by which detector, and which types were
   not checked at all (no active detector: ORGANIZATION/LOCATION without an NER model,
   secrets with `secrets: false`); `--strict` fails on those too.

Step 3 is a proof, but only about the values the redactor replaced: a value the detector
never found is in no mapping, so it cannot be searched for. Step 4 finds what the detector
can see, with the detector's recall (see bench/redact), and step 5 names what it cannot.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.run.rundir import RunDir
from curate.services.pii.config import (
    NER_ENTITIES,
    PATTERN_ENTITIES,
    SECRET_ENTITIES,
    RedactConfig,
    resolve_ner_model,
)
from curate.services.pii.mapping import load_mappings
from curate.services.teacher.store import canonical_json
from schemas.artifacts import REQUEST_LOG
from schemas.ids import sha256_hex

MIN_VALUE_CHARS = 4  # shorter originals (e.g. a 3-digit fragment) would match by chance


@dataclass
class Leak:
    line: int
    chunk_id: str
    entity: str
    placeholder: str | None


@dataclass
class Coverage:
    """What the audit did for one entity type."""

    entity: str
    policy: str
    detectors: list[str]  # `name (source)` of each recognizer of the re-scan that reports it
    values_searched: int  # original values of this type searched for verbatim (leak check)
    residual: int  # findings of the re-scan in the payloads (policy `keep`: not counted)
    status: str  # checked | kept | NOT CHECKED | not re-scanned


@dataclass
class AuditResult:
    requests: int = 0
    sent: int = 0
    per_target: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    hash_mismatches: list[int] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    residual: dict[str, int] = field(default_factory=dict)
    values_checked: int = 0
    payloads_checked: int = 0
    values_too_short: int = 0
    redact_enabled: bool | None = None
    problems: list[str] = field(default_factory=list)
    coverage: list[Coverage] = field(default_factory=list)
    not_requested: list[str] = field(default_factory=list)  # known types outside `redact.entities`

    @property
    def unchecked(self) -> list[str]:
        """Requested entity types the payloads were not re-scanned for (no detector, or --no-rescan)."""
        return [c.entity for c in self.coverage if c.status in ("NOT CHECKED", "not re-scanned")]

    def ok(self, strict: bool = False) -> bool:
        if self.leaks or self.hash_mismatches or self.problems:
            return False
        return not (strict and (self.residual or self.unchecked))


def read_requests(run_dir: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    path = run_dir / REQUEST_LOG.path
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, json.loads(line)


def payload_strings(value: Any) -> Iterator[str]:
    """Every string in a payload (JSON escapes undone), keys left out."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from payload_strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from payload_strings(item)


def _redact_config(run_dir: Path) -> tuple[RedactConfig | None, str | None]:
    config = RunDir(run_dir).load_manifest().get("config") or {}
    section = config.get("redact")
    if section is None:
        return None, None
    cfg = RedactConfig.model_validate(section)
    return cfg, resolve_ner_model(cfg.ner_model, config.get("base_dir", "."))


def run_audit(run_dir: str | Path, *, rescan_payloads: bool = True) -> AuditResult:
    run_dir = Path(run_dir)
    result = AuditResult()
    if not (run_dir / REQUEST_LOG.path).exists():
        result.problems.append(f"no request log at {run_dir / REQUEST_LOG.path}")
    cfg, ner = _redact_config(run_dir)
    result.redact_enabled = None if cfg is None else cfg.enabled
    mappings = load_mappings(run_dir)
    every = {(e["value"], e["entity"], e.get("placeholder")) for entries in mappings.values() for e in entries}
    values = sorted((v for v in every if len(v[0]) >= MIN_VALUE_CHARS), key=lambda item: (-len(item[0]), item[0]))
    result.values_checked = len(values)
    result.values_too_short = len(every) - len(values)
    engine = None
    if rescan_payloads and cfg is not None:
        from curate.services.pii.engine import get_engine
        from curate.services.pii.rescan import residual_counts

        engine = get_engine(cfg, ner)
    residual: Counter[str] = Counter()
    scanned: set[str] = set()
    for number, record in read_requests(run_dir):
        result.requests += 1
        sent = bool(record.get("sent", not record.get("cached", False)))
        key = (str(record.get("provider", "?")), str(record.get("model", "?")))
        totals = result.per_target.setdefault(
            key, {"requests": 0, "sent": 0, "local": 0, "input_tokens": 0, "output_tokens": 0,
                  "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": 0.0},
        )
        totals["requests"] += 1
        totals["sent" if sent else "local"] += 1
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            totals[name] += int(record.get(name) or 0)
        totals["cost_usd"] += float(record.get("cost_usd", record.get("cost")) or 0.0)
        result.sent += int(sent)
        payload = record.get("payload")
        if payload is None:
            continue
        recorded = record.get("payload_sha256")
        if recorded and recorded != sha256_hex(canonical_json(payload)):
            result.hash_mismatches.append(number)
        result.payloads_checked += 1
        texts = list(payload_strings(payload))
        for value, entity, placeholder in values:
            if any(value in text for text in texts):
                result.leaks.append(Leak(number, str(record.get("chunk_id")), entity, placeholder))
        if engine is not None:
            digest = record.get("payload_sha256") or sha256_hex(canonical_json(payload))
            if digest in scanned:  # retries and cached answers repeat a payload
                continue
            scanned.add(digest)
            assert cfg is not None
            residual.update(residual_counts(engine, cfg, texts))
    result.residual = dict(sorted(residual.items()))
    if cfg is not None:
        searched = Counter(entity for _, entity, _ in values)
        result.coverage, result.not_requested = coverage(cfg, engine, searched, residual)
    return result


def coverage(
    cfg: RedactConfig, engine: Any, searched: Counter[str], residual: Counter[str]
) -> tuple[list[Coverage], list[str]]:
    """Per requested entity type: policy, detectors, values searched, residual, status; and
    the known types outside `redact.entities`. The requested types are `redact.entities`, or
    by default every type assay knows (patterns, national ids of the locales, secrets, and
    PERSON/ORGANIZATION/LOCATION): a type nothing looks for is reported, not left out."""
    known = set(PATTERN_ENTITIES) | set(SECRET_ENTITIES) | set(NER_ENTITIES)
    if engine is not None:
        known |= set(engine.supported)
    requested = sorted(set(cfg.entities) if cfg.entities is not None else known)
    rows = []
    for entity in requested:
        detectors = [] if engine is None else [f"{a.name.split('(')[0]} ({a.source})" for a in engine.detectors_for(entity)]
        if engine is None:
            status = "not re-scanned"
        elif not detectors:
            status = "NOT CHECKED"
        else:
            status = "kept" if cfg.policy_for(entity) == "keep" else "checked"
        rows.append(Coverage(entity, cfg.policy_for(entity), detectors, searched.get(entity, 0), residual.get(entity, 0), status))
    return rows, sorted(known - set(requested))
