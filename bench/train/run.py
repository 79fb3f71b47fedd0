"""Training throughput bench (GPU): `train run`'s trainer path against a plain Unsloth loop.

One command measures, for the 8B and/or the 1B Llama shape (random-init checkpoint built on
the device, loaded through `train.backends.load_for_training`: 4-bit NF4, LoRA r=16 on all
seven projections, Unsloth's gradient checkpointing), each phase in a FRESH process so that
no phase's torch.compile / autotune cache helps or poisons another:

  plain-dense    plain loop (forward, backward, fused AdamW) on fixed [batch, seq] random
                 batches: the issue's baseline (every token real, dense causal attention)
  plain-packed   the same plain loop on fixed packed batches made by the trainer's own
                 dataset preparation and collator (trl BFD packing, padding-free, Unsloth's
                 packed_seq_lengths): the trainer path without the Trainer
  trainer        `train.runner.build_trainer` with the product's defaults (packing auto,
                 effective batch 16 = 4 rows x 4 accumulation, fused AdamW, no per-batch
                 host syncs), `trainer.train()` on data shaped like an export (lengths.json)
  trainer-gc     the trainer with Unsloth's offloaded gradient checkpointing forced on (the
                 default before `gradient_checkpointing: auto`; auto turns it off on a card
                 where the activations fit); plain-dense-gc: the plain loop likewise
  trainer-head   the trainer as it was before issue 24 (adamw_8bit, NaN filter and token
                 count syncing every micro-batch): the before/after figure
  variants       trainer-8bit, trainer-sync, trainer-fixedshape, trainer-workers,
                 trainer-log50: the defaults with one setting changed, to price it

Each figure is the median (and range) of 3 timed windows after warm-up, in effective
(non-padding) tokens/s; the share of the compute limit uses a bf16 matmul measured on the
card in the same call. `trainer` and `plain-packed` also profile one optimizer step
(torch.profiler: top ops by device time, attention calls, device busy share).

Usage (GPU):  python bench/train/run.py --size 8b|1b|both [--phases core|all|a,b,...] --out DIR
Check (CPU):  python bench/train/run.py --dry-run        (tiny model, peft backend, minutes)
              python bench/train/run.py --prepare-lengths EXPORT_DIR   (writes lengths.json)
Outputs: DIR/train-bench.json (every figure, profiles, versions) and DIR/train-bench.md
(the table, also printed); rewritten after each phase, so a cut-off call keeps what ran.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
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
CORE = ("plain-dense", "plain-packed", "trainer")
EXTRA = (  # in the order they run while the budget lasts
    "trainer-segments",  # Unsloth's per-segment SDPA instead of train/varlen.py's kernel
    "plain-packed-segments",
    "trainer-gc",
    "plain-dense-gc",
    "trainer-head",
    "trainer-sync",
    "trainer-fixedshape",
    "trainer-8bit",
    "trainer-workers",
    "trainer-log50",
)
PROFILED = ("plain-packed", "trainer")
CHARS_PER_TOKEN = 4.0  # Llama-3-class BPE on English prose; used only by --prepare-lengths
TEMPLATE_TOKENS_PER_MESSAGE = 5
FIRST_ID = 16  # synthetic token ids start above the tokenizer's special tokens


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


def matmul_params(shape: dict[str, Any]) -> int:
    """Parameters that take part in matmuls (all but the input embedding): 6 x this = FLOP/token."""
    h, i, n = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    kv = h // shape["num_attention_heads"] * shape["num_key_value_heads"]
    return n * (2 * h * h + 2 * h * kv + 3 * h * i) + h * shape["vocab_size"]


# --------------------------------------------------------------------------- workers
def worker_build(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from train.tiny import build_tokenizer

    out = Path(args.model)
    if (out / "config.json").exists():
        return {"phase": "build", "reused": True}
    t0 = time.perf_counter()
    texts = [f"control {i}: the organization reviews and updates policy {i % 17}" for i in range(2000)]
    tokenizer = build_tokenizer(texts, vocab_size=2048)
    config = LlamaConfig(
        **SHAPES[args.size],
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
    return {"phase": "build", "params": n, "build_s": time.perf_counter() - t0}


def worker_matmul(args: argparse.Namespace) -> dict[str, Any]:
    """bf16 matmul TFLOP/s on the card (fp32 on CPU, only so the dry run passes through)."""
    import torch

    on_cuda = torch.cuda.is_available()
    n, dtype, dev = (8192, torch.bfloat16, "cuda") if on_cuda else (512, torch.float32, "cpu")
    a, b = (torch.randn(n, n, dtype=dtype, device=dev) for _ in range(2))
    iters = 20 if on_cuda else 3
    rates = []
    for _ in range(4):  # the first is warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ b
        sync()
        rates.append(2 * n**3 * iters / (time.perf_counter() - t0) / 1e12)
    return {"phase": "matmul", "n": n, "dtype": str(dtype), "tflops": statistics.median(rates[1:])}


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def bench_config(args: argparse.Namespace, backend: str, **kw: Any) -> Any:
    """The product's TrainConfig defaults; only the shape of the bench and the variant differ."""
    from train.config import TrainConfig

    return TrainConfig(
        model=args.model,
        backend=backend,
        max_seq_len=args.seq,
        per_device_batch_size=args.batch,
        effective_batch_size=args.batch * args.accum,
        output_dir=str(Path(args.workdir) / f"run-{args.size}-{args.worker}"),
        eval_each_epoch=False,
        # the plain loop's batch shape (4 packed rows x 4): a throughput comparison, so the step
        # counts rows here; the product's default counts examples (fewer rows a step when packed)
        packed_batch_unit="rows",
        **{**({"packing": True} if args.pack == "on" else {}), **kw},
    )


def synthetic_dataset(args: argparse.Namespace, vocab: int) -> Any:
    """Pre-tokenized examples whose (prompt, answer) lengths are drawn from lengths.json."""
    from datasets import Dataset

    pairs = json.loads((HERE / "lengths.json").read_text())["pairs"]
    rng = random.Random(7)
    rows = []
    for _ in range(args.examples):
        p, a = rng.choice(pairs)
        p = min(p, args.seq - 1)
        a = min(a, args.seq - p)
        ids = [rng.randrange(FIRST_ID, vocab) for _ in range(p + a)]
        rows.append({"input_ids": ids, "labels": [-100] * p + ids[p:]})
    return Dataset.from_list(rows)


def dynamo_counts() -> dict[str, int]:
    """Compiled graphs and recompiles so far in this process (counted, not guessed)."""
    from torch._dynamo.utils import counters

    return {
        "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
        "calls_captured": int(counters["stats"].get("calls_captured", 0)),
        "recompiles": int(sum(counters["recompiles"].values())),
    }


def attention_path() -> dict[str, Any]:
    """Which kernels Unsloth's packed attention can use in this process."""
    try:
        from unsloth.utils import attention_dispatch as ad
    except Exception as exc:  # peft backend / CPU: transformers' SDPA with position-id masks
        return {"unsloth": False, "note": type(exc).__name__}
    return {
        "unsloth": True,
        "flash_attn": bool(getattr(ad, "HAS_FLASH_ATTENTION", False)),
        "xformers": bool(getattr(ad, "HAS_XFORMERS", False)),
        "torch_varlen": getattr(ad, "_TORCH_VARLEN_ATTN", None) is not None,
        "sdpa_per_segment": bool(getattr(ad, "_SDPA_PACKED_SEGMENTS", False)),
    }


def windows_summary(marks: list[tuple[float, float]], micro_per_window: int) -> dict[str, Any]:
    """marks: (time, tokens) at warm-up end and after each window -> rates, median and range."""
    rates, steps = [], []
    for (t0, n0), (t1, n1) in itertools.pairwise(marks):
        rates.append((n1 - n0) / (t1 - t0))
        steps.append((t1 - t0) / micro_per_window)
    return {
        "tokens_per_s": statistics.median(rates),
        "tokens_per_s_min": min(rates),
        "tokens_per_s_max": max(rates),
        "windows": rates,
        "s_per_micro_batch": statistics.median(steps),
        "tokens_per_micro_batch": (marks[-1][1] - marks[0][1]) / (micro_per_window * len(rates)),
    }


class Profiled:
    """torch.profiler around one step; summary: top ops by device time, attention calls."""

    def __init__(self) -> None:
        import torch

        acts = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        self.prof = torch.profiler.profile(activities=acts)
        self.t0 = 0.0

    def start(self) -> None:
        sync()
        self.t0 = time.perf_counter()
        self.prof.start()

    def stop(self, micro_batches: int) -> dict[str, Any]:
        sync()
        self.prof.stop()
        wall = time.perf_counter() - self.t0
        return profile_summary(self.prof, wall, micro_batches)


def profile_summary(prof: Any, wall_s: float, micro_batches: int) -> dict[str, Any]:
    """On CUDA: the kernels (device rows) by device time, their number and busy share of the
    wall time; on CPU: ops by self CPU time. Attention: forward calls of SDPA / varlen."""
    import torch
    from torch.autograd import DeviceType

    on_cuda = torch.cuda.is_available()
    events = list(prof.key_averages())

    def dev(e: Any) -> float:
        return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))

    kernels = [e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA] if on_cuda else []
    if on_cuda and not kernels:  # older/newer profiler API: ops with the device time they launched
        kernels = [e for e in events if dev(e) > 0]
    rows, key = (kernels, dev) if on_cuda else (events, lambda e: float(e.self_cpu_time_total))
    total = max(1.0, sum(key(e) for e in rows))
    attn = [
        e
        for e in events
        if e.key.startswith("aten::scaled_dot_product")
        or ("varlen" in e.key.lower() and "backward" not in e.key)
    ]
    return {
        "wall_s": wall_s,
        "micro_batches": micro_batches,
        "device_busy_share": total / 1e6 / wall_s if on_cuda else None,
        "kernel_launches_per_micro_batch": sum(e.count for e in kernels) / micro_batches if on_cuda else None,
        "attention_forward_calls_per_micro_batch": sum(e.count for e in attn) / micro_batches,
        "top_ops": [
            {"op": e.key[:90], "calls": e.count, "self_ms": key(e) / 1e3, "share": key(e) / total}
            for e in sorted(rows, key=key, reverse=True)[:15]
        ],
    }


def worker_plain(args: argparse.Namespace) -> dict[str, Any]:
    """plain-dense / plain-packed: forward, backward, fused AdamW; no Trainer."""
    from train.backends import import_backend, select_backend

    backend = select_backend(args.backend)
    import_backend(backend)  # unsloth before transformers/peft/trl
    import torch

    from train.backends import load_for_training

    cfg = bench_config(
        args, backend, **({"gradient_checkpointing": True} if args.worker.endswith("-gc") else {})
    )
    t0 = time.perf_counter()
    loaded = load_for_training(cfg, args.model, backend)
    load_s = time.perf_counter() - t0
    model = loaded.model
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pad = loaded.tokenizer.pad_token_id
    if args.worker.startswith("plain-dense"):
        g = torch.Generator().manual_seed(1234)
        vocab = len(loaded.tokenizer)
        cpu_batches = []
        for _ in range(4):
            ids = torch.randint(FIRST_ID, vocab, (args.batch, args.seq), generator=g)
            cpu_batches.append({"input_ids": ids, "labels": ids})
    else:  # the trainer's own prepared dataset and collator, batches taken before any training
        from train.runner import build_trainer

        trainer = build_trainer(cfg, loaded, synthetic_dataset(args, len(loaded.tokenizer)), None)
        loader = iter(trainer.get_train_dataloader())
        cpu_batches = [next(loader) for _ in range(8)]
        del trainer, loader
    batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in cpu_batches]
    real = [int((b["input_ids"] != pad).sum()) for b in cpu_batches]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, fused=device == "cuda")
    model.train()
    losses: list[Any] = []

    def step(i: int) -> int:
        out = model(**batches[i % len(batches)], use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.detach())
        return real[i % len(batches)]

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    i = 0
    for _ in range(args.warmup * args.accum):
        step(i)
        i += 1
    before = dynamo_counts()
    sync()
    marks = [(time.perf_counter(), 0.0)]
    tokens = 0
    micro = args.window * args.accum
    for _ in range(args.windows):
        for _ in range(micro):
            tokens += step(i)
            i += 1
        sync()
        marks.append((time.perf_counter(), float(tokens)))
    result = windows_summary(marks, micro)
    after = dynamo_counts()
    if args.worker in PROFILED:
        prof = Profiled()
        prof.start()
        for _ in range(args.accum):
            step(i)
            i += 1
        result["profile"] = prof.stop(args.accum)
    return {
        **result,
        "backend": backend,
        "gradient_checkpointing": loaded.gradient_checkpointing,
        "load_s": load_s,
        "peak_gib": peak_gib(),
        "loss_first": float(losses[0]),
        "loss_last": float(losses[-1]),
        "dynamo_warmup": before,
        "dynamo_timed_delta": {k: after[k] - before[k] for k in after},
        "attention": attention_path(),
        "packed_attention": loaded.packed_attention,
    }


def worker_trainer(args: argparse.Namespace) -> dict[str, Any]:
    """trainer / trainer-*: build_trainer + trainer.train(), timed by a callback."""
    from train.backends import import_backend, select_backend

    backend = select_backend(args.backend)
    import_backend(backend)
    import torch
    from transformers import TrainerCallback

    from train.backends import load_for_training
    from train.runner import build_trainer

    variant = args.worker
    kw: dict[str, Any] = {}
    if variant in ("trainer-head", "trainer-8bit"):
        kw["optimizer"] = "adamw_8bit" if torch.cuda.is_available() else "adamw_torch"
    if variant == "trainer-head":
        kw["packing"] = True  # the old bench's explicit setting (packing was off by default)
    if variant in ("trainer-head", "trainer-gc"):
        kw["gradient_checkpointing"] = True  # Unsloth's offloaded checkpointing, the old default
    if variant == "trainer-log50":
        kw["logging_steps"] = 50
    n_windows, window, warmup = args.windows, args.window, args.warmup
    total = warmup + n_windows * window + 1  # + 1 profiled step
    cfg = bench_config(args, backend, max_steps=total, **kw)
    t0 = time.perf_counter()
    loaded = load_for_training(cfg, args.model, backend)
    load_s = time.perf_counter() - t0
    trainer = build_trainer(cfg, loaded, synthetic_dataset(args, len(loaded.tokenizer)), None)
    trainer.args.save_strategy = "no"  # checkpoints are not what is measured
    if variant in ("trainer-head", "trainer-sync"):
        trainer.args.logging_nan_inf_filter = True
        trainer.defer_token_count = False
    if variant == "trainer-fixedshape":
        trainer.data_collator.pad_to_multiple_of = args.batch * args.seq  # one shape every step
    if variant == "trainer-workers":
        trainer.args.dataloader_num_workers = 2
        trainer.args.dataloader_persistent_workers = True
    marks: list[tuple[float, float]] = []
    state: dict[str, Any] = {}
    profiler = Profiled() if variant in PROFILED else None

    class Timer(TrainerCallback):
        def on_step_begin(self, a, s, c, **kw):
            if profiler is not None and s.global_step == total - 1:
                profiler.start()

        def on_step_end(self, a, s, c, **kw):
            step = s.global_step
            if step >= warmup and (step - warmup) % window == 0 and len(marks) <= n_windows:
                if step == warmup:
                    state["dynamo_warmup"] = dynamo_counts()
                sync()
                marks.append((time.perf_counter(), float(trainer.flush_token_count())))
                if len(marks) == n_windows + 1:
                    state["dynamo_after"] = dynamo_counts()
            if profiler is not None and step == total:
                state["profile"] = profiler.stop(args.accum)

    trainer.add_callback(Timer())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    result = windows_summary(marks, window * args.accum)
    history = [h for h in trainer.state.log_history if "loss" in h]
    before, after = state["dynamo_warmup"], state["dynamo_after"]
    return {
        **result,
        "backend": backend,
        "gradient_checkpointing": loaded.gradient_checkpointing,
        "load_s": load_s,
        "peak_gib": peak_gib(),
        "optimizer": trainer.args.optim,
        "packing": bool(trainer.args.packing),
        "padding_free": bool(getattr(trainer.args, "padding_free", False)),
        "gradient_accumulation": trainer.args.gradient_accumulation_steps,
        "loss_first": history[0]["loss"] if history else None,
        "loss_last": history[-1]["loss"] if history else None,
        "dynamo_warmup": before,
        "dynamo_timed_delta": {k: after[k] - before[k] for k in after},
        "attention": attention_path(),
        "packed_attention": loaded.packed_attention,
        **({"profile": state["profile"]} if "profile" in state else {}),
    }


# --------------------------------------------------------------------------- orchestrator
def shape_args(args: argparse.Namespace, size: str) -> list[str]:
    model = str(Path(args.workdir) / f"llama-{size}-random")
    return [
        "--size", size, "--model", model, "--seq", str(args.seq), "--batch", str(args.batch),
        "--accum", str(args.accum), "--warmup", str(args.warmup), "--window", str(args.window),
        "--windows", str(args.windows), "--examples", str(args.examples),
        "--backend", args.backend, "--pack", args.pack, "--workdir", args.workdir,
    ]  # fmt: skip


def run_worker(args: argparse.Namespace, size: str, phase: str, timeout: float) -> dict[str, Any]:
    """One phase in a fresh process; its result, or an error entry naming why not."""
    out = Path(args.workdir) / f"result-{size}-{phase}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--worker", phase, "--result", str(out), *shape_args(args, size)]
    log(f"{size} {phase} (timeout {timeout:.0f}s)")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=timeout, check=False)
        error = None if proc.returncode == 0 and out.exists() else f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout:.0f}s"
    wall = time.perf_counter() - t0
    base = {"size": size, "phase": phase, "process_s": wall}
    if error:
        log(f"{size} {phase}: {error}")
        return {**base, "error": error}
    result = {**base, **json.loads(out.read_text())}
    log(f"{size} {phase}: {result.get('tokens_per_s', 0):.0f} tokens/s, {wall:.0f}s")
    return result


def plan(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(first, then): the phases that must run, and those run while the budget lasts."""
    groups = {"core": CORE, "extra": EXTRA, "all": CORE + EXTRA}
    chosen = [q for p in args.phases.split(",") if p.strip() for q in groups.get(p.strip(), (p.strip(),))]
    unknown = [p for p in chosen if p not in CORE + EXTRA]
    if unknown:
        raise SystemExit(f"unknown phase(s) {unknown}; choose from {CORE + EXTRA}")
    return [p for p in CORE if p in chosen], [p for p in EXTRA if p in chosen]


def orchestrate(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    sizes = ["8b", "1b"] if args.size == "both" else [args.size]
    first, then = plan(args)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"meta": meta(args), "results": []}
    results: list[dict[str, Any]] = report["results"]

    def left() -> float:
        return args.budget_s - (time.perf_counter() - t0)

    def add(r: dict[str, Any]) -> None:
        results.append(r)
        write_outputs(args, report)

    add(run_worker(args, sizes[0], "matmul", timeout=min(120, left())))
    built: set[str] = set()
    queue = [(s, p) for s in sizes for p in first] + [(s, p) for p in then for s in sizes]
    for size, phase in queue:
        if size not in built:
            add(run_worker(args, size, "build", timeout=max(1.0, left() - 5)))
            built.add(size)
        # an optional phase starts only if it fits: as long as this shape's trainer phase took
        estimate = next(
            (r["process_s"] for r in results if r.get("size") == size and r["phase"] == "trainer"), 60.0
        )
        need = 1.15 * estimate if phase in then else 30.0
        if left() < need:
            add(
                {
                    "size": size,
                    "phase": phase,
                    "error": f"skipped: {left():.0f}s of budget left, needs ~{need:.0f}s",
                }
            )
            continue
        add(run_worker(args, size, phase, timeout=max(1.0, left() - 5)))
    report["meta"]["wall_s"] = time.perf_counter() - t0
    write_outputs(args, report)
    print(render(report), flush=True)


def meta(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for name in (
        "torch",
        "transformers",
        "trl",
        "peft",
        "unsloth",
        "unsloth_zoo",
        "bitsandbytes",
        "triton",
        "xformers",
        "flash_attn",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "versions": versions,
        "seq": args.seq,
        "batch": args.batch,
        "accum": args.accum,
        "warmup_steps": args.warmup,
        "window_steps": args.window,
        "windows": args.windows,
        "lora": "r=16, alpha 16, all 7 projections",
    }


def write_outputs(args: argparse.Namespace, report: dict[str, Any]) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("train-bench.json", json.dumps(report, indent=2)),
        ("train-bench.md", render(report)),
    ):
        tmp = out / (name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(out / name)


def render(report: dict[str, Any]) -> str:
    """The Markdown table: tokens/s (median, range) per shape and phase, ratios, profiles."""
    results = report["results"]
    m = report["meta"]
    mm = next((r for r in results if r["phase"] == "matmul" and "tflops" in r), None)
    device = next((r.get("device") for r in results if r.get("device")), None)
    lines = [
        f"device: {device or 'see meta'}; {m['date_utc']}; `{m['command']}`",
        f"versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items() if v)}",
        f"seq {m['seq']} x batch {m['batch']} rows, accumulation {m['accum']} in trainer phases; LoRA "
        f"{m['lora']}; {m['warmup_steps']} warm-up optimizer steps, then {m['windows']} timed windows "
        f"of {m['window_steps']} optimizer steps; each phase a fresh process",
        f"matmul: {mm['tflops']:.3g} TFLOP/s ({mm['dtype']}, {mm['n']}^3)" if mm else "matmul: not measured",
        "",
        "| shape | phase | effective tokens/s (median) | range of 3 windows | vs plain-dense | vs plain-packed "
        "| share of compute limit | real tokens / micro-batch | s / micro-batch | peak GiB | checkpointing | recompiles timed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in dict.fromkeys(r["size"] for r in results if r["phase"] not in ("matmul", "build")):
        rows = [r for r in results if r["size"] == size and r["phase"] not in ("matmul", "build")]
        by = {r["phase"]: r for r in rows if "tokens_per_s" in r}
        flop = 6 * matmul_params(SHAPES[size])
        for r in rows:
            if "error" in r:
                lines.append(f"| {size} | {r['phase']} | {r['error']} | | | | | | | | | |")
                continue
            tps = r["tokens_per_s"]

            def vs(name: str, tps: float = tps, by: dict[str, Any] = by) -> str:
                return f"{tps / by[name]['tokens_per_s']:.1%}" if name in by else "n/a"

            share = f"{tps * flop / (mm['tflops'] * 1e12):.1%}" if mm else "n/a"
            lines.append(
                f"| {size} | {r['phase']} | {tps:,.0f} | {r['tokens_per_s_min']:,.0f}–{r['tokens_per_s_max']:,.0f} "
                f"| {vs('plain-dense')} | {vs('plain-packed')} | {share} | {r['tokens_per_micro_batch']:,.0f} "
                f"| {r['s_per_micro_batch']:.3f} | {r['peak_gib']:.1f} | {'on' if r.get('gradient_checkpointing') else 'off'} "
                f"| {r['dynamo_timed_delta'].get('recompiles', 0)} |"
            )
    for r in results:
        prof = r.get("profile")
        if not prof:
            continue
        att = r.get("attention", {})
        busy, launches = prof["device_busy_share"], prof["kernel_launches_per_micro_batch"]
        lines += [
            "",
            f"### profile: {r['size']} {r['phase']} (one optimizer step = {prof['micro_batches']} micro-batches, "
            f"{prof['wall_s']:.2f} s under the profiler)",
            "",
            (
                f"device busy {busy:.0%} of the wall time; {launches:,.0f} kernels per micro-batch; "
                if busy
                else ""
            )
            + f"attention forward calls per micro-batch: {prof['attention_forward_calls_per_micro_batch']:,.0f}; "
            f"attention path: {att}",
            "",
            "| kernel (CUDA) / op (CPU) | calls | self ms | share |",
            "|---|---|---|---|",
            *(
                f"| `{o['op']}` | {o['calls']} | {o['self_ms']:.1f} | {o['share']:.1%} |"
                for o in prof["top_ops"][:12]
            ),
        ]
    return "\n".join(line for line in lines if line is not None)


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=[*sorted(SHAPES), "both"], default="both")
    ap.add_argument(
        "--phases", default="all", help="comma list of core, extra, all, " + ", ".join(CORE + EXTRA)
    )
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4, help="rows per micro-batch (the config default)")
    ap.add_argument("--accum", type=int, default=4, help="micro-batches per optimizer step (default 16/4)")
    ap.add_argument("--warmup", type=int, default=2, help="optimizer steps before timing")
    ap.add_argument("--window", type=int, default=1, help="optimizer steps per timed window")
    ap.add_argument("--windows", type=int, default=3, help="timed windows (median and range)")
    ap.add_argument("--examples", type=int, default=4000, help="synthetic examples (lengths.json)")
    ap.add_argument("--backend", default="auto", help="auto: unsloth on CUDA, else peft")
    ap.add_argument("--pack", choices=["auto", "on"], default="auto", help="on: packing whatever the backend")
    ap.add_argument("--budget-s", type=float, default=520, help="optional phases start only if they fit")
    ap.add_argument("--workdir", default="/tmp/assay-bench")
    ap.add_argument("--out", default=os.environ.get("OUT", str(ROOT / "bench" / "out")))
    ap.add_argument("--dry-run", action="store_true", help="CPU check: tiny model, short shapes, every phase")
    ap.add_argument("--prepare-lengths", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    if args.prepare_lengths:
        prepare_lengths(args.prepare_lengths, HERE / "lengths.json")
        return
    if args.dry_run:
        args.size, args.seq, args.batch, args.accum = "tiny", 256, 2, 2
        args.warmup, args.window, args.windows, args.examples = 1, 1, 3, 200
        args.pack = "on"  # the packed path, also with the peft backend that CPU falls back to
        args.budget_s = max(args.budget_s, 900)
        args.workdir = args.workdir.rstrip("/") + "-dry"
    if args.worker:
        run_one(args)
        return
    orchestrate(args)


def run_one(args: argparse.Namespace) -> None:
    if args.worker.endswith("-segments"):
        os.environ["ASSAY_PACKED_ATTENTION"] = "segments"  # read when the backend is imported
    if args.worker == "build":
        result = worker_build(args)
    elif args.worker == "matmul":
        result = worker_matmul(args)
    elif args.worker.startswith("plain-"):
        result = worker_plain(args)
    else:
        result = worker_trainer(args)
    import torch

    result["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
