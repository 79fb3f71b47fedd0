"""bench/scale: ingest -> chunk -> dedup of millions of chunks with 1, 2, 4 and 8 workers.

    .venv/bin/python bench/scale/run.py                      # 5,000,000 chunks, 1/2/4/8 workers
    .venv/bin/python bench/scale/run.py --chunks 200000 --workers 1,2

A synthetic corpus (JSONL records of random words from a 20,000-word vocabulary, with
planted exact and near-duplicate paragraphs) is written once; then, for each worker
count, in a fresh process: the pipeline's own `discover`, `ingest` and `chunk` stages
through the streaming local executor (`workers` spawned processes, `4 x workers` tasks,
`isolate=True`: even at one worker the tasks run in a child process, so the driver holds
part metadata only; the workers read their input parts and write their output parts),
then `dedup_steps` (MinHash/LSH sign, band shuffle, candidate pairs per partition,
verification, components and survivors) over the chunks with the pool the executor lends
a stage (`ctx.pool()`: `workers` processes).
The dedup step still reads every chunk into the driver (the dedup stage is GLOBAL; its
steps spread the MinHash work over the pool, not the input); `--stages-only` skips it,
and the driver's peak after the stages is reported on its own either way
(`peak MiB driver, stages`).

`--executor ray` runs the same stages through the Ray executor on a local Ray cluster of
`workers` CPUs (started inside the timed run) and dedup through `ray.util.multiprocessing`.

Printed per worker count: wall time per step and in total, chunks/s, speed-up and
parallel efficiency against 1 worker (T1 / (w x Tw)), peak memory (driver and the
largest worker process), and whether the outputs (chunks, dedup survivors) are identical
to the 1-worker run (content hashes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PARAGRAPH_WORDS = 48
PARAGRAPHS_PER_DOC = 5
VOCAB_SIZE = 20_000


def _mix(values: Any) -> Any:
    """splitmix64 over a uint64 array: a counter-based random stream (any element computed alone)."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _word_ids(paragraphs: Any, seed: int) -> Any:
    """The vocabulary index of each word of the given paragraphs (n x PARAGRAPH_WORDS)."""
    import numpy as np

    cells = paragraphs.astype(np.uint64)[:, None] * np.uint64(PARAGRAPH_WORDS) + np.arange(PARAGRAPH_WORDS, dtype=np.uint64)
    return (_mix(cells ^ np.uint64(seed * 0x5851F42D4C957F2D)) % np.uint64(VOCAB_SIZE)).astype(np.int64)


def _paragraph_words(lo: int, hi: int, seed: int) -> tuple[Any, int, int]:
    """Word ids of paragraphs [lo, hi): 5% repeat an earlier paragraph exactly, 5% with their
    last word changed; the counts of both."""
    import numpy as np

    p = np.arange(lo, hi, dtype=np.uint64)
    draw = _mix(p ^ np.uint64(0xA0761D6478BD642F ^ seed))
    dup = (draw >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    source = (_mix(p ^ np.uint64(0xE7037ED1A0B428DB ^ seed)) % np.maximum(p, np.uint64(1))).astype(np.uint64)
    exact = (dup < 0.05) & (p > 0)
    near = (dup >= 0.05) & (dup < 0.10) & (p > 0)
    idx = _word_ids(np.where(exact | near, source, p), seed)
    idx[near, -1] = _word_ids(p[near], seed)[:, -1]  # its own last word
    return idx, int(exact.sum()), int(near.sum())


def make_corpus(folder: Path, chunks: int, files: int, seed: int = 0) -> dict[str, Any]:
    """Documents of PARAGRAPHS_PER_DOC paragraphs (one chunk each at the bench's budget);
    5% of paragraphs repeat an earlier one exactly, 5% with their last word changed.
    Written file by file: every paragraph's words come from a counter-based random stream,
    so a copy of an earlier paragraph is recomputed, not kept (memory: one file's worth)."""
    import numpy as np
    import polars as pl

    marker = folder / "corpus.json"
    if marker.exists():
        meta: dict[str, Any] = json.loads(marker.read_text())
        if meta["chunks"] == chunks and meta["files"] == files and meta.get("generator") == 2:
            return meta
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    vocab = pl.Series([f"{chr(97 + i % 26)}{chr(97 + (i // 26) % 26)}w{i}" for i in range(VOCAB_SIZE)])
    documents = -(-chunks // PARAGRAPHS_PER_DOC)
    per_file = -(-documents // files)
    planted = [0, 0]
    for i in range(files):
        first, last = i * per_file, min(documents, (i + 1) * per_file)
        lo, hi = first * PARAGRAPHS_PER_DOC, min(chunks, last * PARAGRAPHS_PER_DOC)
        if lo >= hi:
            break
        idx, exact, near = _paragraph_words(lo, hi, seed)
        planted = [planted[0] + exact, planted[1] + near]
        paragraphs = (
            pl.DataFrame({"w": vocab.gather(pl.Series(idx.ravel())),
                          "p": np.repeat(np.arange(lo, hi), PARAGRAPH_WORDS)})
            .group_by("p", maintain_order=True)
            .agg(pl.col("w").str.join(" ").alias("text"))
            .with_columns(pl.col("text").str.slice(0, 1).str.to_uppercase() + pl.col("text").str.slice(1) + ".")
        )
        (paragraphs.with_columns((pl.col("p") // PARAGRAPHS_PER_DOC).alias("doc"))
         .group_by("doc", maintain_order=True)
         .agg(pl.col("text").str.join("\n\n"))
         .with_columns(pl.format("doc-{}", "doc").alias("id"))
         .select("id", "text").write_ndjson(folder / f"part-{i:04d}.jsonl"))
    meta = {"chunks": chunks, "files": files, "documents": documents, "generator": 2,
            "planted_exact": planted[0], "planted_near": planted[1],
            "seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(meta))
    return meta


def peak_mb() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its largest child process.

    This process's own peak is its VmHWM (/proc/self/status), the high-water mark of its
    own address space: `ru_maxrss` would also count the parent's resident set at the fork
    (Linux keeps it across exec), i.e. the corpus generator's memory in the first run.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                own = int(line.split()[1]) / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(own, 1), round(children, 1)


def run_one(
    corpus: Path, workers: int, out: Path, executor_kind: str = "local", stages_only: bool = False,
    threads_per_worker: int | None = 1, warm_cluster: bool = False,
) -> dict[str, Any]:
    """One configuration, in this (fresh) process."""
    import polars as pl

    from curate.config import parse_config
    from curate.ingest.stages import STAGES
    from curate.run.executor import Executor, LocalExecutor, frame_digest
    from curate.run.executor_services import services_for
    from curate.run.rundir import read_parquet
    from curate.run.runner import Runner
    from curate.services.similarity.dedup import DedupParams
    from curate.services.similarity.steps import dedup_steps

    run_dir = out / f"run-{executor_kind}-w{workers}"
    config = parse_config({
        "name": "bench-scale",
        "run_dir": str(run_dir),
        "executor": {"kind": executor_kind, "workers": workers, "partitions": 4 * workers,
                     "threads_per_worker": threads_per_worker},
        # 20M chunks in 64 files is ~120 MB a file, over the default 50 MB guard
        "ingest": {"paths": [str(corpus)], "include": ["*.jsonl"], "text_column": "text", "id_column": "id",
                   "max_file_mb": 4096},
        "chunk": {"max_tokens": 80, "min_tokens": 8, "overlap_tokens": 0},
        "task": {"type": "freeform", "instruction": "bench"},
    }, base_dir=out)
    stages = [s for s in STAGES if s.name in {"discover", "ingest", "chunk"}]
    timings: dict[str, float] = {}
    started = time.perf_counter()
    executor: Executor = LocalExecutor(workers=workers, partitions=4 * workers, isolate=True,
                                       threads_per_worker=threads_per_worker)
    if executor_kind == "ray":  # a local Ray cluster of `workers` CPUs, started here (timed unless warm_cluster)
        import ray

        from curate.run.ray_executor import RayExecutor

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        ray_executor = RayExecutor.from_config(config)
        if warm_cluster:  # a standing cluster: its task workers up before the run starts
            ray_executor.wait_ready()
        timings["ray_start"] = round(time.perf_counter() - started, 2)
        if warm_cluster:
            started = time.perf_counter()
        executor = ray_executor
    result = Runner(config, stages, executor=executor, show_progress=False, force=True).run()
    for stage in result.stages:
        timings[stage.name] = round(stage.seconds, 2)
    assert result.stopped is None, result.stages
    stages_peak = peak_mb()[0]  # the driver's peak through discover, ingest and chunk
    manifest = json.loads((run_dir / "manifest.json").read_text())
    chunk_entry = manifest["stages"]["chunk"]
    if not chunk_entry["rows"]["chunks"]:  # e.g. every file over ingest.max_file_mb: say so, not "0 chunks/s"
        raise SystemExit(f"no chunks came out of {corpus}; see {run_dir}/discover/errors.parquet and ingest/errors.parquet")
    base = {
        "workers": workers, "executor": executor_kind, "chunks": chunk_entry["rows"]["chunks"],
        "chunks_hash": chunk_entry["output_hashes"]["chunks"], "chunk_parts": len(chunk_entry["artifacts"]["chunks"]["parts"]),
        "peak_mb_driver_stages": stages_peak,
        "threads_per_worker": threads_per_worker,
        "warm_cluster": warm_cluster,  # Ray: the cluster and its workers started before the timed run
        # per stage: planning + running its tasks, commit, summary; the tasks' own seconds
        "timing": {name: manifest["stages"][name].get("timing") for name in ("discover", "ingest", "chunk")},
    }
    if stages_only:
        timings["total"] = round(time.perf_counter() - started, 2)
        own, child = peak_mb()
        return {**base, "seconds": timings, "peak_mb_driver": own,
                "peak_mb_worker": None if executor_kind == "ray" else child}
    chunks = read_parquet(run_dir / "chunk/chunks.parquet", columns=["chunk_id", "text"])
    dedup_started = time.perf_counter()
    params = DedupParams(threshold=0.8)
    frame = chunks.with_columns(pl.lit(0.0).alias("score"))
    # the pool the dedup stage gets from this executor (`ctx.pool()`): Ray's, processes, or serial
    with services_for(executor, config).pool() as pool:
        deduped, info = dedup_steps(frame, text="text", id_col="chunk_id", score="score", params=params,
                                    pool=pool, partitions=2 * workers, batch_rows=100_000)
    timings["dedup"] = round(time.perf_counter() - dedup_started, 2)
    timings["total"] = round(time.perf_counter() - started, 2)
    survivors = deduped.filter(pl.col("survivor")).select("chunk_id")
    own, child = peak_mb()
    return {
        **base,
        "survivors": survivors.height,
        "exact_duplicates": int(deduped["exact_duplicate"].sum()),
        "near_pairs": info.near_pairs,
        "candidate_pairs": info.candidate_pairs,
        "seconds": timings,
        "survivors_digest": frame_digest(survivors.sort("chunk_id")),
        "peak_mb_driver": own,
        "peak_mb_worker": None if executor_kind == "ray" else child,  # Ray's workers are not our children
    }


def busy(result: dict[str, Any]) -> str:
    """The share of `workers x wall time` of ingest and chunk that the tasks ran for, chunk's
    bucketing round included (the rest: planning, starting processes, waiting for the slowest
    task, commit, summaries)."""
    timing = [t for t in (result.get("timing") or {}).values() if t]
    wall = sum(t["run"] + t["commit"] + t["summary"] for t in timing)
    if not wall:
        return "-"
    tasks = sum(t["task_sum"] + t.get("bucketing_sum", 0.0) for t in timing)
    return f"{tasks / (result['workers'] * wall):.0%}"


def task_cpu(result: dict[str, Any]) -> str:
    """The tasks' CPU time over their wall time (ingest and chunk): under 100%, they waited
    (for the disk, or for a CPU another process held)."""
    timing = [t for t in (result.get("timing") or {}).values() if t and "task_cpu_sum" in t]
    wall = sum(t["task_sum"] for t in timing)
    return f"{sum(t['task_cpu_sum'] for t in timing) / wall:.0%}" if wall else "-"


def ray_label(result: dict[str, Any]) -> str:
    """' (ray, start 4.4 s)': the cluster's start-up, in the total unless the cluster was warm."""
    if result.get("executor") != "ray":
        return ""
    start = result["seconds"].get("ray_start")
    shown = f", start {start:.1f} s{' before the timed run' if result.get('warm_cluster') else ''}" if start else ""
    return f" (ray{shown})"


def table(results: list[dict[str, Any]]) -> str:
    base = results[0]
    lines = [
        "| workers | ingest s | chunk s | dedup s | total s | chunks/s | speed-up | efficiency "
        "| workers busy | tasks' CPU | threads/worker | peak MiB driver, stages | peak MiB driver | peak MiB worker | same output |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        s = r["seconds"]
        speedup = base["seconds"]["total"] / s["total"]
        same = r.get("chunks_hash") == base.get("chunks_hash") and r.get("survivors_digest") == base.get("survivors_digest")
        dedup = f"{s['dedup']:.1f}" if "dedup" in s else "-"
        worker = "n/a" if r["peak_mb_worker"] is None else format(r["peak_mb_worker"], ",.0f")
        lines.append(
            f"| {r['workers']}{ray_label(r)} | {s['discover'] + s['ingest']:.1f} "
            f"| {s['chunk']:.1f} | {dedup} | {s['total']:.1f} "
            f"| {r['chunks'] / s['total']:,.0f} | {speedup:.2f}x | {speedup / r['workers'] * base['workers']:.0%} "
            f"| {busy(r)} | {task_cpu(r)} | {r.get('threads_per_worker') or 'default'} "
            f"| {r.get('peak_mb_driver_stages', float('nan')):,.0f} | {r['peak_mb_driver']:,.0f} | {worker} "
            f"| {'yes' if same else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=5_000_000)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="local: the process pool; ray: the Ray executor on a local cluster of `workers` CPUs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/out/scale")
    parser.add_argument("--results", type=Path, help="results file, rewritten after each worker count "
                        "(default: OUT/results.json)")
    parser.add_argument("--merge", type=Path, nargs="+", help="print one table from results files of "
                        "separate runs (the fewest workers is the baseline) and exit")
    parser.add_argument("--corpus-only", action="store_true", help="write the corpus (if missing) and exit")
    parser.add_argument("--stages-only", action="store_true", help="skip dedup (which reads every chunk into "
                        "the driver): time and measure the driver through the streaming stages only")
    parser.add_argument("--threads-per-worker", type=int, default=1,
                        help="native (polars) threads per worker process; 1 (default): a worker is one CPU, "
                        "so efficiency compares CPUs; 0: the executor's default (the CPUs divided among the workers)")
    parser.add_argument("--warm-cluster", action="store_true",
                        help="ray: start the cluster and its task workers before the timed run (as a standing "
                        "cluster is); its start-up is reported as seconds.ray_start either way")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge)
    corpus = args.out / "corpus"
    results_path = args.results or args.out / "results.json"
    if args.one:
        print(json.dumps(run_one(corpus, args.one, args.out, args.executor, args.stages_only,
                                 args.threads_per_worker or None, args.warm_cluster)))
        return 0
    meta = make_corpus(corpus, args.chunks, args.files)
    print(f"corpus: {meta}", flush=True)
    if args.corpus_only:
        return 0
    results = []
    for workers in [int(w) for w in args.workers.split(",")]:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(workers), "--out", str(args.out),
             "--chunks", str(args.chunks), "--files", str(args.files), "--executor", args.executor,
             "--threads-per-worker", str(args.threads_per_worker), *(["--warm-cluster"] if args.warm_cluster else []),
             *(["--stages-only"] if args.stages_only else [])],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return 1
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"workers={workers}: {json.dumps(result['seconds'])}", flush=True)
        results_path.write_text(json.dumps({"corpus": meta, "machine": machine(), "results": results}, indent=2))
    print()
    print(f"machine: {machine()}")
    summary(results)
    return 0


def machine() -> str:
    return f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def summary(results: list[dict[str, Any]]) -> None:
    first = results[0]
    print(f"chunks: {first['chunks']:,} in {first.get('chunk_parts', '?')} parts, hash {first.get('chunks_hash', '?')[:16]}")
    if "survivors" in first:
        print(f"survivors: {first['survivors']:,}  exact duplicates: {first['exact_duplicates']:,}  "
              f"near pairs: {first['near_pairs']:,}")
    print(table(results))


def merge(paths: list[Path]) -> int:
    """One table over runs made separately (one worker count per run fits a time limit)."""
    runs = [json.loads(path.read_text()) for path in paths]
    for path, run in zip(paths, runs, strict=True):
        print(f"{path}: {run.get('machine', '?')}, corpus {run['corpus']}")
    corpora = {json.dumps({k: v for k, v in run["corpus"].items() if k != "seconds"}, sort_keys=True) for run in runs}
    if len(corpora) > 1:
        print("results come from different corpora", file=sys.stderr)
        return 1
    summary(sorted((r for run in runs for r in run["results"]), key=lambda r: (r.get("executor", "local") != "local", r["workers"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
