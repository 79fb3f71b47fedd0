"""Build cassette.handwritten-sample.jsonl from teacher_answers.handwritten.yaml.

The answers are HAND-WRITTEN (see the YAML's header); this script only files them under
the request hashes a live teacher would have been asked, computed by the pipeline's own
code, so that the `replay` backend answers the demo offline:

1. generation: run ingest (and redaction, when configured) on the demo config in a
   temporary run directory, match every chunk to its YAML entry (document + heading, or
   a passage it contains), and hash the requests of its samples exactly as the generate
   stage builds them (`curate.generate.stages.requests_for_chunks`);
2. refinement: run the pipeline through the filters with the cassette so far; the refine
   stage's requests that the cassette cannot answer are logged as `cassette_miss` lines
   (with their request hash) in generate.state/requests.jsonl; file the hand-written
   refine answer of that chunk under each, and repeat until nothing new is missed.

Usage: .venv/bin/python data/demo/build_cassette.py [--config data/demo/pipeline.yaml]
       [--out data/demo/cassette.handwritten-sample.jsonl] [--answers ...] [--no-refine]
Checks: every chunk has answers, every entry matches one chunk, and every quote not
marked as a flaw occurs verbatim in its chunk. An entry's optional `note:` (e.g. the
near-duplicate passage planted in the corpus) is copied into its answers' `source`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from curate.config import PipelineConfig, load_config  # noqa: E402
from curate.generate.stages import requests_for_chunks  # noqa: E402
from curate.services.teacher.request import STATE_DIR, request_hash  # noqa: E402

HAND_WRITTEN = "hand-written sample teacher output (not produced by a model)"


def _key(entry: dict[str, Any]) -> str:
    return f"{entry['doc']} § {entry.get('heading') or entry.get('contains')}"


def _source_key(entry: dict[str, Any]) -> str:
    """The entry's key, with its `note:` (e.g. a near-duplicate passage planted in the corpus)."""
    note = entry.get("note")
    return _key(entry) + (f" [note: {note}]" if note else "")


def match_chunks(chunks: pl.DataFrame, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """chunk_id -> its YAML entry; every chunk and every entry must match exactly once."""
    matched: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for entry in entries:
        hits = []
        for row in chunks.iter_rows(named=True):
            if Path(row["source_path"]).name != entry["doc"]:
                continue
            if "heading" in entry:
                if row["heading_path"] and row["heading_path"][-1] == entry["heading"]:
                    hits.append(row["chunk_id"])
            elif entry["contains"] in row["text"]:
                hits.append(row["chunk_id"])
        if len(hits) != 1:
            problems.append(f"{_key(entry)}: matches {len(hits)} chunks")
            continue
        if hits[0] in matched:
            problems.append(f"{_key(entry)}: chunk {hits[0]} already matched by {_key(matched[hits[0]])}")
        matched[hits[0]] = entry
    return _check(matched, chunks, problems)


def _check(matched: dict[str, dict[str, Any]], chunks: pl.DataFrame, problems: list[str]) -> dict[str, dict[str, Any]]:
    for row in chunks.iter_rows(named=True):
        if row["chunk_id"] not in matched:
            problems.append(
                f"chunk {row['chunk_id']} ({row['source_path']} § {row['heading_path'][-1:] or row['text'][:40]!r}) "
                "has no hand-written answers"
            )
    if problems:
        raise SystemExit("teacher_answers.handwritten.yaml does not fit the chunks:\n  " + "\n  ".join(problems))
    return matched


def raw_answer(sample: dict[str, Any]) -> str:
    if "raw" in sample:
        return str(sample["raw"])
    return json.dumps({"label": sample["label"], "quote": sample["quote"]}, ensure_ascii=False)


def cassette_entry(rhash: str, chunk_id: str, index: int, round_: int, purpose: str, model: str,
                   sample: dict[str, Any], key: str) -> dict[str, Any]:
    flaw = sample.get("flaw")
    return {
        "request_hash": rhash, "chunk_id": chunk_id, "sample_index": index, "round": round_,
        "purpose": purpose, "model": model, "raw_json": raw_answer(sample), "error": None,
        "error_kind": None, "usage": {}, "recorded_at": None,
        "source": f"{HAND_WRITTEN}: {key}" + (f" [deliberate flaw: {flaw}]" if flaw else ""),
    }


def check_quotes(text: str, samples: list[dict[str, Any]], key: str) -> list[str]:
    return [
        f"{key}: quote not verbatim in the chunk (mark it `flaw: ungrounded-quote` if meant): {s['quote']!r}"
        for s in samples
        if "quote" in s and not s.get("flaw") and s["quote"] not in text
    ]


def run_pipeline(config: PipelineConfig, run_dir: Path, groups: list[str]) -> None:
    import importlib

    from rich.console import Console

    from curate.run.runner import Runner

    # Only the packages needed (not curate.pipeline.stage_groups, which imports them all).
    stages = [stage for group in groups for stage in importlib.import_module(f"curate.{group}.stages").STAGES]
    Runner(config, stages, console=Console(stderr=True, quiet=True), show_progress=False, force=True).run()


def teacher_chunks(config: PipelineConfig, run_dir: Path) -> pl.DataFrame:
    run_pipeline(config, run_dir, ["ingest", "redact"])
    for artifact in ("redact/chunks", "chunk/chunks"):
        path = run_dir / f"{artifact}.parquet"
        if path.exists():
            return pl.read_parquet(path)
    raise SystemExit("ingest produced no chunks")


def build(config_path: Path, answers_path: Path, out: Path, refine: bool) -> dict[str, int]:
    answers = yaml.safe_load(answers_path.read_text(encoding="utf-8"))
    base = load_config(config_path)
    stats = {"generate": 0, "refine": 0, "flawed": 0}
    with tempfile.TemporaryDirectory(prefix="assay-cassette-") as temp:
        run_dir = Path(temp) / "run"
        config = base.model_copy(update={"run_dir": str(run_dir)})
        chunks = teacher_chunks(config, run_dir)
        matched = match_chunks(chunks, answers["generate"])
        text_of = dict(zip(chunks["chunk_id"].to_list(), chunks["text"].to_list(), strict=True))
        entries: list[dict[str, Any]] = []
        problems: list[str] = []
        requests = requests_for_chunks(config, chunks.sort("chunk_id"))
        for request in requests:
            entry = matched[request.chunk_id]
            samples = entry["samples"]
            if len(samples) < config.teacher.samples:
                problems.append(f"{_key(entry)}: {len(samples)} samples < teacher.samples={config.teacher.samples}")
                continue
            sample = samples[request.sample_index]
            stats["flawed"] += bool(sample.get("flaw"))
            entries.append(cassette_entry(
                request_hash(config.teacher, request), request.chunk_id, request.sample_index, 0,
                "generate", config.teacher.model, sample, _source_key(entry),
            ))
        for chunk_id, entry in matched.items():
            problems.extend(check_quotes(text_of[chunk_id], entry["samples"], _key(entry)))
        if problems:
            raise SystemExit("problems:\n  " + "\n  ".join(problems))
        write(out, entries)
        stats["generate"] = len(entries)
        if refine:
            stats["refine"] = add_refine_answers(base, out, answers.get("refine", []), chunks, Path(temp))
    return stats


def add_refine_answers(base: PipelineConfig, out: Path, refine_answers: list[dict[str, Any]],
                       chunks: pl.DataFrame, temp: Path) -> int:
    """Run the pipeline through the filters; answer each refine request the cassette missed."""
    by_chunk: dict[str, list[dict[str, Any]]] = {}
    for entry in refine_answers:
        for chunk_id, matched in _match_some(chunks, [entry]).items():
            by_chunk.setdefault(chunk_id, []).append(matched)
    added = 0
    unanswered: list[str] = []
    for attempt in range(max(base.refine.rounds, 1) + 1):
        run_dir = temp / f"refine-{attempt}"
        teacher = base.teacher.model_copy(update={"cassette": str(out.resolve()), "backend": "replay"})
        config = base.model_copy(update={"run_dir": str(run_dir), "teacher": teacher})
        run_pipeline(config, run_dir, ["ingest", "redact", "generate", "filter"])
        log = run_dir / STATE_DIR / "requests.jsonl"
        misses = [
            json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ] if log.exists() else []
        misses = [m for m in misses if m.get("status") == "cassette_miss" and m.get("purpose") != "generate"]
        new: list[dict[str, Any]] = []
        unanswered = []
        for miss in misses:
            options = [e for e in by_chunk.get(miss["chunk_id"], []) if int(e.get("round", 1)) == miss["round"]]
            if not options:
                unanswered.append(f"{miss['purpose']} round {miss['round']} for chunk {miss['chunk_id']}")
                continue
            entry = options[0]
            new.append(cassette_entry(
                miss["request_hash"], miss["chunk_id"], miss["sample_index"], miss["round"],
                miss["purpose"], base.teacher.model, entry["answer"], _key(entry),
            ))
        if not new:
            break
        write(out, new, append=True)
        added += len(new)
    for line in unanswered:
        print(f"note: no hand-written answer for {line} (the demo runs; that request stays unanswered)")
    return added


def _match_some(chunks: pl.DataFrame, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for row in chunks.iter_rows(named=True):
            if Path(row["source_path"]).name != entry["doc"]:
                continue
            heading_ok = "heading" in entry and row["heading_path"] and row["heading_path"][-1] == entry["heading"]
            contains_ok = "contains" in entry and entry["contains"] in row["text"]
            if heading_ok or contains_ok:
                found[row["chunk_id"]] = entry
    return found


def write(out: Path, entries: list[dict[str, Any]], append: bool = False) -> None:
    existing: set[str] = set()
    if append and out.exists():
        existing = {json.loads(line)["request_hash"] for line in out.read_text(encoding="utf-8").splitlines() if line.strip()}
    lines = [
        json.dumps(entry, ensure_ascii=False, sort_keys=True)
        for entry in entries
        if entry["request_hash"] not in existing
    ]
    mode = "a" if append else "w"
    with out.open(mode, encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=HERE / "pipeline.yaml")
    parser.add_argument("--answers", type=Path, default=HERE / "teacher_answers.handwritten.yaml")
    parser.add_argument("--out", type=Path, default=HERE / "cassette.handwritten-sample.jsonl")
    parser.add_argument("--no-refine", action="store_true", help="Only the generation answers")
    args = parser.parse_args()
    stats = build(args.config, args.answers, args.out, refine=not args.no_refine)
    print(
        f"wrote {args.out}: {stats['generate']} generation answers ({stats['flawed']} deliberately flawed), "
        f"{stats['refine']} refinement answers — {HAND_WRITTEN}"
    )


if __name__ == "__main__":
    main()
