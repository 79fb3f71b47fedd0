"""Training throughput bench (GPU): unsloth vs peft backend, packing on vs off.

Runs on the lent GPU through `device` (see RESULTS.md for the command). One call:

1. builds a RANDOM-INIT Llama checkpoint of the chosen shape (bf16, save_pretrained) plus a
   locally trained tokenizer (no download);
2. backends: for `unsloth` then `peft`, each in a fresh process, loads the checkpoint through
   `train.backends.load_for_training` (the same code `train run` uses: 4-bit, LoRA r=16 on all
   seven projections, gradient checkpointing) and times a plain loop (forward+backward+AdamW)
   on the same fixed batches of seq x batch tokens: tokens/s and CUDA peak memory;
3. packing (in the `--packing-backend` process, on the model already loaded there):
   `train.runner.build_trainer` (trl SFTTrainer) on a synthetic pre-tokenized dataset
   whose (prompt, answer) lengths follow `lengths.json` (the demo export's distribution), with
   packing off and on: effective tokens/s = non-padding tokens / second.

Usage: python bench/train/run.py [--size 8b|1b|tiny] [--phases backends,packing]
       python bench/train/run.py --prepare-lengths EXPORT_DIR   (here, on CPU: writes lengths.json)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

SHAPES: dict[str, dict[str, Any]] = {
    # Llama 3.1 8B / Llama 3.2 1B shapes (vocab 128256)
    "8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
    "tiny": dict(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=4096,
    ),
}
CHARS_PER_TOKEN = 4.0  # Llama-3-class BPE on English prose; used only by --prepare-lengths
TEMPLATE_TOKENS_PER_MESSAGE = 5


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- lengths
def prepare_lengths(export_dir: Path, out: Path) -> None:
    """(prompt, answer) token-length estimates of a chat export, chars / CHARS_PER_TOKEN."""
    pairs = []
    for line in (export_dir / "train.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        msgs = json.loads(line)["messages"]
        est = [len(m["content"]) / CHARS_PER_TOKEN + TEMPLATE_TOKENS_PER_MESSAGE for m in msgs]
        answer = sum(e for m, e in zip(msgs, est, strict=True) if m["role"] == "assistant")
        pairs.append([round(sum(est) - answer), max(1, round(answer))])
    out.write_text(
        json.dumps({"source": str(export_dir), "chars_per_token": CHARS_PER_TOKEN, "pairs": pairs}),
        encoding="utf-8",
    )
    totals = sorted(p + a for p, a in pairs)
    print(
        f"{len(pairs)} examples; total tokens p50 {totals[len(totals) // 2]}, "
        f"p90 {totals[int(len(totals) * 0.9)]}, max {totals[-1]} -> {out}"
    )


# --------------------------------------------------------------------------- build
def build_checkpoint(size: str, out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from train.tiny import build_tokenizer

    if (out / "config.json").exists():
        log(f"checkpoint {out} exists")
        return
    t0 = time.perf_counter()
    texts = [f"control {i}: the organization reviews and updates policy {i % 17}" for i in range(2000)]
    tokenizer = build_tokenizer(texts, vocab_size=2048)
    config = LlamaConfig(
        **SHAPES[size],
        max_position_embeddings=8192,
        rope_theta=500000.0,  # type: ignore[call-arg]
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "RANDOM_INIT_STANDIN.json").write_text(json.dumps({"what": "random-init bench model"}))
    log(f"built random-init Llama {size}: {n / 1e9:.2f}B params in {time.perf_counter() - t0:.0f}s")
    del model
    torch.cuda.empty_cache()


def bench_config(args: argparse.Namespace, backend: str, **kw: Any):
    from train.config import TrainConfig

    return TrainConfig(
        model=args.model,
        backend=backend,
        max_seq_len=args.seq,
        per_device_batch_size=args.batch,
        effective_batch_size=args.batch,
        output_dir=str(Path(args.workdir) / f"run-{backend}"),
        **kw,
    )


# --------------------------------------------------------------------------- workers
def worker_backend(args: argparse.Namespace) -> list[dict[str, Any]]:
    from train.backends import import_backend

    import_backend(args.backend)  # unsloth first
    import torch

    from train.backends import load_for_training

    cfg = bench_config(args, args.backend)
    t0 = time.perf_counter()
    loaded = load_for_training(cfg, args.model, args.backend)
    load_s = time.perf_counter() - t0
    model = loaded.model
    model.train()
    vocab = len(loaded.tokenizer)
    g = torch.Generator().manual_seed(1234)
    batches = [torch.randint(3, vocab, (args.batch, args.seq), generator=g) for _ in range(4)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4)
    torch.cuda.reset_peak_memory_stats()

    def step(i: int) -> float:
        ids = batches[i % len(batches)].cuda()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss.detach())

    for i in range(args.warmup):
        step(i)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    losses = [step(i) for i in range(args.steps)]
    torch.cuda.synchronize()
    dt = time.perf_counter() - t1
    tokens = args.steps * args.batch * args.seq
    result = {
        "phase": "backends",
        "backend": args.backend,
        "tokens_per_s": tokens / dt,
        "step_s": dt / args.steps,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "load_s": load_s,
        "quantized": loaded.quantized,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "trainable_params": sum(p.numel() for p in params),
    }
    log(f"backend {args.backend}: {result}")
    opt.state.clear()
    torch.cuda.empty_cache()
    if not args.with_packing:
        return [result]
    return [result, *packing_on_off(args, loaded)]


def synthetic_dataset(pairs: list[list[int]], n: int, vocab: int, max_len: int, seed: int):
    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        p, a = rng.choice(pairs)
        p, a = min(p, max_len - 1), min(a, max_len - min(p, max_len - 1))
        ids = [rng.randrange(3, vocab) for _ in range(p + a)]
        rows.append({"input_ids": ids, "labels": [-100] * p + ids[p:]})
    return Dataset.from_list(rows)


def packing_on_off(args: argparse.Namespace, loaded: Any) -> list[dict[str, Any]]:
    """Packing off vs on through train.runner.build_trainer, on the already loaded model."""
    import torch
    from transformers import TrainerCallback

    from train.runner import build_trainer

    pairs = json.loads((HERE / "lengths.json").read_text())["pairs"]
    results = []
    vocab = len(loaded.tokenizer)

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[tuple[int, float, int]] = []

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.marks.append((state.global_step, time.perf_counter(), state.num_input_tokens_seen))

    for packing in (False, True):
        cfg = bench_config(
            args,
            args.backend,
            packing=packing,
            max_steps=args.warmup + args.steps,
            eval_each_epoch=False,
            save_total_limit=1,
            logging_steps=1000,
        )
        ds = synthetic_dataset(pairs, 4000, vocab, args.seq, seed=7)
        trainer = build_trainer(cfg, loaded, ds, None)
        timer = Timer()
        trainer.add_callback(timer)
        torch.cuda.reset_peak_memory_stats()
        trainer.train()
        (_, t_a, tok_a), (_, t_b, tok_b) = timer.marks[args.warmup - 1], timer.marks[-1]
        results.append(
            {
                "phase": "packing",
                "backend": args.backend,
                "packing": packing,
                "effective_tokens_per_s": (tok_b - tok_a) / (t_b - t_a),
                "real_tokens_per_step": (tok_b - tok_a) / (len(timer.marks) - args.warmup),
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            }
        )
        log(f"packing={packing}: {results[-1]}")
    return results


# --------------------------------------------------------------------------- orchestrator
def run_worker(args: argparse.Namespace, backend: str, timeout: float, packing: bool) -> list[Any]:
    """One backend in a fresh process (unsloth patches transformers process-wide)."""
    out = Path(args.workdir) / f"backends-{backend}.json"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "backends",
        "--backend",
        backend,
        "--model",
        args.model,
        "--seq",
        str(args.seq),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--workdir",
        args.workdir,
        "--result",
        str(out),
        *(["--with-packing"] if packing else []),
    ]
    log(" ".join(cmd[2:]))
    try:
        proc = subprocess.run(cmd, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [{"phase": "backends", "backend": backend, "error": f"timed out after {timeout:.0f}s"}]
    if proc.returncode != 0 or not out.exists():
        return [{"phase": "backends", "backend": backend, "error": f"exit {proc.returncode}"}]
    return list(json.loads(out.read_text()))


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    lines = [
        f"device: {dev}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"random-init Llama {args.size}; seq {args.seq} x batch {args.batch}; LoRA r=16 all "
        f"7 projections; {args.steps} timed steps after {args.warmup} warm-up",
        "",
    ]
    back = {r["backend"]: r for r in results if r.get("phase") == "backends"}
    if back:
        lines += [
            "| backend | tokens/s | peak GiB | s/step | load s | ratio vs peft |",
            "|---|---|---|---|---|---|",
        ]
        base = back.get("peft", {}).get("tokens_per_s")
        for name in ("unsloth", "peft"):
            r = back.get(name)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"| {name} | error: {r['error']} | | | | |")
                continue
            ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "n/a"
            lines.append(
                f"| {name} | {r['tokens_per_s']:.0f} | {r['peak_gib']:.1f} | "
                f"{r['step_s']:.3f} | {r['load_s']:.0f} | {ratio} |"
            )
        lines.append("")
    pack = [r for r in results if r.get("phase") == "packing"]
    if pack:
        lines += [
            "| packing (backend) | effective tokens/s | real tokens/step | peak GiB | ratio vs off |",
            "|---|---|---|---|---|",
        ]
        off = next((r.get("effective_tokens_per_s") for r in pack if r.get("packing") is False), None)
        for r in pack:
            if "error" in r:
                lines.append(f"| ({r['backend']}) | error: {r['error']} | | | |")
                continue
            ratio = f"{r['effective_tokens_per_s'] / off:.2f}x" if off else "n/a"
            lines.append(
                f"| {'on' if r['packing'] else 'off'} ({r['backend']}) | "
                f"{r['effective_tokens_per_s']:.0f} | {r['real_tokens_per_step']:.0f} | "
                f"{r['peak_gib']:.1f} | {ratio} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SHAPES), default="8b")
    ap.add_argument("--phases", default="backends,packing", help="packing: also packing off/on")
    ap.add_argument("--packing-backend", default="unsloth")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=540, help="skip phases that would start later")
    ap.add_argument("--workdir", default="/tmp/assay-bench")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=os.environ.get("OUT", str(ROOT / "bench" / "out")))
    ap.add_argument("--prepare-lengths", type=Path, default=None)
    ap.add_argument("--worker", choices=["backends"], default=None)
    ap.add_argument("--with-packing", action="store_true", help="worker: also packing off/on")
    ap.add_argument("--backend", default="unsloth")
    ap.add_argument("--result", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    if args.prepare_lengths:
        prepare_lengths(args.prepare_lengths, HERE / "lengths.json")
        return
    if args.worker:
        Path(args.result).write_text(json.dumps(worker_backend(args)))
        return

    t0 = time.perf_counter()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    args.model = args.model or str(Path(args.workdir) / f"llama-{args.size}-random")
    build_checkpoint(args.size, Path(args.model))
    results: list[dict[str, Any]] = []
    phases = args.phases.split(",")

    def left() -> float:
        return args.budget_s - (time.perf_counter() - t0)

    for backend in ("unsloth", "peft"):
        if left() < 60:
            results.append({"phase": "backends", "backend": backend, "error": "skipped: budget"})
            continue
        packing = "packing" in phases and backend == args.packing_backend
        results.extend(run_worker(args, backend, timeout=left(), packing=packing))
    text = table(results, args)
    print(text, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"train-bench-{args.size}.json").write_text(json.dumps(results, indent=2))
    (out / f"train-bench-{args.size}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
