"""LLM-as-judge scores for free-form answers, through the teacher backend.

The rubric and the request are the teacher service's (`curate.services.teacher.judge`, the
filter stage's judge uses the same), so a model's answers are scored exactly as the training
examples were; the cost is counted like any
teacher call and the answers are cached in the evaluation folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from assay.config_files import error_lines, read_mapping
from assay.errors import ConfigError
from curate.services.teacher.config import TeacherConfig
from curate.services.teacher.judge import JudgeConfig, judge_request
from schemas.ids import content_id


@dataclass(frozen=True)
class JudgeSettings:
    """The two sections of a pipeline config the judge needs; relative paths resolve against its folder."""

    teacher: TeacherConfig
    judge: JudgeConfig
    base_dir: Path

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()


def load_judge_settings(pipeline_config: str | Path) -> JudgeSettings:
    """`teacher` and `filter.judge` of a pipeline YAML, validated by the teacher service's models
    (train reads no other part of curate's config)."""
    class _Sections(BaseModel):
        model_config = ConfigDict(extra="ignore")
        teacher: TeacherConfig = TeacherConfig()
        judge: JudgeConfig = JudgeConfig()

    path = Path(pipeline_config)
    data = read_mapping(path)
    filter_section = data.get("filter") or {}
    try:
        sections = _Sections.model_validate({
            "teacher": data.get("teacher") or {},
            "judge": filter_section.get("judge") or {} if isinstance(filter_section, dict) else filter_section,
        })
    except ValidationError as error:
        lines = error_lines(error, _Sections)
        raise ConfigError("\n".join([f"{path}: invalid pipeline config (judge)", *lines])) from None
    return JudgeSettings(sections.teacher, sections.judge, path.resolve().parent)


def judge_answers(
    pipeline_config: str | Path,
    prompts: Sequence[list[dict[str, str]]],
    answers: Sequence[str],
    state_dir: Path,
    system_name: str,
) -> dict[str, Any]:
    """Mean rubric score (scaled to [0, 1]) of each answer to its prompt, and what it cost."""
    from curate.services.teacher.factory import open_teacher  # the SDKs: only when judging

    config = load_judge_settings(pipeline_config)
    judge_config = config.judge
    requests = []
    for prompt, answer in zip(prompts, answers, strict=True):
        # the question is the last user turn (few-shot turns before it are not judged)
        passage = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
        example = {
            "messages": [{"role": "user", "content": passage}, {"role": "assistant", "content": answer}],
            "chunk_id": content_id("eval", system_name, passage),
        }
        requests.append(judge_request(judge_config, example, passage))
    state_dir.mkdir(parents=True, exist_ok=True)
    with open_teacher(config, str(state_dir), purpose="eval-judge") as teacher:
        replies = teacher.ask_many(requests)
    criteria = list(judge_config.rubric)
    scores = [
        sum(getattr(reply.output, name) for name in criteria) / (5 * len(criteria))
        for reply in replies
        if reply.output is not None
    ]
    return {
        "mean": sum(scores) / len(scores) if scores else None,
        "scored": len(scores),
        "failed": len(replies) - len(scores),
        "cost_usd": sum(reply.usage.cost_usd for reply in replies),
        "criteria": criteria,
    }
