"""The run report's note on packing: packed rows per step can leave a small dataset few steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from train.train_report import packing_note, write_report


def report_of(*, packing: bool, examples: int, steps: int, epochs: float = 3.0, effective: int = 16) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "global_step": steps, "epochs_done": epochs, "resumed_at_step": 0, "first_train_loss": 2.5,
        "last_train_loss": 0.2, "best_eval_loss": None, "tokens_seen": 1, "tokens_per_s": 1.0,
        "peak_memory_gib": 1.0, "peak_memory_kind": "test", "wall_time_s": 1.0, "train_runtime_s": 1.0,
        "stopped_early": False,
    }  # fmt: skip
    return {
        "name": "t", "base_model": "m", "backend": "unsloth", "device": "d", "quantized": True, "data": "x",
        "dataset_sha256": "0" * 64, "examples": {"train": examples, "validation": 0}, "packing": packing,
        "config": {"effective_batch_size": effective, "packed_batch_unit": "rows"}, "metrics": metrics, "curves": {"train": [], "eval": []},
        "outputs": {},
    }  # fmt: skip


def test_packed_small_dataset_gets_a_note_with_both_step_counts() -> None:
    # bench/gguf's GPU run: 656 examples, 3 epochs, 33 steps of 16 packed rows
    note = packing_note(report_of(packing=True, examples=656, steps=33))
    assert note is not None
    assert "~60 examples into each optimizer step" in note and "33 steps" in note and "~123" in note


def test_no_note_unpacked_or_when_steps_hold_about_the_batch() -> None:
    assert packing_note(report_of(packing=False, examples=656, steps=33)) is None
    assert packing_note(report_of(packing=True, examples=656, steps=120)) is None  # ~16 a step


def test_the_note_reaches_report_json_and_md(tmp_path: Path) -> None:
    import json

    write_report(tmp_path, report_of(packing=True, examples=656, steps=33))
    assert "packing put" in json.loads((tmp_path / "report.json").read_text())["notes"][0]
    assert "> Note: packing put" in (tmp_path / "report.md").read_text()


def test_the_report_says_what_a_step_held(tmp_path: Path) -> None:
    report = report_of(packing=True, examples=656, steps=123)
    batch = {"per_device_rows": 4, "accumulation": 1, "rows_per_step": 4, "packed_rows": 163, "examples_per_step": 16.1}
    write_report(tmp_path, {**report, "batch": batch})
    md = (tmp_path / "report.md").read_text()
    assert "| batch per step | 4 rows (4 per micro-batch x 1 accumulation), ~16.1 examples, packed into 163 rows |" in md
    assert "Note:" not in md  # ~16 examples a step: nothing to warn about
