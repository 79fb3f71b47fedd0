"""The evaluation report: JSON, Markdown and plots in `<run_dir>/eval/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from assay.files import atomic_write_text


def write_report(out_dir: Path, report: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, default=str))
    _plot_scores(out_dir / "scores.png", report)
    for system in report["systems"]:
        confusion = system["scores"]["confusion"]
        if confusion:
            _plot_confusion(out_dir / f"confusion_{system['name']}.png", confusion, system["name"])
    atomic_write_text(out_dir / "report.md", _markdown(report))
    return out_dir / "report.md"


def _plot_scores(path: Path, report: dict[str, Any]) -> None:
    systems = report["systems"]
    names = [s["name"] for s in systems]
    scores = [s["scores"]["score"] for s in systems]
    errors = [
        [s["scores"]["score"] - s["interval"]["low"] for s in systems],
        [s["interval"]["high"] - s["scores"]["score"] for s in systems],
    ]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3.5))
    ax.bar(range(len(names)), scores, yerr=errors, capsize=4, color="#4C72B0")
    if report.get("chance") is not None:
        ax.axhline(report["chance"], linestyle="--", color="grey", label="chance")
        ax.legend(fontsize=8)
    ax.set_xticks(list(range(len(names))), names, rotation=20, fontsize=8)
    ax.set_ylabel(f"{systems[0]['scores']['metric']} ({report['confidence']:.0%} CI)")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_confusion(path: Path, confusion: dict[str, dict[str, int]], title: str) -> None:
    gold = list(confusion)
    predicted = list(next(iter(confusion.values())))
    matrix = [[confusion[g][p] for p in predicted] for g in gold]
    fig, ax = plt.subplots(figsize=(0.45 * len(predicted) + 2, 0.45 * len(gold) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(predicted)), predicted, rotation=90, fontsize=7)
    ax.set_yticks(range(len(gold)), gold, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"confusion: {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(report: dict[str, Any]) -> str:
    gate = report["gate"]
    confidence = f"{report['confidence']:.0%}"
    lines = [
        "# Evaluation report",
        "",
        f"Test rows: {report['n_test']} ({report['test_file']}) · training rows for few-shots and baselines: "
        f"{report['n_train']} · task: {report['task_type']} · device: {report['device']}",
        "",
        f"**Gate: {'PASSED' if gate['passed'] else 'FAILED'}**"
        + ("" if gate["passed"] else " — " + "; ".join(gate["reasons"])),
        "",
        *[f"- {note}" for note in gate["notes"]],
        "",
        f"## Scores, with {confidence} bootstrap intervals over test rows",
        "",
        "| system | kind | score | interval | schema compliance | label ranking acc. | p50 s | ex/s | general NLL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["systems"]:
        sc, ci = s["scores"], s["interval"]
        lines.append(
            f"| {s['name']} | {s['kind']} | {sc['score']:.4f} | [{ci['low']:.4f}, {ci['high']:.4f}] | "
            f"{sc['schema_compliance']:.3f} | {_f(s['label_ranking_accuracy'])} | {_f(s['latency_p50_s'])} | "
            f"{_f(s['examples_per_s'])} | {_f(s['general_nll'])} |"
        )
    lines += ["", f"Metric: {report['systems'][0]['scores']['metric']}."]
    if report.get("chance") is not None:
        lines.append(
            f"Chance accuracy: {report['chance']:.4f}; the test split's own majority share: "
            f"{report['test_majority_share']:.4f} (the majority-class baseline predicts the training split's)."
        )
    lines += [
        "",
        f"## The fine-tune against each system (paired bootstrap, margin {gate['margin']:.4f})",
        "",
        "| baseline | required by the gate | difference | interval | beaten |",
        "|---|---|---|---|---|",
    ]
    for c in gate["comparisons"]:
        d = c["difference"]
        lines.append(
            f"| {c['baseline']} | {'yes' if c['required'] else 'no'} | {d['estimate']:+.4f} | "
            f"[{d['low']:+.4f}, {d['high']:+.4f}] | {'yes' if c['beaten'] else 'no'} |"
        )
    cost = report["cost"]
    lines += [
        "",
        "## Why fine-tune: cost per 1,000 calls",
        "",
        f"- fine-tuned model: ${_f(cost['fine_tuned_per_1k_usd'])} "
        f"(p50 latency {_f(cost['fine_tuned_p50_s'])} s on {report['device']}, at ${cost['hardware_usd_per_hour']}/h)",
        f"- teacher: ${_f(cost['teacher_per_1k_usd'])} (from the curation run's usage accounting)",
        "",
        f"General-capability check: perplexity rise {_pct(gate['regression'])} (tolerance {gate['tolerance']:.0%}).",
    ]
    judged = [s for s in report["systems"] if s.get("judge")]
    if judged:
        lines += ["", "## LLM-as-judge (teacher, the filter stage's rubric; mean score scaled to 0..1)", ""]
        lines += ["| system | judge score | scored | failed | cost USD |", "|---|---|---|---|---|"]
        for s in judged:
            j = s["judge"]
            lines.append(f"| {s['name']} | {_f(j['mean'])} | {j['scored']} | {j['failed']} | {j['cost_usd']:.4f} |")
    for s in report["systems"]:
        lines += _per_class(s)
    return "\n".join(lines) + "\n"


def _per_class(system: dict[str, Any]) -> list[str]:
    scores = system["scores"]
    if not scores["per_class"]:
        return []
    lines = [
        "",
        f"## Per class: {system['name']}",
        "",
        "| class | precision | recall | f1 | support |",
        "|---|---|---|---|---|",
    ]
    for label, m in scores["per_class"].items():
        lines.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    confusion = scores["confusion"]
    predicted = [p for p in next(iter(confusion.values())) if any(row[p] for row in confusion.values())]
    lines += ["", "Confusion (rows: gold, columns: predicted; empty columns left out)", ""]
    lines.append("| gold \\ predicted | " + " | ".join(predicted) + " |")
    lines.append("|---" * (len(predicted) + 1) + "|")
    for gold, row in confusion.items():
        lines.append(f"| {gold} | " + " | ".join(str(row[p]) for p in predicted) + " |")
    return lines


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"
