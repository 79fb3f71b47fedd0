"""The discover -> ingest -> chunk stages through the runner and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.config import load_config, parse_config
from curate.ingest.stages import STAGES
from curate.run.dataset import scan_dataset
from curate.run.executor import LocalExecutor
from curate.run.runner import Runner

HERE = Path(__file__).resolve().parent


def run_ingest(config_data: dict, base: Path, **runner_kwargs: object) -> Runner:
    cfg = parse_config(
        {"task": {"type": "freeform", "instruction": "(ingest test)"}, **config_data}, base_dir=base
    )
    runner = Runner(cfg, STAGES, show_progress=False, **runner_kwargs)  # type: ignore[arg-type]
    runner.run()
    return runner


def read(run_dir: Path, artifact: str) -> pl.DataFrame:
    return pl.read_parquet(run_dir / f"{artifact}.parquet")


def assert_exact_slices(run_dir: Path) -> None:
    documents = read(run_dir, "ingest/documents")
    chunks = read(run_dir, "chunk/chunks")
    texts = dict(zip(documents["doc_id"], documents["text"], strict=True))
    for row in chunks.iter_rows(named=True):
        assert texts[row["doc_id"]][row["start"]:row["end"]] == row["text"]


def test_demo_corpus_chunks_are_stable(demo_config_path: Path, tmp_path: Path) -> None:
    """The demo cassette is keyed on these chunk ids: a change here must be deliberate."""
    cfg = load_config(demo_config_path, {"run_dir": str(tmp_path / "run")})
    result = Runner(cfg, STAGES, show_progress=False).run()
    assert result.exit_code == 0
    documents = read(tmp_path / "run", "ingest/documents")
    assert sorted(documents["format"].to_list()) == ["docx", "html", "markdown", "markdown", "markdown", "text"]
    chunks = read(tmp_path / "run", "chunk/chunks").sort("source_path", "start")
    got = [f"{r['chunk_id']} {r['source_path']} {r['start']} {r['end']}" for r in chunks.iter_rows(named=True)]
    assert got == (HERE / "demo_chunk_ids.txt").read_text(encoding="utf-8").splitlines()
    assert 15 <= chunks.height <= 25 and chunks["n_tokens"].max() <= 256  # type: ignore[operator]
    assert all(len(path) >= 1 for path in chunks.filter(pl.col("source_path") != "docs/asset-management-procedure.txt")["heading_path"])
    assert_exact_slices(tmp_path / "run")


def test_discover_include_exclude_and_size_limit(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# A\n\nAlpha text.", encoding="utf-8")
    (docs / "sub" / "b.txt").write_text("Beta text.", encoding="utf-8")
    (docs / "sub" / "draft-c.md").write_text("Draft.", encoding="utf-8")
    (docs / "image.png").write_bytes(b"\x89PNG")
    (docs / ".hidden.md").write_text("hidden", encoding="utf-8")
    (docs / "big.txt").write_text("x " * 600_000, encoding="utf-8")
    runner = run_ingest(
        {"run_dir": "run", "ingest": {"paths": ["docs", "missing"], "exclude": ["draft-*"], "max_file_mb": 1}}, tmp_path
    )
    files = read(runner.run_dir.root, "discover/files")
    assert files["path"].to_list() == ["docs/a.md", "docs/sub/b.txt"]
    assert files["format"].to_list() == ["markdown", "text"]
    errors = read(runner.run_dir.root, "discover/errors")
    assert sorted(zip(errors["source"], errors["reason"], strict=True)) == [
        ("docs/big.txt", "file_too_large"),
        ("missing", "path_not_found"),
    ]


def test_identical_files_are_read_once(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    for name in ("one.md", "copy-of-one.md"):
        (tmp_path / "docs" / name).write_text("# Same\n\nIdentical policy text, twice.", encoding="utf-8")
    (tmp_path / "docs" / "crlf.md").write_bytes(b"# Same\r\n\r\nIdentical policy text, twice.")
    runner = run_ingest({"run_dir": "run", "chunk": {"min_tokens": 0}}, tmp_path)
    files = read(runner.run_dir.root, "discover/files")
    assert files.height == 2  # identical bytes: one of the two
    documents = read(runner.run_dir.root, "ingest/documents")
    assert documents["doc_id"].n_unique() == 1  # CRLF normalised away: same content, same id
    chunks = read(runner.run_dir.root, "chunk/chunks")
    assert chunks["chunk_id"].is_unique().all() and chunks.height == 1


def test_reingest_reads_only_new_and_changed_files(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"p{i}.md").write_text(f"# Policy {i}\n\nRule {i} applies to everyone.", encoding="utf-8")
    (docs / "bad.txt").write_bytes(b"")
    config = {"run_dir": "run"}
    runner = run_ingest(config, tmp_path)
    state = runner.run_dir.root / "ingest.state" / "incremental.0.json"
    assert json.loads(state.read_text())["files_read"] == 5
    first = read(runner.run_dir.root, "ingest/documents")

    (docs / "p1.md").write_text("# Policy 1\n\nRule 1 now applies to contractors too.", encoding="utf-8")
    (docs / "p9.md").write_text("# Policy 9\n\nA new rule.", encoding="utf-8")
    runner = run_ingest(config, tmp_path)
    counts = json.loads(state.read_text())
    assert counts == {"files": 6, "files_read": 3, "files_reused": 3}  # p1 changed, p9 new, bad.txt errored
    second = read(runner.run_dir.root, "ingest/documents")
    unchanged = first.filter(~pl.col("source_path").is_in(["docs/p1.md"]))
    assert set(unchanged["doc_id"]) < set(second["doc_id"])
    assert second.filter(pl.col("source_path") == "docs/p1.md")["text"].item().endswith("contractors too.")
    assert read(runner.run_dir.root, "ingest/errors")["reason"].to_list() == ["empty_file"]

    # a reader setting changes: everything is read again
    runner = run_ingest({**config, "ingest": {"encoding": "utf-8"}}, tmp_path)
    assert json.loads(state.read_text())["files_reused"] == 0


def test_records_and_unicode_survive_parquet(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "faq.jsonl").write_text(
        "\n".join(json.dumps({"q": q, "text": t}) for q, t in [("1", "Ünïcödé — “quotes” 東京 😀 text."), ("2", "Second answer.")])
        + "\nnot json\n",
        encoding="utf-8",
    )
    runner = run_ingest({"run_dir": "run", "ingest": {"id_column": "q"}, "chunk": {"min_tokens": 0}}, tmp_path)
    documents = read(runner.run_dir.root, "ingest/documents")
    assert sorted(documents["record_key"].to_list()) == ["1", "2"]
    errors = read(runner.run_dir.root, "ingest/errors")
    assert errors.select("source", "reason").rows() == [("docs/faq.jsonl:3", "record_invalid_json")]
    assert_exact_slices(runner.run_dir.root)


def test_cli_ingest_folder_without_config(tmp_path: Path, repo_root: Path) -> None:
    from curate.cli import app  # imports every stage package's CLI: only where needed

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["ingest", str(repo_root / "data" / "demo" / "docs"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert read(out, "ingest/documents").height == 6
    assert read(out, "chunk/chunks")["n_tokens"].max() <= 384  # type: ignore[operator]  # default budget
    assert_exact_slices(out)


def test_cli_exit_code_2_and_status_lists_errors(
    tmp_path: Path, repo_root: Path, malformed_files: dict[str, tuple[Path, str]]
) -> None:
    from curate.cli import app

    folder = tmp_path / "inbox"
    folder.mkdir()
    shutil.copy(repo_root / "data" / "demo" / "docs" / "access-control-policy.md", folder)
    for path, _ in malformed_files.values():
        shutil.copy(path, folder)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["ingest", str(folder), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    errors = read(out, "ingest/errors")
    expected = {path.name: reason for path, reason in malformed_files.values()}
    got = {Path(source).name: reason for source, reason in errors.select("source", "reason").rows()}
    assert got == expected
    assert read(out, "ingest/documents")["source_path"].to_list() == [str(folder / "access-control-policy.md")]

    status = CliRunner().invoke(app, ["status", str(out)], env={"COLUMNS": "300"})
    assert status.exit_code == 0
    for reason in set(expected.values()):
        assert reason in status.output  # one screen: errors counted by reason
    full = CliRunner().invoke(app, ["status", str(out), "--full"], env={"COLUMNS": "300"})
    assert "pdf_encrypted" in full.output and "encrypted.pdf" in full.output  # --full: each file


@pytest.mark.parametrize("partitions", [2, 5])
def test_same_output_whatever_the_sharding(demo_config_path: Path, tmp_path: Path, partitions: int) -> None:
    """ingest (MAP) and chunk (SHUFFLE on doc_id) give the same rows in any number of shards."""
    cfg = load_config(demo_config_path, {"run_dir": str(tmp_path / "run")})
    Runner(cfg, STAGES, show_progress=False, executor=LocalExecutor(workers=1, partitions=partitions)).run()
    chunks = read(tmp_path / "run", "chunk/chunks").sort("source_path", "start")
    got = [f"{r['chunk_id']} {r['source_path']} {r['start']} {r['end']}" for r in chunks.iter_rows(named=True)]
    assert got == (HERE / "demo_chunk_ids.txt").read_text(encoding="utf-8").splitlines()
    # the reports were computed a part at a time on the workers, then combined: the same as over
    # the whole artifacts (a file's documents and a document's chunks never span two parts)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(manifest["stages"]["chunk"]["artifacts"]["chunks"]["parts"]) > 1
    for stage in (s for s in STAGES if s.name in {"ingest", "chunk"}):
        whole = {name: scan_dataset(str(tmp_path / "run" / stage.name / f"{name}.parquet")) for name in stage.output_names}
        assert stage.summarize is not None
        assert manifest["stages"][stage.name]["report"] == stage.summarize(whole) != {}


def test_explicit_file_without_reader_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.rtf").write_text("{\\rtf1 hello}", encoding="utf-8")
    (tmp_path / "ok.md").write_text("# Fine\n\nA readable file.", encoding="utf-8")
    runner = run_ingest({"run_dir": "run", "ingest": {"paths": ["notes.rtf", "ok.md"]}}, tmp_path)
    errors = read(runner.run_dir.root, "discover/errors")
    assert errors.select("source", "reason").rows() == [("notes.rtf", "unsupported_format")]
    assert read(runner.run_dir.root, "ingest/documents")["source_path"].to_list() == ["ok.md"]
