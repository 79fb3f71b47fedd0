"""The house plan, held against the code: which packages may import which.

The import graph is grimp's (every `import` in the tree, those inside functions and under
`TYPE_CHECKING` included: a type-only import still makes one part know another). The rules:

1. Layers, each importing only the layers below it (chains count, not only direct imports):
       face      curate.cli, curate.commands, curate.config, curate.cli_config, curate.pipeline,
                 curate.estimate, curate.run_report, curate.run_report_html
       stages    curate.ingest | redact | generate | filter | review | dataset  (independent:
                 no stage imports another, directly or through anything)
       services  curate.services.teacher | similarity | pii  (independent of each other)
       run       curate.run: the run model knows no stage, no service, no pipeline config
       schemas
       assay     the error base, config-file loading, atomic writes (imports nothing of ours)
2. `train` imports, of `curate`, only the teacher service (its judge), and reaches no stage,
   no face module and the run model through it.
3. No import cycles between modules at run time (the run-time graph, without TYPE_CHECKING
   imports).
"""

from __future__ import annotations

import functools

import grimp
import pytest

FACE = (
    "curate.cli", "curate.commands", "curate.config", "curate.cli_config", "curate.pipeline",
    "curate.estimate", "curate.run_report", "curate.run_report_html", "curate.architecture",
)
STAGES = ("curate.ingest", "curate.redact", "curate.generate", "curate.filter", "curate.review", "curate.dataset")
SERVICES = ("curate.services.teacher", "curate.services.similarity", "curate.services.pii")
LAYERS = [
    grimp.Layer(*FACE, independent=False),
    grimp.Layer(*STAGES, independent=True),
    grimp.Layer(*SERVICES, independent=True),
    grimp.Layer("curate.run"),
    grimp.Layer("schemas"),
    grimp.Layer("assay"),
]
PACKAGES = ("curate", "train", "schemas", "assay")


@functools.cache
def graph(*, runtime_only: bool = False) -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=runtime_only, cache_dir=None)


def _describe(dependency: grimp.PackageDependency) -> str:
    routes = sorted(" -> ".join([*route.heads, *route.middle, *route.tails]) for route in dependency.routes)
    return f"{dependency.importer} must not import {dependency.imported}: " + "; ".join(routes[:3])


def test_every_layer_imports_only_the_layers_below_it() -> None:
    illegal = graph().find_illegal_dependencies_for_layers(layers=LAYERS)
    assert not illegal, "\n".join(sorted(_describe(d) for d in illegal))


def test_every_curate_module_belongs_to_a_layer() -> None:
    """A new top-level module of `curate` must be given a place in the plan (and here)."""
    placed = (*FACE, *STAGES, *SERVICES, "curate.run", "curate.services")
    modules = graph().find_children("curate")
    assert sorted(m for m in modules if m not in placed) == []


@pytest.mark.parametrize("target", [*FACE, *STAGES, "curate.run", "curate.services.similarity", "curate.services.pii"])
def test_train_reaches_only_the_teacher_service_of_curate(target: str) -> None:
    chain = graph().find_shortest_chain(importer="train", imported=target, as_packages=True)
    assert chain is None, f"train reaches {target}: {' -> '.join(chain or ())}"


def test_train_imports_of_curate_are_the_teacher_service() -> None:
    direct = graph().find_matching_direct_imports(import_expression="train.** -> curate.**")
    outside = sorted(
        f"{i['importer']} -> {i['imported']}" for i in direct
        if not i["imported"].startswith("curate.services.teacher")
    )
    assert outside == []


def test_no_import_cycles_at_run_time() -> None:
    runtime = graph(runtime_only=True)
    cycles = set()
    for importer in runtime.modules:
        for imported in runtime.find_modules_directly_imported_by(importer):
            back = runtime.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.add(" -> ".join((importer, *back)))
    assert sorted(cycles) == []


def test_presidio_is_imported_only_through_the_pii_adapter() -> None:
    """`curate.services.pii.presidio` imports Presidio without transformers' pipelines (three
    quarters of its import time); a direct import elsewhere could run first and pay it all."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    direct = []
    for path in sorted((root / "curate").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.startswith("presidio_") for n in names):
                direct.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    assert [d for d in direct if not d.startswith("curate/services/pii/presidio.py:")] == []


# ------------------------------------------------------------------ executor services
PROCESS_POOL_MODULES = ("ray", "multiprocessing", "concurrent.futures.process")


def executor_leaks(source: str) -> list[tuple[int, str]]:
    """Where `source` knows which executor runs it: an import of Ray or of a process pool,
    or a read of `<...>.executor.kind`. Thread pools inside one task are allowed."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
            if node.module == "concurrent.futures":
                modules += [f"concurrent.futures.{a.name}" for a in node.names if a.name == "ProcessPoolExecutor"]
        elif isinstance(node, ast.Attribute) and node.attr == "kind":
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "executor") or (
                    isinstance(owner, ast.Attribute) and owner.attr == "executor"):
                found.append((node.lineno, "reads executor.kind"))
            continue
        else:
            continue
        for module in modules:
            if any(module == banned or module.startswith(f"{banned}.") for banned in PROCESS_POOL_MODULES) \
                    or module == "concurrent.futures.ProcessPoolExecutor":
                found.append((node.lineno, f"imports {module}"))
    return found


def test_only_the_run_model_knows_the_executor() -> None:
    """Stages and services get their worker pool and rate limiter from the executor that runs
    them (`ctx.pool()`, `ctx.limiter()`: `curate.run.services`); no code of `curate` outside
    `curate/run/` imports Ray, starts a process pool or asks `executor.kind`."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    leaks = [
        f"{path.relative_to(root).as_posix()}:{line}: {what}"
        for path in sorted((root / "curate").rglob("*.py"))
        if "run" not in path.relative_to(root / "curate").parts[:1]
        for line, what in executor_leaks(path.read_text(encoding="utf-8"))
    ]
    assert leaks == [], ("only curate/run knows the executor; ask the stage context for a pool or "
                         "a limiter (ctx.pool(), ctx.limiter()) instead:\n" + "\n".join(leaks))


@pytest.mark.parametrize(("source", "what"), [
    ("import ray", "imports ray"),
    ("from ray.util.multiprocessing import Pool", "imports ray.util.multiprocessing"),
    ("import multiprocessing", "imports multiprocessing"),
    ("from concurrent.futures import ProcessPoolExecutor", "imports concurrent.futures.ProcessPoolExecutor"),
    ("if config.executor.kind == 'ray': pass", "reads executor.kind"),
    ("def f(executor): return executor.kind", "reads executor.kind"),
])
def test_the_executor_check_sees_each_leak(source: str, what: str) -> None:
    assert [w for _, w in executor_leaks(source)] == [what]


def test_the_executor_check_allows_thread_pools_and_other_kinds() -> None:
    source = "from concurrent.futures import ThreadPoolExecutor\nx = stage.kind\ny = spec.kind"
    assert executor_leaks(source) == []
