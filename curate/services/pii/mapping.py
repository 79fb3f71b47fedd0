"""The placeholder mapping: kept on this machine only, in `<run_dir>/redact.state/mapping/`.

One JSON file per document (`<doc_id>.json`), written by the redact stage: the placeholder
of each replaced value and the masked values. Nothing that feeds a request, an export or
the dataset card reads these files, except `restore_placeholders` when the client asked
for `redact.restore_in_final: true`, and `curate audit`, which checks that none of these
values was ever sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from curate.run.rundir import atomic_write_text, filesystem, is_url, path_exists, read_text
from curate.services.pii.placeholders import PLACEHOLDER_RE
from schemas.artifacts import REDACTION_MAPPING


def mapping_dir(run_dir: str | Path) -> str:
    """The mapping folder (a local path, or a URL for a remote run directory)."""
    return "/".join([str(run_dir).rstrip("/"), REDACTION_MAPPING.path])


def write_mapping(run_dir: str | Path, doc_id: str, entries: list[dict[str, Any]]) -> None:
    target = f"{mapping_dir(run_dir)}/{doc_id}.json"
    if not entries:
        if path_exists(target):
            if is_url(target):
                fs, path = filesystem(target)
                fs.rm(path)
            else:
                Path(target).unlink(missing_ok=True)
        return
    atomic_write_text(target, json.dumps({"doc_id": doc_id, "entries": entries}, ensure_ascii=False, indent=1))


def _mapping_files(folder: str) -> list[str]:
    if is_url(folder):
        fs, path = filesystem(folder)
        protocol = folder.split("://", 1)[0]
        return sorted(f"{protocol}://{p}" for p in fs.glob(f"{path}/*.json"))
    local = Path(folder)
    return sorted(str(p) for p in local.glob("*.json")) if local.is_dir() else []


def load_mappings(run_dir: str | Path, doc_ids: Iterable[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """doc_id -> mapping entries ({placeholder, entity, value, action})."""
    folder = mapping_dir(run_dir)
    paths = _mapping_files(folder) if doc_ids is None else [f"{folder}/{d}.json" for d in sorted(set(doc_ids))]
    mappings: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        if path_exists(path):
            data = json.loads(read_text(path))
            mappings[data["doc_id"]] = data["entries"]
    return mappings


def restore_placeholders(frame: pl.DataFrame, run_dir: str | Path) -> pl.DataFrame:
    """Put the original values back in place of `<TYPE_n>` placeholders (for
    `redact.restore_in_final: true`). Each row is restored with its own document's mapping
    (column `doc_id`); every String column and the `content` of `messages` are rewritten.
    Masked values cannot be restored and stay masked. The schema is unchanged.
    """
    if frame.height == 0 or "doc_id" not in frame.columns:
        return frame
    mappings = load_mappings(run_dir, frame["doc_id"].unique().to_list())
    if not mappings:
        return frame
    lookup = {
        doc: {e["placeholder"]: e["value"] for e in entries if e.get("placeholder")} for doc, entries in mappings.items()
    }
    rows = frame.to_dicts()
    for row in rows:
        table = lookup.get(row["doc_id"])
        if table:
            for key, value in row.items():
                if key != "doc_id":
                    row[key] = _restore_value(value, table)
    return pl.DataFrame(rows, schema=frame.schema, orient="row")


def _restore_value(value: Any, table: dict[str, str]) -> Any:
    if isinstance(value, str):
        if not PLACEHOLDER_RE.search(value):
            return value
        in_json = _is_json(value)
        return PLACEHOLDER_RE.sub(lambda m: _original(table, m.group(0), in_json), value)
    if isinstance(value, list):
        return [_restore_value(item, table) for item in value]
    if isinstance(value, dict):
        return {k: _restore_value(v, table) for k, v in value.items()}
    return value


def _is_json(text: str) -> bool:
    if not text.lstrip().startswith(("{", "[")):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _original(table: dict[str, str], placeholder: str, in_json: bool) -> str:
    original = table.get(placeholder)
    if original is None:
        return placeholder
    if in_json:  # inside a JSON document (output_json): keep it valid JSON
        return json.dumps(original, ensure_ascii=False)[1:-1]
    return original
