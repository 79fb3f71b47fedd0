"""A tiny RANDOMLY INITIALISED stand-in model, built locally (no download).

It has a real architecture (Llama or Qwen2 via transformers), a byte-level BPE tokenizer
trained with ``tokenizers`` on the dataset's own text, and a ChatML chat template with
``{% generation %}`` markers (assistant-only loss). It is saved with ``save_pretrained`` so
every later step loads it like any hub checkpoint. Its outputs mean nothing: it exists so
that the whole training path (template, masking, LoRA, merge, export) runs on any CPU.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from train.config import TinyModelConfig

#: ChatML, with generation markers around what the assistant must learn to emit,
#: including its end-of-turn token (so the model learns to stop).
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\n' }}"
    "{%- generation -%}{{ message['content'] + '<|im_end|>' }}{%- endgeneration -%}"
    "{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")

#: Marker file that says a folder is a random-init stand-in (the report repeats it).
MARKER = "RANDOM_INIT_STANDIN.json"


def build_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE trained on ``texts``, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.padding_side = "right"
    return fast


def _model_config(shape: TinyModelConfig, tokenizer):
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=shape.max_position_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        # LeCun-style 1/sqrt(d) instead of the hub default 0.02: with a frozen random LM head of
        # std 0.02 a 64-wide model can only move its logits by ~1, so LoRA could barely lower the loss
        initializer_range=shape.hidden_size**-0.5,
    )
    if shape.architecture == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    from transformers import LlamaConfig

    return LlamaConfig(**common)


def build_tiny_model(
    out_dir: Path, texts: Iterable[str], shape: TinyModelConfig | None = None, seed: int = 0
) -> Path:
    """Build, save and return the folder of a random-init stand-in (model + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM

    shape = shape or TinyModelConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(list(texts), shape.vocab_size)
    config = _model_config(shape, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / MARKER).write_text(
        json.dumps(
            {
                "what": "randomly initialised stand-in model; its outputs are meaningless",
                "architecture": shape.architecture,
                "parameters": sum(p.numel() for p in model.parameters()),
                "seed": seed,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return out_dir


def is_random_init_standin(path: Path | str) -> bool:
    return (Path(path) / MARKER).exists()
