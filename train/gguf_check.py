"""Does the GGUF file answer like the merged model? A round trip through transformers.

transformers loads a GGUF file back (``from_pretrained(..., gguf_file=...)``), dequantising
every tensor to float32 with the ``gguf`` package (F32, F16, BF16, Q8_0, Q4_0/1, Q5_0/1 and
the K-quants Q2_K..Q6_K), so the weights the file really carries can be run here without any
llama.cpp runtime. Both models answer the test split's first N prompts greedily, in the same
batches, through the merged model's tokenizer (the GGUF file's vocabulary is compared with it
token by token); the report gets the share of identical answers and each one's exact match
against the reference answer, with the paired bootstrap interval of the difference.

Left out on purpose: llama.cpp's own kernels (quantised matmuls accumulate differently from a
dequantised float32 matmul), so agreement here bounds what the file *holds*, not what a
particular runtime computes from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from train.evaluate.intervals import mean_interval, paired_difference
from train.evaluate.predict import LoadedModel, generate

Conversation = list[dict[str, str]]


def held_out(test_jsonl: Path, limit: int) -> tuple[list[Conversation], list[str]]:
    """The first ``limit`` conversations that end in an assistant turn: prompts and references."""
    prompts: list[Conversation] = []
    references: list[str] = []
    with test_jsonl.open(encoding="utf-8") as fh:
        for line in fh:
            if len(prompts) == limit:
                break
            messages = json.loads(line)["messages"] if line.strip() else []
            if messages and messages[-1]["role"] == "assistant":
                prompts.append(messages[:-1])
                references.append(messages[-1]["content"])
    return prompts, references


def load_model(merged_dir: Path, gguf_file: Path | None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    if gguf_file is None:
        model = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32)
    return model.eval()


def check_tokenizer(merged_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def vocabulary_matches(tokenizer: Any, gguf_file: Path) -> dict[str, Any]:
    """The GGUF file's token list and tokenizer kind against the merged model's tokenizer."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf_file)).fields
    tokens = list(fields["tokenizer.ggml.tokens"].contents())
    ours = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return {
        "tokenizer_model": fields["tokenizer.ggml.model"].contents(),
        "has_merges": "tokenizer.ggml.merges" in fields,
        "tokens_identical": tokens == ours,
        "eos": tokens[int(fields["tokenizer.ggml.eos_token_id"].contents())] if tokens else None,
    }


def answers_of(model: Any, tokenizer: Any, prompts: list[Conversation], max_new_tokens: int, batch_size: int) -> list[str]:
    answers, _ = generate(
        LoadedModel("check", model, tokenizer), prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    return [answer.strip() for answer in answers]


#: A greedy step whose top two log-probabilities lie closer than this (nats) is a coin flip:
#: any change of arithmetic (a quantised weight, another summation order) may turn it.
NEAR_TIE = 0.1


def decision_margins(model: Any, tokenizer: Any, prompts: list[Conversation], answers: list[str]) -> list[float]:
    """Per prompt, the merged model's closest call along its own greedy answer: the smallest gap
    between its top two next-token log-probabilities over the answer's tokens and the end of
    turn (the answer re-tokenised from its text: close to, not always exactly, the ids it made)."""
    import torch

    margins = []
    for prompt, answer in zip(prompts, answers, strict=True):
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        start = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids = tokenizer(text + answer + (tokenizer.eos_token or ""), add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            logprobs = model(**ids).logits[0, start - 1 : -1].float().log_softmax(-1)
        top = logprobs.topk(2, dim=-1).values
        margins.append(round(float((top[:, 0] - top[:, 1]).min()), 4) if len(top) else 0.0)
    return margins


def compare(
    reference_answers: list[str], file_answers: list[str], references: list[str], margins: list[float] | None = None
) -> dict[str, Any]:
    """Agreement and exact match (per row, then bootstrapped) of the file against the merged
    model; with ``margins``, the agreement on the prompts the merged model does not decide by a
    near tie as well."""
    agree = [float(a == b) for a, b in zip(reference_answers, file_answers, strict=True)]
    margins = margins or [float("inf")] * len(agree)
    exact_merged = [float(a == r.strip()) for a, r in zip(reference_answers, references, strict=True)]
    exact_file = [float(b == r.strip()) for b, r in zip(file_answers, references, strict=True)]
    differing = [
        {"merged": a, "gguf": b, "margin": m}
        for a, b, m in zip(reference_answers, file_answers, margins, strict=True) if a != b
    ]
    decided = [a for a, m in zip(agree, margins, strict=True) if m >= NEAR_TIE]
    return {
        "n": len(agree),
        "agreement": mean_interval(agree).as_dict(),
        "decided": {"near_tie_nats": NEAR_TIE, "n": len(decided), "agreement": mean_interval(decided).as_dict()},
        "exact_match_merged": mean_interval(exact_merged).as_dict(),
        "exact_match_gguf": mean_interval(exact_file).as_dict(),
        "exact_match_change": paired_difference(exact_file, exact_merged).as_dict(),
        "differing_examples": differing[:3],
    }


def max_new_tokens_for(tokenizer: Any, references: list[str], margin: int = 16, cap: int = 512) -> int:
    """Room for the longest reference answer and its end-of-turn token, no more."""
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references), default=0)
    return min(cap, longest + margin)


def round_trip(
    merged_dir: Path, gguf_file: Path, test_jsonl: Path, limit: int, *, batch_size: int = 8,
    merged_answers: list[str] | None = None,
) -> dict[str, Any]:
    """Greedy answers of the merged model and of the GGUF file on the same prompts, compared.

    ``merged_answers`` reuses the merged model's answers when several files are checked.
    """
    if not test_jsonl.is_file():
        return {"status": "skipped", "reason": f"{test_jsonl} not found: no test split to check on"}
    prompts, references = held_out(test_jsonl, limit)
    if not prompts:
        return {"status": "skipped", "reason": f"{test_jsonl} has no conversation ending in an assistant turn"}
    tokenizer = check_tokenizer(merged_dir)
    budget = max_new_tokens_for(tokenizer, references)
    merged = load_model(merged_dir, None)
    if merged_answers is None:
        merged_answers = answers_of(merged, tokenizer, prompts, budget, batch_size)
    margins = decision_margins(merged, tokenizer, prompts, merged_answers)
    del merged
    file_answers = answers_of(load_model(merged_dir, gguf_file), tokenizer, prompts, budget, batch_size)
    return {
        "status": "ok",
        "file": str(gguf_file),
        "prompts": f"first {len(prompts)} of {test_jsonl.name}",
        "max_new_tokens": budget,
        "vocabulary": vocabulary_matches(tokenizer, gguf_file),
        **compare(merged_answers, file_answers, references, margins),
        "merged_answers": merged_answers,
    }
