"""The fast path of JSONL records: the whole file parsed by polars, the record rules as
column expressions. Its documents and errors are those of the per-line path
(`records.read_jsonl`), which reads every file this path declines.

Polars' NDJSON reader is more lenient than `json.loads`: it turns a number or a boolean
into text in a column that also holds text, keeps the first of two equal keys, reads a lone
surrogate escape as NUL and accepts raw control characters in strings. The file is
declined (None) unless none of that can have happened:
- no control character but the newline, no line separator `str.splitlines` knows beyond
  it, no BOM and no surrogate escape in the file;
- every column is text (or wholly absent values): no nested object, array, number or
  boolean, no column a JSON value was coerced into;
- in each column, every occurrence of the key holds a string (`"key": "`), as many as the
  column has values: no duplicate key, no `null`, no number coerced into text;
- a column beside the text, id and title columns has a value in every record (metadata has
  no missing keys);
- every non-blank line (one `str.strip()` leaves something) is an object `{...}`, and there
  are as many records as such lines.
Texts are normalised by `normalize_text` only where a vectorised test finds something for
it to do (its result on the others is the text itself).
"""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.normalize import normalize_text

PY_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_SURROGATE_ESCAPE = r"\\u[dD][89a-fA-F]"
TABLE_COLUMNS = ("text", "title", "record_key", "metadata_json", "line")
_WORK = "__assay_"  # working columns: a file with a key that starts so is declined
_LINE, _TEXT, _WHERE, _REASON, _MESSAGE = (_WORK + name for name in ("line", "text", "where", "reason", "message"))


def jsonl_table(content: str, source: str, cfg: IngestConfig) -> tuple[pl.DataFrame, list[tuple[str, str, str]]] | None:
    """(documents: text, title, record_key, metadata_json, line; errors in line order), or
    None where the per-line reader must read the file."""
    whole = pl.Series([content])
    data = content.encode("utf-8")
    if _declined(content, data, whole):
        return None
    try:
        frame = pl.read_ndjson(data, infer_schema_length=None)
    except Exception:  # any file polars refuses: the per-line reader names the bad lines
        return None
    lines = whole.str.split("\n").explode()
    numbers = (lines.str.strip_chars(PY_WHITESPACE).str.len_bytes() > 0).arg_true() + 1
    records = lines.gather(numbers - 1).str.strip_chars(" ")
    if not (records.str.starts_with("{") & records.str.ends_with("}")).all():  # polars takes a `3` as a row
        return None
    if frame.height != numbers.len() or any(name.startswith(_WORK) for name in frame.columns) or not _faithful(frame, whole, cfg):
        return None
    return _apply_rules(frame.with_columns(numbers.cast(pl.Int64).alias(_LINE)), source, cfg)


def _declined(content: str, data: bytes, whole: pl.Series) -> bool:
    """A control character but the newline, a line separator of str.splitlines, a BOM, a
    surrogate escape (numpy over the bytes, `in` over the rare non-ASCII file)."""
    units = np.frombuffer(data, dtype=np.uint8)
    if bool((units[units < 0x20] != 0x0A).any()):  # the controls, then which: one pass over the file
        return True
    if not content.isascii() and any(mark in content for mark in "\x85\u2028\u2029\ufeff"):
        return True
    return bool(whole.str.contains(_SURROGATE_ESCAPE).item())


def _faithful(frame: pl.DataFrame, whole: pl.Series, cfg: IngestConfig) -> bool:
    special = {cfg.text_column, cfg.id_column, cfg.title_column}
    for name in frame.columns:
        column = frame[name]
        if column.dtype not in (pl.String, pl.Null) or (name not in special and column.null_count()):
            return False
        key = re.escape(json.dumps(name, ensure_ascii=False)) + r"[ \n]*:[ \n]*"
        counts = pl.select(whole.str.count_matches(key).alias("all"), whole.str.count_matches(key + '"').alias("text"))
        if counts.row(0) != (column.len() - column.null_count(),) * 2:
            return False
    return True


def _apply_rules(frame: pl.DataFrame, source: str, cfg: IngestConfig) -> tuple[pl.DataFrame, list[tuple[str, str, str]]]:
    """`records._record`'s rules over the columns: missing text, empty text, missing id (the
    first that applies), then key, title and metadata."""
    absent = [name for name in (cfg.text_column, cfg.id_column, cfg.title_column) if name and name not in frame.columns]
    frame = frame.with_columns(pl.lit(None, pl.String).alias(name) for name in absent)  # as missing values
    frame = frame.with_columns(_normalized(frame[cfg.text_column]).alias(_TEXT))
    text = pl.col(cfg.text_column)
    where = pl.lit(f"{source}:") + pl.col(_LINE).cast(pl.String)
    missing_text = text.is_null()
    empty = pl.col(_TEXT).str.strip_chars(PY_WHITESPACE) == ""
    reasons = pl.when(missing_text).then(pl.lit(E.RECORD_MISSING_TEXT)).when(empty).then(pl.lit(E.RECORD_EMPTY_TEXT))
    messages = (
        pl.when(missing_text)
        .then(where + pl.lit(f": no {cfg.text_column!r} field (set ingest.text_column)"))
        .when(empty)
        .then(where + pl.lit(f": the {cfg.text_column!r} field is empty"))
    )
    key = pl.lit("line-") + pl.col(_LINE).cast(pl.String)
    if cfg.id_column:
        ident = pl.col(cfg.id_column)
        no_id = ident.is_null() | (ident == "")
        reasons = reasons.when(no_id).then(pl.lit(E.RECORD_MISSING_TEXT))
        messages = messages.when(no_id).then(where + pl.lit(f": no {cfg.id_column!r} id field (ingest.id_column)"))
        key = ident
    marked = frame.with_columns(
        where.alias(_WHERE), reasons.otherwise(None).alias(_REASON), messages.otherwise(None).alias(_MESSAGE)
    )
    errors = marked.filter(pl.col(_REASON).is_not_null()).select(_WHERE, _REASON, _MESSAGE).rows()
    docs = marked.filter(pl.col(_REASON).is_null())
    skip = {cfg.text_column, cfg.id_column, cfg.title_column, _LINE, _TEXT}
    table = docs.select(
        pl.col(_TEXT).alias("text"),
        (pl.col(cfg.title_column).replace("", None) if cfg.title_column else pl.lit(None, pl.String)).alias("title"),
        key.alias("record_key"),
        _metadata_json(docs.select(c for c in frame.columns if c not in skip)).alias("metadata_json"),
        pl.col(_LINE).alias("line"),
    )
    return table, errors


def _normalized(texts: pl.Series) -> pl.Series:
    """`normalize_text` of each text: called only where a text has something it changes."""
    texts = texts.cast(pl.String)
    # what normalize_text may change: non-ASCII (NFC), BOM, CR, FF, NUL, a space before a line
    # end, three newlines, a space or newline at either end
    needs = (
        (texts.str.len_bytes() != texts.str.len_chars())
        | texts.str.contains(r"[\r\f\x00]|[ \t]\n|\n\n\n")
        | texts.str.starts_with("\n") | texts.str.starts_with(" ") | texts.str.ends_with("\n") | texts.str.ends_with(" ")
    ).fill_null(False)
    if not needs.any():
        return texts
    at = needs.arg_true()
    fixed = pl.Series([normalize_text(t) for t in texts.gather(at).to_list()], dtype=pl.String)
    return texts.scatter(at, fixed)


def _metadata_json(columns: pl.DataFrame) -> pl.Expr:
    """json.dumps of each record's other fields (all text here), as `document_row` writes it."""
    if not columns.width:
        return pl.lit("{}")
    names = columns.columns
    dumped = [json.dumps(dict(zip(names, row, strict=True)), sort_keys=True, ensure_ascii=False) for row in columns.iter_rows()]
    return pl.lit(pl.Series(dumped, dtype=pl.String))
