"""Review ordered by doubt: with a fixed review budget, how many planted wrong labels do
reviewers find when they work the queue most doubtful first, against a random order?

Data: bench/curation's setting, run for real. The 826 NIST SP 800-53 rev4 controls (pool and
planted near-copies) go through the real pipeline (generate -> filter -> refine -> dedup)
with bench/curation's SIMULATED faulty teacher (wrong families at known rates, harder chunks
where wrong votes agree), variant "full". The kept examples (`dedup/examples`) are the review
queue; a planted wrong label is an example whose label is not the corpus's family (the
pipeline never sees the truth).

Orders compared, each over the same examples:
  random        the queue shuffled (the expected count: budget share x errors, and 2,000
                seeded shuffles for the spread)
  doubt         the product's order: `curate.review.sync.select_for_review` with every
                example selected (audit_fraction 1): borderline first, then audit, each most
                doubtful first, the doubt score from `examples_with_doubt` (vote and grounding
                margins, neighbours' labels through the shared all-MiniLM-L6-v2 embeddings)
  doubt score   the doubt score alone, highest first
  votes only / neighbour only   one signal each (ablations)

Simulated reviewers: a reviewer shown a wrong label catches it with probability --catch
(0.9, seeded, drawn once per example so every order meets the same reviewer verdicts).
A budget of 10% / 20% of the queue is reviewed. The ratio (errors found by doubt order /
errors found by random order, in expectation) has a 95% bootstrap interval over the
examples (scipy.stats.bootstrap, BCa, paired, seeded).

    .venv/bin/python bench/review/run.py [--seed 0] [--limit N] [--json bench/review/results.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.curation.run import (  # noqa: E402
    CONTROLS,
    VARIANTS,
    curate_variants,
    load_controls,
    pipeline_config,
)
from curate.review.config import ReviewConfig  # noqa: E402
from curate.review.sync import examples_with_doubt, read_chunks, select_for_review  # noqa: E402

BUDGETS = (0.10, 0.20)


def curated_run(work: Path, seed: int, limit: int | None, reuse: bool = False) -> tuple[Any, pl.DataFrame]:
    """The full variant of bench/curation, run for real (or, with `reuse`, the run already in
    `work` for this seed); (its config, its kept examples with truth)."""
    marker = work / "seed.json"
    done = reuse and marker.exists() and json.loads(marker.read_text()) == {"seed": seed, "limit": limit}
    if not done:
        with tempfile.TemporaryDirectory() as out:
            curate_variants(Path(out), work, variants=["full"], seed=seed, limit=limit)
        marker.write_text(json.dumps({"seed": seed, "limit": limit}))
    controls = load_controls(CONTROLS)
    labels = sorted({c["family"] for c in controls})
    family = {c["id"]: c["family"] for c in controls}
    config = pipeline_config("full", work / "full", labels, "http://127.0.0.1:9/v1", work / "teacher-cache.sqlite",
                             VARIANTS["full"])
    examples = pl.read_parquet(config.run_path / "dedup" / "examples.parquet")
    chunks = pl.read_parquet(config.run_path / "redact" / "chunks.parquet", columns=["chunk_id", "source_path"])
    # source_path "sp800-53r4/<control id>[~copyN]": the corpus's family is the truth
    truth = chunks.select(
        "chunk_id",
        pl.col("source_path").str.split("/").list.last().str.split("~").list.first()
        .replace_strict(family, default=None).alias("truth"),
    )
    return config, examples.join(truth, on="chunk_id", how="left")


def orders(config: Any, examples: pl.DataFrame, embed: Callable[..., np.ndarray]) -> tuple[pl.DataFrame, dict[str, str]]:
    """The examples with one sort key per order (higher = reviewed earlier)."""
    chunks = read_chunks(config)
    scored = examples_with_doubt(config, examples, chunks, embed)
    queue = select_for_review(scored, ReviewConfig(audit_fraction=1.0)).select("example_id", pl.col("doubt").alias("queue"))
    frame = scored.join(queue, on="example_id", how="left").with_columns(
        pl.col("example_id").hash(seed=7).truediv(2.0**64).alias("tiebreak"),
        (pl.col("label") != pl.col("truth")).alias("wrong"),
    )
    keys = {"doubt (product order)": "queue", "doubt score": "doubt", "votes only": "doubt_votes",
            "neighbour only": "doubt_neighbour"}
    return frame, keys


def found(key: np.ndarray, tiebreak: np.ndarray, caught: np.ndarray, share: float) -> float:
    """Errors caught when the top `share` of the queue by `key` (ties broken by id hash) is reviewed."""
    budget = round(share * len(key))
    top = np.lexsort((tiebreak, -key))[:budget]
    return float(caught[top].sum())


def ratio_interval(key: np.ndarray, tiebreak: np.ndarray, caught: np.ndarray, share: float, seed: int) -> tuple[float, float]:
    """95% BCa interval of found(doubt) / E[found(random)], resampling the examples."""
    from scipy.stats import bootstrap

    def statistic(k: np.ndarray, t: np.ndarray, c: np.ndarray) -> float:
        expected = c.sum() * round(share * len(k)) / len(k)  # random order, in expectation
        return found(k, t, c, share) / expected if expected else np.nan

    result = bootstrap((key, tiebreak, caught), statistic, paired=True, vectorized=False, n_resamples=2000,
                       confidence_level=0.95, method="BCa", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def reviewer_verdicts(frame: pl.DataFrame, catch: float, seed: int) -> pl.DataFrame:
    """`frame` with `caught`: a planted wrong label the simulated reviewer catches when shown it
    (probability `catch`, drawn once per example from `seed`, the same draws for every order)."""
    rng = np.random.default_rng(seed)
    wrong = frame["wrong"].fill_null(False).to_numpy()
    return frame.with_columns(pl.Series("caught", (wrong & (rng.random(len(wrong)) < catch)).astype(np.float64)))


def measure(frame: pl.DataFrame, keys: dict[str, str], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    wrong = frame["wrong"].fill_null(False).to_numpy()
    caught = frame["caught"].to_numpy()
    rng.random(len(wrong))  # the reviewer draws (`reviewer_verdicts`); the shuffles come after them
    tiebreak = frame["tiebreak"].to_numpy()
    results: dict[str, Any] = {"examples": frame.height, "wrong_labels": int(wrong.sum()),
                               "caught_if_all_reviewed": int(caught.sum()), "budgets": {}}
    for share in BUDGETS:
        budget = round(share * frame.height)
        expected_random = caught.sum() * budget / frame.height
        shuffles = [found(rng.random(frame.height), tiebreak, caught, share) for _ in range(2000)]
        row: dict[str, Any] = {
            "budget_items": budget, "random_expected": round(expected_random, 2),
            "random_p2_5_p97_5": [float(np.percentile(shuffles, 2.5)), float(np.percentile(shuffles, 97.5))],
            "orders": {},
        }
        for name, column in keys.items():
            key = frame[column].fill_null(0.0).to_numpy().astype(np.float64)
            hits = found(key, tiebreak, caught, share)
            low, high = ratio_interval(key, tiebreak, caught, share, seed)
            row["orders"][name] = {"found": hits, "ratio": round(hits / expected_random, 3) if expected_random else None,
                                   "ratio_ci95": [round(low, 3), round(high, 3)]}
        results["budgets"][f"{share:.0%}"] = row
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{results['examples']} examples in the queue, {results['wrong_labels']} planted wrong labels "
          f"({results['wrong_labels'] / results['examples']:.1%}); reviewers catch {results['caught_if_all_reviewed']} "
          "of them when they see them")
    for share, row in results["budgets"].items():
        low, high = row["random_p2_5_p97_5"]
        print(f"\nbudget {share} ({row['budget_items']} items): random order finds {row['random_expected']:.1f} "
              f"(2,000 shuffles: 95% within {low:.0f}-{high:.0f})")
        print(f"  {'order':<24}{'found':>7}{'x random':>10}  95% interval")
        for name, values in row["orders"].items():
            ci = values["ratio_ci95"]
            print(f"  {name:<24}{values['found']:>7.0f}{values['ratio']:>10.2f}  [{ci[0]:.2f}, {ci[1]:.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catch", type=float, default=0.9, help="chance a reviewer catches a wrong label shown")
    parser.add_argument("--limit", type=int, default=None, help="only N pool controls (a quick look)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "review")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--frame", type=Path, default=None,
                        help="also write the per-example sort keys and verdicts here (.parquet), for bench/review/pool.py")
    parser.add_argument("--reuse", action="store_true", help="score the run already in --work for this seed, if any")
    args = parser.parse_args()
    from curate.services.similarity.embeddings import encode

    started = time.perf_counter()
    config, examples = curated_run(args.work, args.seed, args.limit, args.reuse)
    frame, keys = orders(config, examples, encode)
    frame = reviewer_verdicts(frame, args.catch, args.seed)
    results = measure(frame, keys, args.seed)
    results.update(seed=args.seed, catch=args.catch, seconds=round(time.perf_counter() - started, 1),
                   date=dt.date.today().isoformat(), machine=f"{platform.node()} ({platform.processor() or platform.machine()})")
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.frame:
        frame.select("example_id", "tiebreak", "wrong", "caught", *keys.values()).with_columns(
            pl.lit(args.seed).alias("seed")).write_parquet(args.frame)


if __name__ == "__main__":
    main()
