"""Does curation pay? The data side: the real pipeline over a simulated faulty teacher, per variant.

The 826 SP 800-53 rev4 controls (`../shared/corpus/sp800-53r4/controls.jsonl`, label: the
control family, 18 classes) are split, grouped by base control and stratified by family,
into a training pool and a gold test set whose labels are the corpus's truth. The pool
(plus planted near-copies of some statements, so that dedup has work) becomes the chunks
of a run; a SIMULATED teacher (bench/curation/simulator.py: wrong families, quotes not in
the chunk, broken JSON, served over the OpenAI wire format) answers the real generate and
refine stages through instructor; then the real filter -> refine -> judge (off) -> dedup
-> review (pass-through) -> validate -> split -> export stages run, once per variant:

  raw            one answer per chunk as the teacher gave it (teacher.samples 1), no
                 filter but schema (an unparsable answer is no example), no refine, no dedup
  full           every filter, refine.rounds 1
  no-consistency / no-grounding / no-audit / no-dedup   filter.disable: [that one]
  no-refine      refine.rounds 0

Every variant shares one teacher response cache, so each variant sees the same answers
and the teacher is asked once per distinct request. Writes <out>/<variant>/{train,validation}.jsonl
(as the export made them), <out>/gold_test.jsonl, <out>/task.yaml and <out>/variants.json.

    .venv/bin/python bench/curation/run.py [--out bench/curation/data] [--seed 0]
    .venv/bin/python bench/curation/run.py --train --device-profile cpu   # + train_variants.py
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.curation.simulator import FaultyTeacher, Rates, SimulatedTeacherServer  # noqa: E402
from curate.config import parse_config  # noqa: E402
from curate.run.rundir import RunDir  # noqa: E402
from curate.run.runner import Runner  # noqa: E402
from schemas.ids import content_id  # noqa: E402
from schemas.records import Chunk, frame_of  # noqa: E402

CONTROLS = ROOT.parent / "shared" / "corpus" / "sp800-53r4" / "controls.jsonl"
SYSTEM = "You classify security control statements into NIST SP 800-53 control families."
INSTRUCTION = "Which control family does this requirement belong to? Answer with the label and a supporting quote."
MODEL = "simulated-teacher"
VARIANTS: dict[str, dict[str, Any]] = {
    "raw": {"samples": 1, "disable": ["consistency", "grounding", "audit", "dedup"], "rounds": 0},
    "full": {},
    "no-consistency": {"disable": ["consistency"]},
    "no-grounding": {"disable": ["grounding"]},
    "no-audit": {"disable": ["audit"]},
    "no-dedup": {"disable": ["dedup"]},
    "no-refine": {"rounds": 0},
}


def base_control(control_id: str) -> str:
    return control_id.split("(")[0]


def load_controls(path: Path = CONTROLS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def gold_split(controls: list[dict[str, Any]], n_splits: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(pool, gold): one fold of a StratifiedGroupKFold, grouped by base control, by family."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    labels = [c["family"] for c in controls]
    groups = [base_control(c["id"]) for c in controls]
    # whole base controls make folds uneven (SI-4 alone has 25 rows): take the fold that covers
    # the most families, then the one whose largest family is smallest
    def balance(fold: tuple[Any, Any]) -> tuple[int, int]:
        counts = Counter(labels[i] for i in fold[1])
        return -len(counts), max(counts.values())

    pool_idx, gold_idx = min(folds.split(controls, labels, groups), key=balance)
    return [controls[i] for i in pool_idx], [controls[i] for i in gold_idx]


def plant_near_copies(pool: list[dict[str, Any]], share: float, seed: int) -> list[dict[str, Any]]:
    """Near-copies of long pool statements (1-2 words changed), as if pasted into another
    document: the same family, a new doc id. What dedup is there to catch."""
    rng = random.Random(seed)
    long = [c for c in pool if len(c["statement"].split()) >= 50]
    vocabulary = sorted({w for c in pool for w in c["statement"].split()})
    copies = []
    for n, control in enumerate(rng.sample(long, min(len(long), int(share * len(pool))))):
        words = control["statement"].split()
        for position in rng.sample(range(len(words)), rng.choice([1, 1, 2])):
            words[position] = rng.choice(vocabulary)
        copies.append({**control, "id": f"{control['id']}~copy{n}", "statement": " ".join(words),
                       "doc": f"copy-{n}-of-{base_control(control['id'])}", "copy_of": control["statement"]})
    return copies


def chunks_frame(controls: list[dict[str, Any]]) -> pl.DataFrame:
    rows = [
        Chunk(chunk_id=content_id(c["id"], c["statement"]), doc_id=c.get("doc") or base_control(c["id"]),
              source_path=f"sp800-53r4/{c['id']}", text=c["statement"], start=0, end=len(c["statement"]),
              n_tokens=max(1, len(c["statement"]) // 4))
        for c in controls
    ]
    return frame_of(Chunk, list(rows))


def task_section(labels: list[str]) -> dict[str, Any]:
    return {"type": "classification", "name": "control-family", "system_prompt": SYSTEM,
            "instruction": INSTRUCTION, "labels": labels}


def pipeline_config(name: str, run_dir: Path, labels: list[str], base_url: str, cache: Path,
                    variant: dict[str, Any]) -> Any:
    return parse_config({
        "name": f"curation-{name}",
        "run_dir": str(run_dir),
        "task": task_section(labels),
        "teacher": {
            "backend": "openai", "model": MODEL, "base_url": base_url, "samples": variant.get("samples", 3),
            "max_reasks": 0,  # broken JSON reaches the filters (and refine), as without instructor's re-ask
            "max_concurrency": 1, "max_retries": 2, "cache_path": str(cache),
            # priced as Claude Sonnet 4.5 list prices, so cost per kept example reads as a real run's
            "prices": {MODEL: {"input": 3.0, "output": 15.0}},
        },
        "filter": {"disable": variant.get("disable", [])},
        "refine": {"rounds": variant.get("rounds", 1)},
        "validate": {"min_grounding_score": 0.0 if "grounding" in variant.get("disable", []) else 0.9},
        "split": {"train": 0.9, "validation": 0.1, "test": 0.0, "group_by": "doc_id", "min_eval_rows": 0},
        "export": {"dir": "dataset", "formats": ["openai"]},
    }, source=f"bench/curation:{name}")


def pipeline_stages() -> list[Any]:
    from curate.dataset.stages import STAGES as dataset
    from curate.filter.stages import STAGES as filters
    from curate.generate.stages import STAGES as generate
    from curate.review.stages import STAGES as review

    return [*generate, *filters, *review, *dataset]


def run_variant(name: str, config: Any, chunks: pl.DataFrame) -> Path:
    """The real stages over committed chunks (ingest/redact stand-ins: the corpus is already text)."""
    run_dir = RunDir(config.run_path)
    run_dir.commit_stage("redact", {"chunks": chunks})
    manifest = run_dir.load_manifest()
    manifest["stages"]["redact"] = {"status": "complete", "output_hashes": {}, "rows": {}}
    run_dir.save_manifest(manifest)
    result = Runner(config, pipeline_stages(), show_progress=False).run()
    if result.stopped is not None:
        raise SystemExit(f"variant {name}: stage {result.stopped.name} {result.stopped.status}: {result.stopped.message}")
    return Path(config.run_path)


def _read(run: Path, artifact: str) -> pl.DataFrame:
    stage, name = artifact.split("/")
    path = run / stage / f"{name}.parquet"
    return pl.read_parquet(path) if path.exists() else pl.DataFrame()


def variant_counts(run: Path, export: Path) -> dict[str, Any]:
    """What a variant asked and kept, from its run directory's artifacts."""
    samples = _read(run, "generate/samples")
    repairs = _read(run, "refine/samples")
    kept = _read(run, "dedup/examples")
    # refine/rejected repeats filter's rejections (marked recovered_by) and adds its rounds' own
    refine_rejected = _read(run, "refine/rejected")
    refine_own = refine_rejected.filter(pl.col("refine_round") > 0) if refine_rejected.height else refine_rejected

    def reasons_of(*frames: pl.DataFrame) -> dict[str, int]:
        counts = Counter(f"{r['filter']}/{r['reason']}" for f in frames if f.height
                         for r in f.select("filter", "reason").iter_rows(named=True))
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    funnel = json.loads((run / "dedup.state" / "funnel.json").read_text())["summary"]
    filtered = _read(run, "filter/examples")
    survived = kept.explode("sample_ids")["sample_ids"].n_unique() if kept.height else 0
    rows = {split: sum(1 for _ in (export / f"{split}.jsonl").open()) for split in ("train", "validation")}
    return {
        "chunks": samples["chunk_id"].n_unique(),
        "raw_samples": samples.height,
        "samples_parsed": int((samples["status"] == "ok").sum()),
        "examples_after_filter": filtered.height,
        "chunks_repaired": funnel["chunks_repaired"],
        "refine_recovered": int((kept["refine_round"] > 0).sum()) if kept.height else 0,
        "recovery_rate": funnel["recovery_rate"],
        "kept_examples": kept.height,
        "raw_samples_surviving": survived,
        "sample_survival": round(survived / samples.height, 4) if samples.height else None,
        "rejections": reasons_of(_read(run, "filter/rejected"), _read(run, "dedup/rejected")),
        "refine_rejections": reasons_of(refine_own),
        "teacher_requests": samples.height + repairs.height,
        "cost_usd": round(float(samples["cost_usd"].sum()) + (float(repairs["cost_usd"].sum()) if repairs.height else 0.0), 4),
        "train_rows": rows["train"],
        "validation_rows": rows["validation"],
    }


def label_noise(export: Path, truth: dict[str, str]) -> float:
    """Share of exported training rows whose label is not the corpus's family (the harm filters stop)."""
    wrong = total = 0
    for line in (export / "train.jsonl").open():
        messages = json.loads(line)["messages"]
        passage = messages[1]["content"].removeprefix(INSTRUCTION + "\n\n")
        label = json.loads(messages[-1]["content"])["label"]
        family = truth.get(passage)
        total += 1
        wrong += family is not None and family != label
    return round(wrong / total, 4) if total else 0.0


def curate_variants(out: Path, work: Path, *, variants: list[str], seed: int = 0, folds: int = 8,
                    copies_share: float = 0.15, limit: int | None = None, rates: Rates | None = None,
                    controls_path: Path = CONTROLS) -> dict[str, Any]:
    """Gold split, planted copies, the simulated teacher, the real pipeline per variant.

    Writes `out` (exports, gold test, task, variants.json) and returns the report. `work`
    holds the run directories and the shared teacher cache; it is emptied first, so the
    figures never mix answers of two simulator settings.
    """
    controls = load_controls(controls_path)
    labels = sorted({c["family"] for c in controls})
    pool, gold = gold_split(controls, folds, seed)
    if limit:  # a spread of families, not the first N (all AC)
        pool = pool[:: max(1, len(pool) // limit)][:limit]
    copies = plant_near_copies(pool, copies_share, seed)
    truth = {c["statement"]: c["family"] for c in pool + copies}
    titles = {c["family"]: c["family_title"] for c in controls}
    chunks = chunks_frame(pool + copies)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    with (out / "gold_test.jsonl").open("w", encoding="utf-8") as handle:
        for c in gold:
            handle.write(json.dumps({"id": c["id"], "text": c["statement"], "label": c["family"]}) + "\n")
    (out / "task.yaml").write_text(yaml.safe_dump({"task": task_section(labels)}), encoding="utf-8")
    print(f"corpus: {len(controls)} controls, {len(labels)} families; gold test {len(gold)} rows "
          f"({len({base_control(c['id']) for c in gold})} base controls); pool {len(pool)} + {len(copies)} near-copies")

    rates = rates or Rates()
    teacher = FaultyTeacher(truth=truth, family_titles=titles, rates=rates, seed=seed,
                            copy_of={c["statement"]: c["copy_of"] for c in copies})
    results: dict[str, Any] = {}
    order = sorted(variants, key=lambda v: v != "full")  # full first: it asks every distinct request
    with SimulatedTeacherServer(teacher) as server:
        for name in order:
            started = time.perf_counter()
            config = pipeline_config(name, work / name, labels, server.openai_base_url,
                                     work / "teacher-cache.sqlite", VARIANTS[name])
            run = run_variant(name, config, chunks)
            export = run / "dataset"
            target = out / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for split in ("train", "validation"):
                shutil.copyfile(export / f"{split}.jsonl", target / f"{split}.jsonl")
            counts = variant_counts(run, export)
            counts["train_label_noise"] = label_noise(export, truth)
            counts["config"] = VARIANTS[name]
            counts["seconds"] = round(time.perf_counter() - started, 1)
            results[name] = counts
            print(f"{name:<15} kept {counts['kept_examples']:>4} (train {counts['train_rows']}, val "
                  f"{counts['validation_rows']}), wrong labels in train {counts['train_label_noise']:.1%}, "
                  f"{counts['seconds']:.0f}s", flush=True)
        simulator = {"requests_served": server.received, "by_purpose": dict(server.by_purpose),
                     "planted": dict(teacher.planted), "rates": asdict(rates)}
    report = {"seed": seed, "gold_test_rows": len(gold), "pool_controls": len(pool),
              "near_copies": len(copies), "simulator": simulator,
              "variants": {name: results[name] for name in variants if name in results}}
    (out / "variants.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "curation" / "data")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "curation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=8, help="gold test = one fold of this many (826/8 ~ 103 rows)")
    parser.add_argument("--copies", type=float, default=0.15, help="near-copies planted, share of the pool")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--limit", type=int, default=None, help="use only N pool controls (a quick look)")
    parser.add_argument("--train", action="store_true", help="then train and evaluate each variant (train_variants.py)")
    parser.add_argument("--device-profile", choices=["cpu", "gpu"], default="cpu")
    args = parser.parse_args()
    report = curate_variants(args.out, args.work, variants=args.variants, seed=args.seed, folds=args.folds,
                             copies_share=args.copies, limit=args.limit)
    print_rates(report)
    if args.train:
        from bench.curation.train_variants import main as train_main

        train_main(["--data", str(args.out), "--device-profile", args.device_profile])


def print_rates(report: dict[str, Any]) -> None:
    full = report["variants"].get("full")
    if full:
        print(f"\nfull curation: {full['raw_samples']} raw teacher samples over {full['chunks']} chunks; "
              f"{full['raw_samples_surviving']} survive into kept examples = {full['sample_survival']:.1%} "
              f"(published pipelines: 30-40%)")
        print(f"refine: {full['refine_recovered']} of {full['chunks_repaired']} rejected chunks recovered = "
              f"{(full['recovery_rate'] or 0):.1%} (published: 15-20%)")
    print(f"\n{'variant':<15}{'samples':>8}{'kept':>6}{'train':>7}{'val':>5}{'wrong labels':>14}"
          f"{'recovered':>10}{'requests':>9}{'cost $':>8}")
    for name, v in report["variants"].items():
        print(f"{name:<15}{v['raw_samples']:>8}{v['kept_examples']:>6}{v['train_rows']:>7}{v['validation_rows']:>5}"
              f"{v['train_label_noise']:>14.1%}{v['refine_recovered']:>10}{v['teacher_requests']:>9}{v['cost_usd']:>8.2f}")


if __name__ == "__main__":
    main()
