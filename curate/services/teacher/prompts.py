"""Teacher prompts built from the task config.

A request has three parts, in this order: the system prompt (task guidance: label set with
descriptions, field list, few-shot examples), the chunk (a `<passage>` block), then the
instruction. The first two are the same for the n samples of a chunk and for its
refinement calls, so they form the prompt-cache prefix; the instruction comes last.
"""

from __future__ import annotations

import json

from schemas.tasks import TaskConfig, TaskType


def passage_block(chunk_text: str) -> str:
    """The chunk as the teacher sees it."""
    return f"<passage>\n{chunk_text}\n</passage>"


def system_prompt(task: TaskConfig) -> str:
    """The task's system prompt followed by the guidance the teacher needs to fill the schema."""
    parts = [task.system_prompt.strip()]
    if task.type is TaskType.CLASSIFICATION:
        lines = ["Classify the passage into exactly one of these labels:"]
        for label in task.labels:
            description = task.label_descriptions.get(label)
            lines.append(f"- {label}: {description}" if description else f"- {label}")
        lines.append("Support the label with a quote copied verbatim from the passage.")
        parts.append("\n".join(lines))
    elif task.type is TaskType.EXTRACTION:
        lines = ["Extract these fields from the passage:"]
        for spec in task.fields:
            required = "required" if spec.required else "optional"
            lines.append(f"- {spec.name} ({spec.kind}, {required}): {spec.description}")
        lines.append(
            "Copy each value as written in the passage, with the verbatim quote that contains it; "
            "use null when the passage does not state it."
        )
        parts.append("\n".join(lines))
    elif task.type is TaskType.QA:
        parts.append(
            "Write one question a practitioner would ask about the passage, its answer from the "
            "passage alone, and a quote copied verbatim from the passage that supports it."
        )
    else:
        parts.append(
            "Write one task a practitioner would ask for and a complete response grounded in the passage."
        )
    if task.few_shot:
        shots = ["Examples:"]
        for number, shot in enumerate(task.few_shot, start=1):
            shots.append(
                f"Example {number}:\n{passage_block(shot.input)}\n"
                f"Answer: {json.dumps(shot.output, ensure_ascii=False, sort_keys=True)}"
            )
        parts.append("\n\n".join(shots))
    parts.append("Answer only from the passage. Never use knowledge from outside it.")
    return "\n\n".join(part for part in parts if part)


def instruction(task: TaskConfig) -> str:
    """The user instruction that follows the passage (the trained model's instruction too)."""
    return task.instruction.strip()


def refine_instruction(task: TaskConfig, rejected_output_json: str, reason: str) -> str:
    """The instruction of a refinement request: the rejected answer and why it was rejected."""
    return (
        f"{instruction(task)}\n\n"
        f"A previous answer to this request was rejected.\n"
        f"Rejected answer: {rejected_output_json}\n"
        f"Reason: {reason}\n"
        "Write a corrected answer that fixes this problem."
    )
