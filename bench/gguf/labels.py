"""Exact match of the parsed label per GGUF type, on bench/eval's 85 held-out SP 800-53 rows.

The demo's 3 test rows measure nothing; this is the real figure. One command does it all,
each step skipped when its output is already there:

1. the export: bench/eval's ``prepare`` (826 statements -> 18 families; 656 train / 85 test);
2. a short fine-tune of the default base model on the CPU (peft LoRA r 16 / alpha 32, lr 1e-3,
   16 steps of 8 examples by default: ~38 min on our loaded 2 cores; ``--max-steps -1`` for
   whole epochs; max length 512 as bench/eval);
3. the merged model (transformers) and each GGUF file (llama.cpp's runtime, or transformers'
   GGUF loader with ``--runtime transformers``) answer the 85 test prompts greedily (48 new
   tokens, as bench/eval); each answer's label is parsed
   and scored against the reference (``train.evaluate.metrics.score_predictions``), and the
   change against the merged model gets a paired bootstrap interval (``intervals``).

    .venv/bin/python bench/gguf/labels.py --json bench/gguf/labels.json
    .venv/bin/python bench/gguf/labels.py --max-steps 3 --out /tmp/x    # time a few steps
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gguf.run import percent_ci  # noqa: E402
from train.evaluate.intervals import mean_interval, paired_difference  # noqa: E402

TYPES = ("f16", "q8_0", "Q5_K_M", "Q4_K_M", "Q4_1")
MAX_NEW_TOKENS = 48


def export_of(out: Path) -> Path:
    export = out / "export"
    if not (export / "test.jsonl").is_file():
        from bench.eval.run import prepare

        prepare(out)
    return export


def train(export: Path, out: Path, epochs: float, lr: float, max_steps: int, batch: int) -> Path:
    """The merged model of a short peft fine-tune (skipped when it is there)."""
    from train.config import parse_config
    from train.runner import run_training

    run_dir = out / "train"
    if (run_dir / "merged" / "config.json").is_file():
        return run_dir
    cfg = parse_config({
        "name": "bench-gguf-labels", "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "data": str(export),
        "output_dir": str(run_dir), "backend": "peft", "lora": {"r": 16, "alpha": 32},
        "learning_rate": lr, "epochs": epochs, "max_steps": max_steps,
        "per_device_batch_size": batch, "effective_batch_size": batch, "max_seq_len": 512,
        "gradient_checkpointing": False, "export_gguf": False, "early_stopping_patience": None,
        "eval_each_epoch": False,
    })
    started = time.perf_counter()
    report = run_training(cfg)
    metrics = report["metrics"]
    summary = {"train_s": round(time.perf_counter() - started, 1), "metrics": metrics}
    (run_dir / "bench-train.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    print(f"trained: {metrics.get('global_step')} steps in {summary['train_s']} s", flush=True)
    return run_dir


def labels_of(task: Any, answers: list[str], references: list[str]) -> tuple[list[float], list[str | None]]:
    from train.evaluate.metrics import parse_output, score_predictions

    scores = score_predictions(task, answers, references)
    parsed = [parse_output(a, task) for a in answers]
    return scores.per_example, [getattr(p, "label", None) if p else None for p in parsed]


def row_of(
    merged: tuple[list[str], list[float], list[str | None]], file: tuple[list[str], list[float], list[str | None]]
) -> dict[str, Any]:
    (m_answers, m_scores, m_labels), (f_answers, f_scores, f_labels) = merged, file
    return {
        "exact_match": mean_interval(f_scores).as_dict(),
        "change": paired_difference(f_scores, m_scores).as_dict(),
        "same_answer": mean_interval([float(a == b) for a, b in zip(m_answers, f_answers, strict=True)]).as_dict(),
        "same_label": mean_interval([float(a == b) for a, b in zip(m_labels, f_labels, strict=True)]).as_dict(),
        "parsed": sum(label is not None for label in f_labels) / len(f_labels),
    }


def file_answers(runtime: str, merged_dir: Path, file: Path, prompts: list[Any], batch_size: int) -> list[str]:
    """Greedy answers of one GGUF file: llama.cpp's own runtime, or transformers' GGUF loader."""
    from train.evaluate.predict import render_prompts
    from train.gguf_check import answers_of, check_tokenizer, load_model

    tokenizer = check_tokenizer(merged_dir)
    if runtime == "transformers":
        return answers_of(load_model(merged_dir, file), tokenizer, prompts, MAX_NEW_TOKENS, batch_size)
    from bench.gguf.runtime import complete
    from train.gguf_tools import require_runtime

    binary = require_runtime().completion
    # one thread: ggml's worker threads spin while waiting, which on a shared, loaded machine
    # made two threads ~10x slower than one here
    return [complete(binary, file, text, MAX_NEW_TOKENS, threads=1) for text in render_prompts(tokenizer, prompts)]


def measure(run_dir: Path, export: Path, types: list[str], batch_size: int, runtime: str) -> dict[str, Any]:
    import yaml

    from schemas.tasks import TaskConfig
    from train.gguf import QUANTIZE_TYPES, gguf_name, normalise_type, write_gguf
    from train.gguf_check import answers_of, check_tokenizer, held_out, load_model
    from train.gguf_tools import require_tools

    task = TaskConfig.model_validate(yaml.safe_load((export / "pipeline.yaml").read_text())["task"])
    prompts, references = held_out(export / "test.jsonl", 10**9)
    merged_dir = run_dir / "merged"
    started = time.perf_counter()
    cached = run_dir / "merged-answers.json"  # the slowest step on a CPU: kept for re-runs
    if cached.is_file() and len(answers := json.loads(cached.read_text(encoding="utf-8"))) == len(prompts):
        pass
    else:
        answers = answers_of(load_model(merged_dir, None), check_tokenizer(merged_dir), prompts, MAX_NEW_TOKENS, batch_size)
        cached.write_text(json.dumps(answers), encoding="utf-8")
    merged = (answers, *labels_of(task, answers, references))
    result: dict[str, Any] = {
        "run_dir": str(run_dir), "test_rows": len(prompts), "max_new_tokens": MAX_NEW_TOKENS, "runtime": runtime,
        "merged": {"exact_match": mean_interval(merged[1]).as_dict(), "answer_s": round(time.perf_counter() - started, 1),
                   "parsed": sum(x is not None for x in merged[2]) / len(prompts), "answers": merged[0]},
        "types": {},
    }
    out_dir = run_dir / "gguf-bench"
    out_dir.mkdir(exist_ok=True)
    tools = require_tools(quantize=any(normalise_type(t) in QUANTIZE_TYPES for t in types))
    for gguf_type in types:
        file = out_dir / gguf_name(gguf_type)
        if not file.is_file():
            write_gguf(merged_dir, out_dir, gguf_type, tools)
        started = time.perf_counter()
        answers = file_answers(runtime, merged_dir, file, prompts, batch_size)
        row = row_of(merged, (answers, *labels_of(task, answers, references)))
        row.update(bytes=file.stat().st_size, answer_s=round(time.perf_counter() - started, 1), answers=answers)
        result["types"][normalise_type(gguf_type)] = row
        (run_dir / "labels-partial.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        print(json.dumps({gguf_type: {k: v for k, v in row.items() if k != "answers"}}, default=str)[:300], flush=True)
    return result


def table(result: dict[str, Any]) -> str:
    merged = result["merged"]
    lines = [
        f"{result['test_rows']} test rows, greedy, up to {result['max_new_tokens']} new tokens; exact match of the parsed "
        f"label; merged model in transformers, GGUF files in {result['runtime']}",
        "",
        "| model | file MiB | valid JSON % | exact match % [95% CI] | change vs merged, points [95% CI] "
        "| same label % | same answer % |",
        "|---|---|---|---|---|---|---|",
        f"| merged (bf16 safetensors) | | {merged['parsed'] * 100:.1f} | {percent_ci(merged['exact_match'])} | | | |",
    ]
    for name, row in result["types"].items():
        lines.append(
            f"| GGUF {name} | {row['bytes'] / 2**20:.1f} | {row['parsed'] * 100:.1f} | {percent_ci(row['exact_match'])} "
            f"| {percent_ci(row['change'], signed=True)} | {percent_ci(row['same_label'])} | {percent_ci(row['same_answer'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gguf-labels")
    parser.add_argument("--types", nargs="+", default=list(TYPES))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-steps", type=int, default=16, help="optimizer steps (-1: the epochs; CPU: 16)")
    parser.add_argument("--train-batch", type=int, default=8, help="examples per optimizer step")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--runtime", choices=["llama.cpp", "transformers"], default="llama.cpp",
        help="what answers for each GGUF file: llama.cpp's own runtime (make gguf-runtime; what users run, and "
        "a tenth of the CPU time here) or transformers' GGUF loader (dequantised to float32)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    started = time.perf_counter()
    export = export_of(args.out)
    run_dir = train(export, args.out, args.epochs, args.lr, args.max_steps, args.train_batch)
    result = measure(run_dir, export, args.types, args.batch_size, args.runtime)
    result["training"] = json.loads((run_dir / "bench-train.json").read_text(encoding="utf-8"))
    result["machine"] = f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(table(result))
    print(f"wall {result['wall_s']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
