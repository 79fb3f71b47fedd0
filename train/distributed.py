"""Data-parallel training on several processes (GPUs, or CPU processes for testing).

`train run --processes N` re-launches itself through torchrun (`torch.distributed.run`),
which starts N processes with the torch.distributed environment set; the Trainer (through
accelerate) then wraps the model in DistributedDataParallel (NCCL on GPUs, gloo on CPUs). Each process loads the (4-bit) base model on its own GPU, reads a
different share of every batch, and gradients are averaged. Only the peft backend supports
this: Unsloth's open-source release trains on one GPU.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def under_launcher() -> bool:
    """True inside a process started by torchrun (or accelerate launch)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch_command(processes: int, run_args: Sequence[str]) -> list[str]:
    """The torchrun command that runs `train run <run_args>` on `processes` local processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(processes),
        "-m",
        "train.cli",
        "run",
        *run_args,
    ]


def barrier() -> None:
    """Wait for every process (no-op when not distributed); joins the process group first."""
    if world_size() > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def leave_process_group() -> None:
    """Close this process's process group before it exits (no-op when not distributed).

    A process that exits with its gloo/NCCL group open leaves the group's threads to the
    C++ runtime at exit, which may abort ("terminate called without an active exception",
    SIGABRT) after training succeeded, and the launcher then fails the whole run."""
    if world_size() <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def accumulation_steps(effective_batch: int, per_device_batch: int) -> int:
    """Gradient accumulation that keeps the effective batch whatever the number of processes."""
    per_step = per_device_batch * world_size()
    if effective_batch % per_step:
        raise ValueError(
            f"effective_batch_size {effective_batch} is not a multiple of per_device_batch_size "
            f"{per_device_batch} x {world_size()} processes"
        )
    return effective_batch // per_step
