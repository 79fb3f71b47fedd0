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
from collections.abc import Callable
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


def encoders() -> dict[str, Callable[[list[str]], np.ndarray]]:
    """The two encoders of filter.semantic_dedup: the transformer and the static model distilled from it."""
    from curate.services.similarity.embeddings import encode
    from curate.services.similarity.static_embeddings import encode_static

    return {"MiniLM": lambda texts: encode(texts), "static": lambda texts: encode_static(texts)}


def quality(thresholds: list[float], seed: int, cache: Path | None) -> tuple[pl.DataFrame, dict[str, dict[str, float]], dict[str, float]]:
    """Recall and precision of every method on the same questions; encoding rates (questions/s)."""
    frame = build(0.25, seed).sort("example_id")
    results: dict[str, dict[str, float]] = {}
    out, result = dedup_frame(frame, text="text", params=DedupParams(threshold=0.8, verify="exact"))
    minhash_edges = result.edges
    results["MinHash alone (J>=0.8)"] = score(frame, out["component"].to_numpy())
    rates: dict[str, float] = {}
    for name, encode in encoders().items():
        encode(frame["text"].head(8).to_list())  # load (and, the first time, distil) outside the timing
        start = time.perf_counter()
        path = cache.with_name(f"{cache.stem}-{name}.npy") if cache is not None else None
        if path is not None and path.exists():  # a re-run of the throughput part: the same vectors
            vectors, rates[name] = np.load(path), float(path.with_suffix(".rate").read_text())
        else:
            vectors = encode(frame["text"].to_list())
            rates[name] = frame.height / (time.perf_counter() - start)
            if path is not None:
                np.save(path, vectors)
                path.with_suffix(".rate").write_text(str(rates[name]))
        for threshold in thresholds:
            pairs, _, _ = similar_pairs(vectors, threshold)
            results[f"{name} (cos>={threshold:g})"] = score(frame, components(frame.height, pairs))
            both = np.concatenate([minhash_edges, pairs]) if len(minhash_edges) else pairs
            results[f"MinHash + {name} {threshold:g}"] = score(frame, components(frame.height, both))
    return frame, results, rates


def scaled_texts(rows: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`rows` questions for the throughput part: each a template around 12-40 words drawn from the
    corpus's running text (so its vocabulary and word frequencies, but no two alike), 5% of them
    paraphrased copies of another (the synonym table, and half with another template);
    (texts, copy rows, their source rows)."""
    rng = np.random.default_rng(seed)
    sentences = sorted({s.rstrip(".") for _, _, s in corpus_sentences() if SYNONYM_PATTERN.search(s)})
    words = np.array(" ".join(sentences).split())
    n_copies = rows // 20
    distinct = rows - n_copies
    lengths = rng.integers(12, 41, size=distinct)
    drawn = words[rng.integers(0, len(words), size=int(lengths.sum()))]
    bodies = [" ".join(chunk) for chunk in np.split(drawn, np.cumsum(lengths)[:-1])]
    kinds = rng.integers(len(TEMPLATES), size=rows)
    texts = [question(body, TEMPLATES[k]) for body, k in zip(bodies, kinds.tolist(), strict=False)]
    sources = rng.choice(distinct, n_copies, replace=False)
    for i, src in enumerate(sources.tolist()):
        template = TEMPLATES[kinds[distinct + i]] if rng.random() < 0.5 else TEMPLATES[kinds[src]]
        texts.append(question(SYNONYM_PATTERN.sub(lambda m: SYNONYMS[m.group(1)], bodies[src]), template))
    return texts, distinct + np.arange(n_copies), sources


def neighbours_and_clusters(vectors: np.ndarray, threshold: float, seed: int, nprobe: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Neighbours + components + survivors (best of random scores) on `vectors`, timed."""
    rows = len(vectors)
    scores = np.random.default_rng(seed).random(rows)
    start = time.perf_counter()
    pairs, _, method = similar_pairs(vectors, threshold, nprobe=nprobe)
    comp = components(rows, pairs)
    order = np.lexsort((np.arange(rows), -scores, comp))  # best score first within each component
    first = np.ones(rows, dtype=bool)
    first[1:] = comp[order][1:] != comp[order][:-1]
    return comp, {"seconds": time.perf_counter() - start, "method": method, "pairs": len(pairs),
                  "removed": int(rows - first.sum())}


def end_to_end(rows: int, threshold: float, seed: int, nprobe: int, sample: int | None) -> dict[str, Any]:
    """Real questions at scale: the static encoder end to end (encode + neighbours + clusters), the
    planted copies found; MiniLM's encoding rate on the first `sample` of the same questions."""
    texts, copies, sources = scaled_texts(rows, seed)
    encode = encoders()
    figures: dict[str, Any] = {"rows": rows, "copies": len(copies), "load_before": os.getloadavg()[0]}
    start = time.perf_counter()
    vectors = encode["static"](texts)
    figures["encode_s"] = time.perf_counter() - start
    comp, found = neighbours_and_clusters(vectors, threshold, seed, nprobe)
    figures.update(found, recall=float((comp[copies] == comp[sources]).mean()), load_after=os.getloadavg()[0])
    if sample:
        start = time.perf_counter()
        encode["MiniLM"](texts[:sample])
        figures["minilm_sample"], figures["minilm_rate"] = sample, sample / (time.perf_counter() - start)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, action="append", help="cosine threshold(s) (default 0.9, 0.85, 0.8)")
    parser.add_argument("--nprobe", type=int, default=16, help="IVF cells searched per query (throughput part)")
    parser.add_argument("--cache", type=Path, help="keep the questions' vectors beside this path (.npy) for re-runs")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--scale", type=int, action="append", help="rows for the throughput part (repeatable)")
    parser.add_argument("--minilm-sample", type=int, default=2000,
                        help="questions of each scale's set that MiniLM encodes, for its rate there (0: none)")
    args = parser.parse_args()
    thresholds = args.threshold or [0.9, 0.85, 0.8]
    frame, results, rates = quality(thresholds, args.seed, args.cache)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    planted = frame.filter(pl.col("source").is_not_null()).height
    print(f"{frame.height} questions: {frame.height - planted} distinct, {planted} planted paraphrases")
    base = results["MinHash alone (J>=0.8)"]
    print(f"{'method':<28}{'recall':>18}{'precision':>18}{'x MinHash recall':>18}")
    for name, r in results.items():
        recall = f"{r['found']}/{r['planted']} = {r['recall']:.3f}"
        precision = f"{r['precision']:.3f} of {r['removed']}"
        print(f"{name:<28}{recall:>18}{precision:>18}{r['recall'] / max(base['recall'], 1e-9):>17.1f}x")
    print("encoding: " + ", ".join(f"{name} {rate:,.0f} questions/s" for name, rate in rates.items())
          + f" ({frame.height} questions, {os.cpu_count()} CPUs); static / MiniLM {rates['static'] / rates['MiniLM']:.0f}x")
    for rows in args.scale or []:
        f = end_to_end(rows, thresholds[0], args.seed, args.nprobe, args.minilm_sample)
        total = f["encode_s"] + f["seconds"]
        print(f"{rows:>9,} questions, static encoder, cos>={thresholds[0]:g}, load {f['load_before']:.1f} -> "
              f"{f['load_after']:.1f}: encoding {f['encode_s']:.1f} s ({rows / f['encode_s']:,.0f}/s), neighbours+clusters "
              f"{f['seconds']:.1f} s ({f['method']}), end to end {total:.1f} s ({rows / total:,.0f} rows/s); "
              f"planted copies found {f['recall']:.3f} of {f['copies']:,}; {f['pairs']:,} pairs, {f['removed']:,} removed")
        if "minilm_rate" in f:
            print(f"{'':>9}  MiniLM on the first {f['minilm_sample']:,} of them: {f['minilm_rate']:.0f}/s, so encoding all "
                  f"{rows:,} ~{rows / f['minilm_rate'] / 60:.0f} min (static {rows / f['encode_s'] / f['minilm_rate']:.0f}x faster)")


if __name__ == "__main__":
    main()
