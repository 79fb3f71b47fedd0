"""Fixtures for the training tests: a small chat export and one shared tiny training run.

The model is ``tiny-random``: a RANDOMLY INITIALISED stand-in (Llama architecture, tokenizer
trained on the fixture text), so the tests check the training machinery, not model quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.train.helpers import chat_rows, tiny_config, write_export


@pytest.fixture(scope="session")
def chat_export(shared_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/validation/test chat JSONL (OpenAI format) from the shared SP 800-53 controls."""
    lines = (shared_corpus / "controls.jsonl").read_text(encoding="utf-8").splitlines()
    controls = [json.loads(line) for line in lines if line.strip()]
    # a spread of families (the file is sorted by family), split by position: deterministic
    rows = chat_rows(controls[::9][:80])
    splits = {
        "train": [r for i, r in enumerate(rows) if i % 5 < 3],
        "validation": [r for i, r in enumerate(rows) if i % 5 == 3],
        "test": [r for i, r in enumerate(rows) if i % 5 == 4],
    }
    return write_export(tmp_path_factory.mktemp("export"), splits)


@pytest.fixture(scope="session")
def tiny_run(chat_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One full ``train run`` through the CLI (train + adapter + merge + Modelfile + report)."""
    import yaml
    from typer.testing import CliRunner

    from train.cli import app

    out = tmp_path_factory.mktemp("run") / "train"
    cfg = tiny_config(chat_export, out)
    cfg_file = out.parent / "train.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude={"base_dir"})), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(cfg_file)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {"run_dir": out, "report": report, "cli_output": result.output, "config": cfg}
