"""The dataset card's PNG plots: examples per class and split, and prompt/response lengths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from curate.dataset import chat
from curate.dataset.splitting import SPLITS


def lengths(rows: pl.DataFrame) -> pl.DataFrame:
    messages = rows.get_column("messages").to_list()
    return pl.DataFrame(
        {
            "split": rows.get_column("split"),
            "prompt_chars": [len(chat.user_text(m)) for m in messages],
            "response_chars": [len(chat.response_text(m)) for m in messages],
        }
    )


def stratum_of(rows: pl.DataFrame) -> pl.Series:
    column = "label" if rows.get_column("label").null_count() < rows.height else "task_type"
    return rows.get_column(column).fill_null("(none)")


def plot_distributions(rows: pl.DataFrame, folder: Path) -> dict[str, str]:
    """label_distribution.png and length_distribution.png (matplotlib, Agg); relative paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder.mkdir(parents=True, exist_ok=True)
    strata = stratum_of(rows)
    classes = sorted(set(strata.to_list()))
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.0, 0.6 * len(classes) + 2)), 4))
    width = 0.8 / len(SPLITS)
    for i, split in enumerate(SPLITS):
        mask = rows.get_column("split") == split
        counts = strata.filter(mask).value_counts()
        by_class = dict(zip(counts[counts.columns[0]].to_list(), counts["count"].to_list(), strict=True))
        ax.bar([x + i * width for x in range(len(classes))], [by_class.get(c, 0) for c in classes], width, label=split)
    ax.set_xticks([x + width for x in range(len(classes))], classes, rotation=30, ha="right")
    ax.set_ylabel("examples")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
    ax.set_title("Examples per class and split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "label_distribution.png", dpi=110)
    plt.close(fig)

    frame = lengths(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, column in zip(axes, ("prompt_chars", "response_chars"), strict=True):
        bins = np.histogram_bin_edges(frame.get_column(column).to_numpy(), bins=20)  # shared by the splits
        for split in SPLITS:
            values = frame.filter(pl.col("split") == split).get_column(column).to_list()
            if values:
                ax.hist(values, bins=bins, alpha=0.5, label=split)
        ax.set_xlabel(column.replace("_", " "))
        ax.set_ylabel("examples")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
        ax.legend()
    fig.suptitle("Length distribution (characters)")
    fig.tight_layout()
    fig.savefig(folder / "length_distribution.png", dpi=110)
    plt.close(fig)
    return {"labels": "plots/label_distribution.png", "lengths": "plots/length_distribution.png"}
