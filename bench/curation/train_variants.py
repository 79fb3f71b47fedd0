"""Does curation pay? The training side: the same base model fine-tuned on each variant's export.

Reads only what bench/curation/run.py wrote (per-variant train.jsonl/validation.jsonl,
variants.json, gold_test.jsonl, task.yaml) and imports only train/ and schemas/, so it runs
where the curation pipeline's dependencies (polars, instructor, ...) are not installed.
Each variant trains SmolLM2-135M-Instruct (LoRA) with `train.runner.run_training` and is
scored on the gold test set (labels from the corpus, never from the teacher) with
`train.evaluate.evaluate.evaluate_run`; the table gives test accuracy with its bootstrap
interval and the paired difference to full curation over the same test rows.

    python bench/curation/train_variants.py --data bench/curation/data --device-profile gpu
    python bench/curation/train_variants.py --data bench/curation/data --device-profile cpu

cpu: variants raw and full only, at most --train-rows training rows each (a seeded sample,
the same count for both, so the comparison is of quality, not quantity), --test-rows gold
rows spread over the families, 1 epoch. gpu: every variant, every row, 3 epochs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from train.config import parse_config  # noqa: E402

BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {"variants": ["raw", "full"], "train_rows": 40, "validation_rows": 8, "test_rows": 18, "epochs": 1.0,
            "per_device_batch_size": 8, "effective_batch_size": 8, "label_scoring": False, "few_shot": 0,
            "max_seq_len": 384, "merged_dtype": "float32"},
    "gpu": {"variants": None, "train_rows": None, "validation_rows": None, "test_rows": None, "epochs": 3.0,
            "per_device_batch_size": 16, "effective_batch_size": 16, "label_scoring": False, "few_shot": 3,
            "max_seq_len": 512, "merged_dtype": "bfloat16", "full_eval": False},
}


def subset(source: Path, target: Path, rows: dict[str, int | None], seed: int) -> Path:
    """The variant's export, or a seeded sample of its rows (same count for every variant)."""
    target.mkdir(parents=True, exist_ok=True)
    for split, limit in rows.items():
        lines = (source / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        if limit is not None and len(lines) > limit:
            lines = random.Random(f"{seed}:{split}").sample(lines, limit)
        (target / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def gold_subset(gold: Path, target: Path, rows: int | None, seed: int) -> Path:
    """All gold rows, or `rows` of them spread over the families (round-robin over a seeded
    shuffle of each family): the gold file is ordered by family, so its head is one class."""
    if rows is None:
        return gold
    by_family: dict[str, list[str]] = {}
    for line in gold.read_text(encoding="utf-8").splitlines():
        by_family.setdefault(json.loads(line)["label"], []).append(line)
    rng = random.Random(seed)
    queues = [rng.sample(lines, len(lines)) for _, lines in sorted(by_family.items())]
    picked: list[str] = []
    while len(picked) < rows and any(queues):
        picked.extend(q.pop() for q in queues if q)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(picked[:rows]) + "\n", encoding="utf-8")
    return target


def train_config(name: str, data: Path, output: Path, profile: dict[str, Any], seed: int,
                 model: str = BASE_MODEL, model_cache: str | None = None) -> Any:
    return parse_config({
        "name": f"curation-{name}",
        "model": model,
        "model_cache": model_cache,
        "data": str(data),
        "output_dir": str(output),
        "backend": "auto",
        "lora": {"r": 16, "alpha": 32},
        "learning_rate": 1.0e-3,
        "epochs": profile["epochs"],
        "per_device_batch_size": profile["per_device_batch_size"],
        "effective_batch_size": profile["effective_batch_size"],
        "max_seq_len": profile["max_seq_len"],
        "gradient_checkpointing": False,
        "early_stopping_patience": None,
        "export_gguf": False,
        # the evaluation loads the merged model: bfloat16 matmuls are very slow on CPUs without
        # bf16 units (the first CPU run spent 11+ minutes generating for 18 rows)
        "merged_dtype": profile["merged_dtype"],
        "seed": seed,
    })


def evaluate(run_dir: Path, data: Path, gold: Path, train_file: Path, profile: dict[str, Any],
             seed: int) -> dict[str, Any]:
    from train.evaluate.config import EvalConfig
    from train.evaluate.evaluate import evaluate_run

    config = EvalConfig(
        test_file=str(gold), text_field="text", label_field="label",
        train_file=str(train_file), task_config=str(data / "task.yaml"), few_shot=profile["few_shot"],
        max_new_tokens=48, batch_size=16, latency_samples=4,
        label_scoring=profile["label_scoring"], seed=seed,
    )
    if profile.get("full_eval", True):
        return evaluate_run(run_dir, config)
    return evaluate_lean(run_dir, config)


def evaluate_lean(run_dir: Path, config: Any) -> dict[str, Any]:
    """The fine-tune and the no-model baselines only, through train eval's own functions.

    The prompted base is the same model for every variant (only its few shots differ), so the
    GPU profile scores it once, in bench/eval, instead of once per variant: that halves a
    variant's device time."""
    from train.evaluate import evaluate as ev

    layout = ev.RunLayout.discover(run_dir)
    task = ev.load_task(config, layout)
    rows = ev.read_held_out(Path(config.test_file), task, config)
    train_rows = ev.held_out_rows(Path(config.train_file))
    tuned = (ev.load_model("fine-tuned", layout.merged) if layout.merged is not None
             else ev.load_model("fine-tuned", layout.base_model, adapter=layout.adapter))
    systems = [ev.evaluate_system(tuned, task, rows, [r.prompt for r in rows], config, None)]
    del tuned
    systems += [ev.score_baseline(b, task, rows, config) for b in ev.fit_baselines(task, train_rows, config)]
    return {"n_test": len(rows), "confidence": config.confidence, "systems": [s.as_dict() for s in systems]}


def system(report: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((s for s in report["systems"] if s["kind"] == kind), None)


def table(results: dict[str, dict[str, Any]], confidence: float, seed: int) -> list[str]:
    from train.evaluate.intervals import paired_difference

    full = results.get("full")
    pct = f"{confidence:.0%}"
    lines = [f"{'variant':<15}{'train rows':>11}{'wrong labels':>13}{'test accuracy [' + pct + ']':>28}"
             f"{'vs full [' + pct + ' paired]':>30}{'TF-IDF+LR':>11}"]
    for name, r in results.items():
        acc = r["accuracy"]
        cell = f"{acc['estimate']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}]"
        if full is None or name == "full":
            diff = "-"
        else:
            d = paired_difference(r["per_example"], full["per_example"], confidence=confidence, seed=seed)
            diff = f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        tfidf = f"{r['tfidf']:.3f}" if r["tfidf"] is not None else "-"
        noise = f"{r['train_label_noise']:.1%}" if r["train_label_noise"] is not None else "-"
        lines.append(f"{name:<15}{r['train_rows']:>11}{noise:>13}{cell:>28}{diff:>30}{tfidf:>11}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "bench" / "curation" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "curation-train")
    parser.add_argument("--device-profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--variants", nargs="*", default=None, help="default: the profile's")
    parser.add_argument("--train-rows", type=int, default=None, help="override the profile's cap")
    parser.add_argument("--test-rows", type=int, default=None, help="override the profile's cap")
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="ignore results of earlier calls in --out")
    parser.add_argument("--model", default=BASE_MODEL, help="base model (tiny-random: a smoke test of the path)")
    parser.add_argument("--model-cache", default=None, help="folder of converted base models (default ~/.cache/assay/models)")
    args = parser.parse_args(argv)
    profile = dict(PROFILES[args.device_profile])
    for key in ("train_rows", "test_rows", "epochs"):
        if getattr(args, key) is not None:
            profile[key] = getattr(args, key)
    summary = json.loads((args.data / "variants.json").read_text(encoding="utf-8"))
    names = args.variants or profile["variants"] or list(summary["variants"])
    gold = gold_subset(args.data / "gold_test.jsonl", args.out / "gold_test.jsonl", profile["test_rows"], args.seed)
    # results are saved after each variant and merged with those of earlier calls (same profile
    # and model), so the variants can be trained in several calls (a device call is 10 minutes)
    saved = args.out / f"results-{args.device_profile}.json"
    earlier = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() and not args.fresh else {}
    results: dict[str, dict[str, Any]] = (
        dict(earlier.get("results", {})) if earlier.get("model") == args.model and earlier.get("settings") == profile else {}
    )
    confidence = 0.95
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        data = subset(args.data / name, args.out / name / "data",
                      {"train": profile["train_rows"], "validation": profile["validation_rows"]}, args.seed)
        cfg = train_config(name, data, args.out / name / "train", profile, args.seed, args.model, args.model_cache)
        from train.runner import run_training

        trained = run_training(cfg)
        report = evaluate(cfg.run_path, args.data, gold, data / "train.jsonl", profile, args.seed)
        tuned = report["systems"][0]
        tfidf = system(report, "classical")
        confidence = report["confidence"]
        results[name] = {
            "train_rows": trained["examples"]["train"],
            "train_label_noise": summary["variants"].get(name, {}).get("train_label_noise"),
            "accuracy": tuned["interval"],
            "per_example": tuned["scores"]["per_example"],
            "tfidf": tfidf["scores"]["score"] if tfidf else None,
            "prompted": (system(report, "prompted") or {}).get("scores", {}).get("score"),
            "n_test": report["n_test"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"{name}: accuracy {tuned['interval']['estimate']:.3f} on {report['n_test']} gold rows, "
              f"{results[name]['seconds']:.0f}s", flush=True)
        save(saved, args, profile, results, [])
    order = [v for v in summary["variants"] if v in results]
    lines = table({v: results[v] for v in order}, confidence, args.seed)
    lines.append(f"profile {args.device_profile}: {profile['epochs']:g} epoch(s), base {args.model}, "
                 f"{next(iter(results.values()))['n_test']} gold test rows; {time.perf_counter() - started:.0f}s")
    print("\n" + "\n".join(lines))
    save(saved, args, profile, results, lines)


def save(path: Path, args: argparse.Namespace, profile: dict[str, Any], results: dict[str, Any],
         lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"profile": args.device_profile, "model": args.model, "settings": profile,
                               "results": results, "table": lines}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    main()
