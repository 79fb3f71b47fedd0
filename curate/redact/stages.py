"""The redact stage: personal data and secrets out of the chunks before the teacher sees them.

Input chunk/chunks; outputs
- `chunks`: the Chunk schema with `text` redacted (same `chunk_id`, `start`/`end` still
  the span of the ORIGINAL document) plus `redactions`: one struct per replaced span
  {entity, start, end, placeholder, orig_start, orig_end, action} (redacted-text and
  original-chunk offsets; see `curate.services.pii.redactor.to_document_offset`). No raw value.
- `findings`: one row per detected entity (type, recognizer, score, policy applied,
  chunk-relative offsets) — never the value itself.
- `recognizers`: the recognizers that were active, for the run report.

Rows sharing a `doc_id` are processed together (a SHUFFLE on doc_id, any split of the
documents works) so that a value gets the same placeholder throughout its document. The
mapping placeholder -> value is written to `<run_dir>/redact.state/mapping/` only.
With `redact.enabled: false` the chunks pass through unchanged (same ids, empty `redactions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Protocol

import polars as pl

from curate.run.config import RunSettings
from curate.run.dataset import canonical_order
from curate.run.stage import Stage, StageContext, StepKind, collect, count
from curate.services.pii.config import PiiSettings
from schemas.artifacts import CHUNKS, FINDINGS, RECOGNIZERS, REDACTED_CHUNKS, REDACTION, REDACTION_MAPPING


class RedactSettings(RunSettings, PiiSettings, Protocol):
    """What the redact stage reads of the pipeline config."""



def redact_chunks(batch: pl.DataFrame, ctx: StageContext[RedactSettings]) -> dict[str, pl.DataFrame]:
    cfg = ctx.config.redact
    if not cfg.enabled or batch.height == 0:
        return {
            "chunks": batch.with_columns(pl.lit([], dtype=pl.List(REDACTION)).alias("redactions")),
            "findings": FINDINGS.frame(),
            "recognizers": RECOGNIZERS.frame(),
        }
    # Presidio (and the transformers it imports) loads only when redaction runs.
    from curate.services.pii.engine import get_engine
    from curate.services.pii.mapping import write_mapping
    from curate.services.pii.redactor import PlaceholderBook, redact_text
    from curate.services.pii.rescan import ner_model_path

    engine = get_engine(cfg, ner_model_path(ctx.config))
    ordered = batch.sort(["doc_id", "start", "end"])
    texts: list[str] = []
    redactions: list[list[dict[str, Any]]] = []
    findings: list[dict[str, Any]] = []
    books: dict[str, PlaceholderBook] = {}
    rows = ordered.select("chunk_id", "doc_id", "source_path", "text").iter_rows()
    for chunk_id, doc_id, source_path, text in ctx.track(rows, "redact", total=ordered.height):
        book = books.setdefault(doc_id, PlaceholderBook())
        result = redact_text(engine, text, book, chunk_id=chunk_id, source_path=source_path, cfg=cfg)
        texts.append(result.text)
        redactions.append([asdict(r) for r in result.redactions])
        findings.extend(
            {
                "chunk_id": chunk_id,
                "doc_id": doc_id,
                "entity_type": f.entity,
                "recognizer": f.recognizer,
                "detail": f.detail,
                "score": f.score,
                "action": f.action,
                "start": f.start,
                "end": f.end,
                "placeholder": f.placeholder,
            }
            for f in result.findings
        )
    for doc_id, book in books.items():
        write_mapping(ctx.run_dir, doc_id, book.entries())
    chunks = ordered.with_columns(
        pl.Series("text", texts, dtype=pl.String),
        pl.Series("redactions", redactions, dtype=pl.List(REDACTION)),
    )
    recognizers = RECOGNIZERS.frame(
        [{"name": a.name, "entities": list(a.entities), "source": a.source} for a in engine.active]
    )
    return {
        "chunks": chunks,
        "findings": FINDINGS.frame(findings),
        "recognizers": recognizers,
    }


def summarize(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    """Counts per entity type and policy applied, and the recognizers that were active
    (the chunks are counted only: their text is not read)."""
    findings = outputs["findings"]
    found = count(findings)
    per_entity = [
        {"entity_type": entity, "action": action, "count": n}
        for entity, action, n in collect(findings.group_by("entity_type", "action").len().sort("entity_type", "action")).iter_rows()
    ]
    per_action = collect(findings.group_by("action").len().sort("action")).iter_rows()
    recognizers = (  # a few rows per task; the first of each name in the artifact's canonical order
        canonical_order(collect(outputs["recognizers"]), RECOGNIZERS.key).unique("name", maintain_order=True).sort("name")
        if "recognizers" in outputs else None
    )
    active = [] if recognizers is None else [
        {"recognizer": name, "source": source, "entities": ", ".join(entities)} for name, entities, source in recognizers.iter_rows()
    ]
    ner = any(item["source"] == "spacy-ner" for item in active)
    names = any(item["source"] == "name-lists" for item in active)
    without = "PERSON by name lists only, " if names else "PERSON, "
    return {
        "summary": {
            "enabled": bool(active),
            "chunks": count(outputs["chunks"]),
            "chunks_with_findings": collect(findings.select(pl.col("chunk_id").n_unique())).item() if found else 0,
            "findings": found,
            "ner": "active" if ner else f"NOT active: {without}ORGANIZATION/LOCATION not detected (no spaCy NER model configured)",
        },
        "per_entity": per_entity,
        "per_action": dict(per_action),
        "active_recognizers": active,
    }


STAGES: list[Stage] = [
    Stage(
        name="redact",
        kind=StepKind.SHUFFLE,
        key="doc_id",
        fn=redact_chunks,
        inputs=(CHUNKS,),
        outputs=(REDACTED_CHUNKS, FINDINGS, RECOGNIZERS),
        side_files=(REDACTION_MAPPING,),
        config_sections=("redact",),
        summarize=summarize,
        description="personal data and secrets out before the teacher (Presidio + detect-secrets)",
    )
]
