"""Fixtures shared by every test area."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    """The public-domain NIST SP 800-53 r4 corpus beside the project (never copied in)."""
    corpus = SHARED / "corpus" / "sp800-53r4"
    if not corpus.exists():
        pytest.fail(f"shared corpus missing at {corpus}: tests need ../shared beside the repo")
    return corpus


@pytest.fixture(scope="session")
def demo_config_path() -> Path:
    return REPO_ROOT / "data" / "demo" / "pipeline.yaml"
