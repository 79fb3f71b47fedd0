"""Near-duplicate dedup: assay's vectorised MinHash + banding + components vs datasketch and rensa.

A synthetic corpus of ~65-word records (Zipf-distributed vocabulary, so unrelated records
share almost no 5-word shingles) with planted duplicate groups: exact copies after
normalisation (case, punctuation) and near copies with 1-3 words changed (Jaccard
~0.82-0.95, measured exactly for every planted pair). Both methods run in fresh
subprocesses on the same corpus file; peak memory is the subprocess's max RSS.

  .venv/bin/python bench/dedup/run.py                    # 100k rows, baselines on all of them
  .venv/bin/python bench/dedup/run.py --rows 1000000 --baseline-rows 100000

Baselines, each in its own subprocess on the same corpus:
- datasketch: plain per-record use (one MinHash per record, `update` per shingle,
  `MinHashLSH(threshold=0.8)`, query then insert one record at a time). When
  `--baseline-rows` is smaller than `--rows` it runs on that prefix of the corpus and its
  rows/s is reported as measured there (its per-row cost does not fall with size).
- rensa (the Rust MinHash on PyPI, `pip install rensa`; skipped when missing), used well:
  Python shingles as token sets, `RMinHash.from_token_sets` per 50k-row batch,
  `RMinHashLSH` with 32 bands x 4 rows (the finest banding it allows at 128 permutations
  that keeps pairs at 0.8 as candidates), all rows inserted, `query_all`, candidates kept
  on the MinHash estimate >= 0.8. Always on all `--rows`.
The ratio column divides assay with exact verification (the pipeline default) by the
strongest baseline's rows/s (and its peak memory).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WORDS_PER_ROW = 65
METHODS = {
    "assay-exact": "assay (exact verify)",
    "assay": "assay (estimate)",
    "rensa": "rensa 0.5",
    "datasketch": "datasketch per record",
}
BASELINES = ("rensa", "datasketch")
COLUMNS = ["example_id", "text", "quality_score"]  # what a dedup reads
VOCAB = 50_000


def make_corpus(rows: int, seed: int, path: Path) -> None:
    """`rows` records: 1% exact copies (after normalisation: upper case, punctuation) and
    5% near copies (one word replaced: true Jaccard 0.85-0.97) of other records, plus 2%
    "related" records (five words replaced: Jaccard well below 0.8) that must NOT be
    merged. `group` names the record a copy was made from; related records get a group
    of their own, so an edge to one counts as a false positive."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(VOCAB)])
    n_exact = rows // 100
    n_near = rows * 5 // 100
    n_related = rows * 2 // 100
    n_base = rows - n_exact - n_near - n_related
    base_ids = (rng.zipf(1.1, size=(n_base, WORDS_PER_ROW)) % VOCAB).astype(np.int32)
    sources_exact = rng.choice(n_base, n_exact, replace=False)
    sources_near = rng.choice(n_base, n_near, replace=False)
    sources_related = rng.choice(n_base, n_related, replace=False)

    def replaced(sources: np.ndarray, words: int) -> np.ndarray:
        copies = base_ids[sources].copy()
        for row in range(len(copies)):
            positions = rng.choice(WORDS_PER_ROW, words, replace=False)
            copies[row, positions] = rng.integers(0, VOCAB, words)
        return copies

    texts = [" ".join(vocab[row]) for row in base_ids]
    all_texts = (
        texts
        + [texts[s].upper() + "!" for s in sources_exact]
        + [" ".join(vocab[row]) for row in replaced(sources_near, 1)]
        + [" ".join(vocab[row]) for row in replaced(sources_related, 5)]
    )
    group = np.concatenate([np.arange(n_base), sources_exact, sources_near,
                            n_base + np.arange(n_related)])
    kind = ["base"] * n_base + ["exact"] * n_exact + ["near"] * n_near + ["related"] * n_related
    order = np.random.default_rng(seed + 1).permutation(rows)  # planted copies anywhere
    frame = pl.DataFrame({
        "example_id": [f"{i:08d}" for i in range(rows)],
        "text": [all_texts[i] for i in order],
        "group": group[order],
        "kind": [kind[i] for i in order],
        "source": [int(group[i]) if kind[i] == "related" else -1 for i in order],
        "quality_score": np.random.default_rng(seed + 2).random(rows).round(3),
    })
    frame.write_parquet(path)


def shingle_set(text: str, size: int = 5) -> set[str]:
    from curate.services.similarity.dedup import shingles_of, tokenize

    words = tokenize(pl.Series([text])).to_list()[0]
    return {s.decode() for s in shingles_of(words, size)}


def planted_pairs(frame: pl.DataFrame) -> tuple[set[tuple[int, int]], list[float]]:
    """Row-index pairs (copy, source) of planted duplicates, with their exact Jaccard."""
    index_of_base = {
        g: i for i, (g, k) in enumerate(zip(frame["group"].to_list(), frame["kind"].to_list(), strict=True)) if k == "base"
    }
    pairs: set[tuple[int, int]] = set()
    jaccards: list[float] = []
    texts = frame["text"].to_list()
    for i, (g, k) in enumerate(zip(frame["group"].to_list(), frame["kind"].to_list(), strict=True)):
        if k in ("base", "related") or g not in index_of_base:
            continue  # (a prefix of the corpus may lack a copy's source)
        j = index_of_base[g]
        pairs.add((min(i, j), max(i, j)))
        if k == "near" and len(jaccards) < 2000:
            a, b = shingle_set(texts[i]), shingle_set(texts[j])
            jaccards.append(len(a & b) / len(a | b))
    return pairs, jaccards


def score(edges: np.ndarray, n: int, truth: set[tuple[int, int]], groups: np.ndarray) -> dict[str, float]:
    """Pair precision (found edges within one planted group) and recall (planted pairs whose
    rows end up in one found component)."""
    from curate.services.similarity.dedup import components

    if len(edges):
        true_edges = int((groups[edges[:, 0]] == groups[edges[:, 1]]).sum())
        precision = true_edges / len(edges)
    else:
        precision = 1.0
    labels = components(n, edges.astype(np.int64)) if len(edges) else np.arange(n)
    found = sum(1 for a, b in truth if labels[a] == labels[b])
    return {"precision": round(precision, 4), "recall": round(found / len(truth), 4) if truth else 1.0,
            "edges": len(edges)}


def run_assay(path: Path, rows: int, verify: str) -> dict[str, object]:
    from curate.services.similarity.dedup import DedupParams, dedup_frame

    frame = pl.read_parquet(path, columns=COLUMNS).head(rows)
    rss_loaded = peak_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    out, result = dedup_frame(frame, text="text", params=DedupParams(verify=verify))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    # result.edges index the frame sorted by example_id, which is the input order here
    return {"seconds": seconds, "cpu_seconds": cpu, "removed": int((~out["survivor"]).sum()), "edges": result.edges.tolist(),
            "candidate_pairs": result.candidate_pairs, "rss_loaded_mib": rss_loaded}


def run_datasketch(path: Path, rows: int) -> dict[str, object]:
    from datasketch import MinHash, MinHashLSH

    from curate.services.similarity.dedup import shingles_of

    frame = pl.read_parquet(path, columns=COLUMNS).head(rows)
    rss_loaded = peak_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    edges: list[tuple[int, int]] = []
    removed = 0
    for i, text in enumerate(frame["text"].to_list()):
        words = _words(text)
        mh = MinHash(num_perm=128)
        for shingle in shingles_of(words, 5):
            mh.update(shingle)
        hits = lsh.query(mh)
        if hits:
            removed += 1
            edges.extend((min(i, h), max(i, h)) for h in hits)
        else:
            lsh.insert(i, mh)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "removed": removed, "edges": edges, "rss_loaded_mib": rss_loaded}


def run_rensa(path: Path, rows: int) -> dict[str, object]:
    from rensa import RMinHash, RMinHashLSH

    from curate.services.similarity.dedup import shingles_of

    frame = pl.read_parquet(path, columns=COLUMNS).head(rows)
    rss_loaded = peak_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    lsh = RMinHashLSH(0.8, 128, 32)
    sketches: list[Any] = []
    texts = frame["text"]
    for lo in range(0, rows, 50_000):
        token_sets = [[s.decode() for s in shingles_of(_words(t), 5)] for t in texts.slice(lo, 50_000).to_list()]
        batch = RMinHash.from_token_sets(token_sets, 128, 42)
        lsh.insert_many(batch, lo)
        sketches.extend(batch)
    edges: list[tuple[int, int]] = []
    for lo in range(0, rows, 50_000):
        for i, hits in enumerate(lsh.query_all(sketches[lo : lo + 50_000]), start=lo):
            edges.extend((i, j) for j in hits if j > i and sketches[i].jaccard(sketches[j]) >= 0.8)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    removed = rows - len(np.unique(_labels(rows, edges)))
    return {"seconds": seconds, "cpu_seconds": cpu, "removed": removed, "edges": edges, "rss_loaded_mib": rss_loaded}


def _labels(rows: int, edges: list[tuple[int, int]]) -> np.ndarray:
    from curate.services.similarity.dedup import components

    return components(rows, np.array(edges, dtype=np.int64).reshape(-1, 2))


def _words(text: str) -> list[str]:
    import re
    import unicodedata

    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())


def peak_rss_mib() -> float:
    """This process image's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    across fork and exec, so every worker would report at least the parent's RSS (the parent
    holds the whole corpus: 1.4 GB at 1M rows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(method: str, path: Path, rows: int) -> None:
    if method == "datasketch":
        result = run_datasketch(path, rows)
    elif method == "rensa":
        result = run_rensa(path, rows)
    else:
        result = run_assay(path, rows, "exact" if method == "assay-exact" else "estimate")
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def measure(method: str, path: Path, rows: int) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", method, "--corpus", str(path), "--rows", str(rows)],
        capture_output=True, text=True, env=env, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{method} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=list(METHODS))
    parser.add_argument("--corpus", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.corpus, args.rows)
        return
    baseline_rows = min(args.baseline_rows or args.rows, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.parquet"
        t0 = time.perf_counter()
        make_corpus(args.rows, args.seed, path)
        print(f"corpus: {args.rows:,} rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        frame = pl.read_parquet(path)
        groups = frame["group"].to_numpy()
        results: dict[str, dict[str, Any]] = {}
        for method in METHODS:
            if method == "rensa" and importlib.util.find_spec("rensa") is None:
                print("rensa: not installed (pip install rensa), skipped", file=sys.stderr)
                continue
            rows = baseline_rows if method == "datasketch" else args.rows
            res: dict[str, Any] = measure(method, path, rows)
            sub = frame.head(rows)
            truth, jaccards = planted_pairs(sub)
            edges = np.array(res["edges"], dtype=np.int64).reshape(-1, 2)
            res.update(score(edges, rows, truth, groups[:rows]))
            res["rows"] = rows
            res["rows_per_s"] = rows / res["seconds"]
            res["rows_per_cpu_s"] = rows / res["cpu_seconds"]
            res["planted_pairs"] = len(truth)
            res["planted_jaccard"] = (round(min(jaccards), 3), round(float(np.median(jaccards)), 3), round(max(jaccards), 3))
            results[method] = res
            print(f"{method}: done in {res['seconds']:.1f}s", file=sys.stderr)
    print_table(args.rows, results)


def print_table(total_rows: int, results: dict[str, dict[str, Any]]) -> None:
    baselines = [m for m in BASELINES if m in results]
    best = max(baselines, key=lambda m: results[m]["rows_per_s"])
    ours = results["assay-exact"]
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"Near-dup dedup, {total_rows:,} rows x {WORDS_PER_ROW} words, 5-word shingles, 128 perms, threshold 0.8")
    print(f"planted near copies' true Jaccard (min/median/max): {ours['planted_jaccard']}")
    ratio_label = f"exact / {best}"
    header = f"{'':30}" + "".join(f"{METHODS[m]:>24}" for m in results) + f"{ratio_label:>24}"
    print(header)
    print("-" * len(header))

    def line(label: str, key: str, fmt: str, ratio: bool = False) -> None:
        cells = "".join(f"{format(results[m][key], fmt):>24}" for m in results)
        extra = f"{ours[key] / results[best][key]:>23.2f}x" if ratio else ""
        print(f"{label:30}{cells}{extra}")

    line("rows", "rows", ",")
    line("seconds (wall)", "seconds", ".1f")
    line("rows/s (wall)", "rows_per_s", ",.0f", ratio=True)
    line("rows per CPU-second", "rows_per_cpu_s", ",.0f", ratio=True)
    line("peak RSS MiB (whole process)", "peak_rss_mib", ",.0f", ratio=True)
    line("  RSS after loading corpus", "rss_loaded_mib", ",.0f")
    line("pair precision", "precision", ".4f")
    line("pair recall (planted pairs)", "recall", ".4f")
    line("planted pairs", "planted_pairs", ",")
    line("rows removed", "removed", ",")
    base = results["datasketch"]
    if base["rows"] != total_rows:
        print(f"datasketch measured on the first {base['rows']:,} rows; at {total_rows:,} rows it would take "
              f"~{total_rows / base['rows_per_s']:,.0f}s (extrapolated at its measured rows/s)")


if __name__ == "__main__":
    main()
