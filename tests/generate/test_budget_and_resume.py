"""Budget stop + resume, and kill-and-resume: a run interrupted midway and restarted makes
zero duplicate requests and loses no finished answer. The teacher is MockTeacherServer, a
local OpenAI-compatible server that fills the schema mechanically (not a model)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from rich.console import Console

from curate.config import load_config
from curate.generate.stages import STAGES
from curate.run.runner import Runner
from tests.generate.conftest import LABELS, chunks_frame
from tests.servers.mock_teacher import MockTeacherServer

REPO = Path(__file__).resolve().parents[2]
PRICE = {"input": 100.0, "output": 100.0}  # USD per million tokens: large, so cents add up fast


def write_run(tmp_path: Path, server: MockTeacherServer, n_chunks: int, **teacher) -> Path:
    """A pipeline YAML whose run directory already holds `redact/chunks` (the stage's input)."""
    config = {
        "run_dir": "run",
        "task": {"type": "classification", "instruction": "Which policy area?", "labels": LABELS},
        "teacher": {
            "backend": "openai", "model": "mock-teacher", "base_url": server.openai_base_url,
            "samples": 3, "max_tokens": 64, "retry_base_s": 0.01, "prices": {"mock-teacher": PRICE},
            **teacher,
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    chunks_dir = tmp_path / "run" / "redact"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    chunks_frame(n_chunks).write_parquet(chunks_dir / "chunks.parquet")
    return path


def run_generate(config_path: Path, **overrides):
    config = load_config(config_path, overrides or None)
    return config, Runner(config, STAGES, console=Console(quiet=True), show_progress=False).run()


def spent(run_dir: Path) -> float:
    with sqlite3.connect(run_dir / "generate.state" / "responses.sqlite") as db:
        return float(db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM spend").fetchone()[0])


def test_budget_stops_cleanly_and_a_larger_budget_resumes_without_paying_twice(tmp_path):
    with MockTeacherServer() as server:
        config_path = write_run(tmp_path, server, n_chunks=6, budget_usd=0.15, max_concurrency=2)
        config, result = run_generate(config_path)
        run_dir = config.run_path
        (stage,) = result.stages
        assert stage.status == "partial" and "budget" in stage.message and result.exit_code == 3
        first = pl.read_parquet(run_dir / "generate" / "samples.parquet")
        assert 0 < first.height < 18
        assert first.height == server.answered  # every paid answer kept, nothing half-written
        assert set(first["status"]) == {"ok"}
        assert spent(run_dir) <= 0.15
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["stages"]["generate"]["status"] == "partial"

        # the same budget again: nothing more is paid, the stage stops at once
        _, again = run_generate(config_path)
        assert again.stages[0].status == "partial" and server.received == first.height

        # a larger budget: resumes, the answers paid before come from the cache
        _, resumed = run_generate(config_path, **{"teacher.budget_usd": 5.0})
        assert resumed.stages[0].status == "complete"
        final = pl.read_parquet(run_dir / "generate" / "samples.parquet")
        assert final.height == 18 and server.answered == 18  # no request answered twice
        assert int(final["cached"].sum()) == first.height
        assert final.filter(pl.col("cached"))["sample_id"].sort().equals(first["sample_id"].sort())
        assert abs(spent(run_dir) - float(final["cost_usd"].sum())) < 1e-9  # each answer paid once


RUNNER_SCRIPT = """
import sys
from rich.console import Console
from curate.config import load_config
from curate.generate.stages import STAGES
from curate.run.runner import Runner
Runner(load_config(sys.argv[1]), STAGES, console=Console(quiet=True), show_progress=False).run()
"""


@pytest.mark.slow
def test_killed_run_resumes_with_zero_duplicate_requests(tmp_path):
    n_chunks, samples, answered_before_kill = 8, 3, 7
    total = n_chunks * samples
    with MockTeacherServer(latency_s=0.02, hold_after=answered_before_kill) as server:
        config_path = write_run(tmp_path, server, n_chunks=n_chunks, max_concurrency=4)
        cache = tmp_path / "run" / "generate.state" / "responses.sqlite"
        process = subprocess.Popen(
            [sys.executable, "-c", RUNNER_SCRIPT, str(config_path)], cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 120
            stored = 0
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise AssertionError(f"the run ended before the kill: {process.communicate()[1].decode()[-2000:]}")
                if cache.exists():
                    try:
                        with sqlite3.connect(cache) as db:
                            stored = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
                    except sqlite3.OperationalError:  # created, tables not yet
                        stored = 0
                if stored >= answered_before_kill and server.received > answered_before_kill:
                    break  # all answered requests stored, later ones held open by the server
                time.sleep(0.05)
            assert stored == answered_before_kill
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        assert process.returncode == -signal.SIGKILL
        assert server.answered == answered_before_kill
        assert not (tmp_path / "run" / "generate" / "samples.parquet").exists()  # killed mid-stage

        server.hold_after = None  # the teacher is healthy again
        config, result = run_generate(config_path)
        assert result.stages[0].status == "complete"
        final = pl.read_parquet(config.run_path / "generate" / "samples.parquet")
        assert final.height == total and set(final["status"]) == {"ok"}
        assert server.answered == total  # zero duplicate requests: each one answered once
        assert int(final["cached"].sum()) == answered_before_kill  # no finished answer lost
