"""Group-aware stratified split and the cross-split near-duplicate (leakage) check.

Assignment (why not sklearn's StratifiedGroupKFold): that splitter makes k *equal* folds,
so 80/10/10 means k=10 folds merged 8/1/1, and 70/15/15 needs k=20; with few documents
most folds stay empty and the small splits can end up with nothing. The assignment here
follows the same greedy idea (place the hardest groups first, each where it best repairs
the per-class distribution) but against the *configured* split targets directly:

1. each group (document) is a vector of per-stratum counts;
2. groups are placed largest first; groups of equal size are ordered by
   `content_id(seed, group)`, so the result depends on the seed and the content, never on
   row order;
3. when there are at least as many groups as splits, each smaller split (validation, test)
   is first given one of the smallest groups, so none stays empty on a small corpus;
4. each remaining group goes to the split that minimises the total squared, target-normalised
   deviation of (split, stratum) counts and of split sizes from their targets.

A group is placed once, whole, so no document can appear in two splits (by construction,
and re-checked by `assert_disjoint`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import polars as pl

from curate.run.services import WorkerPool
from schemas.artifacts import LEAKS, SPLITS
from schemas.ids import content_id


def assign_groups(
    groups: Mapping[str, Mapping[str, int]], ratios: Mapping[str, float], seed: int
) -> dict[str, str]:
    """Map each group to a split; `groups[g][stratum]` is the number of rows of g in stratum."""
    splits = [s for s in SPLITS if ratios.get(s, 0.0) > 0]
    strata = sorted({s for counts in groups.values() for s in counts})
    totals = Counter[str]()
    for counts in groups.values():
        totals.update(counts)
    grand = sum(totals.values())
    target = {s: {c: ratios[s] * totals[c] for c in strata} for s in splits}
    size_target = {s: ratios[s] * grand for s in splits}
    current = {s: dict.fromkeys(strata, 0) for s in splits}
    sizes = dict.fromkeys(splits, 0)

    def cost_delta(split: str, counts: Mapping[str, int]) -> float:
        delta = 0.0
        for stratum, n in sorted(counts.items()):
            t = target[split][stratum]
            before = current[split][stratum] - t
            delta += ((before + n) ** 2 - before**2) / (t + 1.0)
        size = sum(counts.values())
        before = sizes[split] - size_target[split]
        delta += ((before + size) ** 2 - before**2) / (size_target[split] + 1.0)
        return delta

    order = sorted(groups, key=lambda g: (-sum(groups[g].values()), content_id("split", seed, g)))
    assignment: dict[str, str] = {}

    def place(group: str, best: str) -> None:
        counts = groups[group]
        assignment[group] = best
        sizes[best] += sum(counts.values())
        for stratum, n in counts.items():
            current[best][stratum] += n

    # With few documents the greedy pass would give every one to train: first seed each
    # smaller split with one of the smallest documents, so no split with a ratio is empty.
    if len(order) >= len(splits):
        for split, group in zip(splits[1:], reversed(order), strict=False):
            place(group, split)
    for group in order:
        if group not in assignment:
            place(group, min(splits, key=lambda s: (cost_delta(s, groups[group]), splits.index(s))))
    return assignment


def strata_column(frame: pl.DataFrame, by: str) -> pl.Series:
    return frame.get_column(by).fill_null("(none)").cast(pl.String)


def split_frame(
    frame: pl.DataFrame, *, ratios: Mapping[str, float], seed: int, group_by: str, stratify_by: str
) -> pl.DataFrame:
    """The frame with a `split` column (rows sorted by example_id)."""
    frame = frame.sort("example_id")
    if frame.height == 0:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias("split"))
    keyed = pl.DataFrame(
        {"group": frame.get_column(group_by).cast(pl.String), "stratum": strata_column(frame, stratify_by)}
    )
    groups: dict[str, dict[str, int]] = {}
    # sorted: the float sums of the cost depend on iteration order (ties must break the same way)
    for group, stratum, n in keyed.group_by("group", "stratum").len().sort("group", "stratum").iter_rows():
        groups.setdefault(group, {})[stratum] = n
    assignment = assign_groups(groups, ratios, seed)
    split = keyed.get_column("group").replace_strict(assignment, return_dtype=pl.String)
    return frame.with_columns(split.alias("split"))


def assert_disjoint(frame: pl.DataFrame, group_by: str) -> None:
    spread = frame.group_by(group_by).agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1)
    if spread.height:
        raise AssertionError(f"{spread.height} {group_by} value(s) appear in more than one split")


def distribution(frame: pl.DataFrame, by: str) -> dict[str, dict[str, int]]:
    """{split: {stratum: count}} in split order."""
    out: dict[str, dict[str, int]] = {}
    counts = frame.with_columns(strata_column(frame, by).alias("__s")).group_by("split", "__s").len()
    for split in SPLITS:
        part = counts.filter(pl.col("split") == split).sort("__s")
        out[split] = dict(zip(part.get_column("__s").to_list(), part.get_column("len").to_list(), strict=True))
    return out


def split_warnings(
    frame: pl.DataFrame, *, ratios: Mapping[str, float], by: str, group_by: str, min_eval_rows: int
) -> list[str]:
    """What a user must know before trusting the split: classes a split lacks, evaluation
    splits too small to measure anything, and what the stratification needs to do better.

    A group (document) is placed whole, so a class can reach every split only when its
    examples come from at least as many groups as there are splits; and a split of share r
    expects a class of n examples to bring r*n of them, so n >= ceil(1/r) for even one.
    """
    splits = [s for s in SPLITS if ratios.get(s, 0.0) > 0]
    if frame.height == 0 or not splits:
        return []
    dist = distribution(frame, by)
    keyed = frame.with_columns(strata_column(frame, by).alias("__s"))
    per_class = keyed.group_by("__s").agg(pl.len().alias("rows"), pl.col(group_by).n_unique().alias("groups"))
    classes = sorted(per_class.get_column("__s").to_list())
    warnings = []
    for split in splits:
        counts = dist.get(split, {})
        rows = sum(counts.values())
        missing = [c for c in classes if not counts.get(c)]
        if missing:
            warnings.append(f"{split} ({rows} rows) has no example of {len(missing)} of {len(classes)} classes: "
                            + ", ".join(missing))
        if split != "train" and rows < min_eval_rows:
            warnings.append(f"{split} holds {rows} example(s), fewer than split.min_eval_rows={min_eval_rows}: "
                            "too few to measure a score on"
                            + (f" (one example moves accuracy by {100 / rows:.0f} points)" if rows else ""))
    if not warnings:
        return warnings
    smallest = min(ratios[s] for s in splits)
    need_rows = math.ceil(1 / smallest)
    short = per_class.filter((pl.col("groups") < len(splits)) | (pl.col("rows") < need_rows)).sort("__s")
    detail = ", ".join(f"{c} {r} rows in {g} {group_by}(s)" for c, r, g in short.iter_rows())
    eval_size = max(math.ceil(min_eval_rows / ratios[s]) for s in splits if s != "train") if len(splits) > 1 else 0
    warnings.append(
        f"to put every class in every split, each class needs examples from at least {len(splits)} distinct "
        f"{group_by} values and at least {need_rows} rows (1 / the smallest ratio {smallest:g})"
        + (f"; short: {detail}" if detail else "")
        + (f". For {min_eval_rows} rows in every evaluation split the dataset needs about {eval_size} examples "
           f"(it has {frame.height})" if eval_size > frame.height else "")
        + "."
    )
    return warnings


def cross_split_pairs(
    frame: pl.DataFrame, *, text: str, threshold: float, num_perm: int, shingle_words: int, pool: WorkerPool | None = None,
) -> pl.DataFrame:
    """Near-duplicate (or exact) pairs whose members are in different splits.

    Uses the dedup steps of the similarity service (`curate.services.similarity.steps.cross_group_pairs`:
    sign, buckets, verify, on `pool`, the executor's; signatures identical to datasketch's). Returns `LEAKS` rows with the member in the
    later split (test > validation > train) as `example_id`, action still empty.
    """
    from curate.services.similarity.dedup import DedupParams
    from curate.services.similarity.steps import cross_group_pairs

    if frame.height < 2:
        return pl.DataFrame(schema=LEAKS.schema)
    params = DedupParams(threshold=threshold, num_perm=num_perm, shingle_size=shingle_words)
    pairs = cross_group_pairs(frame, text=text, group="split", id_col="example_id", params=params, pool=pool)
    rank = {s: i for i, s in enumerate(SPLITS)}
    rows = []
    for id_a, split_a, id_b, split_b, similarity in pairs.iter_rows():
        if rank[split_a] < rank[split_b]:
            id_a, split_a, id_b, split_b = id_b, split_b, id_a, split_a
        rows.append((id_a, split_a, id_b, split_b, round(float(similarity), 4), ""))
    return pl.DataFrame(rows, schema=LEAKS.schema, orient="row").sort("example_id", "other_example_id")


def ngram_train_leaks(frame: pl.DataFrame, *, text: str, n: int, share: float) -> pl.DataFrame:
    """Validation and test examples that contain train text: `LEAKS` rows for each example at
    least `share` of whose distinct word n-grams also occur in train, paired with the train
    example it shares most with (`similarity` = that share).

    Containment, not Jaccard: a short test example copied into a long train example is a leak
    that MinHash's Jaccard misses. Uses the shared n-gram service (`curate.services.similarity.ngrams`, 64-bit hashes).
    """
    from curate.services.similarity.ngrams import text_ngrams

    if frame.height < 2 or "train" not in frame["split"].to_list():
        return pl.DataFrame(schema=LEAKS.schema)
    grams, doc = text_ngrams(frame[text], n)
    grams_of = pl.DataFrame({"hash": grams, "row": doc}).unique()
    split = frame["split"].to_numpy()
    is_train = pl.Series(split[grams_of["row"].to_numpy()] == "train")
    train, held = grams_of.filter(is_train), grams_of.filter(~is_train)
    totals = held.group_by("row").len("total")
    shared = (held.join(train.rename({"row": "other"}), on="hash")
              .group_by("row", "other").len("shared")
              .sort(["row", "shared", "other"], descending=[False, True, False]).group_by("row").first()
              .join(held.join(train.select("hash").unique(), on="hash").group_by("row").len("any"), on="row")
              .join(totals, on="row")
              .with_columns((pl.col("any") / pl.col("total")).alias("share"))
              .filter(pl.col("share") >= share))
    ids = frame["example_id"]
    return pl.DataFrame({
        "example_id": ids.gather(shared["row"]), "split": pl.Series(split).gather(shared["row"]),
        "other_example_id": ids.gather(shared["other"]), "other_split": "train",
        "similarity": shared["share"].round(4), "action": "",
    }, schema=LEAKS.schema).sort("example_id")


def leak_pairs(frame: pl.DataFrame, *, text: str, threshold: float, num_perm: int, shingle_words: int,
               ngram_words: int, ngram_share: float, pool: WorkerPool | None = None) -> pl.DataFrame:
    """Both leakage checks: MinHash near-duplicates across splits and n-gram containment of
    validation/test examples in train; one row per (example, other example), MinHash's first."""
    near = cross_split_pairs(frame, text=text, threshold=threshold, num_perm=num_perm, shingle_words=shingle_words,
                             pool=pool)
    contained = ngram_train_leaks(frame, text=text, n=ngram_words, share=ngram_share)
    return (pl.concat([near, contained]).unique(["example_id", "other_example_id"], keep="first", maintain_order=True)
            .sort("example_id", "other_example_id"))
