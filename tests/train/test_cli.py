"""`train` as a new user meets it: one-line errors, flags shown as flags, no alarming notices."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from train.cli import app


def _config_without_export(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(f"data: {tmp_path / 'no-export'}\noutput_dir: {tmp_path / 'out'}\n")
    return path


def test_a_missing_dataset_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(_config_without_export(tmp_path))], terminal_width=400)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("FileNotFoundError: ") and "make dataset" in lines[0] and "--debug" in lines[0]
    assert "Traceback" not in result.output


def test_debug_keeps_the_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(_config_without_export(tmp_path)), "--debug"])
    assert result.exit_code == 1
    assert isinstance(result.exception, FileNotFoundError)
    assert result.exc_info is not None and result.exc_info[2] is not None


@pytest.mark.parametrize("command", ["run", "export"])
def test_flags_are_shown_without_a_value_type(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=120)
    assert result.exit_code == 0
    assert "--debug" in result.output
    assert "<bool>" not in result.output
    if command == "run":
        assert "<path>" in result.output  # options that take a value keep their type


def test_the_kernels_hub_notice_of_bitsandbytes_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """The logger bitsandbytes uses for it (bitsandbytes/backends/cpu/ops.py); other records pass."""
    import train  # noqa: F401  (installs the filter)

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure "
                       "you already `pip install kernels`", "No module named 'kernels'")
        logger.warning("some other bitsandbytes warning")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["some other bitsandbytes warning"]


@pytest.mark.slow
def test_importing_bitsandbytes_prints_no_kernels_notice() -> None:
    """In a fresh interpreter: peft (which imports bitsandbytes) after train, as `train run` does."""
    import subprocess
    import sys

    pytest.importorskip("bitsandbytes")
    code = "import train, logging; logging.basicConfig(); import bitsandbytes, peft"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert "gemm_4bit_forward" not in done.stderr + done.stdout
