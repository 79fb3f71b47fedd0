"""Applying the policies to one chunk's findings, and mapping offsets back to the original.

The text is rewritten by presidio-anonymizer (a `custom` operator looks up the document's
placeholder book, `mask` masks, `keep` findings are not handed to it). The anonymizer
reports where each replacement landed in the new text; paired with where the finding was
in the original, that gives a `Redaction` per replaced span, and with those any offset in
the redacted chunk maps back to the original chunk (and so to the original document).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from assay.errors import AssayError
from curate.services.pii.config import RedactConfig
from curate.services.pii.engine import RedactEngine, recognizer_name, secret_type
from curate.services.pii.presidio import AnonymizerResult, OperatorConfig, RecognizerResult


class RedactionPolicyError(AssayError, RuntimeError):
    """An entity type whose policy is `fail` was found: the run stops, naming where."""

    def __init__(self, chunk_id: str, entity: str, source_path: str = ""):
        self.chunk_id, self.entity, self.source_path = chunk_id, entity, source_path
        where = f" of {source_path}" if source_path else ""
        super().__init__(
            f"redact: chunk {chunk_id}{where} contains {entity}, whose policy is `fail` "
            f"(set redact.policies.{entity} to replace, mask or keep to go on)"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across process pools
        return (type(self), (self.chunk_id, self.entity, self.source_path))


@dataclass(frozen=True)
class Redaction:
    """A replaced span: [start, end) in the redacted chunk, [orig_start, orig_end) in the original chunk."""

    entity: str
    start: int
    end: int
    placeholder: str
    orig_start: int
    orig_end: int
    action: str


@dataclass(frozen=True)
class Finding:
    """A detected entity, without its value (chunk-relative original offsets)."""

    entity: str
    start: int
    end: int
    score: float
    recognizer: str
    detail: str
    action: str
    placeholder: str | None


@dataclass
class PlaceholderBook:
    """One document's placeholders: the same value gets the same `<TYPE_n>` throughout."""

    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    masked: set[tuple[str, str]] = field(default_factory=set)

    def placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        if key not in self.by_value:
            self.counts[entity] = self.counts.get(entity, 0) + 1
            self.by_value[key] = f"<{entity}_{self.counts[entity]}>"
        return self.by_value[key]

    def entries(self) -> list[dict[str, Any]]:
        """The mapping to store on this machine only (`redact.state/`)."""
        rows: list[dict[str, Any]] = [
            {"placeholder": placeholder, "entity": entity, "value": value, "action": "replace"}
            for (entity, value), placeholder in self.by_value.items()
        ]
        rows += [
            {"placeholder": None, "entity": entity, "value": value, "action": "mask"}
            for entity, value in sorted(self.masked)
        ]
        return rows


@dataclass(frozen=True)
class RedactedText:
    text: str
    redactions: list[Redaction]
    findings: list[Finding]


def redact_text(
    engine: RedactEngine,
    text: str,
    book: PlaceholderBook,
    *,
    chunk_id: str = "",
    source_path: str = "",
    cfg: RedactConfig | None = None,
    results: Sequence[RecognizerResult] | None = None,
) -> RedactedText:
    """Detect and apply `cfg`'s policies (default: the engine's) to one text; raises
    RedactionPolicyError on an entity whose policy is `fail`."""
    cfg = cfg or engine.cfg
    found = list(engine.detect(text) if results is None else results)
    for result in found:
        if cfg.policy_for(result.entity_type) == "fail":
            raise RedactionPolicyError(chunk_id, result.entity_type, source_path)
    to_change = [r for r in found if cfg.policy_for(r.entity_type) != "keep"]
    operators: dict[str, OperatorConfig] = {}
    for result in to_change:
        entity, value = result.entity_type, text[result.start : result.end]
        if cfg.policy_for(entity) == "replace":
            book.placeholder(entity, value)  # numbered in text order
            operators.setdefault(entity, OperatorConfig("custom", {"lambda": _lookup(book, entity)}))
        else:
            book.masked.add((entity, value))
            operators.setdefault(
                entity, OperatorConfig("mask", {"masking_char": cfg.mask_char, "chars_to_mask": 1 << 30, "from_end": False})
            )
    if to_change:
        outcome = engine.anonymizer.anonymize(
            text=text,
            analyzer_results=[AnonymizerResult(r.entity_type, r.start, r.end, r.score) for r in to_change],
            operators=operators,
            merge_entities_with_spaces=False,
        )
        new_text = outcome.text
        items = sorted(outcome.items, key=lambda item: item.start)
        if len(items) != len(to_change):
            raise RuntimeError("redact: the anonymizer merged findings that were already non-overlapping")
    else:
        new_text, items = text, []
    redactions = [
        Redaction(
            entity=r.entity_type,
            start=item.start,
            end=item.end,
            placeholder=item.text,
            orig_start=r.start,
            orig_end=r.end,
            action=cfg.policy_for(r.entity_type),
        )
        for r, item in zip(to_change, items, strict=True)
    ]
    placeholders = {(r.orig_start, r.orig_end): r.placeholder for r in redactions}
    findings = [
        Finding(
            entity=r.entity_type,
            start=r.start,
            end=r.end,
            score=round(float(r.score), 4),
            recognizer=recognizer_name(r),
            detail=secret_type(r),
            action=cfg.policy_for(r.entity_type),
            placeholder=placeholders.get((r.start, r.end)),
        )
        for r in found
    ]
    return RedactedText(new_text, redactions, findings)


def _lookup(book: PlaceholderBook, entity: str) -> Any:
    def replace(value: str) -> str:
        return book.placeholder(entity, value)

    return replace


Side = Literal["start", "end"]


def to_original_offset(redactions: Sequence[Mapping[str, Any] | Redaction], offset: int, side: Side = "start") -> int:
    """Map an offset in a redacted chunk to the same place in the original chunk.

    Outside placeholders the text is unchanged, so `original[mapped] == redacted[offset]`.
    An offset strictly inside a placeholder maps to the start of the original value
    (side="start") or to its end (side="end"), so a quoted span that covers part of a
    placeholder maps to a span that covers the whole original value.
    """
    shift = 0
    for item in sorted((_as_dict(r) for r in redactions), key=lambda r: r["start"]):
        if offset < item["start"]:
            break
        if offset < item["end"]:
            if offset == item["start"]:
                return int(item["orig_start"])
            return int(item["orig_start"] if side == "start" else item["orig_end"])
        shift = item["orig_end"] - item["end"]
    return offset + shift


def to_document_offset(chunk: Mapping[str, Any], offset: int, side: Side = "start") -> int:
    """An offset in a redacted chunk row (of redact/chunks) as an offset in its original document."""
    return int(chunk["start"]) + to_original_offset(chunk.get("redactions") or [], offset, side)


def document_span(chunk: Mapping[str, Any], start: int, end: int) -> tuple[int, int]:
    """A [start, end) span of the redacted chunk (e.g. an evidence quote) in the original document."""
    return to_document_offset(chunk, start, "start"), to_document_offset(chunk, end, "end")


def _as_dict(item: Mapping[str, Any] | Redaction) -> Mapping[str, Any]:
    return asdict(item) if isinstance(item, Redaction) else item
