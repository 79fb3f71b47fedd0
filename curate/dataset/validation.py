"""The great-expectations suite of the final dataset, derived from the task config.

The suite runs on a pandas *view* of the Example frame: the scalar columns plus derived
columns (role sequence, empty turns, prompt/response lengths, chat content hash, whether
`output_json` parses as the task's output model), so that every check is a stock
expectation and shows up, named, in the Data Docs. Everything happens in an ephemeral
context: no `gx/` folder in the project, nothing global.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from pydantic import ValidationError

from assay.errors import AssayError
from curate.dataset import chat
from curate.dataset.config import ValidateConfig
from curate.services.pii.mapping import load_mappings
from schemas.artifacts import VALIDATION_CHECKS
from schemas.tasks import TaskConfig, TaskType, output_model

if TYPE_CHECKING:
    import pandas as pd

ALLOWED_REVIEW_STATUS = ("auto", "pending", "accepted", "corrected")
REQUIRED_FIELDS = ("example_id", "chunk_id", "doc_id", "task_type", "output_json")


class ValidationFailed(AssayError, RuntimeError):
    """A critical expectation failed: the run stops here, naming what failed."""

    def __init__(self, failures: list[dict[str, Any]], docs: str | None):
        self.failures = failures
        self.docs = docs
        lines = [f"dataset validation failed: {len(failures)} critical expectation(s)"]
        for item in failures:
            lines.append(
                f"  - {item['check']}: {item['expectation']}"
                f"{'(' + item['column'] + ')' if item['column'] else ''}"
                f" — {item['unexpected_count']} unexpected, e.g. {item['unexpected_examples']}"
            )
        if docs:
            lines.append(f"  Data Docs: {docs}")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across process pools and Ray workers
        return (type(self), (self.failures, self.docs))

    @property
    def checks(self) -> list[str]:
        return [item["check"] for item in self.failures]


def _output_valid(task: TaskConfig, output_json: str | None) -> bool:
    if output_json is None:
        return False
    try:
        output_model(task).model_validate_json(output_json)
    except (ValidationError, ValueError):
        return False
    return True


def redacted_originals(run_dir: str, doc_ids: list[str] | None = None) -> dict[str, list[str]]:
    """doc_id -> original values the redact stage replaced (its local mapping; all docs when None)."""
    mappings = load_mappings(run_dir, doc_ids)
    return {
        doc: sorted({str(e["value"]) for e in entries if len(str(e.get("value") or "").strip()) >= 3})
        for doc, entries in mappings.items()
    }


def count_originals(messages: chat.Messages, originals: list[str]) -> int:
    text = "\n".join(str(m.get("content") or "") for m in messages)
    return sum(1 for value in originals if value in text)


def validation_view(
    frame: pl.DataFrame, task: TaskConfig, originals: dict[str, list[str]] | None = None
) -> pd.DataFrame:
    """The pandas frame the suite runs on: scalar columns plus derived ones.

    `originals` (doc_id -> redacted original values) feeds `redacted_values`: how many
    values the redact stage removed from the example's document reappear in its messages
    (e.g. through a reviewer's correction).
    """
    originals = originals or {}
    messages = frame.get_column("messages").to_list() if frame.height else []
    doc_ids = frame.get_column("doc_id").to_list() if frame.height else []
    outputs = frame.get_column("output_json").to_list() if frame.height else []
    derived = pl.DataFrame(
        {
            "role_sequence": [chat.roles(m or []) for m in messages],
            "empty_turns": [chat.empty_turns(m or []) for m in messages],
            "prompt_chars": [len(chat.user_text(m or [])) for m in messages],
            "response_chars": [len(chat.response_text(m or [])) for m in messages],
            "content_hash": [chat.chat_hash(m or []) for m in messages],
            "output_valid": [_output_valid(task, o) for o in outputs],
            "redacted_values": [count_originals(m or [], originals.get(d or "", [])) for m, d in zip(messages, doc_ids, strict=True)],
        },
        schema={
            "role_sequence": pl.String(), "empty_turns": pl.Int64(), "prompt_chars": pl.Int64(),
            "response_chars": pl.Int64(), "content_hash": pl.String(), "output_valid": pl.Boolean(),
            "redacted_values": pl.Int64(),
        },
    )
    scalar = [c for c in frame.columns if not isinstance(frame.schema[c], pl.List | pl.Struct)]
    return pl.concat([frame.select(scalar), derived], how="horizontal").to_pandas()


@dataclass(frozen=True)
class Check:
    name: str
    expectation: Any  # a great_expectations Expectation


def build_checks(task: TaskConfig, config: ValidateConfig) -> list[Check]:
    """The suite, derived from the task and the validate config; each check carries its name."""
    import great_expectations as gx

    ex = gx.expectations
    checks = [Check("row_count", ex.ExpectTableRowCountToBeBetween(min_value=1))]
    required = list(REQUIRED_FIELDS) + (["label"] if task.type is TaskType.CLASSIFICATION else [])
    checks += [Check("required_fields", ex.ExpectColumnValuesToNotBeNull(column=c)) for c in required]
    checks.append(Check("task_type", ex.ExpectColumnValuesToBeInSet(column="task_type", value_set=[task.type.value])))
    if task.type is TaskType.CLASSIFICATION:
        checks.append(Check("label_in_taxonomy", ex.ExpectColumnValuesToBeInSet(column="label", value_set=list(task.labels))))
    checks += [
        Check("review_status", ex.ExpectColumnValuesToBeInSet(column="review_status", value_set=list(ALLOWED_REVIEW_STATUS))),
        Check("unique_example_id", ex.ExpectColumnValuesToBeUnique(column="example_id")),
        Check("unique_content_hash", ex.ExpectColumnValuesToBeUnique(column="content_hash")),
        Check("prompt_length", ex.ExpectColumnValuesToBeBetween(
            column="prompt_chars", min_value=config.min_prompt_chars, max_value=config.max_prompt_chars)),
        Check("response_length", ex.ExpectColumnValuesToBeBetween(
            column="response_chars", min_value=config.min_response_chars, max_value=config.max_response_chars)),
        Check("grounding_score", ex.ExpectColumnValuesToBeBetween(
            column="grounding_score", min_value=config.min_grounding_score, max_value=1.0)),
        Check("message_roles", ex.ExpectColumnValuesToMatchRegex(column="role_sequence", regex=chat.ROLE_PATTERN)),
        Check("messages_non_empty", ex.ExpectColumnValuesToBeBetween(column="empty_turns", min_value=0, max_value=0)),
        Check("output_schema", ex.ExpectColumnValuesToBeInSet(column="output_valid", value_set=[True])),
        Check("no_redacted_values", ex.ExpectColumnValuesToBeBetween(column="redacted_values", min_value=0, max_value=0)),
    ]
    for check in checks:
        severity = "warning" if check.name in config.warn_only else "critical"
        check.expectation.meta = {"check": check.name, "severity": severity}
    return checks


def run_suite(
    view: pd.DataFrame,
    checks: list[Check],
    *,
    docs_dir: Path | None,
    site_name: str,
    suite_name: str,
) -> tuple[pl.DataFrame, str | None]:
    """Run the checks in an ephemeral context; return one result row per expectation and the docs index."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions: list[Any] = []
    if docs_dir is not None:
        shutil.rmtree(docs_dir, ignore_errors=True)
        docs_dir.mkdir(parents=True)
        context.add_data_docs_site(
            site_name=site_name,
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            },
        )
        actions.append(UpdateDataDocsAction(name="data_docs", site_names=[site_name]))
    asset = context.data_sources.add_pandas("assay").add_dataframe_asset("examples")
    batch = asset.add_batch_definition_whole_dataframe("all_examples")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for check in checks:
        suite.add_expectation(check.expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}-validation", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite_name}-checkpoint",
            validation_definitions=[definition],
            actions=actions,
            result_format={
                "result_format": "SUMMARY",
                "unexpected_index_column_names": ["example_id"],
                "partial_unexpected_count": 5,
            },
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": view})
    rows = []
    for run_result in outcome.run_results.values():
        for result in run_result.results:
            config = result.expectation_config
            assert config is not None
            meta = config.meta or {}
            details = result.result or {}
            examples = details.get("partial_unexpected_index_list") or details.get("partial_unexpected_list") or (
                [f"observed {details['observed_value']}"] if "observed_value" in details else []
            )
            rows.append(
                {
                    "check": meta.get("check", config.type),
                    "expectation": config.type,
                    "column": config.kwargs.get("column") or "",
                    "severity": meta.get("severity", "critical"),
                    "success": bool(result.success),
                    "element_count": int(details.get("element_count") or details.get("observed_value") or 0),
                    "unexpected_count": int(details.get("unexpected_count") or (0 if result.success else 1)),
                    "unexpected_examples": json.dumps(examples[:5], default=str, ensure_ascii=False),
                }
            )
    index = None
    if docs_dir is not None:
        found = sorted(docs_dir.rglob("index.html"), key=lambda p: len(p.parts))
        index = str(found[0]) if found else None
    return pl.DataFrame(rows, schema=VALIDATION_CHECKS, orient="row"), index


def critical_failures(results: pl.DataFrame) -> list[dict[str, Any]]:
    failed = results.filter(~pl.col("success") & (pl.col("severity") == "critical"))
    return failed.to_dicts()
