"""Does the pipeline teach? SP 800-53 control statements -> family (18 classes), on the CPU.

The statements of `../shared/corpus/sp800-53r4/controls.jsonl` become curated examples
(known labels stand in for the teacher), go through the real validate/split/export
stages and the real `train run` stage on a small randomly initialised Llama, and
`train eval` compares the fine-tuned model with the same untrained model prompted with
few-shot examples. Test accuracy is printed beside chance and the majority class.

    .venv/bin/python bench/eval/run.py [--epochs 3] [--out bench/out/eval]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from curate.config import parse_config  # noqa: E402
from curate.dataset.stages import STAGES as DATASET_STAGES  # noqa: E402
from curate.run.rundir import RunDir  # noqa: E402
from curate.run.runner import Runner  # noqa: E402
from schemas.ids import content_id  # noqa: E402
from schemas.records import Example, frame_of  # noqa: E402

CONTROLS = ROOT.parent / "shared" / "corpus" / "sp800-53r4" / "controls.jsonl"
SYSTEM = "You classify security control statements into NIST SP 800-53 control families."
INSTRUCTION = (
    "Which control family does this requirement belong to? Answer with the label and a supporting quote."
)


def control_examples(task_labels: list[str]) -> pl.DataFrame:
    """Curated-looking examples: known family labels, a short verbatim quote as evidence."""
    rows = []
    for line in CONTROLS.read_text(encoding="utf-8").splitlines():
        control = json.loads(line)
        statement = control["statement"]
        quote = " ".join(statement.split()[:8])
        output = json.dumps({"label": control["family"], "quote": quote})
        chunk_id = content_id(control["id"], statement)
        rows.append(
            {
                "example_id": content_id(chunk_id, "classification", output),
                "chunk_id": chunk_id,
                "doc_id": control["id"].split("(")[0],  # enhancements stay with their base control
                "task_type": "classification",
                "label": control["family"],
                "output_json": output,
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"{INSTRUCTION}\n\n{statement}"},
                    {"role": "assistant", "content": output},
                ],
                "sample_ids": [chunk_id],
                "agreement": 1.0,
                "grounding_score": 1.0,
                "evidence": [],
                "quality_score": 1.0,
                "refine_round": 0,
                "review_status": "auto",
                "reviewer": None,
                "reviewed_at": None,
                "cost_usd": 0.0,
            }
        )
    assert sorted({r["label"] for r in rows}) == sorted(task_labels)
    return frame_of(Example, rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "eval")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-test", type=int, default=None)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    labels = sorted({json.loads(line)["family"] for line in CONTROLS.read_text().splitlines()})

    started = time.perf_counter()
    config = parse_config(
        {
            "name": "bench-eval",
            "run_dir": str(args.out / "curate"),
            "task": {
                "type": "classification",
                "name": "control-family",
                "system_prompt": SYSTEM,
                "instruction": INSTRUCTION,
                "labels": labels,
            },
        },
        source="bench/eval",
    )
    run_dir = RunDir(config.run_path)
    run_dir.commit_stage("review", {"examples": control_examples(labels)})
    manifest = run_dir.load_manifest()
    manifest["stages"]["review"] = {"status": "complete", "output_hashes": {}, "rows": {}}
    run_dir.save_manifest(manifest)
    Runner(config, DATASET_STAGES, show_progress=False).run()
    export_dir = config.run_path / config.export.dir
    task_yaml = args.out / "task.yaml"
    task_yaml.write_text(yaml.safe_dump({"task": config.task.model_dump(mode="json")}), encoding="utf-8")
    curate_s = time.perf_counter() - started

    from train.config import parse_config as parse_train_config
    from train.evaluate.config import EvalConfig
    from train.evaluate.evaluate import evaluate_run
    from train.runner import run_training

    train_cfg = parse_train_config(
        {
            "name": "bench-eval",
            "model": "tiny-random",
            "tiny": {
                "architecture": "llama",
                "hidden_size": args.hidden,
                "num_layers": args.layers,
                "num_heads": 4,
                "num_kv_heads": 2,
                "intermediate_size": 2 * args.hidden,
                "vocab_size": 4096,
            },
            "data": str(export_dir),
            "output_dir": str(args.out / "train"),
            "learning_rate": 3e-3,
            "epochs": args.epochs,
            "per_device_batch_size": 8,
            "effective_batch_size": 16,
            "max_seq_len": 512,
            "gradient_checkpointing": False,
            "export_gguf": False,
        }
    )
    train_report = run_training(train_cfg)
    train_s = time.perf_counter() - started - curate_s

    eval_config = EvalConfig(
        test_file=str(export_dir / "test.jsonl"),
        train_file=str(export_dir / "train.jsonl"),
        task_config=str(task_yaml),
        few_shot=3,
        max_examples=args.max_test,
        max_new_tokens=48,
        batch_size=16,
        latency_samples=8,
        general_set=str(ROOT / "data" / "eval" / "general.jsonl"),
    )
    report = evaluate_run(Path(train_cfg.run_path), eval_config)
    eval_s = time.perf_counter() - started - curate_s - train_s

    tuned, baseline = report["systems"]
    print(
        f"\ncontrols: {report['n_test']} test rows, 18 classes; train {train_report['examples']['train']} rows,"
        f" {train_report['metrics']['global_step']} steps, loss {train_report['metrics']['first_train_loss']:.3f}"
        f" -> {train_report['metrics']['last_train_loss']:.3f}"
    )
    print(f"{'system':<28}{'label accuracy (ranked)':>26}{'exact match (generated)':>26}{'schema ok':>12}")
    for name, value in (("chance (1/18)", report["chance"]), ("majority class", report["majority"])):
        print(f"{name:<28}{value:>26.4f}{'':>26}{'':>12}")
    for system in (baseline, tuned):
        label = "untrained, 3-shot prompted" if system is baseline else "fine-tuned (LoRA)"
        print(
            f"{label:<28}{system['label_ranking_accuracy']:>26.4f}{system['scores']['score']:>26.4f}"
            f"{system['scores']['schema_compliance']:>12.3f}"
        )
    ratio = tuned["label_ranking_accuracy"] / max(report["chance"], 1e-9)
    print(f"fine-tuned / chance: {ratio:.2f}x; gate {'passed' if report['gate']['passed'] else 'failed'}")
    print(
        f"times: curate {curate_s:.0f}s, train {train_s:.0f}s, eval {eval_s:.0f}s; report {args.out / 'train' / 'eval' / 'report.md'}"
    )


if __name__ == "__main__":
    main()
