"""What a reviewer sees and what their annotation means.

`label_config(task)` generates the Label Studio labeling config from the task type;
`task_payload(...)` turns one example into a task (data + the candidate as a prediction);
`read_annotation(...)` turns an annotation's result back into a decision and, for a
correction, the corrected output (validated and grounded by `check_correction`).

Tag names (the contract between the three):
- `chunk` (Text): the source passage; `evidence` (Labels on it): the quote spans, one
  label per quoted field (`quote` for classification and QA, the field names for extraction).
- `decision` (Choices): accept | correct | reject (required).
- corrections, in a block shown only once "correct" is chosen: `fix_label` (Choices,
  classification, nothing pre-selected), `fix_<field>` (TextArea, one per field for
  extraction), `fix_question`/`fix_answer` (QA), `fix_instruction`/`fix_response`
  (freeform). A moved or redrawn `evidence` region corrects the quote; one left where it
  was pushed (the task's `regions`) keeps the teacher's quote byte for byte.
- `reason`, `location`, `candidate`, `others` (Text): why it was sent, in plain words, where
  the passage is, the candidate answer and what the other samples said.
- `note` (TextArea): free text.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from pydantic import ValidationError

from schemas.records import Evidence
from schemas.tasks import TaskConfig, TaskType, output_model

DECISIONS = ("accept", "correct", "reject")
DECISION_HINTS = {
    "accept": "The answer is right and its quote supports it.",
    "correct": "The answer needs a change: choose the right label or fix the fields below; the highlighted region becomes the new quote.",
    "reject": "No good answer can be made from this passage: the example leaves the dataset.",
}
QUOTE = "quote"
HIGHLIGHT = "#FFD54F"
# Data keys of a task that only our code reads: hidden in the task list.
INTERNAL_DATA = ("chunk", "candidate", "others", "doubt", "example_id", "output_json", "regions")


def evidence_labels(task: TaskConfig) -> list[str]:
    if task.type is TaskType.EXTRACTION:
        return [spec.name for spec in task.fields]
    if task.type in (TaskType.CLASSIFICATION, TaskType.QA):
        return [QUOTE]
    return []


def text_fields(task: TaskConfig) -> list[tuple[str, str]]:
    """(output key, heading) of the fields corrected through a text area."""
    if task.type is TaskType.EXTRACTION:
        return [(spec.name, f"{spec.name}: {spec.description}") for spec in task.fields]
    if task.type is TaskType.QA:
        return [("question", "Question"), ("answer", "Answer")]
    if task.type is TaskType.FREEFORM:
        return [("instruction", "Instruction"), ("response", "Response")]
    return []


def definitions(task: TaskConfig, guidelines: Mapping[str, str]) -> dict[str, str]:
    """One line per label (classification) or field (extraction): `review.guidelines` first,
    else the task's own label descriptions / field descriptions. A guideline naming no label
    or field is an error, so a typo never hides a definition."""
    if task.type is TaskType.CLASSIFICATION:
        names, fallback = list(task.labels), dict(task.label_descriptions)
    elif task.type is TaskType.EXTRACTION:
        names, fallback = [s.name for s in task.fields], {s.name: s.description for s in task.fields}
    else:
        names, fallback = list(guidelines), {}
    unknown = sorted(set(guidelines) - set(names))
    if unknown:
        raise ValueError(
            f"review.guidelines: {', '.join(map(repr, unknown))} is not a {'label' if task.type is TaskType.CLASSIFICATION else 'field'} "
            f"of task {task.name!r} (known: {', '.join(names)})"
        )
    return {name: (guidelines.get(name) or fallback.get(name) or "").strip() for name in names}


def guidelines_html(task: TaskConfig, guidelines: Mapping[str, str]) -> str:
    """The project's instructions (Label Studio's instructions panel, shown before labeling)."""
    defs = definitions(task, guidelines)
    kind = "Labels" if task.type is TaskType.CLASSIFICATION else "Fields" if task.type is TaskType.EXTRACTION else "Guidelines"
    parts = [
        f"<h3>Reviewing {escape(task.name)}</h3>",
        f"<p>The model is asked: <i>{escape(task.instruction)}</i></p>",
        "<p>Each task is one answer of the teacher model, with the source passage and why it was sent to you. "
        "Tasks come most doubtful first: borderline answers (the samples disagreed, or the quote is not word "
        "for word in the passage) before random audit checks.</p>",
    ]
    if defs:
        items = "".join(
            f"<li><b>{escape(name)}</b>: {escape(text) if text else '<i>no definition given (set review.guidelines)</i>'}</li>"
            for name, text in defs.items()
        )
        parts.append(f"<h4>{kind}</h4><ul>{items}</ul>")
    decisions = "".join(f"<li><b>{name}</b>: {escape(DECISION_HINTS[name])}</li>" for name in DECISIONS)
    parts.append(f"<h4>Your decision</h4><ul>{decisions}</ul>")
    if evidence_labels(task):
        parts.append(
            "<p>The highlighted region in the passage is the teacher's quote. When you choose <b>correct</b>, "
            "the highlighted region becomes the new quote: leave it to keep the quote, or delete it and select "
            "other words with the label to change it. A <b>correct</b> that changes nothing is refused when the "
            "decisions are pulled: choose <b>accept</b> instead.</p>"
        )
    return "".join(parts)


def label_config(task: TaskConfig, guidelines: Mapping[str, str] | None = None) -> str:
    """The labeling config (XML) for this task type.

    The object tags' order (reason, location, chunk, candidate, others) is also the order of
    the data columns in Label Studio's task list. The corrections sit in a block shown only
    once "correct" is chosen, and nothing in it is pre-selected."""
    defs = definitions(task, guidelines or {})
    view = ET.Element("View")
    _header(view, "Sent for review because")
    ET.SubElement(view, "Text", name="reason", value="$reason")
    _header(view, "Source passage")
    # (the data key is not "source": Label Studio shows the whole task JSON for $source)
    ET.SubElement(view, "Text", name="location", value="$location")
    labels = evidence_labels(task)
    if labels:
        tag = ET.SubElement(view, "Labels", name="evidence", toName="chunk")
        for value in labels:
            ET.SubElement(tag, "Label", value=value, background=HIGHLIGHT, hint=defs.get(value) or "the quote")
    ET.SubElement(view, "Text", name="chunk", value="$chunk")
    side = ET.SubElement(view, "View", style="display: flex; gap: 24px")
    left = ET.SubElement(side, "View", style="flex: 1")
    _header(left, "Candidate answer (the teacher's)")
    ET.SubElement(left, "Text", name="candidate", value="$candidate")
    right = ET.SubElement(side, "View", style="flex: 1")
    _header(right, "What the other samples said")
    ET.SubElement(right, "Text", name="others", value="$others")
    _header(view, "Decision")
    choices = ET.SubElement(
        view, "Choices", name="decision", toName="chunk", choice="single-radio",
        required="true", showInline="true",
    )
    for value in DECISIONS:
        ET.SubElement(choices, "Choice", value=value, hint=DECISION_HINTS[value])
    fix = ET.SubElement(
        view, "View", visibleWhen="choice-selected", whenTagName="decision", whenChoiceValue="correct",
    )
    if task.type is TaskType.CLASSIFICATION:
        _header(fix, "The right label (the highlighted region in the passage becomes the new quote)")
        fix_label = ET.SubElement(
            fix, "Choices", name="fix_label", toName="chunk", choice="single-radio", showInline="true"
        )
        for value in task.labels:
            ET.SubElement(fix_label, "Choice", value=value, hint=defs.get(value) or value)
    elif labels:
        _header(fix, "Fix the answer (the highlighted regions in the passage become the new quotes)")
    for key, heading in text_fields(task):
        _header(fix, f"Correct {heading}")
        ET.SubElement(
            fix, "TextArea", name=f"fix_{key}", toName="chunk", editable="true",
            maxSubmissions="1", rows="2" if task.type is not TaskType.FREEFORM else "6",
        )
    _header(view, "Note (optional)")
    ET.SubElement(view, "TextArea", name="note", toName="chunk", editable="true", maxSubmissions="1", rows="2")
    _header(view, f"Instruction given to the model: {task.instruction}", size="6")
    ET.indent(view)
    return ET.tostring(view, encoding="unicode")


def _header(parent: ET.Element, text: str, size: str = "5") -> None:
    ET.SubElement(parent, "Header", value=text, size=size)


# --------------------------------------------------------------------------- push side


def render_candidate(output: dict[str, Any]) -> str:
    """The candidate output as readable lines."""
    lines = []
    for key, value in output.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in value.items())
            lines.append(f"{key}: {{{inner}}}")
        else:
            lines.append(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
    return "\n".join(lines)


def locate_quotes(task: TaskConfig, output: dict[str, Any], chunk: str, evidence: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(label, start, end) regions to highlight, one per quote.

    The region holds the quote exactly as the teacher wrote it: its verbatim occurrence in
    the chunk nearest to the evidence offsets (the grounding filter's offsets leave out edge
    punctuation, so they cannot be used as they are). Only a quote the filter matched
    approximately, which has no verbatim occurrence, is shown at its evidence offsets (the
    closest passage); pull tells such an untouched region from a moved one by its offsets.
    """
    spans: list[tuple[str, int, int]] = []
    where = _evidence_offsets(task, evidence, len(chunk))
    for label, quote in _quotes(task, output):
        hint = where.get(label)
        found = [m.start() for m in re.finditer(re.escape(quote), chunk)] if quote else []
        if found:
            start = min(found, key=lambda position: abs(position - (hint[0] if hint else 0)))
            spans.append((label, start, start + len(quote)))
        elif quote and hint:
            spans.append((label, *hint))
    return spans


def _evidence_offsets(task: TaskConfig, evidence: list[dict[str, Any]], size: int) -> dict[str, tuple[int, int]]:
    """label -> (start, end) of the evidence that stands for it (a field's quote, else its value)."""
    by_field = {str(item.get("field", "")): (int(item["start"]), int(item["end"])) for item in evidence}
    out: dict[str, tuple[int, int]] = {}
    for label in evidence_labels(task):
        names = [label] if label == QUOTE else [f"{label}.quote", f"{label}.value"]
        for name in names:
            start, end = by_field.get(name, (0, 0))
            if 0 <= start < end <= size:
                out[label] = (start, end)
                break
    return out


def _quotes(task: TaskConfig, output: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) of each quote of an output (an extracted field without a quote: its value)."""
    if task.type is TaskType.EXTRACTION:
        return [
            (name, str(value.get("quote") or value.get("value") or ""))
            for name, value in output.items() if isinstance(value, dict)
        ]
    if task.type in (TaskType.CLASSIFICATION, TaskType.QA):
        return [(QUOTE, str(output.get(QUOTE) or ""))]
    return []


def task_payload(
    task: TaskConfig,
    *,
    example_id: str,
    output_json: str,
    chunk: str,
    source: str,
    reason: str,
    evidence: list[dict[str, Any]],
    others: str = "",
    doubt: float = 0.0,
    agreement: float | None = None,
    grounding: float | None = None,
    model_version: str = "teacher",
    score: float | None = None,
) -> dict[str, Any]:
    """One Label Studio task: data (with our example id) and the candidate as a prediction.

    The prediction holds the quote regions and the candidate's text fields (shown only once
    "correct" is chosen); it never pre-selects a correction label, so a "correct" is always
    the reviewer's own choice. The data keys' order is the task list's column order."""
    output = json.loads(output_json)
    regions = locate_quotes(task, output, chunk, evidence)
    result: list[dict[str, Any]] = []
    for index, (label, start, end) in enumerate(regions):
        result.append({
            "id": f"ev{index}", "from_name": "evidence", "to_name": "chunk", "type": "labels",
            "value": {"start": start, "end": end, "text": chunk[start:end], "labels": [label]},
        })
    for key, _ in text_fields(task):
        value = output.get(key)
        text = value.get("value") if isinstance(value, dict) else value
        if text is not None and text != "":
            result.append(_textarea(f"fix_{key}", str(text)))
    prediction: dict[str, Any] = {"model_version": model_version, "result": result}
    if score is not None:
        prediction["score"] = score
    data: dict[str, Any] = {
        "reason": reason,
        "location": source,
        "chunk": chunk,
        "candidate": render_candidate(output),
        "others": others or "(no other samples recorded)",
        "label": str(output.get("label", "")) if task.type is TaskType.CLASSIFICATION else _first_value(output),
        "agreement": None if agreement is None else round(agreement, 2),
        "grounding": None if grounding is None else round(grounding, 2),
        "doubt": round(doubt, 6),
        "example_id": example_id,
        "output_json": output_json,
        "regions": json.dumps([[label, start, end] for label, start, end in regions]),
    }
    return {"data": data, "predictions": [prediction]}


def _first_value(output: dict[str, Any]) -> str:
    """A short answer for the task list's label column (non-classification tasks)."""
    for value in output.values():
        text = value.get("value") if isinstance(value, dict) else value
        if text:
            return str(text)[:80]
    return ""


def _textarea(name: str, text: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": "chunk", "type": "textarea", "value": {"text": [text]}}


# --------------------------------------------------------------------------- pull side


@dataclass(frozen=True)
class ReadAnnotation:
    """What one annotation says, before validation. `spans`: label -> (start, end) of each
    quote region the reviewer moved or redrew (its new place in the chunk)."""

    decision: str | None
    corrected: dict[str, Any] | None
    note: str | None
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    changed: bool = False


def read_annotation(
    task: TaskConfig, output_json: str, result: list[dict[str, Any]], *,
    chunk: str | None = None, regions: str | None = None,
) -> ReadAnnotation:
    """Map an annotation's result items to a decision and, for `correct`, the corrected output
    (the candidate with what the reviewer changed laid over it, and nothing else).

    A quote region left where it was pushed (same label and offsets, from the task's
    `regions`), or moved onto the same words, keeps the teacher's quote byte for byte; only a
    region the reviewer moved or redrew replaces the quote, with the region's text (and its
    offsets, where the chunk holds that text there). `changed` says whether anything differs from the candidate (a "correct" that
    changes nothing is refused by pull)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for item in result or []:
        by_name.setdefault(str(item.get("from_name")), []).append(item.get("value") or {})
    decision = _first_choice(by_name.get("decision"))
    note = _text(by_name.get("note"))
    if decision != "correct":
        return ReadAnnotation(decision if decision in DECISIONS else None, None, note)
    output = json.loads(output_json)
    corrected: dict[str, Any] = json.loads(output_json)
    if task.type is TaskType.CLASSIFICATION:
        label = _first_choice(by_name.get("fix_label"))
        if label:
            corrected["label"] = label
    for key, _ in text_fields(task):
        if f"fix_{key}" not in by_name:
            continue
        text = _text(by_name.get(f"fix_{key}"))
        if task.type is TaskType.EXTRACTION:
            previous = output.get(key) if isinstance(output.get(key), dict) else {}
            corrected[key] = {"value": text or None, "quote": (previous or {}).get("quote")}
        else:
            corrected[key] = text or ""
    pushed = {(str(label), int(start), int(end)) for label, start, end in json.loads(regions or "[]")}
    teacher = dict(_quotes(task, output))
    spans: dict[str, tuple[int, int]] = {}
    for region in by_name.get("evidence", []):
        if not region.get("labels"):
            continue
        label = str(region["labels"][0])
        start, end = int(region.get("start", -1)), int(region.get("end", -1))
        at_offsets = chunk[start:end] if chunk is not None and 0 <= start < end <= len(chunk) else None
        quote = region.get("text") if isinstance(region.get("text"), str) else at_offsets
        if quote is None:
            continue
        if (label, start, end) in pushed and quote == at_offsets:
            continue  # left where it was: the teacher's quote stands as written
        if _words(quote) == _words(teacher.get(label, "")):
            continue  # moved onto the same words
        if quote == at_offsets:
            spans[label] = (start, end)  # else (text and offsets disagree) it is grounded by search
        if task.type is TaskType.EXTRACTION and isinstance(corrected.get(label), dict):
            corrected[label]["quote"] = quote
        elif label == QUOTE:
            corrected[QUOTE] = quote
    return ReadAnnotation("correct", corrected, note, spans, corrected != output)


def _words(text: str) -> list[str]:
    """The words of a text, case-folded: two regions with the same words hold the same quote."""
    return re.findall(r"\w+", text.casefold())


def _first_choice(values: list[dict[str, Any]] | None) -> str | None:
    for value in values or []:
        choices = value.get("choices") or []
        if choices:
            return str(choices[0])
    return None


def _text(values: list[dict[str, Any]] | None) -> str | None:
    for value in values or []:
        text = value.get("text")
        if isinstance(text, list):
            text = "\n".join(str(t) for t in text)
        if text:
            return str(text).strip()
    return None


@dataclass(frozen=True)
class CheckedCorrection:
    output_json: str | None
    evidence: list[Evidence]
    grounding_score: float
    error: str | None


def check_correction(
    task: TaskConfig, corrected: dict[str, Any], chunk: str, min_grounding: float,
    spans: Mapping[str, tuple[int, int]] | None = None,
) -> CheckedCorrection:
    """Validate a corrected output against the task's output model and ground it in the chunk
    again. A quote the reviewer drew (`spans`, label -> offsets) is grounded by its offsets:
    its evidence is exactly that region. Everything else goes through the filters' grounding
    functions and rules (`curate.services.similarity.grounding`): quotes and text values must match at
    least `min_grounding` (0-1; exact after normalisation, else rapidfuzz partial-ratio
    alignment), numbers, dates and identifiers verbatim. Evidence field names follow the
    grounding filter's (`quote`, `<field>.quote`, `<field>.value`); the output JSON is the
    model's own serialisation, as the pipeline's.
    """
    from curate.services.similarity.grounding import EXACT_KINDS, NormalisedText, ground_span, spans_to_ground

    model = output_model(task)
    try:
        parsed = model.model_validate(corrected)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'output'}: {item['msg']}" for item in error.errors()
        )
        return CheckedCorrection(None, [], 0.0, f"invalid: {problems}")
    haystack = NormalisedText.of(chunk)
    evidence: list[Evidence] = []
    drawn = {(QUOTE if label == QUOTE else f"{label}.quote"): span for label, span in (spans or {}).items()}
    for name, text, how in spans_to_ground(task, parsed.model_dump(mode="json")):
        if not text.strip():
            return CheckedCorrection(None, [], 0.0, f"ungrounded: {name} is empty")
        start, end = drawn.get(name, (0, 0))
        if end > start and chunk[start:end] == text:
            evidence.append(Evidence(field=name, start=start, end=end, score=1.0))
            continue
        match, best = ground_span(text, how, haystack, threshold=min_grounding * 100)
        if match is None and how in EXACT_KINDS:
            return CheckedCorrection(None, [], 0.0, f"ungrounded: {name} {text!r} is not in the chunk verbatim")
        if match is None:
            return CheckedCorrection(
                None, [], best / 100, f"ungrounded: {name} matches the chunk at {best / 100:.2f} < {min_grounding:.2f}"
            )
        evidence.append(Evidence(field=name, start=match.start, end=match.end, score=round(match.score / 100, 4)))
    score = min((item.score for item in evidence), default=1.0)
    return CheckedCorrection(parsed.model_dump_json(), evidence, score, None)
