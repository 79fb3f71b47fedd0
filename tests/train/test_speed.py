"""The trainer's device profile (train.speed): per-device defaults and the deferred token count.

The model here is a RANDOMLY INITIALISED one-layer Llama: only the trainer machinery is tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from train.speed import (
    activation_bytes,
    packed_batch,
    resolve_gradient_checkpointing,
    resolve_optimizer,
    resolve_packing,
    trainer_speed_args,
)


def test_gpu_profile_defaults() -> None:
    assert resolve_optimizer("auto", "cuda") == "adamw_torch_fused"
    assert resolve_optimizer("auto", "cpu") == "adamw_torch"
    assert resolve_optimizer("adamw_8bit", "cuda") == "adamw_8bit"  # an explicit choice stays
    assert resolve_packing(None, "unsloth") is True
    assert resolve_packing(None, "peft") is False
    assert resolve_packing(False, "unsloth") is False and resolve_packing(True, "peft") is True
    assert trainer_speed_args("cuda")["logging_nan_inf_filter"] is False
    assert trainer_speed_args("cpu")["logging_nan_inf_filter"] is True


def test_checkpointing_auto_is_off_only_where_the_activations_fit() -> None:
    from types import SimpleNamespace

    llama_8b = SimpleNamespace(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32)
    act = activation_bytes(llama_8b, 4 * 2048)
    # above the ~30 GiB bench/train measured without checkpointing, so the estimate errs towards memory
    assert 30 * 2**30 < act < 60 * 2**30
    gib = 2**30
    assert resolve_gradient_checkpointing("auto", "unsloth", act, 130 * gib) is False  # an H200
    assert resolve_gradient_checkpointing("auto", "unsloth", act, 70 * gib) is True  # an 80 GB card
    assert resolve_gradient_checkpointing("auto", "unsloth", act, 20 * gib) is True
    assert resolve_gradient_checkpointing("auto", "peft", act, 130 * gib) is True  # CPU / peft: memory first
    assert resolve_gradient_checkpointing(True, "unsloth", act, 130 * gib) is True  # an explicit choice stays
    assert resolve_gradient_checkpointing(False, "peft", None, None) is False


def test_a_packed_step_holds_the_examples_effective_batch_size_asks_for() -> None:
    # bench/gguf's GPU run: 656 examples in 163 rows; 16 rows a step had held ~64 examples
    assert packed_batch(16, 16, 656 / 163) == (4, 1)
    assert packed_batch(64, 4, 4.0) == (4, 4)  # the micro-batch stays at the configured rows
    assert packed_batch(16, 4, 1.0) == (4, 4)  # one example a row: as unpacked
    assert packed_batch(4, 4, 20.0) == (1, 1)  # a row holds more than asked: one row, never zero
    assert packed_batch(16, 4, 2.0, processes=2) == (4, 1)  # 8 rows over two processes


@pytest.fixture(scope="module")
def random_init_trainer(chat_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """build_trainer over a random-init one-layer Llama (peft backend, CPU), not trained."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tests.train.helpers import tiny_config
    from train.backends import load_for_training
    from train.data import ChatEncoder, encode_rows, load_export, to_dataset
    from train.runner import build_trainer
    from train.tiny import build_tokenizer

    tmp = tmp_path_factory.mktemp("speed")
    rows = load_export(chat_export)["train"][:8]
    tokenizer = build_tokenizer([m["content"] for r in rows for m in r["messages"]], vocab_size=400)
    model_dir = tmp / "model"
    tokenizer.save_pretrained(model_dir)
    shape = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    AutoModelForCausalLM.from_config(shape).save_pretrained(model_dir)
    cfg = tiny_config(chat_export, tmp / "run")
    loaded = load_for_training(cfg, str(model_dir), "peft")
    encoded = encode_rows(ChatEncoder.for_tokenizer(tokenizer, 256), rows)
    return build_trainer(cfg, loaded, to_dataset(encoded), None)


def test_cpu_trainer_keeps_cpu_settings(random_init_trainer: Any) -> None:
    args = random_init_trainer.args
    assert args.optim == "adamw_torch"
    assert args.packing is False  # auto: the peft backend does not pack
    assert args.logging_nan_inf_filter is True
    names = [type(c).__name__ for c in random_init_trainer.callback_handler.callbacks]
    assert "FlushTokenCount" in names


def test_token_count_is_deferred_and_exact(random_init_trainer: Any) -> None:
    """Same count as transformers' own, added to the state only when flushed."""
    trainer = random_init_trainer
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    real = int(batch["attention_mask"].sum())
    assert real < batch["input_ids"].numel()  # the batch has padding, which must not count
    start = trainer.state.num_input_tokens_seen
    trainer._track_num_input_tokens(batch)
    trainer._track_num_input_tokens(batch)
    assert trainer.state.num_input_tokens_seen == start  # no host sync per micro-batch
    assert trainer.flush_token_count() == start + 2 * real
    assert trainer.flush_token_count() == start + 2 * real  # nothing pending twice
    trainer.defer_token_count = False  # transformers' own path: counted at once, same figure
    try:
        trainer._track_num_input_tokens(batch)
    finally:
        trainer.defer_token_count = True
    assert trainer.state.num_input_tokens_seen == start + 3 * real


def test_training_run_counts_every_real_token(tiny_run: dict[str, Any]) -> None:
    """The whole run's tokens_seen is the real tokens of every epoch (flushes lose none)."""
    from transformers import AutoTokenizer

    from train.data import ChatEncoder, encode_rows, load_export

    cfg = tiny_run["config"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_run["run_dir"] / "base_model")
    encoded = encode_rows(
        ChatEncoder.for_tokenizer(tokenizer, cfg.max_seq_len), load_export(cfg.data_path)["train"]
    )
    per_epoch = sum(len(e["input_ids"]) for e in encoded)
    metrics = tiny_run["report"]["metrics"]
    assert metrics["tokens_seen"] == round(metrics["epochs_done"]) * per_epoch


def test_packed_trainer_steps_hold_the_effective_batch_in_examples(
    random_init_trainer: Any, chat_export: Path, tmp_path: Path
) -> None:
    """Packing on (peft backend, CPU): trl's own packed rows, and ~4 examples in each step."""
    from tests.train.helpers import tiny_config
    from train.backends import Loaded
    from train.runner import batch_plan, build_trainer

    config = tiny_config(chat_export, tmp_path / "run").model_copy(
        update={"packing": True, "per_device_batch_size": 4, "effective_batch_size": 4}
    )
    examples = random_init_trainer.train_dataset.select_columns(["input_ids", "labels"])
    same_model = Loaded(
        model=random_init_trainer.model, tokenizer=random_init_trainer.processing_class,
        backend="peft", device="cpu", quantized=False, gradient_checkpointing=False,
    )  # fmt: skip
    trainer = build_trainer(config, same_model, examples, None)
    plan = trainer.assay_batch_plan
    assert trainer.args.packing is True
    assert len(trainer.train_dataset) == plan["packed_rows"] < len(examples)  # trl packed as counted
    args = trainer.args
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == plan["rows_per_step"]
    assert plan["rows_per_step"] == max(1, round(4 * plan["packed_rows"] / len(examples)))
    rows_plan = batch_plan(config.model_copy(update={"packed_batch_unit": "rows"}), "peft", examples)
    assert rows_plan["rows_per_step"] == 4 and rows_plan["packed_rows"] is None  # trl's meaning
