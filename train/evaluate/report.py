"""The evaluation report: JSON, Markdown and plots in `<run_dir>/eval/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from curate.run.rundir import atomic_write_text


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
    names = [s["name"] for s in report["systems"]]
    scores = [s["scores"]["score"] for s in report["systems"]]
    compliance = [s["scores"]["schema_compliance"] for s in report["systems"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], scores, width=0.4, label=report["systems"][0]["scores"]["metric"])
    ax.bar([x + 0.2 for x in xs], compliance, width=0.4, label="schema compliance")
    if report.get("chance") is not None:
        ax.axhline(report["chance"], linestyle="--", color="grey", label="chance")
    ax.set_xticks(list(xs), names)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
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
    lines = [
        "# Evaluation report",
        "",
        f"Test rows: {report['n_test']} · task: {report['task_type']} · device: {report['device']}",
        "",
        f"**Gate: {'PASSED' if gate['passed'] else 'FAILED'}**"
        + ("" if gate["passed"] else " — " + "; ".join(gate["reasons"])),
        "",
        "| system | metric | score | schema compliance | label ranking acc. | p50 s | p95 s | ex/s | general NLL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["systems"]:
        sc = s["scores"]
        lines.append(
            f"| {s['name']} | {sc['metric']} | {sc['score']:.4f} | {sc['schema_compliance']:.3f} | "
            f"{_f(s['label_ranking_accuracy'])} | {s['latency_p50_s']:.3f} | {s['latency_p95_s']:.3f} | "
            f"{s['examples_per_s']:.2f} | {_f(s['general_nll'])} |"
        )
    if report.get("chance") is not None:
        lines += ["", f"Chance accuracy: {report['chance']:.4f}; majority class: {report['majority']:.4f}."]
    cost = report["cost"]
    lines += [
        "",
        "## Why fine-tune: cost per 1,000 calls",
        "",
        f"- fine-tuned model: ${_f(cost['fine_tuned_per_1k_usd'])} "
        f"(p50 latency {cost['fine_tuned_p50_s']:.3f} s on {report['device']}, at ${cost['hardware_usd_per_hour']}/h)",
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
        if s["scores"]["per_class"]:
            lines += [
                "",
                f"## Per class: {s['name']}",
                "",
                "| class | precision | recall | f1 | support |",
                "|---|---|---|---|---|",
            ]
            for label, m in s["scores"]["per_class"].items():
                lines.append(
                    f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
                )
    return "\n".join(lines) + "\n"


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"
