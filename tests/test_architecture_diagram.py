"""README's architecture diagram is the one `python -m curate.architecture` generates today."""

from __future__ import annotations

from pathlib import Path

from curate.architecture import mermaid, services_used

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_shows_the_generated_diagram() -> None:
    text = README.read_text(encoding="utf-8")
    assert "```mermaid\n" + mermaid() + "```" in text, "run `python -m curate.architecture` and paste it into README"


def test_services_are_read_from_the_imports() -> None:
    assert services_used("generate") == ["teacher"]
    assert "pii" in services_used("redact") and "similarity" in services_used("dataset")
