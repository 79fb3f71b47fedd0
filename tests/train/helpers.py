"""Helpers for the training tests (the model they build is a RANDOM-INIT stand-in)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SYSTEM = "Name the NIST SP 800-53 control family of the statement."


def chat_rows(controls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": c["statement"][:300]},
                {"role": "assistant", "content": c["family_title"]},
            ],
            "example_id": c["id"],
            "label": c["family"],
            "task_type": "classification",
        }
        for c in controls
    ]


def write_export(folder: Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


TINY_SHAPE = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 600,
}


def tiny_config(export: Path, out: Path, **overrides: Any):
    from train.config import parse_config

    data: dict[str, Any] = {
        "name": "test-tiny",
        "model": "tiny-random",
        "tiny": TINY_SHAPE,
        "data": str(export),
        "output_dir": str(out),
        "learning_rate": 5e-3,
        "warmup_ratio": 0.0,
        "epochs": 3,
        "per_device_batch_size": 4,
        "effective_batch_size": 8,
        "max_seq_len": 256,
        "gradient_checkpointing": False,
        "early_stopping_patience": None,
        "seed": 7,
    }
    data.update(overrides)
    return parse_config(data)
