"""What a reviewer sees and what their annotation means.

`label_config(task)` generates the Label Studio labeling config from the task type;
`task_payload(...)` turns one example into a task (data + the candidate as a prediction);
`read_annotation(...)` turns an annotation's result back into a decision and, for a
correction, the corrected output (validated and grounded by `check_correction`).

Tag names (the contract between the three):
- `chunk` (Text): the source passage; `evidence` (Labels on it): the quote spans, one
  label per quoted field (`quote` for classification and QA, the field names for extraction).
- `decision` (Choices): accept | correct | reject (required).
- corrections: `fix_label` (Choices, classification), `fix_<field>` (TextArea, one per
  field for extraction), `fix_question`/`fix_answer` (QA), `fix_instruction`/`fix_response`
  (freeform). A moved or redrawn `evidence` region corrects the quote.
- `note` (TextArea): free text.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.records import Evidence
from schemas.tasks import TaskConfig, TaskType, output_model

DECISIONS = ("accept", "correct", "reject")
QUOTE = "quote"
HIGHLIGHT = "#FFD54F"


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


def label_config(task: TaskConfig) -> str:
    """The labeling config (XML) for this task type."""
    view = ET.Element("View")
    _header(view, "Instruction given to the model")
    ET.SubElement(view, "Text", name="instruction", value="$instruction")
    _header(view, "Source passage")
    # (the data key is not "source": Label Studio shows the whole task JSON for $source)
    ET.SubElement(view, "Text", name="location", value="$location")
    labels = evidence_labels(task)
    if labels:
        tag = ET.SubElement(view, "Labels", name="evidence", toName="chunk")
        for value in labels:
            ET.SubElement(tag, "Label", value=value, background=HIGHLIGHT)
    ET.SubElement(view, "Text", name="chunk", value="$chunk")
    _header(view, "Candidate response (the teacher's, also shown as the prediction)")
    ET.SubElement(view, "Text", name="candidate", value="$candidate")
    _header(view, "Sent for review because")
    ET.SubElement(view, "Text", name="reason", value="$reason")
    _header(view, "Decision")
    choices = ET.SubElement(
        view, "Choices", name="decision", toName="chunk", choice="single-radio",
        required="true", showInline="true",
    )
    for value in DECISIONS:
        ET.SubElement(choices, "Choice", value=value)
    if task.type is TaskType.CLASSIFICATION:
        _header(view, "Correct label (when the decision is 'correct')")
        fix = ET.SubElement(
            view, "Choices", name="fix_label", toName="chunk", choice="single-radio", showInline="true"
        )
        for value in task.labels:
            ET.SubElement(fix, "Choice", value=value)
    for key, heading in text_fields(task):
        _header(view, f"Correct {heading} (when the decision is 'correct')")
        ET.SubElement(
            view, "TextArea", name=f"fix_{key}", toName="chunk", editable="true",
            maxSubmissions="1", rows="2" if task.type is not TaskType.FREEFORM else "6",
        )
    _header(view, "Note (optional)")
    ET.SubElement(view, "TextArea", name="note", toName="chunk", editable="true", maxSubmissions="1", rows="2")
    ET.indent(view)
    return ET.tostring(view, encoding="unicode")


def _header(parent: ET.Element, text: str) -> None:
    ET.SubElement(parent, "Header", value=text, size="5")


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
    """(label, start, end) spans to highlight: the example's evidence offsets where they are
    valid, else an exact search of the quote in the chunk."""
    labels = evidence_labels(task)
    spans: list[tuple[str, int, int]] = []
    fields = {str(item.get("field", "")) for item in evidence}
    for item in evidence:
        field = str(item.get("field", ""))
        if field.endswith(".value") and field.replace(".value", ".quote") in fields:
            continue  # highlight the quote of a field; its value lies inside it
        label = field if field in labels else field.split(".")[0]
        if label not in labels:
            label = labels[0] if len(labels) == 1 else ""
        start, end = int(item["start"]), int(item["end"])
        if label and 0 <= start < end <= len(chunk):
            spans.append((label, start, end))
    if spans or not labels:
        return spans
    for label, quote in _quotes(task, output):
        position = chunk.find(quote) if quote else -1
        if position >= 0:
            spans.append((label, position, position + len(quote)))
    return spans


def _quotes(task: TaskConfig, output: dict[str, Any]) -> list[tuple[str, str]]:
    if task.type is TaskType.EXTRACTION:
        return [
            (name, str(value.get("quote") or ""))
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
    model_version: str = "teacher",
    score: float | None = None,
) -> dict[str, Any]:
    """One Label Studio task: data (with our example id) and the candidate as a prediction."""
    output = json.loads(output_json)
    result: list[dict[str, Any]] = []
    for index, (label, start, end) in enumerate(locate_quotes(task, output, chunk, evidence)):
        result.append({
            "id": f"ev{index}", "from_name": "evidence", "to_name": "chunk", "type": "labels",
            "value": {"start": start, "end": end, "text": chunk[start:end], "labels": [label]},
        })
    if task.type is TaskType.CLASSIFICATION and output.get("label") in task.labels:
        result.append(_choices("fix_label", [output["label"]]))
    for key, _ in text_fields(task):
        value = output.get(key)
        text = value.get("value") if isinstance(value, dict) else value
        if text is not None and text != "":
            result.append(_textarea(f"fix_{key}", str(text)))
    prediction: dict[str, Any] = {"model_version": model_version, "result": result}
    if score is not None:
        prediction["score"] = score
    return {
        "data": {
            "example_id": example_id,
            "instruction": task.instruction,
            "location": source,
            "chunk": chunk,
            "candidate": render_candidate(output),
            "reason": reason,
            "output_json": output_json,
        },
        "predictions": [prediction],
    }


def _choices(name: str, values: list[str]) -> dict[str, Any]:
    return {"from_name": name, "to_name": "chunk", "type": "choices", "value": {"choices": values}}


def _textarea(name: str, text: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": "chunk", "type": "textarea", "value": {"text": [text]}}


# --------------------------------------------------------------------------- pull side


@dataclass(frozen=True)
class ReadAnnotation:
    """What one annotation says, before validation."""

    decision: str | None
    corrected: dict[str, Any] | None
    note: str | None


def read_annotation(task: TaskConfig, output_json: str, result: list[dict[str, Any]]) -> ReadAnnotation:
    """Map an annotation's result items to a decision and, for `correct`, the corrected output
    (the candidate with the reviewer's fields laid over it)."""
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
    regions = [value for value in by_name.get("evidence", []) if value.get("labels")]
    for region in regions:
        label = region["labels"][0]
        quote = region.get("text")
        if not isinstance(quote, str):
            continue
        if task.type is TaskType.EXTRACTION and isinstance(corrected.get(label), dict):
            corrected[label]["quote"] = quote
        elif label == QUOTE:
            corrected[QUOTE] = quote
    return ReadAnnotation("correct", corrected, note)


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


def check_correction(task: TaskConfig, corrected: dict[str, Any], chunk: str, min_grounding: float) -> CheckedCorrection:
    """Validate a corrected output against the task's output model and ground it in the chunk
    again, with the filters' grounding functions and rules (`curate.filters.grounding`):
    quotes and text values must match at least `min_grounding` (0-1; exact after
    normalisation, else rapidfuzz partial-ratio alignment), numbers, dates and identifiers
    verbatim. Evidence field names follow the grounding filter's (`quote`, `<field>.quote`,
    `<field>.value`); the output JSON is the model's own serialisation, as the pipeline's.
    """
    from curate.filters.grounding import EXACT_KINDS, NormalisedText, ground_span, spans_to_ground

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
    for name, text, how in spans_to_ground(task, parsed.model_dump(mode="json")):
        if not text.strip():
            return CheckedCorrection(None, [], 0.0, f"ungrounded: {name} is empty")
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
