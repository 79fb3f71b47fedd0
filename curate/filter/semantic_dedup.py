"""Semantic dedup: one example per cluster of same-meaning instructions, then of answers.

MinHash dedup removes examples that share their words. A teacher asked for many questions also
writes the same question in other words ("How often is the policy reviewed?" / "At what interval
must the policy be reviewed?"), which MinHash misses and which crowds a dataset with one
question. Here each field (instructions first, then answers, separately) is embedded
(`curate.services.similarity.embeddings`, batch encoding), every pair at cosine >= `threshold` becomes an edge,
connected components are the clusters, and each cluster keeps its best-scored member
(`quality_score`, then the smallest id, as MinHash dedup does). The others are rejected with reason
`semantic_duplicate`, naming the survivor and the cosine to it.

Neighbours come from faiss: an exact inner-product range search (blocked matrix products) up to
`exact_below` rows, above that an IVF index (about 2*sqrt(n) k-means cells, `nprobe` of them
searched per query):
approximate, but a pair at cosine >= 0.9 sits in the same or an adjacent cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from curate.filter.similarity_config import SemanticDedupConfig
from curate.services.similarity.components import choose_survivors, components


def field_text(name: str) -> pl.Expr:
    """The text of `name` per example, from its output JSON where the task has such a field."""
    contents = pl.col("messages").list.eval(pl.element().struct.field("content"))
    if name == "instruction":
        return pl.coalesce(pl.col("output_json").str.json_path_match("$.question"),
                           pl.col("output_json").str.json_path_match("$.instruction"),
                           contents.list.get(-2, null_on_oob=True), pl.lit(""))
    return pl.coalesce(pl.col("output_json").str.json_path_match("$.answer"),
                       pl.col("output_json").str.json_path_match("$.response"),
                       contents.list.last(), pl.lit(""))


# ----------------------------------------------------------------------------- neighbours
def similar_pairs(vectors: np.ndarray, threshold: float, *, exact_below: int = 50_000,
                  nprobe: int = 16, block: int = 65_536) -> tuple[np.ndarray, np.ndarray, str]:
    """Pairs (i < j) of unit vectors with inner product >= threshold, their cosines, and the method."""
    import faiss  # the embed extra

    n, dim = vectors.shape
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32), "exact"
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if n <= exact_below:
        index: Any = faiss.IndexFlatIP(dim)
        method = "exact"
    else:
        # ~2*sqrt(n) cells balances k-means training (~cells^2) against scanning (~n^2 / cells)
        cells = int(min(max(16, 2 * np.sqrt(n)), n // 40))  # faiss wants >= 39 training points per cell
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # k-means iterations: cells only need to be roughly right for a range search
        sample = np.random.default_rng(0).choice(n, size=min(n, 40 * cells), replace=False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = nprobe
        method = f"ivf ({cells} cells, nprobe {nprobe})"
    index.add(vectors)
    found_i, found_j, found_s = [], [], []
    radius = float(np.nextafter(np.float32(threshold), np.float32(-1)))  # faiss keeps scores > radius
    for lo in range(0, n, block):
        lims, scores, ids = index.range_search(vectors[lo:lo + block], radius)
        query = np.repeat(np.arange(lo, min(n, lo + block), dtype=np.int64), np.diff(lims).astype(np.int64))
        keep = query < ids  # each pair once, no self-match
        found_i.append(query[keep])
        found_j.append(ids[keep].astype(np.int64))
        found_s.append(scores[keep])
    pairs = np.stack([np.concatenate(found_i), np.concatenate(found_j)], axis=1)
    return pairs, np.concatenate(found_s), method


# ----------------------------------------------------------------------------- the step
def configured_encoder(config: SemanticDedupConfig) -> Any:
    """`texts -> unit vectors` as `filter.semantic_dedup.encoder` says: the transformer itself, or
    the static model distilled from it (`curate.services.similarity.static_embeddings`)."""
    if config.encoder == "static":
        from curate.services.similarity.static_embeddings import encode_static

        def static(texts: list[str]) -> np.ndarray:
            return encode_static(texts, model=config.model, dims=config.static_dims)

        return static
    from curate.services.similarity.embeddings import encode

    def transformer(texts: list[str]) -> np.ndarray:
        return encode(texts, model=config.model, batch_size=config.batch_size)

    return transformer


@dataclass
class SemanticDedup:
    kept: pl.DataFrame
    rejected: pl.DataFrame  # rejected rows with `field`, `survivor`, `cosine`, `size`, `detail`
    report: dict[str, Any]


def semantic_dedup(frame: pl.DataFrame, config: SemanticDedupConfig, *, id_col: str = "example_id",
                   score: str = "quality_score", encoder: Any = None) -> SemanticDedup:
    """Dedup `frame` on each configured field in turn; `encoder(texts) -> unit vectors` defaults to
    `curate.services.similarity.embeddings.encode` with the configured model."""
    if encoder is None:
        encoder = configured_encoder(config)

    kept = frame.sort(id_col)
    rejected: list[pl.DataFrame] = []
    report: dict[str, Any] = {"threshold": config.threshold, "encoder": config.encoder, "fields": {}}
    for name in config.fields:
        kept, lost, figures = _dedup_field(kept, name, config, encoder, id_col=id_col, score=score)
        rejected.append(lost)
        report["fields"][name] = figures
    return SemanticDedup(kept, pl.concat(rejected, how="diagonal_relaxed"), report)


def _dedup_field(frame: pl.DataFrame, name: str, config: SemanticDedupConfig, encoder: Any, *,
                 id_col: str, score: str) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    texts = frame.select(field_text(name).str.strip_chars().alias("t"))["t"]
    rows = np.flatnonzero((texts.str.len_chars() > 0).to_numpy())  # an empty field is nobody's duplicate
    vectors = encoder(texts.gather(rows).to_list()) if rows.size else np.zeros((0, 1), dtype=np.float32)
    pairs, _, method = similar_pairs(vectors, config.threshold, exact_below=config.exact_below, nprobe=config.nprobe)
    comp_local = components(len(rows), pairs)
    comp = np.arange(frame.height, dtype=np.int64)
    comp[rows] = rows[comp_local]  # rows without text stay alone
    labelled = frame.with_columns(pl.Series("__component", comp))
    survivor = choose_survivors(labelled, component="__component", score=score, id_col=id_col).to_numpy()
    survivor_of = np.full(frame.height, -1, dtype=np.int64)  # component label (a row) -> its survivor's row
    survivor_of[comp[survivor]] = np.flatnonzero(survivor)
    survivor_row = survivor_of[comp]
    position = np.full(frame.height, -1, dtype=np.int64)
    position[rows] = np.arange(rows.size)
    losers = np.flatnonzero(~survivor)
    cosine = np.einsum("ij,ij->i", vectors[position[losers]], vectors[position[survivor_row[losers]]]) \
        if losers.size else np.zeros(0, dtype=np.float32)
    sizes = np.bincount(comp, minlength=frame.height)
    lost = frame[losers].with_columns(
        pl.lit(name).alias("field"), frame[id_col].gather(survivor_row[losers]).alias("survivor"),
        pl.Series("cosine", cosine.astype(np.float64)).round(4), pl.Series("size", sizes[comp[losers]]),
    ).with_columns(pl.format("{} means the same as {}'s (cosine {}, cluster of {})",
                             "field", "survivor", "cosine", "size").alias("detail"))
    clusters = sizes[sizes > 0]
    figures = {"rows": frame.height, "embedded": int(rows.size), "pairs": len(pairs), "method": method,
               "clusters": int(clusters.size), "largest_cluster": int(clusters.max()) if clusters.size else 0,
               "rejected": int(losers.size)}
    return frame.filter(pl.Series(survivor)), lost, figures
