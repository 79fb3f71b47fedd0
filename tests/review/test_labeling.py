"""Labeling config, task payloads and annotation mapping: no server needed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from curate.review.labeling import (
    check_correction,
    definitions,
    guidelines_html,
    label_config,
    read_annotation,
    task_payload,
)
from schemas.tasks import TaskConfig

CLASSIFY = TaskConfig(type="classification", instruction="Which area?", labels=("access", "incident"))
EXTRACT = TaskConfig(
    type="extraction", instruction="Extract.",
    fields=({"name": "control_id", "description": "Control id", "kind": "identifier"},
            {"name": "owner", "description": "Who is responsible"}),
)
QA = TaskConfig(type="qa", instruction="Ask and answer.")
FREE = TaskConfig(type="freeform", instruction="Write.")
CHUNK = "AC-2 Account Management. The system owner reviews accounts every 90 days. Logs are kept."


def _tags(xml: str) -> dict[str, ET.Element]:
    return {str(el.get("name")): el for el in ET.fromstring(xml).iter() if el.get("name")}


def test_classification_config_has_highlight_decision_label_and_note() -> None:
    tags = _tags(label_config(CLASSIFY))
    assert tags["chunk"].tag == "Text" and tags["chunk"].get("value") == "$chunk"
    assert tags["evidence"].tag == "Labels" and tags["evidence"].get("toName") == "chunk"
    assert [c.get("value") for c in tags["decision"]] == ["accept", "correct", "reject"]
    assert tags["decision"].get("required") == "true"
    assert [c.get("value") for c in tags["fix_label"]] == ["access", "incident"]
    assert tags["note"].tag == "TextArea"
    assert {"candidate", "others", "location", "reason"} <= tags.keys()
    # the instruction is in the config (the same on every task), not a data column
    headers = [el.get("value") for el in ET.fromstring(label_config(CLASSIFY)).iter("Header")]
    assert any(h and h.endswith(CLASSIFY.instruction) for h in headers)


def test_corrections_show_only_once_correct_is_chosen() -> None:
    root = ET.fromstring(label_config(CLASSIFY))
    (block,) = [v for v in root.iter("View") if v.get("visibleWhen")]
    assert (block.get("visibleWhen"), block.get("whenTagName"), block.get("whenChoiceValue")) == (
        "choice-selected", "decision", "correct")
    assert [c.get("name") for c in block.iter("Choices")] == ["fix_label"]
    assert any("becomes the new quote" in (h.get("value") or "") for h in block.iter("Header"))


def test_definitions_from_guidelines_or_label_descriptions() -> None:
    task = TaskConfig(type="classification", instruction="x", labels=("a", "b", "c"),
                      label_descriptions={"a": "desc of a", "b": "desc of b"})
    assert definitions(task, {"b": "guideline for b"}) == {"a": "desc of a", "b": "guideline for b", "c": ""}
    with pytest.raises(ValueError, match="'z' is not a label"):
        definitions(task, {"z": "typo"})
    assert definitions(EXTRACT, {})["owner"] == "Who is responsible"
    hints = {c.get("value"): c.get("hint") for c in _tags(label_config(task, {"b": "guideline for b"}))["fix_label"]}
    assert hints["a"] == "desc of a" and hints["b"] == "guideline for b"
    html = guidelines_html(task, {"c": "uses <b> & such"})
    assert "<li><b>a</b>: desc of a</li>" in html and "uses &lt;b&gt; &amp; such" in html
    assert "becomes the new quote" in html and "<b>accept</b>" in html


def test_extraction_config_has_one_correction_field_and_label_per_field() -> None:
    tags = _tags(label_config(EXTRACT))
    assert tags["fix_control_id"].tag == "TextArea" and tags["fix_owner"].tag == "TextArea"
    assert [c.get("value") for c in tags["evidence"]] == ["control_id", "owner"]
    assert "fix_label" not in tags


def test_qa_and_freeform_configs() -> None:
    assert {"fix_question", "fix_answer", "evidence"} <= _tags(label_config(QA)).keys()
    free = _tags(label_config(FREE))
    assert {"fix_instruction", "fix_response"} <= free.keys() and "evidence" not in free


def test_label_values_are_escaped() -> None:
    task = TaskConfig(type="classification", instruction="x", labels=('a "b" <c>', "d & e"))
    tags = _tags(label_config(task))
    assert [c.get("value") for c in tags["fix_label"]] == ['a "b" <c>', "d & e"]


def test_task_payload_highlights_evidence_and_predicts_candidate() -> None:
    output = {"label": "access", "quote": "reviews accounts every 90 days"}
    start = CHUNK.index(output["quote"])
    payload = task_payload(
        CLASSIFY, example_id="e1", output_json=json.dumps(output), chunk=CHUNK, source="a.md",
        reason="audit", evidence=[{"field": "quote", "start": start, "end": start + 30, "score": 1.0}],
    )
    assert payload["data"]["example_id"] == "e1" and payload["data"]["chunk"] == CHUNK
    assert list(payload["data"])[:2] == ["reason", "location"]  # the task list's first data columns
    (region,) = [r for r in payload["predictions"][0]["result"] if r["type"] == "labels"]
    assert region["value"]["text"] == output["quote"] == CHUNK[region["value"]["start"]:region["value"]["end"]]
    # nothing pre-selected: the correction label is the reviewer's own choice
    assert not [r for r in payload["predictions"][0]["result"] if r["from_name"] == "fix_label"]
    assert json.loads(payload["data"]["regions"]) == [["quote", start, start + 30]]


def test_region_holds_the_quote_exactly_when_evidence_drops_its_final_stop() -> None:
    """Bug 1: the grounding offsets leave out a quote's edge punctuation; the region must not."""
    quote = "The system owner reviews accounts every 90 days."
    start = CHUNK.index(quote)
    payload = task_payload(
        CLASSIFY, example_id="e1", output_json=json.dumps({"label": "access", "quote": quote}), chunk=CHUNK,
        source="a.md", reason="r", evidence=[{"field": "quote", "start": start, "end": start + len(quote) - 1, "score": 1.0}],
    )
    (region,) = [r["value"] for r in payload["predictions"][0]["result"] if r["type"] == "labels"]
    assert region["text"] == quote and (region["start"], region["end"]) == (start, start + len(quote))


def test_extraction_highlights_each_field_quote_once() -> None:
    output = {"control_id": {"value": "AC-2", "quote": "AC-2 Account Management"}, "owner": {"value": None, "quote": None}}
    evidence = [
        {"field": "control_id.quote", "start": 0, "end": 23, "score": 1.0},
        {"field": "control_id.value", "start": 0, "end": 4, "score": 1.0},
    ]
    payload = task_payload(EXTRACT, example_id="e", output_json=json.dumps(output), chunk=CHUNK, source="s", reason="r", evidence=evidence)
    regions = [r["value"] for r in payload["predictions"][0]["result"] if r["type"] == "labels"]
    assert [(r["labels"], r["text"]) for r in regions] == [(["control_id"], "AC-2 Account Management")]


def test_task_payload_finds_quote_when_evidence_is_missing() -> None:
    output = {"control_id": {"value": "AC-2", "quote": "AC-2 Account Management"}, "owner": {"value": None, "quote": None}}
    payload = task_payload(EXTRACT, example_id="e", output_json=json.dumps(output), chunk=CHUNK, source="s", reason="r", evidence=[])
    regions = [r["value"] for r in payload["predictions"][0]["result"] if r["type"] == "labels"]
    assert regions == [{"start": 0, "end": 23, "text": "AC-2 Account Management", "labels": ["control_id"]}]
    areas = {r["from_name"]: r["value"]["text"] for r in payload["predictions"][0]["result"] if r["type"] == "textarea"}
    assert areas == {"fix_control_id": ["AC-2"]}


def _decision(value: str) -> dict:
    return {"from_name": "decision", "to_name": "chunk", "type": "choices", "value": {"choices": [value]}}


def test_read_accept_reject_and_missing_decision() -> None:
    out = json.dumps({"label": "access", "quote": "Logs are kept."})
    note = {"from_name": "note", "type": "textarea", "value": {"text": ["fine"]}}
    assert read_annotation(CLASSIFY, out, [_decision("accept"), note]).decision == "accept"
    rejected = read_annotation(CLASSIFY, out, [_decision("reject")])
    assert (rejected.decision, rejected.corrected) == ("reject", None)
    assert read_annotation(CLASSIFY, out, []).decision is None
    assert read_annotation(CLASSIFY, out, [_decision("accept"), note]).note == "fine"


def test_read_classification_correction_takes_label_and_moved_quote() -> None:
    out = json.dumps({"label": "access", "quote": "Logs are kept."})
    result = [
        _decision("correct"),
        {"from_name": "fix_label", "type": "choices", "value": {"choices": ["incident"]}},
        {"from_name": "evidence", "type": "labels", "value": {"start": 25, "end": 73, "text": CHUNK[25:73], "labels": ["quote"]}},
    ]
    read = read_annotation(CLASSIFY, out, result)
    assert read.corrected == {"label": "incident", "quote": CHUNK[25:73]}


def test_read_extraction_correction_per_field() -> None:
    out = json.dumps({"control_id": {"value": "AC-3", "quote": "AC-2"}, "owner": {"value": None, "quote": None}})
    result = [
        _decision("correct"),
        {"from_name": "fix_control_id", "type": "textarea", "value": {"text": ["AC-2"]}},
        {"from_name": "fix_owner", "type": "textarea", "value": {"text": ["system owner"]}},
        {"from_name": "evidence", "type": "labels", "value": {"start": 29, "end": 41, "text": "system owner", "labels": ["owner"]}},
    ]
    read = read_annotation(EXTRACT, out, result)
    assert read.corrected == {"control_id": {"value": "AC-2", "quote": "AC-2"}, "owner": {"value": "system owner", "quote": "system owner"}}
    checked = check_correction(EXTRACT, read.corrected, CHUNK, 0.9)
    assert checked.error is None
    assert {(e.field, CHUNK[e.start:e.end]) for e in checked.evidence} == {
        ("control_id.quote", "AC-2"), ("control_id.value", "AC-2"),
        ("owner.quote", "system owner"), ("owner.value", "system owner"),
    }
    assert json.loads(checked.output_json or "") == read.corrected


def test_check_correction_rejects_invalid_and_ungrounded() -> None:
    bad_label = check_correction(CLASSIFY, {"label": "nonsense", "quote": "Logs are kept."}, CHUNK, 0.9)
    assert bad_label.error is not None and bad_label.error.startswith("invalid: label")
    invented = check_correction(CLASSIFY, {"label": "access", "quote": "Passwords rotate hourly via quantum keys."}, CHUNK, 0.9)
    assert invented.error is not None and invented.error.startswith("ungrounded")
    typo = check_correction(CLASSIFY, {"label": "access", "quote": "The system owner reviews acounts every 90 days"}, CHUNK, 0.9)
    assert typo.error is None and 0.9 <= typo.grounding_score < 1.0
    wrong_id = check_correction(EXTRACT, {"control_id": {"value": "AC-9", "quote": "AC-2"}, "owner": {"value": None, "quote": None}}, CHUNK, 0.9)
    assert wrong_id.error is not None and "AC-9" in wrong_id.error


QUOTE = "The system owner reviews accounts every 90 days."


def _pushed(quote: str, evidence: tuple[int, int]) -> dict:
    return task_payload(
        CLASSIFY, example_id="e1", output_json=json.dumps({"label": "access", "quote": quote}), chunk=CHUNK,
        source="a.md", reason="r", evidence=[{"field": "quote", "start": evidence[0], "end": evidence[1], "score": 1.0}],
    )


def _submit(payload: dict, *extra: dict) -> list[dict]:
    """What the labeling view submits: the prediction's regions as they were, plus the reviewer's choices."""
    return [json.loads(json.dumps(item)) for item in payload["predictions"][0]["result"]] + list(extra)


def _fix_label(value: str) -> dict:
    return {"from_name": "fix_label", "to_name": "chunk", "type": "choices", "value": {"choices": [value]}}


def test_label_only_correction_keeps_the_teachers_quote_byte_for_byte() -> None:
    start = CHUNK.index(QUOTE)
    payload = _pushed(QUOTE, (start, start + len(QUOTE) - 1))
    out, regions = payload["data"]["output_json"], payload["data"]["regions"]
    read = read_annotation(CLASSIFY, out, _submit(payload, _decision("correct"), _fix_label("incident")), chunk=CHUNK, regions=regions)
    assert read.corrected == {"label": "incident", "quote": QUOTE} and read.changed and read.spans == {}
    nothing = read_annotation(CLASSIFY, out, _submit(payload, _decision("correct")), chunk=CHUNK, regions=regions)
    assert nothing.corrected == json.loads(out) and not nothing.changed
    same = read_annotation(CLASSIFY, out, _submit(payload, _decision("correct"), _fix_label("access")), chunk=CHUNK, regions=regions)
    assert not same.changed  # re-choosing the teacher's own label changes nothing either


def test_moved_region_becomes_the_new_quote_grounded_by_its_offsets() -> None:
    start = CHUNK.index(QUOTE)
    payload = _pushed(QUOTE, (start, start + len(QUOTE)))
    moved = _submit(payload, _decision("correct"))
    moved[0]["value"].update(start=0, end=24, text=CHUNK[0:24])
    read = read_annotation(CLASSIFY, payload["data"]["output_json"], moved, chunk=CHUNK, regions=payload["data"]["regions"])
    assert read.corrected == {"label": "access", "quote": "AC-2 Account Management."} and read.spans == {"quote": (0, 24)}
    checked = check_correction(CLASSIFY, read.corrected or {}, CHUNK, 0.9, read.spans)
    assert checked.error is None
    assert [(e.field, e.start, e.end, e.score) for e in checked.evidence] == [("quote", 0, 24, 1.0)]


def test_an_approximate_quote_left_in_place_stays_as_the_teacher_wrote_it() -> None:
    typo = "The system owner reviews acounts every 90 days"
    start = CHUNK.index(QUOTE)
    payload = _pushed(typo, (start, start + len(QUOTE) - 1))  # no verbatim occurrence: shown at its evidence
    (region,) = [r["value"] for r in payload["predictions"][0]["result"] if r["type"] == "labels"]
    assert (region["start"], region["end"]) == (start, start + len(QUOTE) - 1)
    read = read_annotation(CLASSIFY, payload["data"]["output_json"], _submit(payload, _decision("correct"), _fix_label("incident")),
                           chunk=CHUNK, regions=payload["data"]["regions"])
    assert read.corrected == {"label": "incident", "quote": typo}
