"""Data-parallel training: `train run --processes 2` on two CPU processes (gloo).

The same code path runs one process per GPU on a CUDA machine; here the two processes
share the CPU, which proves the launch, the sharded batches and the main-process-only
outputs, not the speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.train.helpers import TINY_SHAPE
from train.distributed import accumulation_steps, launch_command

pytestmark = pytest.mark.slow  # minutes on 2 cores: `make test-fast` leaves it out


def test_launch_command_runs_train_cli_under_torchrun() -> None:
    command = launch_command(4, ["cfg.yaml", "--backend", "peft"])
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert command[command.index("--nproc-per-node") + 1] == "4"
    assert command[-5:] == ["train.cli", "run", "cfg.yaml", "--backend", "peft"]


def test_accumulation_keeps_the_effective_batch(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert accumulation_steps(16, 4) == 2
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert accumulation_steps(16, 4) == 4


def test_two_processes_train_one_adapter(chat_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "ddp-test",
                "model": "tiny-random",
                "tiny": TINY_SHAPE,
                "data": str(chat_export),
                "output_dir": str(out),
                "learning_rate": 5e-3,
                "warmup_ratio": 0.0,
                "epochs": 2,
                "per_device_batch_size": 4,
                "effective_batch_size": 8,
                "max_seq_len": 256,
                "gradient_checkpointing": False,
                "early_stopping_patience": None,
                "export_gguf": False,
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in {"WORLD_SIZE", "LOCAL_RANK", "RANK"}}
    result = subprocess.run(
        [sys.executable, "-m", "train.cli", "run", str(config), "--processes", "2", "--no-export"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["processes"] == 2
    assert yaml.safe_load((out / "train_config.yaml").read_text())["processes"] == 2
    # 2 processes x 4 rows x 1 accumulation step = the configured effective batch of 8
    train_rows = report["examples"]["train"]
    steps_per_epoch = -(-train_rows // 8)
    assert report["metrics"]["global_step"] in {
        2 * steps_per_epoch,
        2 * steps_per_epoch - 1,
        2 * steps_per_epoch + 1,
    }
    assert report["metrics"]["last_train_loss"] < report["metrics"]["first_train_loss"]
    assert (out / "adapter" / "adapter_config.json").exists()


def test_a_process_leaves_its_process_group_before_it_exits(monkeypatch) -> None:
    """A launched process that exits with its group open may abort at exit (SIGABRT from
    the group's threads) after training succeeded: the CLI leaves the group first."""
    import socket

    import torch.distributed as dist

    from train.distributed import leave_process_group

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    leave_process_group()  # not launched: leaves nothing
    assert dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "2")
    leave_process_group()
    assert not dist.is_initialized()
