"""Task definitions and the pydantic models a teacher must fill.

The task (its type, instruction, label set or field list, few-shot examples) comes from
the pipeline config; `output_model(task)` turns it into the schema that instructor asks the
teacher to fill, that the schema filter validates against, and that evaluation parses.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator


class TaskType(StrEnum):
    CLASSIFICATION = "classification"
    EXTRACTION = "extraction"
    QA = "qa"
    FREEFORM = "freeform"


class FieldSpec(BaseModel):
    """One field an extraction task must fill; it becomes a field of a generated model."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    description: str
    kind: Literal["text", "number", "date", "identifier"] = Field(
        "text", description="number/date/identifier values must match the source exactly"
    )
    required: bool = True


class FewShot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input: str = Field(description="A source passage")
    output: dict[str, Any] = Field(description="The task output for it, as the model's JSON")


class TaskConfig(BaseModel):
    """What examples to generate from each chunk."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: TaskType = TaskType.CLASSIFICATION
    name: str = Field("task", description="Short name used in reports and project titles")
    system_prompt: str = Field(
        "You are a precise domain expert. Answer only from the given passage.",
        description="System message of the training chats and of teacher requests",
    )
    instruction: str = Field(description="The user instruction the trained model will follow")
    labels: tuple[str, ...] = Field((), description="Taxonomy, for classification")
    label_descriptions: dict[str, str] = Field(default_factory=dict)
    fields: tuple[FieldSpec, ...] = Field((), description="Fields, for extraction")
    few_shot: tuple[FewShot, ...] = ()

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        return labels

    def model_post_init(self, _context: Any) -> None:
        if self.type is TaskType.CLASSIFICATION and len(self.labels) < 2:
            raise ValueError("a classification task needs at least two labels")
        if self.type is TaskType.EXTRACTION and not self.fields:
            raise ValueError("an extraction task needs at least one field")


class ClassificationOutput(BaseModel):
    """Base for classification outputs; `label` is narrowed to the taxonomy per task."""

    label: str = Field(description="One label of the taxonomy")
    quote: str = Field(description="A verbatim span of the passage that supports the label")


class ExtractedValue(BaseModel):
    value: str | None = Field(description="The value as written in the passage, or null")
    quote: str | None = Field(description="The verbatim span of the passage containing it")


class QAOutput(BaseModel):
    question: str = Field(description="A question a practitioner would ask about the passage")
    answer: str = Field(description="The answer, supported by the passage alone")
    quote: str = Field(description="A verbatim span of the passage that supports the answer")


class FreeformOutput(BaseModel):
    instruction: str = Field(description="A task a practitioner would ask for")
    response: str = Field(description="A complete response grounded in the passage")


def training_prompt(task: TaskConfig, passage: str) -> list[dict[str, str]]:
    """The system and user turns of a training chat for one passage: the one rule that the
    pipeline renders examples with and that evaluation prompts held-out records with."""
    return [
        {"role": "system", "content": task.system_prompt},
        {"role": "user", "content": f"{task.instruction}\n\n{passage}"},
    ]


def output_model(task: TaskConfig) -> type[BaseModel]:
    """The pydantic model for this task's teacher output (cached per task)."""
    return _output_model(task.model_dump_json())


@lru_cache(maxsize=64)
def _output_model(task_json: str) -> type[BaseModel]:
    task = TaskConfig.model_validate_json(task_json)
    if task.type is TaskType.CLASSIFICATION:
        label_type: Any = Literal[task.labels]
        return create_model(
            "ClassificationResult",
            __base__=ClassificationOutput,
            label=(label_type, Field(description="One label of: " + ", ".join(task.labels))),
        )
    if task.type is TaskType.EXTRACTION:
        fields: dict[str, Any] = {
            spec.name: (
                ExtractedValue if spec.required else ExtractedValue | None,
                Field(description=spec.description) if spec.required
                else Field(None, description=spec.description),
            )
            for spec in task.fields
        }
        return create_model("ExtractionResult", **fields)
    if task.type is TaskType.QA:
        return QAOutput
    return FreeformOutput
