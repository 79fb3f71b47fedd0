"""The vectorised fast paths of normalisation and token counting against their plain
definitions, on text of every width (ASCII, Latin-1, the BMP, beyond it): a fast path may
only skip work, never change the result."""

from __future__ import annotations

import json
import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from curate.ingest.normalize import normalize_text
from curate.ingest.tokenize import _CLASSES, OTHER, WORD, WordsTokenizer

# characters that normalisation and tokenisation treat specially, and one of each width
pieces = st.sampled_from(
    ["a", "Z", "7", "_", " ", "  ", "\t", "\n", "\n\n\n", "\r", "\r\n", "\f", "\x00", "\ufeff", "\u00a0", "\u00a0\n",
     "e\u0301", "é", "ß", "—", "\u201c", "\u2028", "\u3000", "東", "😀", "\U00010400", ".", "#", "-"]
)
texts = st.lists(pieces, max_size=60).map("".join)


def normalize_reference(text: str) -> str:
    """normalize_text as first written: every step a plain replace or regex substitution."""
    for old, new in (("\ufeff", ""), ("\r\n", "\n"), ("\r", "\n"), ("\f", "\n\n"), ("\x00", "")):
        text = text.replace(old, new)
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[ \t\u00a0]+(?=\n)", "", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n ")


def starts_reference(text: str) -> list[int]:
    """Token starts, one character at a time: a run of word characters, or one other mark."""
    def kind(ch: str) -> int:
        code = ord(ch)
        if code > 0xFFFF:
            return OTHER if 0x1F000 <= code <= 0x1FAFF else WORD
        return int(_CLASSES[code])

    kinds = [kind(ch) for ch in text]
    return [i for i, k in enumerate(kinds) if k == OTHER or (k == WORD and (i == 0 or kinds[i - 1] != WORD))]


@settings(max_examples=400, deadline=None)
@given(text=texts)
def test_normalize_text_equals_its_plain_definition(text: str) -> None:
    assert normalize_text(text) == normalize_reference(text)


@settings(max_examples=400, deadline=None)
@given(text=texts)
def test_words_tokenizer_equals_a_per_character_scan(text: str) -> None:
    assert WordsTokenizer().starts(text).tolist() == starts_reference(text)


@given(st.lists(st.tuples(st.text(max_size=200), st.integers(-(2**63), 2**63 - 1), st.integers(0, 2**63 - 1)), max_size=30))
@settings(max_examples=150, deadline=None)
def test_content_ids_equal_content_id_row_by_row(rows: list[tuple[str, int, int]]) -> None:
    import polars as pl

    from schemas.ids import content_id, content_ids

    doc_ids = pl.Series([r[0] for r in rows], dtype=pl.String)
    starts = pl.Series([r[1] for r in rows], dtype=pl.Int64)
    ends = pl.Series([r[2] for r in rows], dtype=pl.Int64)
    assert content_ids(doc_ids, starts, ends) == [content_id(*r) for r in rows]
    assert content_ids(doc_ids) == [content_id(r[0]) for r in rows]


# JSONL: the whole-file polars path (jsonl_frame) against the per-line reader
values = st.one_of(
    st.lists(st.sampled_from(["a", " ", "\n", "\t", "é", "e\u0301", "\u00a0", '"', "\\", "\u2028", "\x1f", "\r"]), max_size=12).map("".join),
    st.integers(-5, 5), st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False), st.just(""),
)
records = st.dictionaries(st.sampled_from(["text", "id", "title", "team", "n"]), values, max_size=5)
jsonl_lines = st.one_of(
    records.map(lambda r: json.dumps(r, ensure_ascii=False)),
    records.map(json.dumps),
    st.sampled_from([
        "", "   ", "\u3000", "{not json", "[1, 2]", "3", "{}", '{"text": "a", "text": "b"}', '{"text": "a", "text": null}',
        '{"text": "\\ud800"}', '{"text": NaN}', '{"text": 5}', '{"text": true}', '{"id": 5, "text": "x"}', '{"team": {"a": 1}}',
        '  {"text": "b"}  ', '{"te\\u0078t": "c"}', '{"text": "d\\u00e9\\n"}', '{"text": "x"} {"text": "y"}', '{"__assay_line": "z"}',
    ]),
)
text_only = st.dictionaries(st.just("text"), st.lists(st.sampled_from(["a", " ", "\n", "é", "e\u0301", "\u00a0"]), max_size=8).map("".join), min_size=1)
ids_and_text = st.fixed_dictionaries({"id": st.sampled_from(["r1", "", "r2"]), "text": st.sampled_from(["x", " ", "a  \n\n\n b "])})


def _both(content: str, cfg: object) -> tuple[object, object] | None:
    from curate.ingest.readers.base import ReadResult
    from curate.ingest.readers.jsonl_frame import jsonl_table
    from curate.ingest.readers.records import read_jsonl_lines

    fast = jsonl_table(content, "f.jsonl", cfg)  # type: ignore[arg-type]
    if fast is None:
        return None
    table, errors = fast
    lines = read_jsonl_lines(content, "f.jsonl", cfg, ReadResult([]))  # type: ignore[arg-type]
    plain = [(d.text, d.title, d.record_key, json.dumps(d.metadata, sort_keys=True, ensure_ascii=False, default=str)) for d in lines.documents]
    return (table.select("text", "title", "record_key", "metadata_json").rows(), errors), (plain, lines.errors)


@given(st.lists(jsonl_lines, max_size=8), st.sampled_from([None, "id"]), st.sampled_from([None, "title"]))
@settings(max_examples=300, deadline=None)
def test_jsonl_fast_path_equals_the_per_line_reader(lines: list[str], id_column: str | None, title_column: str | None) -> None:
    from curate.ingest.config import IngestConfig

    both = _both("\n".join(lines) + "\n", IngestConfig(id_column=id_column, title_column=title_column))
    if both is not None:  # declined files are read by the per-line reader alone
        assert both[0] == both[1]


@given(st.one_of(st.lists(text_only, min_size=1, max_size=8), st.lists(ids_and_text, min_size=1, max_size=8)), st.sampled_from([None, "id"]))
@settings(max_examples=150, deadline=None)
def test_jsonl_fast_path_takes_plain_string_records(rows: list[dict[str, str]], id_column: str | None) -> None:
    from curate.ingest.config import IngestConfig

    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    both = _both(content, IngestConfig(id_column=id_column))
    assert both is not None, content  # no reason to decline: string fields in every record, no control characters
    assert both[0] == both[1]


def test_jsonl_fast_path_with_odd_metadata_keys() -> None:
    from curate.ingest.config import IngestConfig

    keys = ["a&b~c", 'q"z', "t\tab", "%", "`!@=<>,;:/", "é", "x y", "(.*)"]
    rows = [{"text": f"record {i}", **{key: f"{key} {i}" for key in keys}} for i in range(3)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    both = _both(content, IngestConfig())
    assert both is not None
    assert both[0] == both[1]
    assert len(both[0][0]) == 3
