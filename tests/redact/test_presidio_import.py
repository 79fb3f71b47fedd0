"""Presidio comes in through `curate/services/pii/presidio.py` without transformers' pipelines."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow  # a fresh interpreter importing Presidio: several seconds
def test_the_engine_imports_without_transformers_and_transformers_still_imports_after() -> None:
    code = (
        "import sys\n"
        "import curate.services.pii.engine, curate.services.pii.redactor\n"
        "assert 'transformers' not in sys.modules, 'Presidio pulled in transformers'\n"
        "from transformers import pipeline\n"  # hidden for Presidio's import only
        "from curate.services.pii.config import RedactConfig\n"
        "from curate.services.pii.engine import get_engine\n"
        "found = {r.entity_type for r in get_engine(RedactConfig(enabled=True)).detect('mail jane.doe@example.org')}\n"
        "assert found == {'EMAIL_ADDRESS'}, found\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
