"""Policies, consistent placeholders and the offset mapping back to the original text."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.services.pii.config import RedactConfig
from curate.services.pii.engine import RedactEngine
from curate.services.pii.redactor import (
    PlaceholderBook,
    Redaction,
    RedactionPolicyError,
    document_span,
    redact_text,
    to_document_offset,
    to_original_offset,
)

TEXT = (
    "Ask jane.roe@example.com, then bob@example.org, then jane.roe@example.com again; "
    "card 4111 1111 1111 1111; host 10.0.0.7."
)


def test_replace_gives_one_placeholder_per_value(engine: RedactEngine) -> None:
    result = redact_text(engine, TEXT, PlaceholderBook())
    assert result.text == (
        "Ask <EMAIL_ADDRESS_1>, then <EMAIL_ADDRESS_2>, then <EMAIL_ADDRESS_1> again; "
        "card <CREDIT_CARD_1>; host <IP_ADDRESS_1>."
    )
    assert [r.placeholder for r in result.redactions] == [
        "<EMAIL_ADDRESS_1>", "<EMAIL_ADDRESS_2>", "<EMAIL_ADDRESS_1>", "<CREDIT_CARD_1>", "<IP_ADDRESS_1>",
    ]


def test_placeholders_stay_the_same_across_chunks_of_a_document(engine: RedactEngine) -> None:
    book = PlaceholderBook()
    first = redact_text(engine, "From bob@example.org and jane.roe@example.com.", book)
    second = redact_text(engine, "Again jane.roe@example.com, never bob@example.org.", book)
    assert first.text == "From <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>."
    assert second.text == "Again <EMAIL_ADDRESS_2>, never <EMAIL_ADDRESS_1>."
    other_doc = redact_text(engine, "Again jane.roe@example.com.", PlaceholderBook())
    assert other_doc.text == "Again <EMAIL_ADDRESS_1>."


def test_mask_and_keep_policies(engine: RedactEngine) -> None:
    cfg = RedactConfig(enabled=True, policies={"CREDIT_CARD": "mask", "EMAIL_ADDRESS": "keep"}, mask_char="#")
    book = PlaceholderBook()
    result = redact_text(engine, TEXT, book, cfg=cfg)
    assert "jane.roe@example.com" in result.text  # kept
    assert "card ################### ;" not in result.text
    assert "card ###################;" in result.text  # same length as "4111 1111 1111 1111"
    assert {f.entity: f.action for f in result.findings} == {
        "EMAIL_ADDRESS": "keep", "CREDIT_CARD": "mask", "IP_ADDRESS": "replace",
    }
    assert [r.entity for r in result.redactions] == ["CREDIT_CARD", "IP_ADDRESS"]
    assert ("CREDIT_CARD", "4111 1111 1111 1111") in book.masked
    entries = book.entries()
    assert {e["action"] for e in entries} == {"replace", "mask"}
    assert not any(e["entity"] == "EMAIL_ADDRESS" for e in entries)  # kept values are not in the mapping


def test_fail_policy_names_chunk_and_entity(engine: RedactEngine) -> None:
    cfg = RedactConfig(enabled=True, policies={"CREDIT_CARD": "fail"})
    with pytest.raises(RedactionPolicyError) as raised:
        redact_text(engine, TEXT, PlaceholderBook(), cfg=cfg, chunk_id="abc123", source_path="hr/payroll.md")
    message = str(raised.value)
    assert "abc123" in message and "CREDIT_CARD" in message and "hr/payroll.md" in message
    assert "4111" not in message  # the value itself is never in an error
    again = pickle.loads(pickle.dumps(raised.value))  # travels back from worker processes
    assert str(again) == message


def test_findings_carry_no_values(engine: RedactEngine) -> None:
    result = redact_text(engine, TEXT, PlaceholderBook())
    dumped = repr(result.findings) + repr(result.redactions)
    for value in ("jane.roe@example.com", "bob@example.org", "4111 1111 1111 1111", "10.0.0.7"):
        assert value not in dumped


def test_offsets_map_back_to_the_original(engine: RedactEngine) -> None:
    result = redact_text(engine, TEXT, PlaceholderBook())
    redacted = result.text
    quote = "then <EMAIL_ADDRESS_2>, then"
    start = redacted.index(quote)
    o_start = to_original_offset(result.redactions, start, "start")
    o_end = to_original_offset(result.redactions, start + len(quote), "end")
    assert TEXT[o_start:o_end] == "then bob@example.org, then"
    # a quote ending inside a placeholder covers the whole original value
    part = redacted.index("card <CREDIT")
    span = (to_original_offset(result.redactions, part, "start"), to_original_offset(result.redactions, part + 8, "end"))
    assert TEXT[span[0] : span[1]] == "card 4111 1111 1111 1111"


def test_document_offsets_from_a_chunk_row(engine: RedactEngine) -> None:
    prefix = "Header text of the document.\n"
    result = redact_text(engine, TEXT, PlaceholderBook())
    row = {"start": len(prefix), "redactions": [r.__dict__ for r in result.redactions]}
    document = prefix + TEXT
    quote_start = result.text.index("<CREDIT_CARD_1>")
    start, end = document_span(row, quote_start, quote_start + len("<CREDIT_CARD_1>"))
    assert document[start:end] == "4111 1111 1111 1111"
    assert to_document_offset(row, 0) == len(prefix)


@st.composite
def redacted_case(draw: st.DrawFn) -> tuple[str, str, list[Redaction]]:
    """An original text, spans in it replaced by placeholders of other lengths, and the redactions."""
    original = draw(st.text(alphabet="abcdefgh .\n", min_size=0, max_size=80))
    cuts = sorted(draw(st.sets(st.integers(0, len(original)), max_size=8)))
    spans = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2) if cuts[i + 1] > cuts[i]]
    pieces, redactions, pos, out_len = [], [], 0, 0
    for n, (s, e) in enumerate(spans):
        pieces.append(original[pos:s])
        out_len += s - pos
        placeholder = draw(st.sampled_from(["<X_1>", "#", "<LONG_PLACEHOLDER_22>", "**"]))
        redactions.append(Redaction("X", out_len, out_len + len(placeholder), placeholder, s, e, "replace"))
        pieces.append(placeholder)
        out_len += len(placeholder)
        pos = e
        del n
    pieces.append(original[pos:])
    return original, "".join(pieces), redactions


@settings(max_examples=300, deadline=None)
@given(redacted_case())
def test_offset_mapping_property(case: tuple[str, str, list[Redaction]]) -> None:
    original, redacted, redactions = case
    inside = {i for r in redactions for i in range(r.start + 1, r.end)}
    for offset in range(len(redacted) + 1):
        start = to_original_offset(redactions, offset, "start")
        end = to_original_offset(redactions, offset, "end")
        assert 0 <= start <= end <= len(original)
        if offset not in inside:
            assert start == end
            if offset < len(redacted) and not any(r.start <= offset < r.end for r in redactions):
                assert original[start] == redacted[offset]
    for r in redactions:  # a placeholder's span maps to exactly the original value's span
        assert to_original_offset(redactions, r.start, "start") == r.orig_start
        assert to_original_offset(redactions, r.end, "end") == r.orig_end
    # monotone: later offsets never map earlier
    mapped = [to_original_offset(redactions, i, "start") for i in range(len(redacted) + 1)]
    assert mapped == sorted(mapped)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(["alice@example.com", "bob@example.org", "4111 1111 1111 1111", "10.2.3.4", "plain words", " and ", ". "]),
        min_size=1,
        max_size=12,
    )
)
def test_real_redaction_round_trips_outside_placeholders(engine: RedactEngine, parts: list[str]) -> None:
    text = " ".join(parts)
    result = redact_text(engine, text, PlaceholderBook())
    for r in result.redactions:
        assert result.text[r.start : r.end] == r.placeholder
        assert text[r.orig_start : r.orig_end] not in result.text or r.placeholder in text[r.orig_start : r.orig_end]
    for offset in range(len(result.text)):
        if not any(r.start <= offset < r.end for r in result.redactions):
            assert text[to_original_offset(result.redactions, offset)] == result.text[offset]
