"""Model loading for the two training backends.

``unsloth``: FastLanguageModel, 4-bit QLoRA, Unsloth's gradient checkpointing and kernels
(CUDA only). ``peft``: transformers + peft; 4-bit NF4 through bitsandbytes on CUDA, full
precision (float32) on CPU. ``auto`` picks unsloth when CUDA is there and unsloth imports,
else peft. Unsloth must be imported before transformers/peft/trl to patch them, so
``import_backend`` runs first, before anything else imports those.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from train.config import TrainConfig
from train.speed import activation_bytes, resolve_gradient_checkpointing

PEFT_PACKED_ATTENTION = "transformers SDPA (position ids)"


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def select_backend(requested: str) -> str:
    """Resolve ``auto``; refuse ``unsloth`` where it cannot run."""
    if requested == "peft":
        return "peft"
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if requested == "unsloth":
        if not cuda_available():
            raise RuntimeError("backend 'unsloth' needs a CUDA GPU; use backend: peft (or auto)")
        if not has_unsloth:
            raise RuntimeError("backend 'unsloth' is not installed: pip install 'assay[gpu]'")
        return "unsloth"
    return "unsloth" if cuda_available() and has_unsloth else "peft"


def import_backend(backend: str) -> None:
    """Import unsloth first (before transformers/peft/trl) when it is the backend."""
    if backend == "unsloth":
        os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
        import unsloth  # noqa: F401


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    backend: str
    device: str
    quantized: bool
    #: checkpointing as resolved for this model and card (``gradient_checkpointing: auto``)
    gradient_checkpointing: bool = True
    #: how packed rows attend within their examples (train/varlen.py on the unsloth backend)
    packed_attention: str = PEFT_PACKED_ATTENTION


def _lora_kwargs(cfg: TrainConfig, backend: str) -> dict[str, Any]:
    return {
        "r": cfg.lora.r,
        "lora_alpha": cfg.lora.alpha,
        "lora_dropout": cfg.lora.dropout_for(backend),
        "target_modules": list(cfg.lora.target_modules),
        "bias": "none",
    }


def load_for_training(cfg: TrainConfig, model_path: str, backend: str) -> Loaded:
    if backend == "unsloth":
        return _load_unsloth(cfg, model_path)
    return _load_peft(cfg, model_path)


def _load_unsloth(cfg: TrainConfig, model_path: str) -> Loaded:
    import torch
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_path,
        max_seq_length=cfg.max_seq_len,
        load_in_4bit=cfg.load_in_4bit,
        dtype=None,
        local_files_only=os.path.isdir(model_path),
    )
    tokens = cfg.per_device_batch_size * cfg.max_seq_len
    checkpointing = resolve_gradient_checkpointing(
        cfg.gradient_checkpointing, "unsloth", activation_bytes(model.config, tokens), torch.cuda.mem_get_info()[0]
    )
    model = FastLanguageModel.get_peft_model(
        model,
        **_lora_kwargs(cfg, "unsloth"),
        use_gradient_checkpointing="unsloth" if checkpointing else False,
        random_state=cfg.seed,
        max_seq_length=cfg.max_seq_len,
    )
    from train.varlen import install_unsloth_varlen  # Unsloth finds no varlen kernel on torch < 2.12

    attention = install_unsloth_varlen()
    return Loaded(model, tokenizer, "unsloth", "cuda", cfg.load_in_4bit, checkpointing, attention)


def _load_peft(cfg: TrainConfig, model_path: str) -> Loaded:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from train.distributed import local_rank

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    on_cuda = cuda_available()
    quantized = on_cuda and cfg.load_in_4bit
    kwargs: dict[str, Any] = {"attn_implementation": "sdpa"}
    if quantized:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["dtype"] = torch.bfloat16
        kwargs["device_map"] = {"": local_rank()}  # one whole copy per data-parallel process
    elif on_cuda:
        kwargs["dtype"] = torch.bfloat16
        kwargs["device_map"] = {"": local_rank()}
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    checkpointing = resolve_gradient_checkpointing(cfg.gradient_checkpointing, "peft", None, None)
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **_lora_kwargs(cfg, "peft")))
    return Loaded(peft_model, tokenizer, "peft", "cuda" if on_cuda else "cpu", quantized, checkpointing)
