"""The architecture diagram, generated: stages from their declarations, services from imports.

`python -m curate.architecture` prints a Mermaid flowchart: one box per stage, grouped by
the package (and command) that owns it, an arrow for every artifact a stage reads from
another stage (from `Stage.inputs`), and a dotted arrow from a stage package to each shared
service whose modules it imports (read from the package's source, so it cannot drift).
README's architecture section is this output; `tests/test_architecture_diagram.py` checks
that it still is.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path

from curate.pipeline import stage_groups
from curate.run.stage import Stage

CURATE = Path(__file__).resolve().parent
SERVICES = ("teacher", "similarity", "pii")


def services_used(package: str) -> list[str]:
    """The shared services whose modules `curate.<package>` imports anywhere in its source."""
    used: set[str] = set()
    for path in sorted((CURATE / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[:2] == ["curate", "services"] and len(parts) > 2 and parts[2] in SERVICES:
                    used.add(parts[2])
    return sorted(used)


def mermaid(groups: Mapping[str, Sequence[Stage]] | None = None) -> str:
    """A Mermaid flowchart of the stages (grouped), their data edges and their services."""
    groups = groups if groups is not None else stage_groups()
    lines = ["flowchart LR"]
    producer: dict[str, str] = {}
    for group, stages in groups.items():
        lines.append(f"  subgraph g_{group}[{group}]")
        for stage in stages:
            lines.append(f"    s_{stage.name}[{stage.name}]")
            for output in stage.output_names:
                producer[f"{stage.name}/{output}"] = stage.name
        lines.append("  end")
    edges: dict[tuple[str, str], list[str]] = {}
    for stages in groups.values():
        for stage in stages:
            for artifact in stage.input_paths:
                source = producer.get(artifact)
                if source is not None and source != stage.name:
                    edges.setdefault((source, stage.name), []).append(artifact.split("/", 1)[1])
    for (source, target), names in edges.items():
        lines.append(f"  s_{source} -->|{', '.join(sorted(set(names)))}| s_{target}")
    lines.append("  subgraph g_services[shared services]")
    lines.extend(f"    svc_{name}(({name}))" for name in SERVICES)
    lines.append("  end")
    for group in groups:
        lines.extend(f"  g_{group} -.-> svc_{service}" for service in services_used(group))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(mermaid(), end="")
