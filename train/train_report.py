"""Training report: report.json, report.md and the loss curves (loss.png)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assay.files import atomic_write_text as write_text_atomic


def loss_curves(log_history: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    train = [(float(e["step"]), float(e["loss"])) for e in log_history if "loss" in e]
    evals = [(float(e["step"]), float(e["eval_loss"])) for e in log_history if "eval_loss" in e]
    return {"train": train, "eval": evals}


def plot_losses(curves: dict[str, list[tuple[float, float]]], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if curves["train"]:
        ax.plot(*zip(*curves["train"], strict=True), label="train loss", lw=1.2)
    if curves["eval"]:
        ax.plot(*zip(*curves["eval"], strict=True), "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


#: a step holding more than this many times `effective_batch_size` examples gets a note
PACKED_STEP_RATIO = 2.0


def packing_note(report: dict[str, Any]) -> str | None:
    """Why a packed run may learn less: a step that holds many examples leaves small data few steps.

    bench/gguf (2026-12-03): 656 examples packed into 163 rows took 33 steps at lr 1e-3 and
    left SmolLM2-135M at chance on 18 labels; 123 unpacked steps had reached 57.6% (bench/eval).
    With `packed_batch_unit: examples` (the default) a packed step holds ~`effective_batch_size`
    examples, so this fires for `rows`, or where one packed row already holds more than asked.
    """
    m, examples = report["metrics"], report["examples"]["train"]
    if not report.get("packing") or not m["global_step"] or not examples:
        return None
    effective = int(report["config"]["effective_batch_size"])
    per_step = examples * float(m["epochs_done"]) / int(m["global_step"])
    if per_step <= PACKED_STEP_RATIO * effective:
        return None
    unpacked = round(examples * float(m["epochs_done"]) / effective)
    unit = report["config"].get("packed_batch_unit", "rows")
    return (
        f"packing put ~{per_step:.0f} examples into each optimizer step (`effective_batch_size` "
        f"{effective}, counting {unit}): {m['global_step']} steps where unpacked training takes "
        f"~{unpacked}. On a small dataset the model may learn less; `packed_batch_unit: examples`, "
        "`packing: false` or a smaller `effective_batch_size` gives more steps (bench/gguf/README.md)."
    )


def batch_rows(batch: dict[str, Any] | None) -> list[str]:
    """The report's line on what one optimizer step held (rows, accumulation, packed examples)."""
    if not batch:
        return []
    packed = batch.get("packed_rows")
    how = f", packed into {packed} rows" if packed else ""
    return [
        f"| batch per step | {batch['rows_per_step']} rows ({batch['per_device_rows']} per micro-batch x "
        f"{batch['accumulation']} accumulation), ~{batch['examples_per_step']} examples{how} |"
    ]


def write_report(run_dir: Path, report: dict[str, Any]) -> None:
    notes = [note for note in (packing_note(report),) if note]
    write_text_atomic(run_dir / "report.json", json.dumps({**report, "notes": notes}, indent=2, default=str))
    m = report["metrics"]
    curves = report["curves"]
    lines = [
        f"# Training report: {report['name']}",
        "",
    ]
    if report.get("random_init_standin"):
        lines += [
            "> Base model is a RANDOMLY INITIALISED stand-in (`model: tiny-random`): these figures "
            "show the pipeline runs, not model quality.",
            "",
        ]
    lines += [
        "| | |",
        "|---|---|",
        f"| base model | `{report['base_model']}` |",
        f"| backend | {report['backend']} ({report['device']}, 4-bit: {report['quantized']}, "
        f"gradient checkpointing: {report.get('gradient_checkpointing', 'n/a')}, "
        f"packed attention: {report.get('packed_attention') or 'n/a'}) |",
        f"| dataset | `{report['data']}` sha256 `{report['dataset_sha256'][:16]}…` |",
        f"| examples (train / validation) | {report['examples']['train']} / "
        f"{report['examples']['validation']} |",
        f"| optimizer steps | {m['global_step']} (epochs {m['epochs_done']:.2f}) |",
        *batch_rows(report.get("batch")),
        f"| first / last train loss | {m['first_train_loss']:.4f} / {m['last_train_loss']:.4f} |",
        f"| best validation loss | {m['best_eval_loss']} |",
        f"| tokens seen (non-padding) | {m['tokens_seen']} |",
        f"| tokens/s | {m['tokens_per_s']:.1f} |",
        f"| peak memory | {m['peak_memory_gib']:.2f} GiB ({m['peak_memory_kind']}) |",
        f"| wall time | {m['wall_time_s']:.1f} s (training {m['train_runtime_s']:.1f} s) |",
        f"| stopped early | {m['stopped_early']} |",
        f"| resumed from | {report.get('resumed_from')} |",
        "",
        *(f"> Note: {n}\n" for n in notes),
        "![loss](loss.png)",
        "",
        "## Outputs",
        "",
    ]
    for key, value in report["outputs"].items():
        lines.append(f"- {key}: `{value}`")
    lines += ["", f"Train/eval loss points: {len(curves['train'])} / {len(curves['eval'])}", ""]
    write_text_atomic(run_dir / "report.md", "\n".join(lines))
