"""The device profile of the trainer: settings that keep the GPU busy, resolved per device.

``bench/train`` found the trainer path (trl ``SFTTrainer`` through ``train.runner``) well
below a plain Unsloth loop over the same model. What is ours to fix is collected here, so
the runner stays a plain mapping of the config:

- **Packing** (``packing: auto``): on with the unsloth backend, whose attention keeps packed
  examples apart (varlen kernels, else one SDPA call per run of equal-length segments). Off
  elsewhere: with the peft backend it depends on transformers' position-id masking. A packed
  step still holds about ``effective_batch_size`` examples (``packed_batch``): packing buys
  speed, not a different optimisation.
- **Optimizer** (``optimizer: auto``): torch's fused AdamW on CUDA. bitsandbytes' 8-bit AdamW
  steps each LoRA tensor separately (hundreds of small launches a step) to save memory that a
  LoRA adapter does not need saving: 42M trainable parameters cost 0.3 GiB of fp32 moments.
- **No host syncs per micro-batch.** transformers' Trainer calls ``.item()`` twice for every
  micro-batch: the NaN/inf filter of the logged loss, and the count of input tokens. Each
  waits for the GPU to drain, so the CPU cannot queue the next batch's kernels meanwhile. On
  CUDA the filter is off (a NaN loss is logged as NaN, not hidden) and the token count stays
  on the device until something reads it (logging, saving, evaluation, the end of training).
- **Gradient checkpointing only where memory needs it** (``gradient_checkpointing: auto``).
  Unsloth's offloaded checkpointing recomputes every layer's forward in the backward pass and
  copies each layer's input to host memory and back: on the 8B shape it held the trainer to
  about two thirds of the same loop without it (bench/train). With the unsloth backend it is
  off when a micro-batch's activations (estimated from the model's shape) fit in half the
  GPU memory that is free once the model is loaded, and on otherwise; the peft backend keeps
  it on (CPU runs and small cards, where memory is what is short).
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


def packed_row_count(train_ds: Any, max_len: int) -> int:
    """Rows that trl's BFD packing makes of `train_ds` (its own function, so the count is trl's)."""
    from trl.data_utils import pack_dataset

    return len(pack_dataset(train_ds.select_columns(["input_ids"]), max_len, "bfd"))


def packed_batch(effective_examples: int, per_device_rows: int, examples_per_row: float, processes: int = 1) -> tuple[int, int]:
    """(rows per micro-batch, accumulation) so that a packed step holds ~`effective_examples`.

    Why: trl counts packed rows, so on short examples packing quietly multiplies the batch and
    divides the optimizer steps. bench/gguf (2026-12-03): 656 examples in 163 rows took 33 steps
    and left SmolLM2-135M at chance on 18 labels, where 123 unpacked steps had reached 57.6%.
    The micro-batch never grows past `per_device_rows` (the memory the config allowed).
    """
    rows_per_step = max(processes, round(effective_examples / max(examples_per_row, 1.0)))
    per_device = max(1, min(per_device_rows, rows_per_step // processes))
    return per_device, max(1, round(rows_per_step / (per_device * processes)))


#: bf16 values per token and decoder layer that the backward pass keeps without checkpointing,
#: as multiples of (hidden size, MLP size). Conservative: bench/train's 8B shape measured about
#: (4.5, 3) (30 GiB for 8,192 tokens over 32 layers at 4096 / 14336).
ACTIVATION_VALUES = (8, 4)
#: Checkpointing stays on unless the estimated activations fit in this share of the free memory.
CHECKPOINT_FREE_SHARE = 0.5


def activation_bytes(model_config: Any, tokens: int) -> int:
    """Estimated bytes of activations one micro-batch of `tokens` keeps for its backward pass."""
    hidden = int(model_config.hidden_size)
    mlp = int(getattr(model_config, "intermediate_size", None) or 4 * hidden)
    per_token_layer = ACTIVATION_VALUES[0] * hidden + ACTIVATION_VALUES[1] * mlp
    return 2 * per_token_layer * int(model_config.num_hidden_layers) * tokens


def resolve_gradient_checkpointing(
    requested: bool | str, backend: str, activations: int | None, free_bytes: int | None
) -> bool:
    """``auto``: off with unsloth when the activations fit (module docstring); else on."""
    if requested != "auto":
        return bool(requested)
    if backend != "unsloth" or activations is None or free_bytes is None:
        return True
    return activations > CHECKPOINT_FREE_SHARE * free_bytes


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
