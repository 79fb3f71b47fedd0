"""The pipeline config's errors and the `curate` help text, as a new user meets them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.config import ConfigError, load_config

TASK = 'task: {type: classification, name: t, instruction: "Which?", labels: [a, b]}\n'


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("chunk: {max_token: 100}\n", "chunk.max_token: unknown key; did you mean chunk.max_tokens?"),
        ("teacher: {sampels: 3}\n", "teacher.sampels: unknown key; did you mean teacher.samples?"),
        ("chunks: {max_tokens: 100}\n", "chunks: unknown key; did you mean chunk?"),
        ("ingest: {max_tokens: 100}\n", "ingest.max_tokens: unknown key; did you mean chunk.max_tokens"),
        ("validate: {min_response_char: 3}\n", "did you mean validate.min_response_chars?"),
    ],
)
def test_a_mistyped_key_gets_the_nearest_valid_one(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(TASK + yaml_text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert expected in str(error.value)
    assert "Extra inputs are not permitted" not in str(error.value)


def test_the_cli_prints_the_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(TASK + "chunk: {max_token: 100}\n")
    result = CliRunner().invoke(app, ["run", str(path)], terminal_width=200)
    assert result.exit_code == 1
    assert "did you mean chunk.max_tokens?" in result.output


@pytest.mark.parametrize("command", [["run"], ["dataset"], ["ingest"], ["status"], ["review", "push"]])
def test_flags_are_shown_without_a_value_type(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--help" in result.output
    if command == ["run"]:
        assert "--force" in result.output and "--dry-run" in result.output
        assert "<str>" in result.output  # --executor still shows that it takes a value
