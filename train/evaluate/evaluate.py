"""`train eval`: the fine-tuned model against a prompted baseline, with a gate.

Both systems answer the same held-out test split. The baseline is the *base* model given
a few-shot prompt built from training examples, so the comparison answers the question
"was fine-tuning worth it over prompting the same model?".
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schemas.tasks import TaskConfig, TaskType, training_prompt
from train.data import read_chat_jsonl
from train.evaluate.baselines import Baseline, MajorityClass, NearestTrainingAnswer, TfidfLogisticRegression
from train.evaluate.config import EvalConfig
from train.evaluate.gate import Comparison, apply_gate, relative_rise
from train.evaluate.intervals import Interval, mean_interval, paired_difference
from train.evaluate.metrics import TaskScores, classification_report, percentile, score_predictions
from train.evaluate.predict import (
    LoadedModel,
    continuation_logprobs,
    generate,
    latencies,
    load_model,
    mean_nll,
    render_prompts,
)

Conversation = list[dict[str, str]]


@dataclass
class HeldOutRow:
    prompt: Conversation  # system/user turns
    reference: str  # the assistant's answer (task output JSON)
    label: str | None


@dataclass
class SystemResult:
    name: str
    scores: TaskScores
    label_ranking_accuracy: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    examples_per_s: float | None
    general_nll: float | None
    kind: str = "model"  # model | prompted | trivial | classical
    interval: Interval | None = None
    samples: list[dict[str, str]] = field(default_factory=list)
    judge: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "interval": self.interval.as_dict() if self.interval else None,
            "scores": self.scores.as_dict(),
            "label_ranking_accuracy": self.label_ranking_accuracy,
            "latency_p50_s": self.latency_p50_s,
            "latency_p95_s": self.latency_p95_s,
            "examples_per_s": self.examples_per_s,
            "general_nll": self.general_nll,
            "samples": self.samples,
            "judge": self.judge,
        }


@dataclass
class RunLayout:
    """Where a training run keeps what evaluation needs."""

    run_dir: Path
    base_model: Path | str
    adapter: Path | None
    merged: Path | None
    export_dir: Path | None

    @classmethod
    def discover(cls, run_dir: Path) -> RunLayout:
        config_path = run_dir / "train_config.yaml"
        if not config_path.exists():
            raise FileNotFoundError(f"{run_dir}: no train_config.yaml — is this a `train run` directory?")
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        base = run_dir / "base_model"
        base_model: Path | str | None = (
            base if base.exists() else config.get("base_model_path") or config.get("model")
        )
        if base_model is None:
            raise ValueError(f"{config_path}: no base model named")
        data = config.get("data")
        export = data if isinstance(data, str) else config.get("export_dir")
        if export and not Path(export).is_absolute():
            export = str(Path(config.get("base_dir", ".")) / export)
        adapter, merged = run_dir / "adapter", run_dir / "merged"
        return cls(
            run_dir,
            base_model,
            adapter if adapter.exists() else None,
            merged if merged.exists() else None,
            Path(export) if export else None,
        )


def held_out_rows(path: Path, limit: int | None = None) -> list[HeldOutRow]:
    """Rows of a chat JSONL split as prompt (every turn but the last) and reference answer."""
    rows = []
    for record in read_chat_jsonl(path, limit):
        messages = record["messages"]
        if messages[-1]["role"] != "assistant":
            raise ValueError(f"{path}: a row does not end with an assistant turn")
        rows.append(HeldOutRow(messages[:-1], messages[-1]["content"], record.get("label")))
    return rows


def labelled_record_rows(
    path: Path, task: TaskConfig, text_field: str, label_field: str, limit: int | None = None
) -> list[HeldOutRow]:
    """A labelled JSONL of plain records (text + label) as held-out rows, prompted exactly as the
    pipeline renders its training chats (``schemas.tasks.training_prompt``)."""
    if task.type is not TaskType.CLASSIFICATION:
        raise ValueError(f"{path}: plain labelled records need a classification task; give chat JSONL instead")
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            text, label = record.get(text_field), record.get(label_field)
            if not isinstance(text, str) or not isinstance(label, str):
                raise ValueError(f"{path}:{n}: needs string fields {text_field!r} and {label_field!r}")
            if label not in task.labels:
                raise ValueError(f"{path}:{n}: label {label!r} is not in the task's labels")
            reference = json.dumps({"label": label, "quote": ""})
            rows.append(HeldOutRow(training_prompt(task, text), reference, label))
            if limit and len(rows) >= limit:
                break
    return rows


def read_held_out(path: Path, task: TaskConfig, config: EvalConfig) -> list[HeldOutRow]:
    """Chat JSONL (an export split) or plain labelled records, whichever the file holds."""
    with Path(path).open(encoding="utf-8") as fh:
        first = next((json.loads(line) for line in fh if line.strip()), None)
    if first is None:
        raise ValueError(f"{path}: no rows")
    if "messages" in first:
        return held_out_rows(path, config.max_examples)
    return labelled_record_rows(path, task, config.text_field, config.label_field, config.max_examples)


def few_shot_prompt(row: HeldOutRow, shots: Sequence[HeldOutRow]) -> Conversation:
    """The row's conversation with example exchanges inserted after the system turn."""
    head = [m for m in row.prompt if m["role"] == "system"]
    rest = [m for m in row.prompt if m["role"] != "system"]
    examples: Conversation = []
    for shot in shots:
        examples += [m for m in shot.prompt if m["role"] != "system"]
        examples.append({"role": "assistant", "content": shot.reference})
    return head + examples + rest


def choose_shots(train_rows: Sequence[HeldOutRow], k: int, seed: int = 0) -> list[HeldOutRow]:
    """k training rows, spread over labels where there are labels (deterministic)."""
    if k <= 0 or not train_rows:
        return []
    rng = random.Random(seed)
    by_label: dict[str | None, list[HeldOutRow]] = {}
    for row in train_rows:
        by_label.setdefault(row.label, []).append(row)
    labels = sorted(by_label, key=str)
    rng.shuffle(labels)
    shots: list[HeldOutRow] = []
    while len(shots) < k and any(by_label.values()):
        for label in labels:
            if by_label[label] and len(shots) < k:
                shots.append(by_label[label].pop(rng.randrange(len(by_label[label]))))
    return shots


def rank_labels(loaded: LoadedModel, prompts: Sequence[Conversation], labels: Sequence[str]) -> list[str]:
    """The most likely label for each prompt, scored as the start of the answer JSON."""
    rendered = render_prompts(loaded.tokenizer, prompts)
    flat_prompts = [p for p in rendered for _ in labels]
    flat_conts = ['{"label": "' + label + '"' for _ in rendered for label in labels]
    scores = continuation_logprobs(loaded, flat_prompts, flat_conts)
    best = []
    for i in range(len(rendered)):
        row = scores[i * len(labels) : (i + 1) * len(labels)]
        best.append(labels[max(range(len(labels)), key=row.__getitem__)])
    return best


def evaluate_system(
    loaded: LoadedModel,
    task: TaskConfig,
    rows: Sequence[HeldOutRow],
    prompts: Sequence[Conversation],
    config: EvalConfig,
    general: Sequence[Conversation] | None,
    judge_dir: Path | None = None,
) -> SystemResult:
    answers, seconds = generate(
        loaded, prompts, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size
    )
    scores = score_predictions(task, answers, [r.reference for r in rows])
    ranking = None
    if task.type is TaskType.CLASSIFICATION and config.label_scoring:
        predicted = rank_labels(loaded, prompts, task.labels)
        ranking, _, _ = classification_report(task.labels, predicted, [r.label or "" for r in rows])
    judged = None
    if task.type is TaskType.FREEFORM and config.judge:
        from train.evaluate.judge import judge_answers

        if not config.task_config or judge_dir is None:
            raise ValueError("eval.judge needs eval.task_config: the pipeline YAML whose teacher judges")
        judged = judge_answers(config.task_config, prompts, answers, judge_dir / loaded.name, loaded.name)
    timed = latencies(loaded, prompts[: config.latency_samples], max_new_tokens=config.max_new_tokens)
    return SystemResult(
        name=loaded.name,
        kind="model" if loaded.name == "fine-tuned" else "prompted",
        interval=score_interval(scores, config),
        scores=scores,
        label_ranking_accuracy=ranking,
        latency_p50_s=percentile(timed, 50),
        latency_p95_s=percentile(timed, 95),
        examples_per_s=len(rows) / seconds if seconds else 0.0,
        general_nll=mean_nll(loaded, general) if general else None,
        judge=judged,
        samples=[
            {"reference": r.reference, "answer": a} for r, a in zip(rows[:5], answers[:5], strict=False)
        ],
    )


def teacher_cost_per_1k(export_dir: Path | None) -> float | None:
    """Teacher USD per 1,000 requests, from the curation run's manifest: the generate stage's
    usage report (`curate.generate.stages.usage_report`: one answer per request)."""
    if export_dir is None:
        return None
    for candidate in (export_dir, *export_dir.parents[:2]):
        if (candidate / "manifest.json").exists():
            stages = json.loads((candidate / "manifest.json").read_text(encoding="utf-8")).get("stages", {})
            usage = (stages.get("generate", {}).get("report") or {}).get("usage") or {}
            generate = usage.get("generate") or {}
            cost, answers = generate.get("cost_usd"), generate.get("answers")
            if cost is not None and answers:
                return 1000 * float(cost) / int(answers)
    return None


def load_task(config: EvalConfig, layout: RunLayout) -> TaskConfig:
    candidates = [Path(config.task_config)] if config.task_config else []
    if layout.export_dir is not None:
        candidates += [layout.export_dir / "pipeline.yaml", layout.export_dir / "config.yaml"]
    for path in candidates:
        if path.exists():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            return TaskConfig.model_validate(data.get("task", data))
    raise FileNotFoundError(
        "no task config found: set eval.task_config, or keep the export's pipeline.yaml beside test.jsonl"
    )


def evaluate_run(run_dir: Path, config: EvalConfig) -> dict[str, Any]:
    """Evaluate a training run; writes `<run_dir>/eval/` and returns the report."""
    import torch

    from train.evaluate.eval_report import write_report

    layout = RunLayout.discover(run_dir)
    test_path = Path(config.test_file) if config.test_file else _export_file(layout, "test.jsonl")
    train_path = Path(config.train_file) if config.train_file else _default_train_file(layout, test_path)
    task = load_task(config, layout)
    rows = read_held_out(test_path, task, config)
    train_rows = held_out_rows(train_path) if train_path.exists() else []
    shots = choose_shots(train_rows, config.few_shot)
    general = [row["messages"] for row in read_chat_jsonl(Path(config.general_set))] if config.general_set else None

    tuned = (
        load_model("fine-tuned", layout.merged)
        if layout.merged is not None
        else load_model("fine-tuned", layout.base_model, adapter=layout.adapter)
    )
    judge_dir = run_dir / "eval" / "judge"
    tuned_result = evaluate_system(tuned, task, rows, [r.prompt for r in rows], config, general, judge_dir)
    del tuned
    base = load_model("prompted-baseline", layout.base_model)
    baseline_result = evaluate_system(
        base, task, rows, [few_shot_prompt(r, shots) for r in rows], config, general, judge_dir
    )
    del base
    others = [score_baseline(b, task, rows, config) for b in fit_baselines(task, train_rows, config)]
    systems = [tuned_result, baseline_result, *others]

    regression = relative_rise(baseline_result.general_nll, tuned_result.general_nll)
    gate = apply_gate(
        tuned_result.scores.score,
        [compare(tuned_result, other, config) for other in systems[1:]],
        margin=config.margin,
        regression=regression,
        tolerance=config.regression_tolerance,
    )
    labels = [r.label for r in rows if r.label]
    report: dict[str, Any] = {
        "run_dir": str(run_dir),
        "test_file": str(test_path),
        "train_file": str(train_path),
        "n_test": len(rows),
        "n_train": len(train_rows),
        "task_type": task.type.value,
        "labels": list(task.labels),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "base_model": str(layout.base_model),
        "few_shot": len(shots),
        "confidence": config.confidence,
        "bootstrap": {"resamples": config.bootstrap_resamples, "seed": config.seed, "method": "percentile"},
        "systems": [s.as_dict() for s in systems],
        "chance": 1 / len(task.labels) if task.type is TaskType.CLASSIFICATION else None,
        "test_majority_share": max(labels.count(x) for x in set(labels)) / len(labels) if labels else None,
        "gate": gate.as_dict(),
        "cost": {
            "hardware_usd_per_hour": config.hardware_usd_per_hour,
            "fine_tuned_p50_s": tuned_result.latency_p50_s,
            "fine_tuned_per_1k_usd": config.hardware_usd_per_hour * (tuned_result.latency_p50_s or 0) * 1000 / 3600,
            "teacher_per_1k_usd": teacher_cost_per_1k(layout.export_dir),
        },
    }
    write_report(run_dir / "eval", report)
    return report


def score_interval(scores: TaskScores, config: EvalConfig) -> Interval:
    return mean_interval(
        scores.per_example, confidence=config.confidence, resamples=config.bootstrap_resamples, seed=config.seed
    )


def fit_baselines(task: TaskConfig, train_rows: Sequence[HeldOutRow], config: EvalConfig) -> list[Baseline]:
    """The baselines that need no model, fitted on the training rows only."""
    if not train_rows or not config.classical_baselines:
        return []
    prompts = [r.prompt for r in train_rows]
    if task.type is TaskType.CLASSIFICATION:
        labels = [r.label or _label_of(r.reference) for r in train_rows]
        majority: list[Baseline] = [MajorityClass.fit(labels, task.labels)]
        if len(set(labels)) < 2:  # nothing to discriminate: the classifier would be the majority class
            return majority
        return [*majority, TfidfLogisticRegression.fit(prompts, labels, seed=config.seed)]
    return [NearestTrainingAnswer.fit(prompts, [r.reference for r in train_rows])]


def _label_of(reference: str) -> str:
    return str(json.loads(reference).get("label", ""))


def score_baseline(
    baseline: Baseline, task: TaskConfig, rows: Sequence[HeldOutRow], config: EvalConfig
) -> SystemResult:
    answers = baseline.answer([r.prompt for r in rows])
    scores = score_predictions(task, answers, [r.reference for r in rows])
    return SystemResult(
        name=baseline.name,
        kind=baseline.kind,
        interval=score_interval(scores, config),
        scores=scores,
        label_ranking_accuracy=None,
        latency_p50_s=None,
        latency_p95_s=None,
        examples_per_s=None,
        general_nll=None,
        samples=[{"reference": r.reference, "answer": a} for r, a in zip(rows[:5], answers[:5], strict=False)],
    )


def compare(tuned: SystemResult, other: SystemResult, config: EvalConfig) -> Comparison:
    """The fine-tune minus another system over the same rows; required as the config says."""
    required = other.kind in ("prompted", "trivial") or (other.kind == "classical" and config.require_classical)
    difference = paired_difference(
        tuned.scores.per_example,
        other.scores.per_example,
        confidence=config.confidence,
        resamples=config.bootstrap_resamples,
        seed=config.seed,
    )
    return Comparison(other.name, other.kind, other.scores.score, difference, required)


def _default_train_file(layout: RunLayout, test_path: Path) -> Path:
    """train.jsonl beside the test file, else the export's: the rows few-shots and baselines learn from."""
    beside = test_path.with_name("train.jsonl")
    return beside if beside.exists() or layout.export_dir is None else _export_file(layout, "train.jsonl")


def _export_file(layout: RunLayout, name: str) -> Path:
    if layout.export_dir is None:
        raise FileNotFoundError(
            f"{layout.run_dir}: the train config names no export folder; pass eval.test_file"
        )
    return layout.export_dir / name
