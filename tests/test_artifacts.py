"""Every artifact declared once, in `schemas/artifacts.py`, and wired by its handle.

The rules (issue 18), held against the code:

1. Every stage of the pipeline reads and writes `schemas.artifacts` handles, never an ad-hoc
   "stage/name" string or `Output`; every artifact has one declaration, and that declaration
   says its columns (a record model, declared columns, or both).
2. No module of `curate` names an artifact or a side file by a string literal: not
   "redact/chunks", not ("judge", "judgments"), not "judgments.parquet" or
   "review.state/decisions.parquet". It imports the handle and uses `artifact.path`.
3. No module outside `schemas/` declares a polars schema at module level: an artifact's columns
   live in `schemas/`, and the few frames that are no artifact are named below with a reason.
   The demo test (`tests/demo/test_demo_run.py`) checks that what each stage writes has exactly
   the declared columns.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from curate.pipeline import all_stages
from schemas import artifacts
from schemas.artifacts import ARTIFACTS, Artifact, SideFile

REPO = Path(__file__).resolve().parents[1]
DECLARED = list(ARTIFACTS)
SIDE_FILES = [value for value in vars(artifacts).values() if isinstance(value, SideFile)]

# "path:NAME" -> why this module-level polars schema is not an artifact's
NOT_ARTIFACTS = {
    "curate/filter/dedup_index.py:INDEX_SCHEMA": "the dedup index's rows: a store shared by runs, outside any run",
    "curate/filter/decontaminate.py:_MATCH_SCHEMA": "matches between candidates and eval items, never written",
}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((REPO / "curate").rglob("*.py")):
        yield path.relative_to(REPO).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _wiring_strings() -> set[str]:
    """The literals that would name an artifact or a side file instead of its handle."""
    names = {f"{a.path}" for a in DECLARED} | {f"{a.path}.parquet" for a in DECLARED}
    names |= {f"{a.name}.parquet" for a in DECLARED}
    names |= {side.path for side in SIDE_FILES} | {side.name for side in SIDE_FILES if "." in side.name}
    return names


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_every_stage_is_wired_by_declared_handles() -> None:
    loose = [
        f"{stage.name}: {item!r}" for stage in all_stages()
        for item in (*stage.inputs, *stage.outputs) if not isinstance(item, Artifact)
    ]
    assert loose == []
    written = [f"{stage.name}/{output.name}" for stage in all_stages() for output in stage.declared_outputs]
    assert sorted(written) == sorted(a.path for a in DECLARED), "an artifact nothing writes, or one not declared"


def test_every_artifact_is_declared_once_with_its_columns() -> None:
    assert len(DECLARED) == len([v for v in vars(artifacts).values() if isinstance(v, Artifact)])
    paths = [a.path for a in DECLARED]
    assert len(paths) == len(set(paths))
    assert [a.path for a in DECLARED if not a.schema] == []
    assert [a.path for a in DECLARED if a.key is not None and a.key not in a.schema] == []


def test_no_module_names_an_artifact_by_a_string() -> None:
    wiring = _wiring_strings()
    stages = {a.stage for a in DECLARED}
    found = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            text = _string(node)
            if text in wiring:
                found.append(f"{name}:{node.lineno}: {text!r}")
            if isinstance(node, ast.Tuple) and len(node.elts) == 2:
                pair = tuple(_string(e) for e in node.elts)
                if pair[0] in stages and f"{pair[0]}/{pair[1]}" in wiring:
                    found.append(f"{name}:{node.lineno}: {pair!r}")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _string(node.right) in stages:
                found.append(f"{name}:{node.lineno}: / {_string(node.right)!r} (a stage's folder)")
    assert found == [], "use the handle in schemas/artifacts.py (artifact.path) instead"


def _is_polars_schema(value: ast.AST) -> bool:
    """`pl.Schema(...)`, `pl.Struct(...)`, or a dict literal of polars dtypes."""
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
        return isinstance(value.func.value, ast.Name) and value.func.value.id == "pl" and value.func.attr in {"Schema", "Struct"}
    if isinstance(value, ast.Dict) and value.values:
        dtypes = [v.func if isinstance(v, ast.Call) else v for v in value.values]
        return all(isinstance(d, ast.Attribute) and isinstance(d.value, ast.Name) and d.value.id == "pl" for d in dtypes)
    return False


def test_no_module_outside_schemas_declares_a_polars_schema() -> None:
    found = []
    for name, tree in _modules():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            for target in targets:
                if isinstance(target, ast.Name) and value is not None and _is_polars_schema(value):
                    found.append(f"{name}:{target.id}")
    assert sorted(set(found) - set(NOT_ARTIFACTS)) == [], "declare an artifact's columns in schemas/artifacts.py"
    assert sorted(set(NOT_ARTIFACTS) - set(found)) == [], "listed but gone: remove them"
