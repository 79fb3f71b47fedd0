"""Does the pipeline teach? SP 800-53 control statements -> family (18 classes).

The statements of `../shared/corpus/sp800-53r4/controls.jsonl` become curated examples
(known labels stand in for the teacher), go through the real validate/split/export stages
(`prepare`, needs the curation stack), then the real `train run` fine-tunes the base model
(SmolLM2-135M-Instruct by default) and `train eval` scores it on the held-out test split
against the same base model prompted with few-shot examples, the majority class and
TF-IDF + logistic regression, each with a bootstrap interval (`train`, needs only train/).

    .venv/bin/python bench/eval/run.py                 # prepare + train, here
    .venv/bin/python bench/eval/run.py prepare         # the export, on a CPU machine
    python3 bench/eval/run.py train --export DIR       # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
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


def prepare(out: Path) -> Path:
    """Curated examples -> the real validate/split/export stages -> ``out/export`` (+ task.yaml)."""
    labels = sorted({json.loads(line)["family"] for line in CONTROLS.read_text().splitlines()})
    config = parse_config(
        {
            "name": "bench-eval",
            "run_dir": str(out / "curate"),
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
    export = out / "export"
    shutil.rmtree(export, ignore_errors=True)
    export.mkdir(parents=True)
    for split in ("train", "validation", "test"):  # the splits only: what the GPU machine needs
        shutil.copy(config.run_path / config.export.dir / f"{split}.jsonl", export / f"{split}.jsonl")
    task = {"task": config.task.model_dump(mode="json")}
    (export / "pipeline.yaml").write_text(yaml.safe_dump(task), encoding="utf-8")
    return export


def main() -> None:
    from bench.eval.train_eval import add_training_arguments, run_from_args

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "train", "all"], nargs="?", default="all")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "eval")
    parser.add_argument("--export", type=Path, default=None, help="train: the prepared export (default OUT/export)")
    add_training_arguments(parser)
    args = parser.parse_args()
    if args.step in ("prepare", "all"):
        shutil.rmtree(args.out, ignore_errors=True)
        print(f"export: {prepare(args.out)}")
    if args.step in ("train", "all"):
        run_from_args(args.export or args.out / "export", args.out, args)


if __name__ == "__main__":
    main()
