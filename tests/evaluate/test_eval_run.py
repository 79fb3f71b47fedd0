"""`train eval` end to end on tiny RANDOM-INIT stand-in models (no real model is involved).

A classification run checks the report, the plots and the CLI gate (exit 1 / 0); a
free-form run checks that the LLM-as-judge scores both systems through the real teacher
client against MockTeacherServer (a local server that fills the rubric schema
mechanically: it stands in for the teacher, it is not a model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.servers.mock_teacher import MockTeacherServer
from tests.train.helpers import tiny_config, write_export
from train.evaluate.config import EvalConfig
from train.evaluate.evaluate import evaluate_run
from train.runner import run_training

pytestmark = pytest.mark.slow  # minutes on 2 cores: `make test-fast` leaves it out

LABELS = ["AC", "IR", "PE"]
SYSTEM = "Classify the statement."


def _classification_rows(controls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for control in controls:
        output = json.dumps({"label": control["family"], "quote": " ".join(control["statement"].split()[:4])})
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": control["statement"][:200]},
                    {"role": "assistant", "content": output},
                ],
                "label": control["family"],
            }
        )
    return rows


@pytest.fixture(scope="module")
def classification_run(shared_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    controls = [json.loads(line) for line in (shared_corpus / "controls.jsonl").read_text().splitlines()]
    picked = [c for c in controls if c["family"] in LABELS][::4][:48]
    rows = _classification_rows(picked)
    root = tmp_path_factory.mktemp("eval-cls")
    export = write_export(root / "export", {"train": rows[:36], "validation": rows[36:42], "test": rows[42:]})
    (export / "pipeline.yaml").write_text(
        yaml.safe_dump(
            {
                "task": {
                    "type": "classification",
                    "instruction": "Which family?",
                    "labels": LABELS,
                    "system_prompt": SYSTEM,
                }
            }
        )
    )
    cfg = tiny_config(export, root / "train", max_steps=4, export_gguf=False)
    run_training(cfg)
    return root / "train"


def test_report_has_both_systems_metrics_and_plots(classification_run: Path) -> None:
    report = evaluate_run(classification_run, EvalConfig(max_new_tokens=24, latency_samples=2, batch_size=4))
    names = [s["name"] for s in report["systems"]]
    assert names == ["fine-tuned", "prompted-baseline", "majority-class", "tfidf-logreg"]
    for system in report["systems"]:
        scores, interval = system["scores"], system["interval"]
        assert scores["metric"] == "exact_match" and scores["n"] == 6
        assert 0.0 <= scores["score"] <= 1.0 and 0.0 <= scores["schema_compliance"] <= 1.0
        assert interval["low"] <= scores["score"] <= interval["high"]
        assert len(scores["per_example"]) == 6
        assert set(scores["confusion"]) == set(LABELS)
        assert sum(sum(row.values()) for row in scores["confusion"].values()) == 6
    for system in report["systems"][:2]:
        assert 0.0 <= system["label_ranking_accuracy"] <= 1.0
        assert 0.0 < system["latency_p50_s"] <= system["latency_p95_s"]
    comparisons = {c["baseline"]: c for c in report["gate"]["comparisons"]}
    assert [name for name, c in comparisons.items() if c["required"]] == ["prompted-baseline", "majority-class"]
    assert report["chance"] == pytest.approx(1 / 3)
    assert report["n_train"] == 36
    assert report["few_shot"] == 3
    out = classification_run / "eval"
    assert (out / "scores.png").stat().st_size > 0
    assert (out / "confusion_fine-tuned.png").stat().st_size > 0
    markdown = (out / "report.md").read_text()
    assert "prompted-baseline" in markdown and "tfidf-logreg" in markdown and "95% bootstrap intervals" in markdown


def test_cli_gate_fails_and_passes(classification_run: Path, tmp_path: Path) -> None:
    from train.cli import app

    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump({"eval": {"margin": 2.0, "max_new_tokens": 8, "latency_samples": 1}}))
    failed = CliRunner().invoke(app, ["eval", str(classification_run), "--config", str(strict)])
    assert failed.exit_code == 1, failed.output
    assert "does not beat the prompted baseline" in failed.output
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(yaml.safe_dump({"eval": {"margin": -2.0, "max_new_tokens": 8, "latency_samples": 1}}))
    passed = CliRunner().invoke(app, ["eval", str(classification_run), "--config", str(lenient)])
    assert passed.exit_code == 0, passed.output


def test_freeform_answers_are_judged_through_the_teacher(tmp_path: Path) -> None:
    topics = [
        "access reviews",
        "incident reports",
        "backups",
        "encryption keys",
        "asset tags",
        "visitor logs",
    ]
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Answer from the passage."},
                {
                    "role": "user",
                    "content": f"Explain the rule on {topic}. Passage: staff handle {topic} every quarter.",
                },
                {
                    "role": "assistant",
                    "content": json.dumps(
                        {
                            "instruction": f"Explain the rule on {topic}.",
                            "response": f"Staff handle {topic} every quarter.",
                        }
                    ),
                },
            ]
        }
        for topic in topics
    ]
    export = write_export(tmp_path / "export", {"train": rows[:4], "validation": rows[4:5], "test": rows[4:]})
    cfg = tiny_config(export, tmp_path / "train", max_steps=2, export_gguf=False)
    run_training(cfg)
    with MockTeacherServer() as server:
        pipeline = tmp_path / "pipeline.yaml"
        pipeline.write_text(
            yaml.safe_dump(
                {
                    "run_dir": "run",
                    "task": {"type": "freeform", "instruction": "Answer from the passage."},
                    "teacher": {
                        "backend": "openai",
                        "model": "mock-teacher",
                        "base_url": server.openai_base_url,
                        "api_key_env": "PATH",
                        "max_tokens": 128,
                        "retry_base_s": 0.01,
                    },
                }
            )
        )
        report = evaluate_run(
            tmp_path / "train",
            EvalConfig(
                task_config=str(pipeline), judge=True, few_shot=2, max_new_tokens=12, latency_samples=1
            ),
        )
        received = server.received
    assert [s["name"] for s in report["systems"]] == ["fine-tuned", "prompted-baseline", "nearest-train-answer"]
    for system in report["systems"][:2]:  # the models are judged; the retrieval baseline is scored by F1 only
        judge = system["judge"]
        assert judge["scored"] == 2 and judge["failed"] == 0
        assert 0.2 <= judge["mean"] <= 1.0  # rubric scores 1..5, scaled by 5
    assert received == 4  # 2 test rows x 2 systems, each judged once
    assert "LLM-as-judge" in (tmp_path / "train" / "eval" / "report.md").read_text()
