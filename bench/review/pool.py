"""Review ordered by doubt, pooled over trials: one ratio with one interval for every budget.

The design, fixed before any of its figures were seen (2026-12-03):

- **Trials.** Seeds 0-7 of bench/review/run.py, each a full run of its own: another gold fold
  (StratifiedGroupKFold's shuffle), other planted near-copies, other simulated-teacher draws,
  other reviewer verdicts. Every seed run is reported, none left out. Each writes its
  per-example sort keys and verdicts with `--frame`.
- **Statistic.** For each budget (10%, 20%) and order: the errors caught by reviewing the top
  share of each trial's queue, summed over trials, divided by the errors a random order
  catches in expectation, summed over trials (each trial's queue is reviewed on its own).
- **Interval.** 95% percentile bootstrap, stratified by trial: 10,000 resamples, each drawing
  every trial's examples with replacement (its own size) and recomputing the pooled ratio.
  It covers the sampling of examples (which ones the pipeline kept, which labels went wrong,
  what the reviewer catches) within the trials run.
- **The claim** ("at least twice the planted errors") holds at a budget if the pooled
  interval's lower end is >= 2.

    .venv/bin/python bench/review/pool.py bench/review/frames/seed*.parquet [--json bench/review/pooled.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.review.run import BUDGETS, found  # noqa: E402

KEYS = {"doubt (product order)": "queue", "doubt score": "doubt", "votes only": "doubt_votes",
        "neighbour only": "doubt_neighbour"}
RESAMPLES = 10_000


def trial_arrays(frame: pl.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    key = frame[column].fill_null(0.0).to_numpy().astype(np.float64)
    return key, frame["tiebreak"].to_numpy(), frame["caught"].to_numpy().astype(np.float64)


def pooled(trials: list[tuple[np.ndarray, np.ndarray, np.ndarray]], share: float) -> tuple[float, float]:
    """(errors the order catches, errors a random order catches in expectation), summed over trials."""
    hits = sum(found(k, t, c, share) for k, t, c in trials)
    expected = sum(c.sum() * round(share * len(c)) / len(c) for _, _, c in trials)
    return hits, expected


def interval(trials: list[tuple[np.ndarray, np.ndarray, np.ndarray]], share: float, seed: int,
             resamples: int = RESAMPLES) -> tuple[float, float]:
    """95% percentile interval of the pooled ratio, resampling examples within each trial."""
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples)
    for r in range(resamples):
        drawn = []
        for k, t, c in trials:
            pick = rng.integers(0, len(k), len(k))
            drawn.append((k[pick], t[pick], c[pick]))
        hits, expected = pooled(drawn, share)
        ratios[r] = hits / expected if expected else np.nan
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def pool(frames: list[pl.DataFrame], seed: int = 0, resamples: int = RESAMPLES) -> dict[str, Any]:
    results: dict[str, Any] = {
        "trials": [int(f["seed"][0]) for f in frames], "examples": sum(f.height for f in frames),
        "wrong_labels": sum(int(f["wrong"].fill_null(False).sum()) for f in frames),
        "caught_if_all_reviewed": sum(int(f["caught"].sum()) for f in frames), "budgets": {},
    }
    for share in BUDGETS:
        row: dict[str, Any] = {}
        for name, column in KEYS.items():
            trials = [trial_arrays(f, column) for f in frames]
            hits, expected = pooled(trials, share)
            low, high = interval(trials, share, seed, resamples)
            row[name] = {"found": hits, "random_expected": round(expected, 2), "ratio": round(hits / expected, 3),
                         "ratio_ci95": [round(low, 3), round(high, 3)], "at_least_2x": bool(low >= 2.0)}
        results["budgets"][f"{share:.0%}"] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frames", type=Path, nargs="+", help="per-seed frames written by run.py --frame")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    frames = [pl.read_parquet(path) for path in sorted(args.frames)]
    results = pool(frames)
    print(f"{len(frames)} trials (seeds {results['trials']}): {results['examples']} examples, "
          f"{results['wrong_labels']} planted wrong labels, {results['caught_if_all_reviewed']} caught when shown")
    for share, row in results["budgets"].items():
        print(f"\nbudget {share}")
        print(f"  {'order':<24}{'found':>7}{'random':>9}{'x random':>10}  95% interval (stratified bootstrap)")
        for name, v in row.items():
            ci = v["ratio_ci95"]
            print(f"  {name:<24}{v['found']:>7.0f}{v['random_expected']:>9.1f}{v['ratio']:>10.2f}  [{ci[0]:.2f}, {ci[1]:.2f}]")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
