"""Configuration of validation, splitting and export."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curate.run.config import RunSettings
from curate.services.pii.config import RedactConfig
from schemas.tasks import TaskConfig

CHECK_NAMES = (
    "row_count",
    "required_fields",
    "task_type",
    "label_in_taxonomy",
    "review_status",
    "unique_example_id",
    "unique_content_hash",
    "prompt_length",
    "response_length",
    "grounding_score",
    "message_roles",
    "messages_non_empty",
    "output_schema",
    "no_redacted_values",
)

# Artifact folders of the run directory (`<run_dir>/<stage>/`), replaced whole by the runner.
STAGE_FOLDERS = frozenset({
    "discover", "ingest", "chunk", "redact", "generate", "filter", "refine", "judge", "dedup",
    "review", "validate", "split", "export", "train", "evaluate",
})

EXPORT_FORMATS = ("openai", "sharegpt", "alpaca", "parquet", "hf")


class ValidateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_response_chars: int = Field(1, ge=0, description="Shortest allowed final assistant message")
    max_response_chars: int = Field(8000, gt=0, description="Longest allowed final assistant message")
    min_prompt_chars: int = Field(1, ge=0, description="Shortest allowed user text (all user turns)")
    max_prompt_chars: int = Field(32000, gt=0, description="Longest allowed user text (all user turns)")
    min_grounding_score: float = Field(
        0.5, ge=0, le=1, description="Every example's grounding_score must be at least this"
    )
    drop_rejected: bool = Field(
        True, description="Leave out examples a reviewer rejected (review_status 'rejected') before validating"
    )
    warn_only: tuple[str, ...] = Field(
        (), description=f"Checks that are reported but do not stop the run; any of {', '.join(CHECK_NAMES)}"
    )
    data_docs: bool = Field(True, description="Write the Data Docs HTML to <run_dir>/validate.state/data_docs")
    site_name: str = Field("assay_validate", description="Data Docs site name (not 'local_site')")

    @field_validator("warn_only")
    @classmethod
    def _known_checks(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(names) - set(CHECK_NAMES))
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {list(CHECK_NAMES)}")
        return names

    @field_validator("site_name")
    @classmethod
    def _not_local_site(cls, name: str) -> str:
        if name == "local_site":
            raise ValueError("'local_site' is taken by the ephemeral context; choose another name")
        return name

    @model_validator(mode="after")
    def _bounds(self) -> ValidateConfig:
        if self.min_response_chars > self.max_response_chars:
            raise ValueError("min_response_chars must not exceed max_response_chars")
        if self.min_prompt_chars > self.max_prompt_chars:
            raise ValueError("min_prompt_chars must not exceed max_prompt_chars")
        return self


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    train: float = Field(0.8, gt=0, lt=1, description="Share of examples in the train split")
    validation: float = Field(0.1, ge=0, lt=1, description="Share of examples in the validation split")
    test: float = Field(0.1, ge=0, lt=1, description="Share of examples in the test split")
    seed: int = Field(13, description="Orders groups of equal size; the split is a function of seed and content")
    group_by: str = Field("doc_id", description="Column whose values never span two splits")
    stratify_by: Literal["auto", "label", "task_type"] = Field(
        "auto", description="auto: label for classification tasks, task_type otherwise"
    )
    near_dup_threshold: float = Field(
        0.8, gt=0, le=1, description="MinHash Jaccard at or above which two examples in different splits leak"
    )
    num_perm: int = Field(128, ge=16, description="MinHash permutations of the leakage check")
    shingle_words: int = Field(5, ge=1, description="Word n-gram size of the leakage check's shingles")
    ngram_leak_words: int = Field(13, ge=3, description="Words per n-gram of the containment check of "
                                  "validation/test examples against train")
    ngram_leak_share: float = Field(0.5, gt=0, le=1, description="Share of a validation/test example's "
                                    "n-grams found in train at which it leaks")
    leak_policy: Literal["drop", "report"] = Field(
        "drop", description="drop: remove the non-train member of each leaking pair; report: keep both"
    )
    min_eval_rows: int = Field(
        20, ge=0, description="Warn when validation or test holds fewer rows than this: too few to measure "
        "a score on (at 20 rows one example is 5 points of accuracy)"
    )

    @model_validator(mode="after")
    def _ratios(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1 (got {total:g})")
        return self

    def ratios(self) -> dict[str, float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


class DiversityConfig(BaseModel):
    """The dataset card's diversity section (curate/dataset/diversity.py) and the thresholds
    past which its figures become warnings in the card and the run report."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(True, description="Measure diversity and coverage for the card")
    embeddings: bool = Field(
        True, description="Embedding measures (mean pairwise distance, clusters); needs the embedding model"
    )
    embedding_model: str | None = Field(
        None, description="Embedding model (folder or Hugging Face name); default: the packaged all-MiniLM-L6-v2"
    )
    cluster_similarity: float = Field(
        0.8, gt=0, le=1, description="Instructions at least this alike (embedding cosine) join one cluster"
    )
    max_embedded: int = Field(
        20000, ge=2, description="Embed at most this many instructions (a fixed sample by example id beyond it)"
    )
    min_distinct_2: float = Field(0.3, ge=0, le=1, description="Warn below this distinct-2 of the instructions")
    min_mean_distance: float = Field(
        0.3, ge=0, le=2, description="Warn below this mean pairwise embedding distance of the instructions"
    )
    max_largest_cluster_share: float = Field(
        0.2, gt=0, le=1, description="Warn when the largest cluster holds more than this share of the instructions"
    )
    min_document_coverage: float = Field(
        0.5, ge=0, le=1, description="Warn when fewer source documents than this share gave an example"
    )
    min_chunk_coverage: float = Field(
        0.25, ge=0, le=1, description="Warn when fewer chunks than this share gave an example"
    )
    max_class_shift: float = Field(
        2.0, gt=1, description="Warn when a class's share of the dataset is more than this many times, or less "
        "than 1/this, its share of the teacher's answers"
    )
    min_class_answers: int = Field(
        5, ge=1, description="Classes with fewer teacher answers than this are not judged for balance (too few)"
    )


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dir: str = Field(
        "dataset",
        description="Export folder, relative to the run directory (not a stage's artifact folder "
        "such as 'export': the runner replaces those whole)",
    )
    formats: tuple[str, ...] = Field(EXPORT_FORMATS, description=f"Any of {', '.join(EXPORT_FORMATS)}")
    openai_metadata: bool = Field(
        True,
        description="Add example_id, label, task_type... beside `messages` in the chat JSONL "
        "(turn off for an upload that accepts `messages` only)",
    )
    card: bool = Field(True, description="Write the dataset card README.md with plots")
    diversity: DiversityConfig = Field(
        default_factory=DiversityConfig, description="The card's diversity section and its warning thresholds"
    )

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(formats) - set(EXPORT_FORMATS))
        if unknown:
            raise ValueError(f"unknown export formats {unknown}; known: {list(EXPORT_FORMATS)}")
        return formats

    @field_validator("dir")
    @classmethod
    def _relative(cls, directory: str) -> str:
        if directory.startswith("/") or ".." in directory.split("/") or directory in {"", "."}:
            raise ValueError("export.dir must be a folder name inside the run directory")
        first = directory.split("/")[0]
        if first in STAGE_FOLDERS or first.endswith(".state"):
            raise ValueError(f"export.dir {directory!r} would be inside a stage's folder; use e.g. 'dataset'")
        return directory


class DatasetSettings(RunSettings, Protocol):
    """What the dataset stages read of the pipeline config."""

    @property
    def validate_(self) -> ValidateConfig: ...

    @property
    def split(self) -> SplitConfig: ...

    @property
    def export(self) -> ExportConfig: ...

    @property
    def redact(self) -> RedactConfig: ...

    @property
    def task(self) -> TaskConfig: ...

    @property
    def base_dir(self) -> str: ...
