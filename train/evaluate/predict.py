"""Batched answers from a causal LM (base, adapter or merged), timed.

On CUDA with Unsloth installed, models are switched to Unsloth's fast inference mode. torch
loads when a model does, not with this module: `train.evaluate.evaluate` imports it, and the
model-free baselines and metrics beside it need no torch (5-7 s to import on 2 cores).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    import torch

P = ParamSpec("P")
R = TypeVar("R")


def _inference_mode(fn: Callable[P, R]) -> Callable[P, R]:
    """`torch.inference_mode()` around each call, with torch imported at the call."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return wrapper


@dataclass
class LoadedModel:
    name: str
    model: Any
    tokenizer: Any

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_model(name: str, path: str | Path, adapter: str | Path | None = None) -> LoadedModel:
    """A checkpoint folder (or hub id), optionally with a PEFT adapter on top."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(adapter or path))
    model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    model = model.to(device)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    if device == "cuda":
        _unsloth_fast_inference(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return LoadedModel(name, model, tokenizer)


def _unsloth_fast_inference(model: Any) -> None:
    try:
        from unsloth import FastLanguageModel
    except ImportError:
        return
    FastLanguageModel.for_inference(model)


def render_prompts(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> list[str]:
    return [
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        for messages in conversations
    ]


@_inference_mode
def generate(
    loaded: LoadedModel,
    conversations: Sequence[list[dict[str, str]]],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> tuple[list[str], float]:
    """Greedy answers to each conversation, and the wall seconds they took."""
    tokenizer, model = loaded.tokenizer, loaded.model
    prompts = render_prompts(tokenizer, conversations)
    answers: list[str] = []
    started = time.perf_counter()
    for offset in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[offset : offset + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(loaded.device)
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        answers.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return answers, time.perf_counter() - started


def latencies(
    loaded: LoadedModel, conversations: Sequence[list[dict[str, str]]], *, max_new_tokens: int
) -> list[float]:
    """Seconds per example, one request at a time (what a caller of a served model waits)."""
    timings = []
    for conversation in conversations:
        _, seconds = generate(loaded, [conversation], max_new_tokens=max_new_tokens, batch_size=1)
        timings.append(seconds)
    return timings


@_inference_mode
def continuation_logprobs(
    loaded: LoadedModel, prompts: Sequence[str], continuations: Sequence[str], batch_size: int = 16
) -> list[float]:
    """Summed log-probability of each continuation after its prompt (right-padded batches)."""
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    scores: list[float] = []
    for offset in range(0, len(prompts), batch_size):
        rows, spans = [], []
        for prompt, continuation in zip(
            prompts[offset : offset + batch_size], continuations[offset : offset + batch_size], strict=True
        ):
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            cont_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
            rows.append(prompt_ids + cont_ids)
            spans.append((len(prompt_ids), len(prompt_ids) + len(cont_ids)))
        width = max(len(r) for r in rows)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=loaded.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=loaded.device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = input_ids[:, 1:]
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, (start, end) in enumerate(spans):
            scores.append(float(token_lp[row, start - 1 : end - 1].sum()) if end > start else -math.inf)
    return scores


def mean_nll(loaded: LoadedModel, conversations: Sequence[list[dict[str, str]]]) -> float:
    """Mean negative log-likelihood per token of each final assistant turn given the rest."""
    tokenizer = loaded.tokenizer
    prompts = render_prompts(tokenizer, [c[:-1] for c in conversations])
    answers = [c[-1]["content"] for c in conversations]
    total = continuation_logprobs(loaded, prompts, answers)
    tokens = [len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]
    return -sum(total) / max(1, sum(tokens))
