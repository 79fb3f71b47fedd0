"""Connected components of similarity edges (scipy.sparse.csgraph) and the survivor of each.

Components, not first-come greedy: the result never depends on the order of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label per row (0..n-1) for undirected `edges` (m x 2).

    Labels are the smallest row index in each component, so they are canonical.
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if len(edges) == 0:
        return np.arange(n, dtype=np.int64)
    graph = coo_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n)
    ).tocsr()
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n, dtype=np.int64))
    return first[labels]


def exact_edges(keys: np.ndarray) -> np.ndarray:
    """Edges chaining rows with equal exact keys (consecutive in key order)."""
    order = np.lexsort((np.arange(len(keys)), keys))
    sorted_keys = keys[order]
    same = sorted_keys[1:] == sorted_keys[:-1]
    return np.stack([order[:-1][same], order[1:][same]], axis=1).astype(np.int64)


# ---------------------------------------------------------------- 7. survivors
def choose_survivors(frame: pl.DataFrame, *, component: str = "component",
                     score: str = "quality_score", id_col: str = "example_id") -> pl.Series:
    """A boolean mask: the survivor of each component (highest score, then smallest id)."""
    ranked = frame.select(
        pl.col(id_col)
        .sort_by([score, id_col], descending=[True, False])
        .first()
        .over(component)
        .alias("__survivor")
    )["__survivor"]
    return (frame[id_col] == ranked).alias("survivor")


@dataclass(frozen=True)
class SurvivorTask:
    frame: pl.DataFrame  # whole components: (pos, id, score, component, key)
    id_col: str
    score: str


def survivor_step(task: SurvivorTask) -> pl.DataFrame:
    """Per row of whole components: `survivor`, and `exact_duplicate` (a non-survivor whose
    exact key equals its survivor's), with `pos`."""
    frame = task.frame.with_columns(choose_survivors(task.frame, score=task.score, id_col=task.id_col))
    survivor_key = pl.col("key").filter(pl.col("survivor")).first().over("component")
    return frame.select("pos", "survivor", (~pl.col("survivor") & (pl.col("key") == survivor_key)).alias("exact_duplicate"))


def survivors_by_component(
    frame: pl.DataFrame, comp: np.ndarray, keys: np.ndarray, *, id_col: str, score: str,
    pool: Any = None, partitions: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """`survivor_step` over `partitions` partitions of the rows by component (`pool`: any
    object with `map`; None runs here). Returns the survivor and exact-duplicate masks."""
    rows = frame.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("pos"), id_col, score,
        pl.Series("component", comp), pl.Series("key", keys, dtype=pl.UInt64),
    )
    if partitions > 1 and rows.height:
        split = rows.with_columns((pl.col("component") % partitions).alias("__p"))
        parts = split.partition_by("__p", include_key=False)
    else:
        parts = [rows]
    tasks = [SurvivorTask(part, id_col, score) for part in parts]
    done = list(pool.map(survivor_step, tasks) if pool is not None else map(survivor_step, tasks))
    flags = pl.concat(done).sort("pos") if done else pl.DataFrame(schema={"survivor": pl.Boolean, "exact_duplicate": pl.Boolean})
    return flags["survivor"].to_numpy(), flags["exact_duplicate"].to_numpy()
