"""The device profile of the trainer: settings that keep the GPU busy, resolved per device.

``bench/train`` found the trainer path (trl ``SFTTrainer`` through ``train.runner``) well
below a plain Unsloth loop over the same model. What is ours to fix is collected here, so
the runner stays a plain mapping of the config:

- **Packing** (``packing: auto``): on with the unsloth backend, whose attention keeps packed
  examples apart (varlen kernels, else one SDPA call per run of equal-length segments). Off
  elsewhere: with the peft backend it depends on transformers' position-id masking.
- **Optimizer** (``optimizer: auto``): torch's fused AdamW on CUDA. bitsandbytes' 8-bit AdamW
  steps each LoRA tensor separately (hundreds of small launches a step) to save memory that a
  LoRA adapter does not need saving: 42M trainable parameters cost 0.3 GiB of fp32 moments.
- **No host syncs per micro-batch.** transformers' Trainer calls ``.item()`` twice for every
  micro-batch: the NaN/inf filter of the logged loss, and the count of input tokens. Each
  waits for the GPU to drain, so the CPU cannot queue the next batch's kernels meanwhile. On
  CUDA the filter is off (a NaN loss is logged as NaN, not hidden) and the token count stays
  on the device until something reads it (logging, saving, evaluation, the end of training).
"""

from __future__ import annotations

from typing import Any

#: What ``optimizer: auto`` becomes per device.
OPTIMIZER_AUTO = {"cuda": "adamw_torch_fused", "cpu": "adamw_torch"}


def resolve_optimizer(requested: str, device: str) -> str:
    return requested if requested != "auto" else OPTIMIZER_AUTO.get(device, "adamw_torch")


def resolve_packing(requested: bool | None, backend: str) -> bool:
    """``None`` (auto): pack with the unsloth backend only (see the module docstring)."""
    return requested if requested is not None else backend == "unsloth"


def trainer_speed_args(device: str) -> dict[str, Any]:
    """SFTConfig arguments of the device profile (besides optimizer and packing)."""
    on_cuda = device == "cuda"
    return {
        "logging_nan_inf_filter": not on_cuda,  # a bool() of a CUDA tensor every micro-batch
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": on_cuda,
    }


class DeferredTokenCount:
    """Counts non-padding input tokens on the device and adds them to the trainer state lazily.

    Mixed into the SFTTrainer subclass. Same count as transformers' ``non_padding`` mode (the
    attention mask's sum, else tokens != pad id); one ``.item()`` per flush instead of one per
    micro-batch. Only in a single process: data-parallel runs keep transformers' gather.
    """

    _assay_pending_tokens: Any = None
    #: False: transformers' own count, one host sync per micro-batch (bench/train measures both)
    defer_token_count = True

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        args = self.args  # type: ignore[attr-defined]
        if (
            not self.defer_token_count
            or args.include_num_input_tokens_seen != "non_padding"
            or args.world_size > 1
        ):
            super()._track_num_input_tokens(inputs)  # type: ignore[misc]
            return
        if "attention_mask" in inputs:
            count = inputs["attention_mask"].sum()
        else:
            pad_id = getattr(self.processing_class, "pad_token_id", None)  # type: ignore[attr-defined]
            ids = inputs["input_ids"]
            count = (ids != pad_id).sum() if pad_id is not None else ids.numel()
        pending = self._assay_pending_tokens
        self._assay_pending_tokens = count if pending is None else pending + count

    def flush_token_count(self) -> int:
        """Add the pending count to ``state.num_input_tokens_seen`` (one host sync); return it."""
        pending = self._assay_pending_tokens
        self._assay_pending_tokens = None
        state = self.state  # type: ignore[attr-defined]
        if pending is not None:
            state.num_input_tokens_seen += int(pending)
        return int(state.num_input_tokens_seen)


def token_flush_callback(trainer: DeferredTokenCount) -> Any:
    """A callback that flushes the deferred count whenever the state is about to be read."""
    from transformers import TrainerCallback

    class FlushTokenCount(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if (
                control.should_log
                or control.should_save
                or control.should_evaluate
                or control.should_training_stop
                or state.global_step >= state.max_steps
            ):
                trainer.flush_token_count()

        def on_epoch_end(self, args, state, control, **kwargs):
            trainer.flush_token_count()

        def on_train_end(self, args, state, control, **kwargs):
            trainer.flush_token_count()

    return FlushTokenCount()
