"""``train run``: config -> run directory with adapter, merged model, Modelfile and report.

Run directory layout (the contract with ``train eval``)::

    <output_dir>/
      train_config.yaml   resolved config + base_model_path, backend, random_init_standin
      base_model/         only for model: tiny-random (the random-init stand-in)
      checkpoints/        checkpoint-<step>/ (trainer state, optimizer, adapter)
      adapter/            PEFT adapter + tokenizer (the best checkpoint when early stopping)
      merged/             base + adapter merged, 16-bit safetensors + tokenizer
      model-<type>.gguf   the merged model as GGUF (train.gguf), checked against it (train.gguf_check)
      Modelfile           Ollama; FROM the GGUF file when it was written, else ./merged
      report.json, report.md, loss.png
"""

from __future__ import annotations

import gc
import resource
import time
from typing import Any

from train.backends import Loaded, import_backend, load_for_training, select_backend
from train.config import TrainConfig, dump_config
from train.data import (
    ChatEncoder,
    dataset_hash,
    encode_rows,
    load_export,
    texts_of,
    to_dataset,
)
from train.distributed import accumulation_steps, barrier, is_main_process, world_size
from train.export import ADAPTER, export_run
from train.speed import (
    DeferredTokenCount,
    packed_batch,
    packed_row_count,
    resolve_optimizer,
    resolve_packing,
    token_flush_callback,
    trainer_speed_args,
)
from train.tiny import build_tiny_model, is_random_init_standin
from train.train_report import loss_curves, plot_losses, write_report

CHECKPOINTS = "checkpoints"


def resolve_resume(cfg: TrainConfig) -> str | None:
    if cfg.resume_from is None:
        return None
    if cfg.resume_from == "latest":
        from transformers.trainer_utils import get_last_checkpoint

        folder = cfg.run_path / CHECKPOINTS
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if last is None:
            raise FileNotFoundError(f"resume_from: latest, but no checkpoint in {folder}")
        return last
    path = cfg.resolve(cfg.resume_from)
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from: {path} is not a checkpoint folder")
    return str(path)


def _base_model(cfg: TrainConfig, rows: list[dict[str, Any]], resuming: bool) -> str:
    if not cfg.is_tiny:
        return cfg.model_path_or_id()
    base = cfg.run_path / "base_model"
    if is_main_process() and not (resuming and (base / "config.json").exists()):
        build_tiny_model(base, texts_of(rows), cfg.tiny, seed=cfg.seed)
    barrier()  # other processes load the stand-in once the main process has written it
    return str(base.resolve())


def _peak_memory_gib(device: str) -> tuple[float, str]:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**30, "CUDA max allocated"
    # ru_maxrss is KiB on Linux: the whole process's peak resident memory
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process peak RSS"


def batch_plan(cfg: TrainConfig, backend: str, train_ds: Any) -> dict[str, Any]:
    """Rows per micro-batch and accumulation: examples per step, packed or not (train.speed)."""
    per_device, packed_rows, examples_per_row = cfg.per_device_batch_size, None, 1.0
    if resolve_packing(cfg.packing, backend) and cfg.packed_batch_unit == "examples":
        packed_rows = packed_row_count(train_ds, cfg.max_seq_len)
        examples_per_row = len(train_ds) / max(packed_rows, 1)
        per_device, accumulation = packed_batch(cfg.effective_batch_size, per_device, examples_per_row, world_size())
    else:
        accumulation = accumulation_steps(cfg.effective_batch_size, per_device)
    rows_per_step = per_device * accumulation * world_size()
    return {
        "per_device_rows": per_device,
        "accumulation": accumulation,
        "rows_per_step": rows_per_step,
        "packed_rows": packed_rows,
        "examples_per_step": round(rows_per_step * examples_per_row, 1),
    }


def build_trainer(cfg: TrainConfig, loaded: Loaded, train_ds: Any, eval_ds: Any) -> Any:
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    on_cuda = loaded.device == "cuda"
    plan = batch_plan(cfg, loaded.backend, train_ds)
    evaluate = eval_ds is not None
    patience = cfg.early_stopping_patience
    early = evaluate and patience is not None
    args = SFTConfig(
        output_dir=str(cfg.run_path / CHECKPOINTS),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=plan["per_device_rows"],
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=plan["accumulation"],
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a share of the steps in transformers 5
        weight_decay=cfg.weight_decay,
        optim=resolve_optimizer(cfg.optimizer, loaded.device),
        bf16=on_cuda,
        use_cpu=not on_cuda,  # also what makes several CPU processes a gloo data-parallel group
        # the unsloth backend does its own (offloaded) checkpointing inside the model
        gradient_checkpointing=loaded.gradient_checkpointing and loaded.backend == "peft",
        gradient_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=cfg.logging_steps,
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="epoch",
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
        max_length=cfg.max_seq_len,
        packing=resolve_packing(cfg.packing, loaded.backend),
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        **trainer_speed_args(loaded.device),
    )
    callbacks = [EarlyStoppingCallback(patience)] if early and patience is not None else []
    trainer = _trainer_class(SFTTrainer)(
        model=loaded.model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=loaded.tokenizer,
        callbacks=callbacks,
    )
    trainer.add_callback(token_flush_callback(trainer))
    trainer.assay_batch_plan = plan  # for the run report
    return trainer


def _trainer_class(sft_trainer: Any) -> Any:
    """SFTTrainer that falls back to the model's own loss where trl's fused LM head can't run.

    trl 1.15 computes the loss with a Triton kernel (chunked log-probs over the LM head);
    without Triton (CPU-only torch wheels) or off CUDA, use ``transformers.Trainer``'s
    loss: the model's forward with ``labels`` (same cross-entropy over labels != -100).
    """
    from transformers import Trainer
    from trl.trainer import utils as trl_utils

    kernel = getattr(trl_utils, "_ChunkedLogProbFunction", None)

    class AssaySFTTrainer(DeferredTokenCount, sft_trainer):
        def log(self, logs, *args, **kwargs):
            self.flush_token_count()  # the log reads state.num_input_tokens_seen
            return super().log(logs, *args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            on_cuda = next(model.parameters()).is_cuda
            if kernel is not None and on_cuda:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = {**inputs, "use_cache": False}
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return AssaySFTTrainer


def run_training(cfg: TrainConfig, export: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    backend = select_backend(cfg.backend)
    import_backend(backend)  # before transformers/peft/trl
    from transformers import set_seed

    set_seed(cfg.seed)
    run_dir = cfg.run_path
    run_dir.mkdir(parents=True, exist_ok=True)
    splits = load_export(cfg.data_path)
    resume = resolve_resume(cfg)
    all_rows = [row for rows in splits.values() for row in rows]
    base_path = _base_model(cfg, all_rows, resuming=resume is not None)
    standin = is_random_init_standin(base_path)
    if is_main_process():
        dump_config(
            cfg,
            run_dir / "train_config.yaml",
            base_model_path=base_path,
            backend_used=backend,
            random_init_standin=standin,
            processes=world_size(),
        )

    loaded = load_for_training(cfg, base_path, backend)
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoder = ChatEncoder.for_tokenizer(tokenizer, cfg.max_seq_len)
    train_enc = encode_rows(encoder, splits["train"])
    if not train_enc:
        raise ValueError("no training example has assistant tokens left after truncation")
    val_enc = encode_rows(encoder, splits.get("validation", [])) if cfg.eval_each_epoch else []
    trainer = build_trainer(cfg, loaded, to_dataset(train_enc), to_dataset(val_enc) if val_enc else None)

    if loaded.device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    result = trainer.train(resume_from_checkpoint=resume)
    state = trainer.state
    peak_gib, peak_kind = _peak_memory_gib(loaded.device)

    adapter_dir = run_dir / ADAPTER
    trainer.save_model(str(adapter_dir))  # the Trainer saves from the main process only
    if not is_main_process():
        return {"processes": world_size(), "global_step": trainer.state.global_step}
    tokenizer.save_pretrained(str(adapter_dir))

    curves = loss_curves(state.log_history)
    plot_losses(curves, run_dir / "loss.png", cfg.name)
    evals = [loss for _, loss in curves["eval"]]
    runtime = float(result.metrics.get("train_runtime", 0.0)) or 1e-9
    tokens_seen = int(state.num_input_tokens_seen or 0)
    resumed_step = int(resume.rstrip("/").rsplit("-", 1)[-1]) if resume else 0
    metrics = {
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "epochs_done": float(state.epoch or 0.0),
        "first_train_loss": curves["train"][0][1] if curves["train"] else float("nan"),
        "last_train_loss": curves["train"][-1][1] if curves["train"] else float("nan"),
        "best_eval_loss": min(evals) if evals else None,
        "tokens_seen": tokens_seen,
        # tokens of this session only (a resumed run's state already counts the earlier part)
        "tokens_per_s": float(result.metrics.get("train_tokens_per_second", 0.0)) or tokens_seen / runtime,
        "train_runtime_s": runtime,
        "peak_memory_gib": peak_gib,
        "peak_memory_kind": peak_kind,
        "stopped_early": state.global_step < state.max_steps,
        "resumed_at_step": resumed_step,
        "processes": world_size(),
    }
    quantized, checkpointing, attention = loaded.quantized, loaded.gradient_checkpointing, loaded.packed_attention
    batch = trainer.assay_batch_plan
    del trainer, loaded
    gc.collect()
    outputs: dict[str, Any] = {"adapter": str(adapter_dir), "checkpoints": str(run_dir / CHECKPOINTS)}
    if export:
        outputs.update(export_run(run_dir))
    metrics["wall_time_s"] = time.perf_counter() - t0
    report = {
        "name": cfg.name,
        "base_model": cfg.model if not cfg.is_tiny else f"tiny-random ({cfg.tiny.architecture})",
        "base_model_path": base_path,
        "random_init_standin": standin,
        "backend": backend,
        "device": _device_name(),
        "quantized": quantized,
        "gradient_checkpointing": checkpointing,
        "packed_attention": attention,
        "packing": resolve_packing(cfg.packing, backend),
        "batch": batch,
        "data": str(cfg.data_path.resolve()),
        "dataset_sha256": dataset_hash(cfg.data_path),
        "examples": {"train": len(train_enc), "validation": len(val_enc)},
        "config": cfg.model_dump(mode="json"),
        "resumed_from": resume,
        "metrics": metrics,
        "curves": curves,
        "outputs": {**outputs, "report": str(run_dir / "report.md"), "loss_png": str(run_dir / "loss.png")},
    }
    write_report(run_dir, report)
    return report


def _device_name() -> str:
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
