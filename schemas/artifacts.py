"""Every artifact of a run, declared once: which stage writes it, its name, its record type.

A stage declares its outputs with these handles and a consumer names the producer's handle
(`REDACTED_CHUNKS`), never a string such as "redact/chunks", so a renamed artifact or a
changed record type is one edit here and the runner's graph check (`curate.run.graph`)
catches a consumer that no longer matches. The handles live in `schemas/` because stages
never import one another: producer and consumer both import this module.

Side files are what a stage keeps beside its Parquet outputs (the redaction mapping, the
review decisions, the teacher's request log); declaring them lets the manifest list and hash
them after the stage that writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.records import Chunk, Document, ErrorRecord, Example, Rejection, Sample, SourceFile

SPLITS = ("train", "validation", "test")  # the dataset's splits, in this order everywhere


@dataclass(frozen=True)
class Artifact:
    """`<run_dir>/<stage>/<name>.parquet`, rows of `record` (None: a report frame), sorted by `key`."""

    stage: str
    name: str
    record: type[BaseModel] | None = None
    key: str | None = None

    @property
    def path(self) -> str:
        return f"{self.stage}/{self.name}"

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class SideFile:
    """A file or folder a stage keeps beside its outputs, relative to the run directory."""

    path: str
    what: str


# ingest
FILES = Artifact("discover", "files", SourceFile, "path")
DISCOVER_ERRORS = Artifact("discover", "errors", ErrorRecord, "source")
DOCUMENTS = Artifact("ingest", "documents", Document, "doc_id")
INGEST_ERRORS = Artifact("ingest", "errors", ErrorRecord, "source")
CHUNKS = Artifact("chunk", "chunks", Chunk, "chunk_id")
# redact
REDACTED_CHUNKS = Artifact("redact", "chunks", Chunk, "chunk_id")  # plus a `redactions` column
FINDINGS = Artifact("redact", "findings", None, "chunk_id")
RECOGNIZERS = Artifact("redact", "recognizers", None, "name")
# generate
SAMPLES = Artifact("generate", "samples", Sample, "sample_id")
GENERATE_ERRORS = Artifact("generate", "errors", ErrorRecord, "source")
PENDING = Artifact("generate", "pending", None, "request_hash")
# filter, refine, judge, dedup
FILTERED = Artifact("filter", "examples", Example, "example_id")
FILTER_REJECTED = Artifact("filter", "rejected", Rejection, "item_id")
FILTER_FUNNEL = Artifact("filter", "funnel")
REFINED = Artifact("refine", "examples", Example, "example_id")
REFINE_REJECTED = Artifact("refine", "rejected", Rejection, "item_id")
REFINED_SAMPLES = Artifact("refine", "samples", Sample, "sample_id")
REFINE_FUNNEL = Artifact("refine", "funnel")
JUDGED = Artifact("judge", "examples", Example, "example_id")
JUDGE_REJECTED = Artifact("judge", "rejected", Rejection, "item_id")
JUDGMENTS = Artifact("judge", "judgments", None, "example_id")
DEDUPED = Artifact("dedup", "examples", Example, "example_id")
DEDUP_REJECTED = Artifact("dedup", "rejected", Rejection, "item_id")
DEDUP_FUNNEL = Artifact("dedup", "funnel")
DEDUP_REASONS = Artifact("dedup", "reasons")
DEDUP_SUMMARY = Artifact("dedup", "summary")
DEDUP_SIMILARITY = Artifact("dedup", "similarity")
# review
REVIEWED = Artifact("review", "examples", Example, "example_id")
REVIEW_REJECTED = Artifact("review", "rejected", Rejection, "item_id")
REVIEW_SUMMARY = Artifact("review", "summary")
# dataset
VALIDATED = Artifact("validate", "examples", Example, "example_id")
VALIDATION_RESULTS = Artifact("validate", "results")
SPLIT_EXAMPLES = Artifact("split", "examples", Example, "example_id")
LEAKS = Artifact("split", "leaks", None, "example_id")
SPLIT_REPORT = Artifact("split", "report")
EXPORT_MANIFEST = Artifact("export", "manifest")
EXPORT_DIVERSITY = Artifact("export", "diversity")

# side files
REDACTION_MAPPING = SideFile("redact.state/mapping", "placeholder -> original value, per document (never sent)")
REQUEST_LOG = SideFile("generate.state/requests.jsonl", "every teacher request: provider, payload, tokens, cost")
REVIEW_DECISIONS = SideFile("review.state/decisions.parquet", "one resolved reviewer decision per example")
