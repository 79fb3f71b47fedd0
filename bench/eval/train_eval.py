"""The training half of bench/eval: train run + train eval on a prepared export.

Imports only train/ and schemas/ (no polars, no curation stack), so it runs on the GPU
machine as it is. Prints one table: every system's test accuracy with its bootstrap
interval, the gate, and in words where a classical baseline still wins.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: --packing -> the training config's `packing` (auto: on with the unsloth backend)
PACKING = {"auto": None, "on": True, "off": False}


def _limit(export: Path, out: Path, max_train: int | None) -> Path:
    if max_train is None:
        return export
    limited = out / "export-limited"
    limited.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        lines = (export / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        keep = lines[:max_train] if split == "train" else lines
        (limited / f"{split}.jsonl").write_text("\n".join(keep) + "\n", encoding="utf-8")
    (limited / "pipeline.yaml").write_text((export / "pipeline.yaml").read_text(), encoding="utf-8")
    return limited


def train_and_evaluate(
    export: Path,
    out: Path,
    *,
    model: str,
    epochs: float,
    learning_rate: float,
    batch: int,
    max_test: int | None = None,
    max_train: int | None = None,
    train_only: bool = False,
    packing: str = "auto",
) -> dict[str, Any]:
    from train.config import parse_config
    from train.evaluate.config import EvalConfig
    from train.evaluate.evaluate import evaluate_run
    from train.runner import run_training

    data = _limit(export, out, max_train)
    started = time.perf_counter()
    cfg = parse_config(
        {
            "name": "bench-eval",
            "model": model,
            "data": str(data),
            "output_dir": str(out / "train"),
            "lora": {"r": 16, "alpha": 32},
            "learning_rate": learning_rate,
            "epochs": epochs,
            "per_device_batch_size": batch,
            "effective_batch_size": max(16, batch),
            "max_seq_len": 512,
            "gradient_checkpointing": False,
            "export_gguf": False,
            "early_stopping_patience": None,
            "packing": PACKING[packing],
        }
    )
    train_report = run_training(cfg)
    train_s = time.perf_counter() - started
    # the run folder (adapter, report) is the product: e.g. bench/gguf/labels.py merges it elsewhere
    if train_only:
        summary = {"train_s": round(train_s, 1), "metrics": train_report["metrics"]}
        run_path = Path(cfg.run_path)
        (run_path / "bench-train.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        print(f"trained: {train_report['metrics'].get('global_step')} steps in {train_s:.0f} s -> {run_path}")
        return summary
    report = evaluate_run(
        Path(cfg.run_path),
        EvalConfig(
            test_file=str(data / "test.jsonl"),
            train_file=str(data / "train.jsonl"),
            task_config=str(data / "pipeline.yaml"),
            few_shot=3,
            max_examples=max_test,
            max_new_tokens=48,
            batch_size=32,
            latency_samples=8,
            general_set=str(ROOT / "data" / "eval" / "general.jsonl"),
        ),
    )
    eval_s = time.perf_counter() - started - train_s
    print_table(report, train_report, train_s, eval_s)
    summary = {"train": train_report["metrics"], "eval": report, "train_s": train_s, "eval_s": eval_s}
    (out / "bench-eval.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return summary


def print_table(report: dict[str, Any], train_report: dict[str, Any], train_s: float, eval_s: float) -> None:
    m = train_report["metrics"]
    print(
        f"\n{report['n_test']} test rows, {len(report['labels'])} classes; base {train_report['base_model']} "
        f"({train_report['backend']} on {train_report['device']}); train {train_report['examples']['train']} rows, "
        f"{m['global_step']} steps, loss {m['first_train_loss']:.3f} -> {m['last_train_loss']:.3f}, "
        f"{m['tokens_per_s']:.0f} tokens/s, peak {m['peak_memory_gib']:.2f} GiB ({m['peak_memory_kind']})"
    )
    confidence = f"{report['confidence']:.0%} CI"
    print(f"{'system':<22}{'kind':<11}{'exact match':>12}{confidence:>18}{'label ranking':>15}{'schema ok':>11}")
    print(f"{'chance':<22}{'':<11}{report['chance']:>12.4f}")
    for s in report["systems"]:
        ci, ranking = s["interval"], s["label_ranking_accuracy"]
        interval = f"[{ci['low']:.3f}, {ci['high']:.3f}]"
        ranked = "" if ranking is None else f"{ranking:.4f}"
        print(
            f"{s['name']:<22}{s['kind']:<11}{s['scores']['score']:>12.4f}{interval:>18}"
            f"{ranked:>15}{s['scores']['schema_compliance']:>11.3f}"
        )
    gate = report["gate"]
    for c in gate["comparisons"]:
        d = c["difference"]
        print(
            f"fine-tuned - {c['baseline']:<20} {d['estimate']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
            f"{' (required)' if c['required'] else ''}"
        )
    print(f"gate: {'passed' if gate['passed'] else 'failed'} {'; '.join(gate['reasons'])}")
    for note in gate["notes"]:
        print(f"note: {note}")
    print(f"times: train {train_s:.0f} s, eval {eval_s:.0f} s")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The training half's options, shared with run.py (which adds the prepare step)."""
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16, help="per-device batch (effective batch at least 16)")
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--max-train", type=int, default=None, help="first N training rows only (CPU runs)")
    parser.add_argument("--train-only", action="store_true", help="train and stop: no evaluation")
    parser.add_argument("--packing", choices=sorted(PACKING), default="auto", help="the config's packing")


def run_from_args(export: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    return train_and_evaluate(
        export,
        out,
        model=args.model,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch=args.batch,
        max_test=args.max_test,
        max_train=args.max_train,
        train_only=args.train_only,
        packing=args.packing,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="bench/eval's training half on a prepared export")
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    add_training_arguments(parser)
    args = parser.parse_args()
    run_from_args(args.export, args.out, args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
