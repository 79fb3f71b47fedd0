"""Decontamination: reject examples that contain an item of an evaluation set (`filter.decontaminate`).

A model trained on its own test questions scores well on them and learns nothing that the score
measures. Every candidate example is checked against every item of the listed evaluation sets
(JSONL, JSON, Parquet, CSV with named text fields; plain-text benchmark files, one item per
paragraph) in three ways, each answering a different kind of copy:

- **n-gram overlap** (13 words by default, as in GPT-3's and datatrove's decontamination): an
  example that shares one n-gram with an item contains part of it verbatim. An item shorter than
  n words (but at least `min_words`) is matched whole.
- **MinHash near-match** (the project's own MinHash/LSH, `curate.services.similarity`): sentence
  against sentence, so an item planted inside a long answer is still compared at its own size;
  candidates sharing an LSH band are verified by the exact Jaccard of their word shingles. This
  finds an item with a changed number or a few words swapped, which breaks every 13-gram of a
  short item.
- **embedding similarity** (optional, `curate.services.similarity.embeddings`): sentence cosine against the items'
  sentences, for paraphrases that share few words.

A match rejects the example with reason `contaminated`, naming the eval set, the item and the
method. Per-set counts go to the dedup report, and from there to the dataset card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.filter.similarity_config import DecontaminateConfig, EvalSet
from curate.services.similarity.banding import band_frame, band_keys, choose_banding
from curate.services.similarity.jaccard import exact_jaccard
from curate.services.similarity.minhash import minhash_signatures
from curate.services.similarity.ngrams import ngram_hashes, overlap_frame, word_hashes, words_of

#: Sentence boundaries: end punctuation, line breaks, and the quotes around JSON string values
#: (an example's answer is its output model's JSON).
SENTENCE_PATTERN = r'[^.!?\n"]+'
TEXT_SUFFIXES = {".txt", ".md", ".text"}
METHOD_RANK = {"ngram": 0, "minhash": 1, "embedding": 2}


class EvalSetError(ValueError):
    """An evaluation set cannot be read as configured; the message names the file and why."""


# ----------------------------------------------------------------------------- eval items
def read_eval_set(spec: EvalSet, path: Path) -> pl.DataFrame:
    """The items of one set: (set, item, text), empty texts dropped. A missing file or field
    stops the run: checking against nothing would look like a clean dataset."""
    if not path.exists():
        raise EvalSetError(f"filter.decontaminate: eval set {spec.label!r}: no file {path}")
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n")]
        texts = pl.Series("text", [p for p in paragraphs if p], dtype=pl.String)
        return pl.DataFrame({"set": spec.label, "item": [f"paragraph {i + 1}" for i in range(texts.len())],
                             "text": texts})
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif suffix == ".csv":
            frame = pl.read_csv(path, infer_schema=False)
        elif suffix in {".jsonl", ".ndjson"}:
            frame = pl.read_ndjson(path, infer_schema_length=None)
        elif suffix == ".json":
            frame = pl.read_json(path, infer_schema_length=None)
        else:
            raise EvalSetError(f"filter.decontaminate: {path}: unknown format {suffix!r} "
                               "(jsonl, json, parquet, csv, txt, md)")
    except (pl.exceptions.ComputeError, OSError, ValueError) as exc:
        if isinstance(exc, EvalSetError):
            raise
        raise EvalSetError(f"filter.decontaminate: {path}: cannot be read: {exc}") from exc
    wanted = [*spec.fields, *([spec.id_field] if spec.id_field else [])]
    missing = [f for f in wanted if f not in frame.columns]
    if missing:
        raise EvalSetError(f"filter.decontaminate: {path}: no field(s) {', '.join(missing)}; "
                           f"the records have: {', '.join(frame.columns)}")
    text = pl.concat_str([_as_text(frame, f) for f in spec.fields], separator="\n", ignore_nulls=True)
    item = (pl.col(spec.id_field).cast(pl.String) if spec.id_field
            else pl.format("row {}", pl.int_range(1, pl.len() + 1)))
    return (frame.select(pl.lit(spec.label).alias("set"), item.alias("item"), text.alias("text"))
            .filter(pl.col("text").str.strip_chars().str.len_chars() > 0))


def _as_text(frame: pl.DataFrame, name: str) -> pl.Expr:
    """A field as text: a list (e.g. a benchmark's answer choices) one element a line."""
    if isinstance(frame.schema[name], pl.List):
        return pl.col(name).list.eval(pl.element().cast(pl.String)).list.join("\n")
    if isinstance(frame.schema[name], pl.Struct):
        return pl.col(name).struct.json_encode()
    return pl.col(name).cast(pl.String)


def read_eval_sets(config: DecontaminateConfig, resolve: Callable[[str], Path]) -> pl.DataFrame:
    frames = [read_eval_set(spec, resolve(spec.path)) for spec in config.eval_sets]
    schema = {"set": pl.String, "item": pl.String, "text": pl.String}
    return pl.concat([f.cast(schema) for f in frames]) if frames else pl.DataFrame(schema=schema)  # type: ignore[arg-type]


def sentences_of(texts: pl.Series, min_words: int) -> pl.DataFrame:
    """Sentences of each text with at least `min_words` words: (row, text, words)."""
    parts = pl.DataFrame({"text": texts.fill_null("")}).with_row_index("row").select(
        pl.col("row").cast(pl.Int64), pl.col("text").str.extract_all(SENTENCE_PATTERN)).explode("text")
    parts = parts.drop_nulls("text")
    parts = parts.with_columns(words_of(parts["text"]).alias("words"))
    return parts.filter(pl.col("words").list.len() >= min_words)


# ----------------------------------------------------------------------------- the index
@dataclass
class EvalIndex:
    """What every candidate is compared with, built once per run from the eval sets."""

    config: DecontaminateConfig
    items: pl.DataFrame  # set, item, text, words
    ngrams: dict[int, pl.DataFrame]  # n -> (hash, ref): n-grams of items (n = ngram, or a short item's length)
    sentences: pl.DataFrame  # row (item row), text, words
    bands: pl.DataFrame  # band, key, ref (eval sentence row)
    vectors: np.ndarray | None = None  # embeddings of `sentences`
    skipped_short: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, config: DecontaminateConfig, items: pl.DataFrame) -> EvalIndex:
        items = items.with_columns(words_of(items["text"]).alias("words"))
        lengths = items["words"].list.len()
        ngrams: dict[int, pl.DataFrame] = {}
        for n in sorted({min(k, config.ngram) for k in lengths.to_list() if k >= config.min_words}):
            rows = np.flatnonzero(((lengths >= n) if n == config.ngram else (lengths == n)).to_numpy())
            hashes, lens = word_hashes(items["words"].gather(rows))
            grams, doc = ngram_hashes(hashes, lens, n)
            ngrams[n] = pl.DataFrame({"hash": grams, "ref": rows[doc]})
        short = items.filter(lengths < config.min_words).group_by("set").len()
        sentences = sentences_of(items["text"], config.min_words)
        bands = pl.DataFrame(schema={"row": pl.Int64, "band": pl.Int32, "key": pl.UInt64})
        if config.minhash and sentences.height:
            bands = _bands(sentences["text"], config, words=sentences["words"])
        vectors = None
        if config.embedding and sentences.height:
            from curate.services.similarity.embeddings import encode

            vectors = encode(sentences["text"].to_list(), model=config.embedding_model)
        return cls(config, items, ngrams, sentences, bands.rename({"row": "ref"}), vectors,
                   dict(zip(short["set"].to_list(), short["len"].to_list(), strict=True)))

    # ------------------------------------------------------------------ matching
    def matches(self, texts: pl.Series) -> pl.DataFrame:
        """Every (candidate row, eval item row, method, score) match of a batch of texts."""
        found = [self._ngram_matches(texts)]
        if self.config.minhash or self.config.embedding:
            sentences = sentences_of(texts, self.config.min_words)
            if self.config.minhash and self.bands.height and sentences.height:
                found.append(self._minhash_matches(sentences))
            if self.vectors is not None and sentences.height:
                found.append(self._embedding_matches(sentences))
        return pl.concat(found)

    def _ngram_matches(self, texts: pl.Series) -> pl.DataFrame:
        hashes, lengths = word_hashes(words_of(texts))
        found = [_empty_matches()]
        for n, table in self.ngrams.items():
            grams, doc = ngram_hashes(hashes, lengths, n)
            shared = overlap_frame(grams, doc, table["hash"].to_numpy(), table["ref"].to_numpy())
            found.append(shared.select(pl.col("cand").cast(pl.Int64), pl.col("ref").cast(pl.Int64),
                                       pl.lit("ngram").alias("method"),
                                       pl.col("shared").cast(pl.Float64).alias("score"),
                                       pl.lit(n).cast(pl.Int64).alias("n")))
        return pl.concat(found)

    def _minhash_matches(self, sentences: pl.DataFrame) -> pl.DataFrame:
        cand = _bands(sentences["text"], self.config, words=sentences["words"])
        pairs = (cand.rename({"row": "cand_sentence"}).join(self.bands, on=["band", "key"])
                 .select("cand_sentence", "ref").unique())
        if pairs.height == 0:
            return _empty_matches()
        # exact Jaccard over one series: eval sentences first, then the candidate sentences
        words = pl.concat([self.sentences["words"], sentences["words"]])
        index = np.stack([pairs["ref"].to_numpy(), pairs["cand_sentence"].to_numpy() + self.sentences.height], axis=1)
        jaccard = exact_jaccard(words, index.astype(np.int64), self.config.minhash_shingle)
        keep = jaccard >= self.config.minhash_threshold
        return pl.DataFrame({
            "cand": sentences["row"].gather(pairs["cand_sentence"].filter(keep)),
            "ref": self.sentences["row"].gather(pairs["ref"].filter(keep)),
            "method": "minhash", "score": jaccard[keep], "n": self.config.minhash_shingle,
        }).cast(_MATCH_SCHEMA)  # type: ignore[arg-type]

    def _embedding_matches(self, sentences: pl.DataFrame) -> pl.DataFrame:
        from curate.services.similarity.embeddings import encode

        assert self.vectors is not None
        vectors = encode(sentences["text"].to_list(), model=self.config.embedding_model)
        found = [_empty_matches()]
        for lo in range(0, len(vectors), 4096):  # blocked: a (4096 x eval sentences) matrix at a time
            sims = vectors[lo:lo + 4096] @ self.vectors.T
            best = sims.argmax(axis=1)
            score = sims[np.arange(len(best)), best]
            hit = np.flatnonzero(score >= self.config.embedding_threshold)
            if hit.size:
                found.append(pl.DataFrame({
                    "cand": sentences["row"].gather(hit + lo), "ref": self.sentences["row"].gather(best[hit]),
                    "method": "embedding", "score": score[hit].astype(np.float64), "n": 0,
                }).cast(_MATCH_SCHEMA))  # type: ignore[arg-type]
        return pl.concat(found)


_MATCH_SCHEMA = {"cand": pl.Int64, "ref": pl.Int64, "method": pl.String, "score": pl.Float64, "n": pl.Int64}


def _empty_matches() -> pl.DataFrame:
    return pl.DataFrame(schema=_MATCH_SCHEMA)


def _bands(texts: pl.Series, config: DecontaminateConfig, *, words: pl.Series) -> pl.DataFrame:
    sig = minhash_signatures(texts, words=words, num_perm=config.num_perm, shingle_size=config.minhash_shingle)
    bands, rows = choose_banding(config.num_perm, config.minhash_threshold)
    return band_frame(band_keys(sig, bands, rows))


# ----------------------------------------------------------------------------- the step
@dataclass
class Decontamination:
    """Rows kept, rows rejected (with `detail`), and the per-set report."""

    kept: pl.DataFrame
    rejected: pl.DataFrame  # the rejected rows with `eval_set`, `eval_item`, `method`, `detail`
    report: dict[str, Any]


def decontaminate(frame: pl.DataFrame, *, text: str, index: EvalIndex) -> Decontamination:
    """Check every row's `text` against the eval index, batch by batch."""
    found = []
    for lo in range(0, frame.height, index.config.batch_rows):
        batch = frame[text].slice(lo, index.config.batch_rows)
        found.append(index.matches(batch).with_columns(pl.col("cand") + lo))
    matches = pl.concat(found) if found else _empty_matches()
    items = index.items.select("set", "item").with_row_index("ref").with_columns(pl.col("ref").cast(pl.Int64))
    named = matches.join(items, on="ref").with_columns(pl.col("method").replace_strict(METHOD_RANK).alias("__rank"))
    best = (named.sort(["cand", "__rank", "score", "ref"], descending=[False, False, True, False])
            .group_by("cand", maintain_order=True).first())
    detail = pl.format("{} item {} ({}{})", "set", "item", "method",
                       pl.when(pl.col("method") == "ngram")
                       .then(pl.format(": {} shared {}-gram(s)", pl.col("score").cast(pl.Int64), "n"))
                       .when(pl.col("method") == "minhash").then(pl.format(": Jaccard {}", pl.col("score").round(3)))
                       .otherwise(pl.format(": cosine {}", pl.col("score").round(3))))
    best = best.select(pl.col("cand").alias("__row"), pl.col("set").alias("eval_set"),
                       pl.col("item").alias("eval_item"), "method", detail.alias("detail"))
    rows = frame.with_row_index("__row").with_columns(pl.col("__row").cast(pl.Int64))
    rejected = rows.join(best, on="__row", how="inner").drop("__row")
    kept = rows.join(best, on="__row", how="anti").drop("__row")
    return Decontamination(kept, rejected, _report(index, named))


def _report(index: EvalIndex, named: pl.DataFrame) -> dict[str, Any]:
    """Per eval set: items, items too short to check, examples matched (by any method and by each)."""
    sets: dict[str, Any] = {}
    item_counts = index.items.group_by("set").len()
    for name, items in zip(item_counts["set"].to_list(), item_counts["len"].to_list(), strict=True):
        mine = named.filter(pl.col("set") == name)
        sets[name] = {
            "items": items,
            "items_too_short": index.skipped_short.get(name, 0),
            "examples_matched": mine["cand"].n_unique(),
            "items_matched": mine["ref"].n_unique(),
            **{f"by_{m}": mine.filter(pl.col("method") == m)["cand"].n_unique() for m in METHOD_RANK},
        }
    cfg = index.config
    methods = [f"{cfg.ngram}-gram overlap"]
    if cfg.minhash:
        methods.append(f"MinHash sentence near-match (Jaccard >= {cfg.minhash_threshold:g})")
    if cfg.embedding:
        methods.append(f"embedding cosine >= {cfg.embedding_threshold:g}")
    return {"methods": methods, "sets": dict(sorted(sets.items()))}
