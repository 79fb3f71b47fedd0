"""The quality filters: schema, self-consistency, source grounding, heuristic audit.

`run_filters` turns the samples of some chunks into examples and rejections, through the
filters in order; the filter and refine stages (and the benchmark) all call it, so a
repaired sample passes exactly the same filters as an original one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pydantic import BaseModel, ValidationError
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

from curate.filter.base import Filter, Funnel, GroupFilter, Item, Reject
from curate.filter.config import FilterConfig
from curate.services.similarity.grounding import (
    EXACT_KINDS,
    NormalisedText,
    ground_span,
    normalise,
    normalise_number,
    spans_to_ground,
)
from schemas.ids import content_id
from schemas.records import Evidence, Example, Message
from schemas.tasks import ExtractedValue, TaskConfig, TaskType, output_model, training_prompt


@dataclass
class FilterEnv:
    """What the filters need besides the items: the task, settings, the chunk texts."""

    task: TaskConfig
    config: FilterConfig
    chunks: Mapping[str, str]
    expected_samples: int = 1  # samples requested per chunk (caps the votes required)
    round_penalty: float = 0.95
    agreed_labels: Mapping[str, str] = field(default_factory=dict)  # refine: a repair keeps the voted label
    _normalised: dict[str, NormalisedText] = field(default_factory=dict)

    @property
    def model(self) -> type[BaseModel]:
        return output_model(self.task)

    @property
    def min_votes(self) -> int:
        return max(1, min(self.config.min_votes, self.expected_samples))

    def chunk(self, chunk_id: str) -> NormalisedText:
        if chunk_id not in self._normalised:
            self._normalised[chunk_id] = NormalisedText.of(self.chunks.get(chunk_id, ""))
        return self._normalised[chunk_id]


# ------------------------------------------------------------------------------ schema
class SchemaFilter(Filter):
    """The teacher answered, and the answer validates against the task's output model."""

    name = "schema"
    unit_in = unit_out = "sample"

    def check(self, item: Item, env: FilterEnv) -> Reject | None:
        if item.chunk_id not in env.chunks:
            return Reject("chunk_missing", f"chunk {item.chunk_id} is not in redact/chunks")
        if item.status == "failed":
            return Reject("teacher_failed", item.error or "no answer", repairable=True)
        if item.status == "schema_error" or item.raw_json is None:
            return Reject("schema_error", item.error or "no structured output", repairable=True)
        try:
            payload = json.loads(item.raw_json)
        except json.JSONDecodeError as error:
            return Reject("invalid_json", str(error), repairable=True)
        try:
            item.output = env.model.model_validate(payload)
        except ValidationError as error:
            return Reject(_schema_reason(error), _short_errors(error), repairable=True)
        item.label = getattr(item.output, "label", None) if env.task.type is TaskType.CLASSIFICATION else None
        return None


def _schema_reason(error: ValidationError) -> str:
    kinds = {(e["type"], str(e["loc"][0]) if e["loc"] else "") for e in error.errors()}
    if any(kind == "literal_error" and loc == "label" for kind, loc in kinds):
        return "label_not_in_taxonomy"
    if any(kind == "missing" for kind, _ in kinds):
        return "missing_field"
    return "schema_violation"


def _short_errors(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5]
    )


# ------------------------------------------------------------------------ consistency
class ConsistencyFilter(GroupFilter):
    """Self-consistency over the n samples of a chunk; keeps the consensus with its agreement."""

    name = "consistency"
    unit_in = "sample"
    unit_out = "example"

    def apply_group(self, items: Sequence[Item], env: FilterEnv) -> tuple[list[Item], list[tuple[Item, Reject]]]:
        ordered = sorted(items, key=lambda i: (i.refine_round, i.sample_index, i.item_id))
        by_kind = {TaskType.CLASSIFICATION: self._classification, TaskType.EXTRACTION: self._extraction,
                   TaskType.QA: self._qa}
        return by_kind.get(env.task.type, self._freeform)(ordered, env)

    def _classification(self, items: list[Item], env: FilterEnv) -> tuple[list[Item], list[tuple[Item, Reject]]]:
        votes = Counter(str(i.label) for i in items)
        ranking = votes.most_common()
        top_label, top = ranking[0]
        tally = ", ".join(f"{label}={n}" for label, n in sorted(votes.items()))
        tied = len(ranking) > 1 and ranking[1][1] == top
        if top < env.min_votes or tied:
            detail = f"votes {tally}; need {env.min_votes} for one label"
            return [], [(i, Reject("no_majority", detail, repairable=True)) for i in items]
        if (agreed := env.agreed_labels.get(items[0].chunk_id)) not in (None, top_label):
            detail = f"the repair answered {top_label}; the teacher's vote had agreed on {agreed}"
            return [], [(i, Reject("label_changed", detail)) for i in items]
        majority = [i for i in items if i.label == top_label]
        minority = [i for i in items if i.label != top_label]
        chosen = _merge(majority[0], majority, top / len(items))
        rejects = [(i, Reject("minority_label", f"voted {i.label}; consensus {top_label} ({tally})"))
                   for i in minority]
        return [chosen], rejects

    def _extraction(self, items: list[Item], env: FilterEnv) -> tuple[list[Item], list[tuple[Item, Reject]]]:
        consensus: dict[str, Any] = {}
        agreements: list[float] = []
        disagreeing: list[str] = []
        for spec in env.task.fields:
            values = [_field_key(getattr(i.output, spec.name, None), spec.kind) for i in items]
            counts = Counter(values)
            (best, n), *rest = counts.most_common()
            if n < env.min_votes or (rest and rest[0][1] == n):
                disagreeing.append(f"{spec.name} ({', '.join(sorted(str(v) for v in counts))})")
                continue
            agreements.append(n / len(items))
            source = next(i for i, v in zip(items, values, strict=True) if v == best)
            consensus[spec.name] = getattr(source.output, spec.name, None)
        if disagreeing:
            detail = f"no {env.min_votes}-vote agreement on: " + "; ".join(disagreeing)
            return [], [(i, Reject("field_disagreement", detail, repairable=True)) for i in items]
        merged = _merge(items[0], items, sum(agreements) / len(agreements) if agreements else 1.0)
        merged.output = env.model.model_validate(
            {k: (v.model_dump() if isinstance(v, BaseModel) else v) for k, v in consensus.items()}
        )
        return [merged], []

    def _qa(self, items: list[Item], env: FilterEnv) -> tuple[list[Item], list[tuple[Item, Reject]]]:
        answers = [normalise(str(getattr(i.output, "answer", ""))) for i in items]
        sims = cdist(answers, answers, scorer=fuzz.token_set_ratio)
        agree = sims >= env.config.qa_similarity
        support = agree.sum(axis=1)
        best = max(range(len(items)), key=lambda k: (int(support[k]), float(sims[k].sum()), -k))
        if support[best] < env.min_votes:
            detail = f"best answer agrees with {int(support[best])} of {len(items)}; need {env.min_votes}"
            return [], [(i, Reject("answer_disagreement", detail, repairable=True)) for i in items]
        members = [items[k] for k in range(len(items)) if agree[best, k]]
        chosen = _merge(items[best], members, len(members) / len(items))
        rejects = [
            (items[k], Reject("minority_answer", f"similarity {sims[best, k]:.0f} to the consensus answer"))
            for k in range(len(items)) if not agree[best, k]
        ]
        return [chosen], rejects

    def _freeform(self, items: list[Item], env: FilterEnv) -> tuple[list[Item], list[tuple[Item, Reject]]]:
        groups: dict[str, list[Item]] = {}
        for item in items:
            groups.setdefault(_canonical(item.output), []).append(item)
        return [_merge(g[0], g, len(g) / len(items)) for g in groups.values()], []


def _merge(chosen: Item, members: Sequence[Item], agreement: float) -> Item:
    chosen.sample_ids = sorted({sid for m in members for sid in m.sample_ids})
    chosen.agreement = round(agreement, 6)
    chosen.cost_usd = sum(m.cost_usd for m in members)
    return chosen


def _field_key(value: Any, kind: str) -> str | None:
    raw = value.value if isinstance(value, ExtractedValue) else None
    if raw is None:
        return None
    if kind == "number":
        return normalise_number(raw)
    if kind == "identifier":
        return re.sub(r"\s+", "", normalise(raw))
    return normalise(raw).strip(" .,;:")


def _canonical(output: BaseModel | None) -> str:
    return json.dumps(output.model_dump(mode="json") if output else None, sort_keys=True, ensure_ascii=False)


# -------------------------------------------------------------------------- grounding
class GroundingFilter(Filter):
    """Quotes and values occur in the chunk; exact kinds exactly; labels in the taxonomy."""

    name = "grounding"

    def check(self, item: Item, env: FilterEnv) -> Reject | None:
        chunk = env.chunk(item.chunk_id)
        threshold = env.config.grounding_threshold
        evidence: list[Evidence] = []
        output = item.output
        kind = env.task.type
        if kind is TaskType.CLASSIFICATION:
            label = getattr(output, "label", None)
            if label not in env.task.labels:
                return Reject("label_not_in_taxonomy", f"label {label!r}", repairable=True)
        spans = spans_to_ground(env.task, output.model_dump(mode="json") if output is not None else {})
        for name, text, how in spans:
            if how == "quote" and len(normalise(text)) < env.config.min_quote_chars:
                return Reject("quote_too_short", f"{name}: {text!r}", repairable=True)
            match, best = ground_span(text, how, chunk, threshold=threshold)
            if match is None and how in EXACT_KINDS:
                return Reject("value_not_in_source", f"{name} ({how}) {text!r} not found verbatim", repairable=True)
            if match is None:
                code = "value_not_in_source" if how == "text" else "quote_not_in_source"
                return Reject(code, f"{name}: {text[:200]!r} best match {best:.0f} < {threshold:.0f}", repairable=True)
            evidence.append(Evidence(field=name, start=match.start, end=match.end, score=round(match.score / 100, 4)))
        item.evidence = evidence
        item.grounding_score = min((e.score for e in evidence), default=1.0)
        return None


# ------------------------------------------------------------------------------ render
def render_messages(task: TaskConfig, chunk_text: str, output: BaseModel) -> list[Message]:
    """The training chat: system prompt, instruction + passage, the output model's JSON."""
    turns = [Message(role=m["role"], content=m["content"]) for m in training_prompt(task, chunk_text)]
    return [*turns, Message(role="assistant", content=output.model_dump_json())]


def example_id(chunk_id: str, task_type: str, output: BaseModel | None) -> str:
    return content_id(chunk_id, task_type, _canonical(output))


class RenderStep(Filter):
    """Renders the chat and gives the example its content id (rejects nothing)."""

    name = "render"

    def check(self, item: Item, env: FilterEnv) -> Reject | None:
        assert item.output is not None
        item.messages = render_messages(env.task, env.chunks[item.chunk_id], item.output)
        item.item_id = example_id(item.chunk_id, item.task_type, item.output)
        return None


# ------------------------------------------------------------------------------- audit
IDENTITY = re.compile(
    r"\bas an ai\b|\b(?:large )?language model\b|\bi am an ai\b|\bi'm an ai\b|\bas an assistant\b"
    r"|\bmy training data\b|\bknowledge cutoff\b",
    re.IGNORECASE,
)
REFUSAL = re.compile(
    r"^\s*(?:i'm sorry|i am sorry|sorry,|i apologi[sz]e)\b|\bi (?:cannot|can't|am unable to|won't) "
    r"(?:help|assist|provide|answer|comply|do that)",
    re.IGNORECASE,
)
ROLES = ("system", "user", "assistant")


class AuditFilter(Filter):
    """Heuristics on the rendered chat: structure, emptiness, length, leakage, refusals."""

    name = "audit"

    def check(self, item: Item, env: FilterEnv) -> Reject | None:
        roles = tuple(m.role for m in item.messages)
        if roles != ROLES:
            return Reject("bad_role_structure", f"roles {roles}; expected {ROLES}")
        for message in item.messages:
            if not message.content.strip():
                return Reject("empty_message", f"{message.role} message is empty")
        strings = _strings(item.output)
        if any(not value.strip() for value in strings):
            return Reject("empty_field", "a text field of the output is empty", repairable=True)
        text_values = " ".join(strings)
        answer = item.messages[-1].content
        cfg = env.config
        if len(text_values) < cfg.min_response_chars:
            return Reject("response_too_short", f"{len(text_values)} < {cfg.min_response_chars} chars", repairable=True)
        if len(answer) > cfg.max_response_chars:
            return Reject("response_too_long", f"{len(answer)} > {cfg.max_response_chars} chars", repairable=True)
        if len(item.messages[1].content) > cfg.max_prompt_chars:
            return Reject("prompt_too_long", f"{len(item.messages[1].content)} > {cfg.max_prompt_chars} chars")
        source = env.chunks.get(item.chunk_id, "")
        leak = IDENTITY.search(text_values)
        if leak and not re.search(re.escape(leak.group()), source, re.IGNORECASE):
            return Reject("identity_leakage", f"{leak.group()!r} in the output", repairable=True)
        refusal = REFUSAL.search(text_values)
        if refusal and not re.search(re.escape(refusal.group()), source, re.IGNORECASE):
            return Reject("refusal", f"{refusal.group()!r} in the output", repairable=True)
        return None


def _strings(output: BaseModel | None) -> list[str]:
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(output.model_dump(mode="json") if output is not None else None)
    return found


# -------------------------------------------------------------------------- the chain
class FirstSampleFilter(GroupFilter):
    """Stands in for self-consistency when it is switched off (`filter.disable`): keeps the
    first valid sample of a chunk, as a pipeline without voting would; the others are unused."""

    name = "consistency"
    unit_in = "sample"
    unit_out = "example"

    def apply_group(self, items: Sequence[Item], env: FilterEnv) -> tuple[list[Item], list[tuple[Item, Reject]]]:
        first, *rest = sorted(items, key=lambda i: (i.refine_round, i.sample_index, i.item_id))
        return [_merge(first, [first], 1.0)], [(i, Reject("unused_sample", "consistency switched off")) for i in rest]


def default_filters(config: FilterConfig | None = None) -> list[Filter]:
    """The filter chain; `config.disable` switches filters off (schema and render stay)."""
    off = set(config.disable) if config is not None else set()
    chain: list[Filter] = [SchemaFilter(), FirstSampleFilter() if "consistency" in off else ConsistencyFilter()]
    if "grounding" not in off:
        chain.append(GroundingFilter())
    chain.append(RenderStep())
    if "audit" not in off:
        chain.append(AuditFilter())
    return chain


def items_from_samples(samples: pl.DataFrame) -> list[Item]:
    items = []
    for row in samples.iter_rows(named=True):
        items.append(Item(
            item_id=row["sample_id"], chunk_id=row["chunk_id"], doc_id=row["doc_id"],
            task_type=row["task_type"], raw_json=row.get("output_json"),
            sample_ids=[row["sample_id"]], sample_index=int(row.get("sample_index") or 0),
            refine_round=int(row.get("round") or 0), status=str(row.get("status") or "ok"),
            error=row.get("error"), cost_usd=float(row.get("cost_usd") or 0.0),
            extra={"parent_id": row.get("parent_id")},
        ))
    return items


def quality_score(item: Item, env: FilterEnv) -> float:
    score = item.agreement * item.grounding_score * env.round_penalty ** item.refine_round
    return round(score, 6)


def to_example(item: Item, env: FilterEnv) -> Example:
    assert item.output is not None
    return Example(
        example_id=item.item_id, chunk_id=item.chunk_id, doc_id=item.doc_id,
        task_type=item.task_type, label=item.label, output_json=item.output.model_dump_json(),
        messages=item.messages, sample_ids=item.sample_ids, agreement=item.agreement,
        grounding_score=item.grounding_score, evidence=item.evidence,
        quality_score=quality_score(item, env), refine_round=item.refine_round,
        cost_usd=round(item.cost_usd, 8),
    )


@dataclass
class FilterOutcome:
    examples: list[Example]
    funnel: Funnel


def run_filters(samples: pl.DataFrame, env: FilterEnv, *, stage: str = "filter", round: int = 0,
                filters: Sequence[Filter] | None = None) -> FilterOutcome:
    """All filters over the samples of whole chunks (a shuffle by chunk_id guarantees it)."""
    funnel = Funnel(stage=stage, round=round)
    items = items_from_samples(samples)
    for flt in filters or default_filters(env.config):
        items = funnel.run(flt, items, env)
    examples = [to_example(item, env) for item in items]
    return FilterOutcome(examples=examples, funnel=funnel)
