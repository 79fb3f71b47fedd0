"""The embedded demo end to end: `curate run data/demo/pipeline.yaml` on a temporary copy.

The demo's teacher is the HAND-WRITTEN sample cassette (data/demo/cassette.handwritten-sample.jsonl,
built from teacher_answers.handwritten.yaml; no model wrote it). Its deliberate flaws are read
from that YAML (`flaw:` on a sample, `note:` on the near-duplicate passage planted in the corpus),
and each must be caught by the filter meant for it. The repo's runs/ is never touched.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from curate.cli import app
from curate.config import load_config
from curate.pipeline import all_stages
from curate.run.runner import Runner
from schemas.artifacts import ARTIFACTS, REVIEW_PUSHED

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "data" / "demo"


@dataclass
class DemoRun:
    config: Path
    run_dir: Path
    exit_code: int
    output: str
    answers: dict[str, Any]

    def read(self, artifact: str) -> pl.DataFrame:
        return pl.read_parquet(self.run_dir / f"{artifact}.parquet")

    def chunk_of(self, entry: dict[str, Any]) -> str:
        """The chunk id of a YAML entry (doc + last heading, or doc + a passage it contains)."""
        chunks = self.read("redact/chunks")
        hits = [
            row["chunk_id"] for row in chunks.iter_rows(named=True)
            if Path(row["source_path"]).name == entry["doc"] and (
                (row["heading_path"] and row["heading_path"][-1] == entry.get("heading"))
                or ("contains" in entry and entry["contains"] in row["text"])
            )
        ]
        assert len(hits) == 1, f"{entry['doc']} § {entry.get('heading') or entry.get('contains')}: {hits}"
        return hits[0]

    def flawed(self, flaw: str) -> list[tuple[str, dict[str, Any]]]:
        """(chunk_id, sample) of every generation sample marked with `flaw`."""
        return [
            (self.chunk_of(entry), sample)
            for entry in self.answers["generate"] for sample in entry["samples"]
            if sample.get("flaw") == flaw
        ]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """One real `curate run` of a copy of data/demo into a temporary run directory."""
    root = tmp_path_factory.mktemp("demo")
    demo = root / "demo"
    shutil.copytree(DEMO, demo, ignore=shutil.ignore_patterns("__pycache__"))
    config = demo / "pipeline.yaml"
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["run_dir"] = str(root / "run")
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(config), "--quiet"])
    answers = yaml.safe_load((demo / "teacher_answers.handwritten.yaml").read_text(encoding="utf-8"))
    yield DemoRun(config, root / "run", result.exit_code, result.output, answers)


def _rejections(run: DemoRun, artifact: str, filter_name: str, reason: str) -> pl.DataFrame:
    return run.read(artifact).filter((pl.col("filter") == filter_name) & (pl.col("reason") == reason))


def test_the_demo_runs_clean(demo_run: DemoRun) -> None:
    assert demo_run.exit_code == 0, demo_run.output
    manifest = json.loads((demo_run.run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert {stage.name for stage in all_stages()} == set(manifest["stages"])
    assert all(entry["status"] == "complete" for entry in manifest["stages"].values())


def test_every_artifact_written_has_its_declared_schema(demo_run: DemoRun) -> None:
    """What a stage writes is what `schemas.artifacts` declares, column for column."""
    declared = ARTIFACTS
    assert {f"{s.name}/{o.name}" for s in all_stages() for o in s.declared_outputs} == {a.path for a in declared}
    mismatched = {}
    for artifact in declared:
        written = dict(pl.read_parquet_schema(demo_run.run_dir / f"{artifact.path}.parquet"))
        if written != dict(artifact.schema):
            mismatched[artifact.path] = {name: (written.get(name), artifact.schema.get(name))
                                         for name in {*written, *artifact.schema}
                                         if written.get(name) != artifact.schema.get(name)}
    assert mismatched == {}, "(written, declared) per column"


def test_schema_violations_are_rejected_by_the_schema_filter(demo_run: DemoRun) -> None:
    planted = demo_run.flawed("schema-violation")
    assert planted
    rejected = _rejections(demo_run, "filter/rejected", "schema", "schema_error")
    assert sorted(rejected["chunk_id"]) == sorted(chunk for chunk, _ in planted)
    got = sorted(json.dumps(json.loads(o), sort_keys=True) for o in rejected["output_json"])
    assert got == sorted(json.dumps(json.loads(s["raw"]), sort_keys=True) for _, s in planted)


def test_wrong_labels_are_outvoted_by_self_consistency(demo_run: DemoRun) -> None:
    planted = demo_run.flawed("wrong-label")
    assert planted
    rejected = _rejections(demo_run, "filter/rejected", "consistency", "minority_label")
    got = {(row["chunk_id"], json.loads(row["output_json"])["label"]) for row in rejected.iter_rows(named=True)}
    assert got == {(chunk, sample["label"]) for chunk, sample in planted}
    # the outvoted label never reaches the final examples of its chunk
    final = demo_run.read("dedup/examples")
    for chunk, sample in planted:
        assert sample["label"] not in final.filter(pl.col("chunk_id") == chunk)["label"].to_list()


def test_ungrounded_quotes_are_rejected_by_grounding(demo_run: DemoRun) -> None:
    planted = {(chunk, sample["quote"]) for chunk, sample in demo_run.flawed("ungrounded-quote")}
    rejected = _rejections(demo_run, "filter/rejected", "grounding", "quote_not_in_source")
    got = {(row["chunk_id"], json.loads(row["output_json"])["quote"]) for row in rejected.iter_rows(named=True)}
    # only a chunk's consensus answer is grounded-checked; every rejection is a planted flaw
    assert got and got <= planted
    # and no planted ungrounded quote reaches the final examples
    final_quotes = {json.loads(o)["quote"] for o in demo_run.read("dedup/examples")["output_json"]}
    assert not final_quotes & {quote for _, quote in planted}


def test_the_near_duplicate_passage_is_removed_by_dedup(demo_run: DemoRun) -> None:
    planted = [e for e in demo_run.answers["generate"] if "near-duplicate passage" in e.get("note", "")]
    assert len(planted) == 1
    copy = planted[0]
    original = next(
        e for e in demo_run.answers["generate"]
        if e is not copy and e.get("heading") == copy["heading"] and e["doc"] != copy["doc"]
    )
    pair = {demo_run.chunk_of(copy), demo_run.chunk_of(original)}
    rejected = _rejections(demo_run, "dedup/rejected", "dedup", "near_duplicate")
    assert rejected.height == 1
    assert demo_run.read("dedup/rejected").height == 1  # nothing else is a duplicate
    survivor_id = rejected["detail"][0].split("duplicate of ")[1].split(" ")[0]
    final = demo_run.read("dedup/examples")
    survivor = final.filter(pl.col("example_id") == survivor_id)
    assert survivor.height == 1
    assert {rejected["chunk_id"][0], survivor["chunk_id"][0]} == pair
    assert final.filter(pl.col("chunk_id").is_in(list(pair))).height == 1


def test_refine_recovers_rejected_chunks(demo_run: DemoRun) -> None:
    no_majority = {chunk for chunk, _ in demo_run.flawed("no-majority")}
    assert no_majority
    assert set(_rejections(demo_run, "filter/rejected", "consistency", "no_majority")["chunk_id"]) == no_majority
    repaired = demo_run.read("refine/examples").filter(pl.col("refine_round") >= 1)
    assert no_majority <= set(repaired["chunk_id"])
    final = demo_run.read("dedup/examples")
    recovered = final.filter(pl.col("refine_round") >= 1)
    assert set(recovered["chunk_id"]) & no_majority  # a repaired example is in the final set
    manifest = json.loads((demo_run.run_dir / "manifest.json").read_text(encoding="utf-8"))
    summary = manifest["stages"]["dedup"]["report"]["summary"]
    assert summary["chunks_repaired"] >= 1 and summary["recovery_rate"] > 0


def test_status_shows_every_filter_at_work(demo_run: DemoRun) -> None:
    result = CliRunner().invoke(app, ["status", str(demo_run.run_dir)], terminal_width=200)
    assert result.exit_code == 0, result.output
    for reason in ("schema_error", "minority_label", "quote_not_in_source", "near_duplicate", "no_majority"):
        assert reason in result.output


def test_export_has_the_splits_and_a_card(demo_run: DemoRun) -> None:
    config = load_config(demo_run.config)
    folder = demo_run.run_dir / config.export.dir
    rows = 0
    for split in ("train", "validation", "test"):
        lines = (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        assert lines, split
        for line in lines:
            record = json.loads(line)
            assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
        rows += len(lines)
    assert rows == demo_run.read("split/examples").height
    assert rows == demo_run.read("dedup/examples").height  # nothing lost after dedup in the offline demo
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert len(card) > 200


def test_a_second_run_skips_every_unchanged_stage(demo_run: DemoRun) -> None:
    manifest_path = demo_run.run_dir / "manifest.json"
    before = json.loads(manifest_path.read_text(encoding="utf-8"))["stages"]
    stages = all_stages()
    result = Runner(
        load_config(demo_run.config), stages, console=Console(quiet=True), show_progress=False
    ).run()
    assert result.exit_code == 0
    status = {stage.name: stage.status for stage in result.stages}
    always = {stage.name for stage in stages if stage.always_run}
    assert {name for name, s in status.items() if s == "skipped"} == set(status) - always
    after = json.loads(manifest_path.read_text(encoding="utf-8"))["stages"]
    for name, entry in after.items():
        assert entry["output_hashes"] == before[name]["output_hashes"], name
        if name not in always:
            assert entry["finished_at"] == before[name]["finished_at"], name


# ------------------------------------------------------------------ the first hour (issue 21)
def test_the_run_ends_with_a_summary_and_the_next_command(demo_run: DemoRun) -> None:
    lines = demo_run.output.splitlines()
    dataset = next(line for line in lines if line.startswith("dataset"))
    assert "23 examples" in dataset and "train 18" in dataset
    assert any(line.startswith("rejected") and "chunks gave no accepted example" in line for line in lines)
    assert any(line.startswith("cost") and "$0.0000" in line for line in lines)
    assert any(line.startswith("report") and "report.html" in line for line in lines)
    assert lines[-1].startswith("next") and "train run" in lines[-1] and "train.yaml" in lines[-1]


def test_the_run_warns_that_the_small_splits_miss_classes(demo_run: DemoRun) -> None:
    warnings = [line for line in demo_run.output.splitlines() if line.startswith("warning")]
    assert any("validation" in w and "has no example of" in w for w in warnings), demo_run.output
    card = (demo_run.run_dir / "dataset" / "README.md").read_text(encoding="utf-8")
    assert "**Split warnings**" in card and "split.min_eval_rows=20" in card


def test_status_is_one_screen_and_full_has_the_rest(demo_run: DemoRun) -> None:
    wide = {"COLUMNS": "120"}  # what rich reads (CliRunner's terminal_width does not reach it)
    short = CliRunner().invoke(app, ["status", str(demo_run.run_dir)], env=wide)
    full = CliRunner().invoke(app, ["status", str(demo_run.run_dir), "--full"], env=wide)
    assert short.exit_code == 0 and full.exit_code == 0, short.output + full.output
    assert len(short.output.splitlines()) <= 50, short.output
    assert len(full.output.splitlines()) > 3 * len(short.output.splitlines())
    assert "--full" in short.output and "report.html" in short.output


def test_the_html_report_renders_in_headless_chromium(demo_run: DemoRun, tmp_path: Path) -> None:
    """report.html opened in Debian's Chromium through Playwright: no console error, every section
    there, the inlined plots decoded. ASSAY_SCREENSHOT=docs/run-report.png keeps the screenshot."""
    import os

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.skip(f"no Chromium at {chromium} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    page_file = demo_run.run_dir / "report.html"
    html = page_file.read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html and 'src="http' not in html  # self-contained
    shot = Path(os.environ.get("ASSAY_SCREENSHOT", tmp_path / "run-report.png"))
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]
    messages: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in {"error", "warning"} else None)
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: messages.append(f"requestfailed: {r.url}"))
            page.goto(page_file.as_uri(), wait_until="load")
            headings = page.locator("h2").all_inner_texts()
            images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.alt, i.complete && i.naturalWidth])")
            reasons = page.locator("details summary").all_inner_texts()
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert messages == []
    for section in ("Stages", "Funnel", "Rejection reasons", "Cost", "Plots", "Validation", "Dataset card"):
        assert section in headings, headings
    assert len(images) >= 4 and all(width for _, width in images), images  # 2 plots + 2 in the card
    assert any(r.startswith("minority_label") for r in reasons), reasons
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unchanged_rerun_skips_review_and_export(demo_run: DemoRun) -> None:
    """`curate run` again: every stage but discover is skipped. A file deleted from the export
    folder brings export back; new review state (pushed ids) brings review back. Times are
    logged (pytest -s), not asserted: the machine is shared."""
    import time

    def rerun() -> str:
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["run", str(demo_run.config), "--quiet"], terminal_width=200)
        assert result.exit_code == 0, result.output
        print(f"unchanged re-run: {time.perf_counter() - started:.1f} s")
        return result.output

    output = rerun()
    assert "review: unchanged, skipped" in output and "export: unchanged, skipped" in output
    assert "▶" in output and output.count("▶") == 1  # discover only

    card = demo_run.run_dir / "dataset" / "README.md"
    card.unlink()
    output = rerun()
    assert "▶ export" in output and card.exists()
    assert "export: unchanged, skipped" in rerun()

    pushed = demo_run.run_dir / REVIEW_PUSHED.path
    pushed.parent.mkdir(exist_ok=True)
    REVIEW_PUSHED.frame().write_parquet(pushed)
    output = rerun()
    assert "▶ review" in output
    assert "review: unchanged, skipped" in rerun()
