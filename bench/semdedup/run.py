"""Semantic dedup: planted paraphrased questions found by MinHash alone vs assay's semantic dedup.

Quality (one run, same questions for every method):
  Distinct questions are built from the prose sentences of the NIST SP 800-53 r4 manuals
  (../shared/corpus, public domain), each put in one of a few question templates ("Is it true
  that ...?", "Why is it that ...?"). A share of them gets a paraphrased copy: a fixed synonym
  table (organization -> agency, ensures -> makes sure, ...) and, for half, another template.
  Methods: the project's MinHash dedup alone (curate.services.similarity.dedup.dedup_frame, 5-word shingles,
  Jaccard >= 0.8, exact verification), semantic dedup (curate.filter.semantic_dedup at the
  configured threshold), and both (what the dedup stage runs). Recall: planted pairs that end
  in one cluster. Precision: removed questions whose planted partner is in their cluster, over
  all removed questions.

Throughput (2 cores):
  encoding (all-MiniLM-L6-v2 from its PyPI wheel, batch 64) is measured on `--encode-rows`
  questions; neighbours (faiss: exact up to 50k rows, IVF above) + clustering + survivor choice
  are measured on 100k and 1M vectors made from the real embeddings (each a real vector plus
  noise: cosine ~0.75 to it, so not a duplicate), with planted copies (cosine ~0.97) whose
  recall is reported. End-to-end time at N = N / encoding rate + measured neighbour time.

  .venv/bin/python bench/semdedup/run.py
  .venv/bin/python bench/semdedup/run.py --scale 100000 --scale 1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from curate.filter.semantic_dedup import similar_pairs  # noqa: E402
from curate.services.similarity.components import components  # noqa: E402
from curate.services.similarity.dedup import DedupParams, dedup_frame  # noqa: E402


def _decontam_bench() -> Any:
    """bench/decontam/run.py: the same corpus sentences and synonym table."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("decontam_bench", ROOT / "bench" / "decontam" / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_shared = _decontam_bench()
SYNONYM_PATTERN, SYNONYMS, corpus_sentences = _shared.SYNONYM_PATTERN, _shared.SYNONYMS, _shared.corpus_sentences
TEMPLATES = ("Is it true that {}?", "Why is it that {}?", "What does it mean that {}?", "Explain how {}.",
             "According to the manual, {}. Why?")


def question(sentence: str, template: str) -> str:
    body = sentence.rstrip(".")
    return template.format(body[0].lower() + body[1:])


def build(share: float, seed: int) -> pl.DataFrame:
    """Questions: (id, text, source): a planted copy names its source; distinct ones name none."""
    rng = np.random.default_rng(seed)
    sentences = sorted({s for _, _, s in corpus_sentences() if SYNONYM_PATTERN.search(s)})
    rows = []
    for i, sentence in enumerate(sentences):
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        rows.append({"example_id": f"q{i:05d}", "text": question(sentence, template), "source": None,
                     "quality_score": float(rng.random())})
        if rng.random() < share:
            other = TEMPLATES[int(rng.integers(len(TEMPLATES)))] if rng.random() < 0.5 else template
            reworded = SYNONYM_PATTERN.sub(lambda m: SYNONYMS[m.group(1)], sentence)
            rows.append({"example_id": f"p{i:05d}", "text": question(reworded, other), "source": f"q{i:05d}",
                         "quality_score": float(rng.random())})
    return pl.DataFrame(rows)


def score(frame: pl.DataFrame, comp: np.ndarray) -> dict[str, float]:
    """Recall over planted pairs, precision over removed questions (survivor: best quality_score)."""
    labelled = frame.with_columns(pl.Series("component", comp))
    of = dict(zip(labelled["example_id"], labelled["component"], strict=True))
    planted = labelled.filter(pl.col("source").is_not_null())
    found = sum(of[a] == of[b] for a, b in zip(planted["example_id"], planted["source"], strict=True))
    partner = {**dict(zip(planted["example_id"], planted["source"], strict=True)),
               **dict(zip(planted["source"], planted["example_id"], strict=True))}
    survivors = set(labelled.sort(["quality_score", "example_id"], descending=[True, False])
                    .group_by("component", maintain_order=True).first()["example_id"])
    removed = [e for e in labelled["example_id"] if e not in survivors]
    right = sum(1 for e in removed if e in partner and of[partner[e]] == of[e])
    return {"recall": found / planted.height, "found": found, "planted": planted.height,
            "precision": right / len(removed) if removed else float("nan"), "removed": len(removed)}


def quality(thresholds: list[float], seed: int, cache: Path | None) -> tuple[pl.DataFrame, dict[str, dict[str, float]], np.ndarray, float]:
    from curate.services.similarity.embeddings import encode

    frame = build(0.25, seed).sort("example_id")
    results: dict[str, dict[str, float]] = {}
    out, result = dedup_frame(frame, text="text", params=DedupParams(threshold=0.8, verify="exact"))
    minhash_edges = result.edges
    results["MinHash alone (J>=0.8)"] = score(frame, out["component"].to_numpy())
    start = time.perf_counter()
    if cache is not None and cache.exists():  # a re-run of the throughput part: the same vectors
        vectors, rate = np.load(cache), float(cache.with_suffix(".rate").read_text())
    else:
        vectors = encode(frame["text"].to_list())
        rate = frame.height / (time.perf_counter() - start)
        if cache is not None:
            np.save(cache, vectors)
            cache.with_suffix(".rate").write_text(str(rate))
    for threshold in thresholds:
        pairs, _, _ = similar_pairs(vectors, threshold)
        results[f"semantic (cos>={threshold:g})"] = score(frame, components(frame.height, pairs))
        both = np.concatenate([minhash_edges, pairs]) if len(minhash_edges) else pairs
        results[f"MinHash + semantic {threshold:g}"] = score(frame, components(frame.height, both))
    return frame, results, vectors, rate


def encode_rate(texts: list[str]) -> float:
    from curate.services.similarity.embeddings import encode

    start = time.perf_counter()
    encode(texts)
    return len(texts) / (time.perf_counter() - start)


def scaled(vectors: np.ndarray, rows: int, threshold: float, seed: int, nprobe: int = 16) -> dict[str, Any]:
    """Neighbours + components + survivors on `rows` vectors derived from the real ones."""
    rng = np.random.default_rng(seed)
    dim = vectors.shape[1]
    n_copies = rows // 20
    base = vectors[rng.integers(0, len(vectors), rows - n_copies)]
    noisy = base + rng.normal(scale=0.9 / np.sqrt(dim), size=base.shape).astype(np.float32)  # cos ~0.75
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    sources = rng.choice(len(noisy), n_copies, replace=False)
    copies = noisy[sources] + rng.normal(scale=0.25 / np.sqrt(dim), size=(n_copies, dim)).astype(np.float32)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    all_vectors = np.concatenate([noisy, copies]).astype(np.float32)
    scores = rng.random(rows)
    start = time.perf_counter()
    pairs, _, method = similar_pairs(all_vectors, threshold, nprobe=nprobe)
    comp = components(rows, pairs)
    order = np.lexsort((np.arange(rows), -scores, comp))  # best score first within each component
    keep = np.zeros(rows, dtype=bool)
    first = np.ones(rows, dtype=bool)
    first[1:] = comp[order][1:] != comp[order][:-1]
    keep[order[first]] = True
    seconds = time.perf_counter() - start
    found = int((comp[sources] == comp[len(noisy) + np.arange(n_copies)]).sum())
    return {"rows": rows, "seconds": seconds, "method": method, "recall": found / n_copies,
            "pairs": len(pairs), "removed": int((~keep).sum()), "copies": n_copies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, action="append", help="cosine threshold(s) (default 0.9 and 0.85)")
    parser.add_argument("--nprobe", type=int, default=16, help="IVF cells searched per query (throughput part)")
    parser.add_argument("--cache", type=Path, help="keep the questions' vectors here (.npy) for re-runs")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--scale", type=int, action="append", help="rows for the throughput part (repeatable)")
    args = parser.parse_args()
    thresholds = args.threshold or [0.9, 0.85]
    frame, results, vectors, rate = quality(thresholds, args.seed, args.cache)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    planted = frame.filter(pl.col("source").is_not_null()).height
    print(f"{frame.height} questions: {frame.height - planted} distinct, {planted} planted paraphrases")
    names = list(results)
    width = max(len(n) for n in names) + 2
    print("".ljust(12) + "".join(n.rjust(width) for n in names))
    print("recall".ljust(12) + "".join(f"{results[n]['found']}/{results[n]['planted']} = {results[n]['recall']:.3f}".rjust(width) for n in names))
    print("precision".ljust(12) + "".join(f"{results[n]['precision']:.3f} of {results[n]['removed']}".rjust(width) for n in names))
    base = results[names[0]]
    print("recall ratio against MinHash alone: " + ", ".join(
        f"{n} {results[n]['recall'] / max(base['recall'], 1e-9):.1f}x" for n in names[1:]))
    print(f"encoding: {rate:.0f} questions/s ({frame.height} questions, batch 64, {os.cpu_count()} CPUs)")
    for rows in args.scale or []:
        figures = scaled(vectors, rows, thresholds[0], args.seed, args.nprobe)
        total = rows / rate + figures["seconds"]
        print(f"{rows:>9,} rows: neighbours+clusters {figures['seconds']:.1f} s ({figures['method']}), "
              f"planted copies found {figures['recall']:.3f} of {figures['copies']:,}, {figures['pairs']:,} pairs; "
              f"encoding at the measured rate {rows / rate:.0f} s; end to end ~{total / 60:.1f} min "
              f"({rows / total:.0f} rows/s)")


if __name__ == "__main__":
    main()
