"""How doubtful each example is: one score in [0, 1] from the signals the pipeline already has.

Reviewers' time is the scarce part of review, so the queue puts first the answers most likely
to be wrong (as Cleanlab's ActiveLab and Argilla's suggestion scores do). Four signals, each
turned into a doubt in [0, 1] by how close the example came to the bar its filter set:

- **votes**: self-consistency agreement above the consistency filter's floor
  (`filter.min_votes / teacher.samples`): agreement at the floor is doubt 1, unanimity 0.
- **grounding**: the grounding score above the grounding filter's floor
  (`filter.grounding_threshold / 100`): a quote found word for word is doubt 0, one that only
  just passed the fuzzy match is doubt 1.
- **judge**: the LLM judge's mean rubric score above `filter.judge.threshold` (when the judge
  ran: `<run_dir>/judge/judgments.parquet`); missing for examples it did not score.
- **neighbour**: classification only. The passage's nearest neighbours among the other
  examples and their removed duplicates (embedding cosine, at least
  `review.doubt.neighbour_min_similarity`): the similarity-weighted share of them that carry
  another label. A passage (nearly) like another one labelled differently means one of the
  two is wrong. When the examples already carry a `neighbour_label` column (a semantic dedup
  that records it), that is used instead of computing one.

The score is the weighted mean (`review.doubt.weights`) of the signals the run has (a signal
no example has is left out of the mean; an example without it counts 0 for it). The
components are kept as columns (`doubt_votes`, ...), so a task can say why it is doubtful.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from curate.review.config import DoubtConfig
from curate.run.rundir import read_parquet
from schemas.artifacts import DEDUP_REJECTED, JUDGMENTS

SIGNALS = ("votes", "grounding", "judge", "neighbour")
DOUBT = "doubt"
Embed = Callable[[Sequence[str]], np.ndarray]


def margin_doubt(value: pl.Expr, floor: float, top: float = 1.0) -> pl.Expr:
    """1 at the filter's floor (or below), 0 at the top: how little room the example had."""
    span = max(top - floor, 1e-9)
    return (1.0 - ((value - floor) / span)).clip(0.0, 1.0)


def judge_scores(run_path: Path) -> pl.DataFrame | None:
    """example_id -> the judge's mean rubric score (1-5), if the judge ran in this run."""
    path = run_path / f"{JUDGMENTS}.parquet"
    if not path.exists():
        return None
    frame = read_parquet(path, columns=["example_id", "mean_score", "passed"])
    frame = frame.filter(pl.col("passed")).group_by("example_id").agg(pl.col("mean_score").max())
    return frame if frame.height else None


def nearest_labels(
    vectors: np.ndarray, labels: Sequence[str | None], ids: Sequence[str], *,
    candidates: np.ndarray | None = None, candidate_labels: Sequence[str | None] = (),
    candidate_ids: Sequence[str] = (), k: int = 5, min_similarity: float = 0.5, block: int = 2048,
) -> pl.DataFrame:
    """Per row of `vectors` (L2-normalised): the similarity-weighted share of its k nearest
    other rows (of `vectors` and `candidates`, at least `min_similarity` alike, never a row with
    its own id) that carry another label; and its single nearest such row's label and
    similarity. Computed in blocks of rows, so memory stays `block` x (rows + candidates)."""
    pool = vectors if candidates is None or not len(candidates) else np.vstack([vectors, candidates])
    names = [*labels, *candidate_labels]
    known = sorted({name for name in names if name is not None})
    index = {name: code for code, name in enumerate(known)}
    label_codes = np.array([-1 if name is None else index[name] for name in names], dtype=np.int64)
    _, id_codes = np.unique(np.array([*ids, *candidate_ids], dtype=str), return_inverse=True)
    n = len(vectors)
    k = max(1, min(k, len(pool) - 1)) if len(pool) > 1 else 1
    shares = np.zeros(n)
    near_code = np.full(n, -1, dtype=np.int64)
    near_sim = np.full(n, np.nan)
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = vectors[start:stop] @ pool.T
        sims[id_codes[start:stop, None] == id_codes[None, :]] = -np.inf  # never itself, nor its id's duplicates
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if pool.shape[0] > k else np.argsort(-sims, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1)
        top, top_sims = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sims, order, axis=1)
        close = top_sims >= min_similarity
        other = (label_codes[top] != label_codes[start:stop, None]) & (label_codes[top] >= 0)
        weights = np.where(close, top_sims, 0.0)
        total = weights.sum(axis=1)
        shares[start:stop] = np.divide((weights * other).sum(axis=1), total, out=np.zeros_like(total), where=total > 0)
        rows = np.flatnonzero((other & close).any(axis=1))
        first = np.argmax((other & close)[rows], axis=1)
        near_code[start + rows] = label_codes[top[rows, first]]
        near_sim[start + rows] = top_sims[rows, first]
    near_label = [known[code] if code >= 0 else None for code in near_code.tolist()]
    return pl.DataFrame({
        "example_id": list(ids),
        "doubt_neighbour": shares,
        "neighbour_label": pl.Series(near_label, dtype=pl.String),
        "neighbour_similarity": pl.Series(near_sim).fill_nan(None).round(4),
    })


def with_doubt(
    examples: pl.DataFrame, config: DoubtConfig, *, vote_floor: float, grounding_floor: float,
    judge_floor: float = 3.5, judge: pl.DataFrame | None = None, neighbours: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """`examples` with `doubt_votes`, `doubt_grounding`, `doubt_judge`, `doubt_neighbour` and
    their weighted mean `doubt` (0-1, higher = more doubtful)."""
    frame = examples.with_columns(
        margin_doubt(pl.col("agreement"), vote_floor).alias("doubt_votes"),
        margin_doubt(pl.col("grounding_score"), grounding_floor).alias("doubt_grounding"),
    )
    if judge is not None:
        frame = frame.join(judge.select("example_id", "mean_score"), on="example_id", how="left").with_columns(
            margin_doubt(pl.col("mean_score"), judge_floor, 5.0).alias("doubt_judge")
        ).drop("mean_score")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("doubt_judge"))
    if neighbours is not None and "doubt_neighbour" not in frame.columns:
        frame = frame.join(neighbours, on="example_id", how="left")
    if "doubt_neighbour" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("doubt_neighbour"))
    weights = config.weights
    present = [s for s in SIGNALS if weights.get(s, 0.0) > 0 and frame.get_column(f"doubt_{s}").null_count() < frame.height]
    if not present:
        return frame.with_columns(pl.lit(0.0).alias(DOUBT))
    total = sum(weights[s] for s in present)
    score = pl.sum_horizontal([pl.col(f"doubt_{s}").fill_null(0.0) * (weights[s] / total) for s in present])
    return frame.with_columns(score.clip(0.0, 1.0).round(6).alias(DOUBT))


def neighbour_label_column(examples: pl.DataFrame) -> pl.DataFrame | None:
    """A neighbour computed upstream (a semantic dedup's `neighbour_label` and
    `neighbour_similarity`), as the neighbour signal: 1 where the label differs."""
    if "neighbour_label" not in examples.columns:
        return None
    sims = pl.col("neighbour_similarity") if "neighbour_similarity" in examples.columns else pl.lit(1.0)
    differs = pl.col("neighbour_label").is_not_null() & (pl.col("neighbour_label") != pl.col("label"))
    return examples.select(
        "example_id", pl.when(differs).then(sims.clip(0.0, 1.0)).otherwise(0.0).alias("doubt_neighbour"),
    )


# --------------------------------------------------------------------------- a run's examples

DUPLICATE_REASONS = ("near_duplicate", "exact_duplicate", "semantic_duplicate", "indexed_duplicate")


def removed_duplicates(run_path: Path) -> pl.DataFrame:
    """example_id, chunk_id, label of the duplicates dedup removed: their labels are the
    teacher's independent answers on (nearly) the same passage, the best neighbours there are."""
    path = run_path / f"{DEDUP_REJECTED}.parquet"
    empty = pl.DataFrame(schema={"example_id": pl.String(), "chunk_id": pl.String(), "label": pl.String()})
    if not path.exists():
        return empty
    frame = read_parquet(path, columns=["item_id", "chunk_id", "reason", "output_json"])
    frame = frame.filter(pl.col("reason").is_in(DUPLICATE_REASONS) & pl.col("output_json").is_not_null())
    return frame.select(
        pl.col("item_id").alias("example_id"), "chunk_id",
        pl.col("output_json").str.json_path_match("$.label").alias("label"),
    ).filter(pl.col("label").is_not_null())


def run_neighbours(
    examples: pl.DataFrame, chunks: pl.DataFrame, run_path: Path, config: DoubtConfig, embed: Embed,
) -> pl.DataFrame:
    """The neighbour signal of a run's examples: their passages (and those of the duplicates
    dedup removed) embedded once, compared in blocks."""
    text_of = chunks.select("chunk_id", "text")
    mine = examples.select("example_id", "chunk_id", "label").join(text_of, on="chunk_id", how="left")
    removed = removed_duplicates(run_path).join(text_of, on="chunk_id", how="inner")
    texts = mine.get_column("text").fill_null("").to_list() + removed.get_column("text").to_list()
    vectors = np.asarray(embed(texts), dtype=np.float32) if texts else np.zeros((0, 1), dtype=np.float32)
    n = mine.height
    return nearest_labels(
        vectors[:n], mine.get_column("label").to_list(), mine.get_column("example_id").to_list(),
        candidates=vectors[n:], candidate_labels=removed.get_column("label").to_list(),
        candidate_ids=removed.get_column("example_id").to_list(),
        k=config.neighbour_k, min_similarity=config.neighbour_min_similarity,
    )


def score_run_examples(
    examples: pl.DataFrame, chunks: pl.DataFrame, *, run_path: Path, config: DoubtConfig, samples: int,
    min_votes: int, grounding_threshold: float, judge_threshold: float, classification: bool,
    embed: Embed | None = None,
) -> pl.DataFrame:
    """`with_doubt` over a run's `dedup/examples`, with its judge scores and neighbours."""
    neighbours = None
    if classification and config.weights.get("neighbour", 0.0) > 0 and examples.height > 1:
        neighbours = neighbour_label_column(examples)
        if neighbours is None and config.neighbour and embed is not None:
            neighbours = run_neighbours(examples, chunks, run_path, config, embed)
    return with_doubt(
        examples, config, vote_floor=min(min_votes, samples) / samples, grounding_floor=grounding_threshold / 100,
        judge_floor=judge_threshold, judge=judge_scores(run_path), neighbours=neighbours,
    )


def default_embed(config: DoubtConfig) -> Embed:
    """The shared sentence-embedding service (`curate.services.similarity.embeddings`), loaded at the first call."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        from curate.services.similarity.embeddings import EmbeddingModelMissing, encode

        try:
            return encode(list(texts), model=config.embedding_model)
        except EmbeddingModelMissing as error:
            raise FileNotFoundError(f"{error}; or set review.doubt.neighbour: false") from None

    return embed
