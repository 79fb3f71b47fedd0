"""How varied the dataset is: the dataset card's diversity section and its warnings.

"Repetitive generated questions" is among the most common complaints about synthetic data;
a card that shows only counts hides it. Measured on the exported examples:

- **distinct-n** of the instructions (the user turn less the task's shared instruction):
  distinct n-grams over all n-grams, across the whole dataset (Li et al., 2016);
- **embedding spread**: the mean pairwise cosine distance of the instructions' sentence
  embeddings (from the sum of the unit vectors, no n x n matrix), and the **clusters** the
  instructions form when every pair at least `cluster_similarity` alike is joined (connected
  components, as dedup groups near-copies), with the share of the largest one;
- **coverage**: how many source documents and chunks gave at least one exported example,
  and the largest share one document takes;
- **balance**: each class's (label, or task type) share of the dataset against its share of
  the teacher's valid answers (`generate/samples`): a class the filters or reviewers thinned
  out, or one that crowds the others, shows as a ratio far from 1.

Each figure has a threshold (`export.diversity`) past which it becomes a warning, in the
card and in the run report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.dataset import chat
from curate.dataset.config import DiversityConfig
from curate.run.rundir import read_parquet
from schemas.artifacts import CHUNKS, DOCUMENTS, REDACTED_CHUNKS, SAMPLES, Artifact

Embed = Callable[[Sequence[str]], np.ndarray]
CHUNK_ARTIFACTS = (REDACTED_CHUNKS, CHUNKS)  # the redacted text when there is one


def instructions(rows: pl.DataFrame, shared_instruction: str = "") -> list[str]:
    """The user text of each row, less the task's instruction that every prompt starts with."""
    texts = [chat.user_text(m) for m in rows.get_column("messages").to_list()]
    prefix = shared_instruction.strip()
    return [(t[len(prefix):] if prefix and t.startswith(prefix) else t).strip() for t in texts]


def distinct_n(texts: Sequence[str], sizes: Sequence[int] = (1, 2, 3)) -> dict[str, float | None]:
    """distinct-n for each n: unique word n-grams / all word n-grams, over every text at once."""
    words = (
        pl.DataFrame({"text": list(texts)}, schema={"text": pl.String()}).with_row_index("row")
        .select("row", pl.col("text").str.to_lowercase().str.extract_all(r"\w+").alias("word"))
        .explode("word").drop_nulls("word")
    )
    out: dict[str, float | None] = {}
    for n in sizes:
        grams = words.select(
            pl.concat_str([pl.col("word").shift(-i).over("row") for i in range(n)], separator=" ").alias("gram")
        ).drop_nulls()
        out[f"distinct_{n}"] = round(grams["gram"].n_unique() / grams.height, 4) if grams.height else None
    return out


class EmbeddingUnavailable(RuntimeError):
    """The embedding model could not be loaded: the card says so instead of failing the export."""


def shared_embed(model: str | None) -> Embed:
    """The shared sentence-embedding service (`curate.services.similarity.embeddings`), loaded at the first call."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        try:
            from curate.services.similarity.embeddings import EmbeddingModelMissing, encode
        except ImportError as error:  # an install without the embedding service
            raise EmbeddingUnavailable(f"no embedding service ({error})") from None
        try:
            return encode(list(texts), model=model)
        except EmbeddingModelMissing as error:
            raise EmbeddingUnavailable(str(error)) from None

    return embed


def mean_pairwise_distance(vectors: np.ndarray) -> float | None:
    """Mean cosine distance over all pairs i != j of unit vectors: 1 - (|sum|^2 - n) / (n (n - 1))."""
    n = len(vectors)
    if n < 2:
        return None
    total = vectors.astype(np.float64).sum(axis=0)
    mean_cos = (float(total @ total) - n) / (n * (n - 1))
    return round(1.0 - mean_cos, 4)


def cluster_sizes(vectors: np.ndarray, similarity: float, block: int = 2048) -> np.ndarray:
    """Sizes of the connected components of the graph joining pairs at least `similarity`
    alike, largest first (the pairs are found block by block)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sources, targets = [], []
    for start in range(0, n, block):
        sims = vectors[start:start + block] @ vectors.T
        rows, cols = np.nonzero(sims >= similarity)
        keep = cols > rows + start
        sources.append(rows[keep] + start)
        targets.append(cols[keep])
    src, dst = np.concatenate(sources), np.concatenate(targets)
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.sort(np.bincount(labels))[::-1]


def sample_for_embedding(rows: pl.DataFrame, limit: int) -> pl.DataFrame:
    """At most `limit` rows, chosen by a hash of the example id (the same rows on every run)."""
    if rows.height <= limit:
        return rows
    return rows.with_columns(pl.col("example_id").hash(seed=20).alias("_h")).sort("_h").head(limit).drop("_h")


def read_artifact(run_path: Path, candidates: Sequence[Artifact], columns: list[str]) -> pl.DataFrame | None:
    """The first of `candidates` the run has written (its `columns`), or None."""
    for artifact in candidates:
        path = run_path / f"{artifact}.parquet"
        if path.exists():
            return read_parquet(path, columns=columns)
    return None


def coverage(rows: pl.DataFrame, run_path: Path) -> dict[str, Any]:
    """Documents and chunks of the run that gave at least one exported example."""
    chunks = read_artifact(run_path, CHUNK_ARTIFACTS, ["chunk_id", "doc_id"])
    documents = read_artifact(run_path, [DOCUMENTS], ["doc_id"])
    out: dict[str, Any] = {}
    doc_ids = documents if documents is not None else chunks.select("doc_id") if chunks is not None else None
    if doc_ids is not None and doc_ids.height:
        total = doc_ids["doc_id"].n_unique()
        covered = rows.filter(pl.col("doc_id").is_in(doc_ids["doc_id"].implode()))["doc_id"].n_unique()
        out.update(documents=total, documents_covered=covered, document_coverage=round(covered / total, 4))
    if chunks is not None and chunks.height:
        total = chunks["chunk_id"].n_unique()
        covered = rows.filter(pl.col("chunk_id").is_in(chunks["chunk_id"].implode()))["chunk_id"].n_unique()
        out.update(chunks=total, chunks_covered=covered, chunk_coverage=round(covered / total, 4))
    if rows.height:
        top = rows.group_by("doc_id").len().sort("len", descending=True).row(0)
        out["largest_document_share"] = round(top[1] / rows.height, 4)
    return out


def source_classes(run_path: Path, by: str) -> pl.Series | None:
    """The class of every valid teacher answer of the run (label or task type)."""
    path = run_path / f"{SAMPLES}.parquet"
    if not path.exists():
        return None
    samples = read_parquet(path, columns=["status", "task_type", "output_json"]).filter(pl.col("status") == "ok")
    if by == "label":
        values = samples.select(pl.col("output_json").str.json_path_match("$.label").alias("class"))
    else:
        values = samples.select(pl.col("task_type").alias("class"))
    values = values.drop_nulls()
    return values["class"] if values.height else None


def balance(rows: pl.DataFrame, run_path: Path) -> tuple[str, list[dict[str, Any]]]:
    """(stratum, one row per class: rows, share in the dataset, share of the teacher's answers, ratio)."""
    by = "label" if rows.height and rows.get_column("label").null_count() < rows.height else "task_type"
    final = rows.select(pl.col(by).fill_null("(none)").alias("class")).group_by("class").len("rows")
    final = final.with_columns((pl.col("rows") / rows.height).alias("share"))
    source = source_classes(run_path, by)
    if source is not None:
        answers = source.to_frame("class").group_by("class").len("answers")
        answers = answers.with_columns((pl.col("answers") / source.len()).alias("source_share"))
        final = final.join(answers, on="class", how="full", coalesce=True).with_columns(
            pl.col("rows").fill_null(0), pl.col("share").fill_null(0.0), pl.col("answers").fill_null(0),
            pl.col("source_share").fill_null(0.0),
        ).with_columns(
            pl.when(pl.col("source_share") > 0).then(pl.col("share") / pl.col("source_share")).alias("ratio")
        )
    table = final.sort("class").with_columns(pl.col(pl.Float64).round(4))
    return by, table.to_dicts()


def diversity_report(
    rows: pl.DataFrame, run_path: Path, config: DiversityConfig, *, shared_instruction: str = "",
    embed: Embed | None = None,
) -> dict[str, Any]:
    """Every figure of the card's diversity section, and the warnings its thresholds raise."""
    texts = instructions(rows, shared_instruction) if rows.height else []
    report: dict[str, Any] = {"examples": rows.height, "distinct": distinct_n(texts)}
    if embed is not None and rows.height >= 2:
        sampled = sample_for_embedding(rows, config.max_embedded)
        chosen = texts if sampled.height == rows.height else instructions(sampled, shared_instruction)
        try:
            vectors = np.asarray(embed(chosen), dtype=np.float32)
        except EmbeddingUnavailable as error:
            report["embedding_error"] = str(error)
            embed = None
    if embed is not None and rows.height >= 2:
        sizes = cluster_sizes(vectors, config.cluster_similarity)
        report["embedding"] = {
            "model": config.embedding_model or "all-MiniLM-L6-v2", "embedded": len(chosen),
            "mean_pairwise_distance": mean_pairwise_distance(vectors),
            "cluster_similarity": config.cluster_similarity, "clusters": len(sizes),
            "largest_cluster": int(sizes[0]), "largest_cluster_share": round(int(sizes[0]) / len(chosen), 4),
            "cluster_sizes": [int(s) for s in sizes[:20]],
        }
    report["coverage"] = coverage(rows, run_path)
    report["balance_by"], report["balance"] = balance(rows, run_path)
    report["warnings"] = warnings(report, config)
    report["thresholds"] = config.model_dump(exclude={"enabled", "embeddings", "embedding_model", "max_embedded"})
    return report


def warnings(report: dict[str, Any], config: DiversityConfig) -> list[str]:
    """The thresholds' verdicts, one sentence each (the card and the run report show them)."""
    out = []
    distinct2 = report["distinct"].get("distinct_2")
    if distinct2 is not None and distinct2 < config.min_distinct_2:
        out.append(f"instructions repeat themselves: distinct-2 {distinct2:.2f} < {config.min_distinct_2:.2f}")
    emb = report.get("embedding") or {}
    distance = emb.get("mean_pairwise_distance")
    if distance is not None and distance < config.min_mean_distance:
        out.append(f"instructions are alike in meaning: mean pairwise embedding distance {distance:.2f} "
                   f"< {config.min_mean_distance:.2f}")
    share = emb.get("largest_cluster_share")
    if share is not None and share > config.max_largest_cluster_share:
        out.append(f"one cluster of near-paraphrases holds {share:.0%} of the instructions ({emb['largest_cluster']} "
                   f"of {emb['embedded']}; limit {config.max_largest_cluster_share:.0%})")
    cov = report["coverage"]
    if cov.get("document_coverage") is not None and cov["document_coverage"] < config.min_document_coverage:
        out.append(f"{cov['documents_covered']} of {cov['documents']} source documents gave an example "
                   f"({cov['document_coverage']:.0%} < {config.min_document_coverage:.0%})")
    if cov.get("chunk_coverage") is not None and cov["chunk_coverage"] < config.min_chunk_coverage:
        out.append(f"{cov['chunks_covered']} of {cov['chunks']} chunks gave an example "
                   f"({cov['chunk_coverage']:.0%} < {config.min_chunk_coverage:.0%})")
    for row in report["balance"]:
        ratio, answers = row.get("ratio"), row.get("answers") or 0
        if ratio is None or answers < config.min_class_answers:
            continue
        if ratio > config.max_class_shift or ratio < 1 / config.max_class_shift:
            out.append(f"{report['balance_by']} {row['class']}: {row['share']:.1%} of the dataset against "
                       f"{row['source_share']:.1%} of the teacher's answers (x{ratio:.2f}; limit x{config.max_class_shift:g})")
    return out


def diversity_lines(report: dict[str, Any], plot: str | None = None) -> list[str]:
    """The card's diversity section (Markdown lines)."""
    lines = ["## Diversity", ""]
    if plot:
        lines += [f"![diversity]({plot})", ""]
    distinct = report.get("distinct") or {}
    figures = [["distinct-1 / distinct-2 / distinct-3 of instructions",
                " / ".join("-" if distinct.get(f"distinct_{n}") is None else f"{distinct[f'distinct_{n}']:.3f}" for n in (1, 2, 3))]]
    emb = report.get("embedding")
    if emb:
        figures += [
            [f"mean pairwise embedding distance ({emb['model']}, {emb['embedded']} instructions)",
             f"{emb['mean_pairwise_distance']:.3f}" if emb["mean_pairwise_distance"] is not None else "-"],
            [f"clusters (cosine >= {emb['cluster_similarity']:g})", emb["clusters"]],
            ["largest cluster", f"{emb['largest_cluster']} ({emb['largest_cluster_share']:.1%})"],
        ]
    cov = report.get("coverage") or {}
    if "documents" in cov:
        figures.append(["source documents with an example", f"{cov['documents_covered']} of {cov['documents']} ({cov['document_coverage']:.1%})"])
    if "chunks" in cov:
        figures.append(["chunks with an example", f"{cov['chunks_covered']} of {cov['chunks']} ({cov['chunk_coverage']:.1%})"])
    if "largest_document_share" in cov:
        figures.append(["examples from the largest document", f"{cov['largest_document_share']:.1%}"])
    lines += [_table(["measure", "value"], figures)]
    rows = report.get("balance") or []
    if rows:
        with_source = "source_share" in rows[0]
        header = [report.get("balance_by", "class"), "examples", "share"] + (["teacher answers", "share of answers", "ratio"] if with_source else [])
        body = [[r["class"], r["rows"], f"{r['share']:.1%}"]
                + ([r["answers"], f"{r['source_share']:.1%}", "-" if r["ratio"] is None else f"{r['ratio']:.2f}"] if with_source else [])
                for r in rows]
        lines += ["", f"Balance of {report.get('balance_by')} against the teacher's valid answers:" if with_source
                  else f"Balance of {report.get('balance_by')} (no teacher answers in the run to compare with):", "",
                  _table(header, body)]
    warned = report.get("warnings") or []
    lines += ["", "**Diversity warnings:**", "", *[f"- {w}" for w in warned]] if warned else ["", "No diversity warning."]
    if report.get("embedding_error"):
        lines += ["", f"Embedding measures were not computed: {report['embedding_error']}."]
    elif not emb:
        lines += ["", "Embedding measures were not computed (export.diversity.embeddings is off, or fewer than 2 examples)."]
    return lines


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def plot_diversity(report: dict[str, Any], folder: Path) -> str | None:
    """plots/diversity.png: coverage, cluster sizes, class shares against the teacher's answers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    cov = report.get("coverage") or {}
    limits = report.get("thresholds") or {}
    kinds = (("documents", "document_coverage", "min_document_coverage"), ("chunks", "chunk_coverage", "min_chunk_coverage"))
    bars = [(name, cov[key], limits.get(floor)) for name, key, floor in kinds if key in cov]
    axes[0].bar([b[0] for b in bars], [b[1] for b in bars], color="#4C72B0")
    for index, (_, _, floor) in enumerate(bars):
        if floor is not None:
            axes[0].hlines(floor, index - 0.4, index + 0.4, colors="#C44E52", linestyles="dashed",
                           label="warning below" if index == 0 else None)
    if bars:
        axes[0].legend(loc="lower right")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel("share with at least one example")
    axes[0].set_title("Coverage of the sources")
    emb = report.get("embedding")
    if emb:
        sizes = emb["cluster_sizes"]
        shares = [s / emb["embedded"] for s in sizes]
        axes[1].bar(range(1, len(sizes) + 1), shares, color="#55A868")
        ceiling = limits.get("max_largest_cluster_share")
        if ceiling is not None:
            axes[1].axhline(ceiling, color="#C44E52", linestyle="dashed", label="warning above")
            axes[1].legend(loc="upper right")
        axes[1].set_ylim(0, max([*shares, ceiling or 0.0]) * 1.15)
        axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[1].set_xlabel(f"cluster, largest first ({min(len(sizes), emb['clusters'])} of {emb['clusters']} shown)")
        axes[1].set_ylabel("share of instructions")
        axes[1].set_title(f"{emb['clusters']} clusters at cosine >= {emb['cluster_similarity']:g}")
    else:
        axes[1].text(0.5, 0.5, "no embeddings", ha="center", va="center")
        axes[1].set_axis_off()
    rows = report.get("balance") or []
    classes = [str(r["class"]) for r in rows]
    x = np.arange(len(classes))
    axes[2].bar(x - 0.2, [r["share"] for r in rows], 0.4, label="dataset")
    if rows and "source_share" in rows[0]:
        axes[2].bar(x + 0.2, [r["source_share"] for r in rows], 0.4, label="teacher answers")
    axes[2].set_xticks(x, classes, rotation=35, ha="right", fontsize=8)
    axes[2].set_ylabel("share")
    axes[2].set_title(f"Balance by {report.get('balance_by')}")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(folder / "diversity.png", dpi=100)
    plt.close(fig)
    return "plots/diversity.png"
