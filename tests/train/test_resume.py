"""Resuming from a checkpoint continues the same run (global step, schedule, loss)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.helpers import tiny_config
from train.runner import run_training

pytestmark = pytest.mark.slow  # minutes on 2 cores: `make test-fast` leaves it out


def test_resume_continues_the_same_run(chat_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "train"
    first = run_training(tiny_config(chat_export, out, epochs=2), export=False)
    assert first["metrics"]["global_step"] == 12
    checkpoint = out / "checkpoints" / "checkpoint-6"
    assert checkpoint.is_dir()

    resumed = run_training(tiny_config(chat_export, out, epochs=2, resume_from=str(checkpoint)), export=False)
    m = resumed["metrics"]
    assert resumed["resumed_from"] == str(checkpoint)
    assert m["resumed_at_step"] == 6
    assert m["global_step"] == 12  # continued to the planned end, not restarted at 0
    steps = [step for step, _ in resumed["curves"]["train"]]
    # the history carries the first epoch from the checkpoint and the second from this session
    assert steps == [float(s) for s in range(1, 13)]
    # same schedule and data order: the second epoch's losses repeat the uninterrupted run's
    original = dict(first["curves"]["train"])
    again = dict(resumed["curves"]["train"])
    for step in range(7, 13):
        assert abs(original[float(step)] - again[float(step)]) < 1e-3

    latest = run_training(tiny_config(chat_export, out, epochs=2, resume_from="latest"), export=False)
    assert latest["resumed_from"].endswith("checkpoint-12")
    assert latest["metrics"]["global_step"] == 12
