"""Rejection-feedback refinement: repairable rejections go back to the teacher.

For each chunk that produced no example but has a repairable rejection, the teacher gets
the chunk, the rejected answer and the reason, for up to `refine.rounds` rounds. Each
repaired answer becomes a `Sample` (round r, parent_id = the rejected item) and passes
through every filter again (`run_filters`), so a repair is held to the same standard.

The same standard includes the vote (`refine.revote`, on by default): a chunk rejected because
its samples did not agree is repaired with as many answers as generate asked for, and they
must agree again; a repair of a later rejection (grounding, audit, judge) is one answer that
must keep the label the first vote agreed on. Without this, one repaired answer passed the
vote alone and refine turned disagreement into a label nobody confirmed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl

from curate.filter.base import Funnel, records_frame
from curate.filter.checks import FilterEnv, run_filters
from curate.services.teacher.prompts import refine_instruction, system_prompt
from curate.services.teacher.request import TeacherRequest
from schemas.ids import content_id
from schemas.records import Example, Rejection, Sample, SampleStatus
from schemas.tasks import TaskType, output_model

# Later filters first: the furthest a rejected item got is the most useful thing to repair.
FILTER_ORDER = {"schema": 0, "consistency": 1, "grounding": 2, "audit": 3, "judge": 4}


class TeacherLike(Protocol):
    """What refinement (and the judge) need of `curate.services.teacher.client.TeacherClient`."""

    def ask_many(self, requests: Sequence[Any]) -> list[Any]: ...


@dataclass
class RefineOutcome:
    examples: list[Example] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    funnels: list[Funnel] = field(default_factory=list)
    attempted_chunks: set[str] = field(default_factory=set)
    recovered_chunks: set[str] = field(default_factory=set)
    recovered_by: dict[str, str] = field(default_factory=dict)  # rejected item -> example id
    stopped: str | None = None
    skipped: int = 0  # requests the teacher could not answer (cassette miss)


def repair_targets(rejected: pl.DataFrame, done_chunks: set[str]) -> list[dict[str, Any]]:
    """One rejection per chunk to repair: repairable, chunk without an example yet."""
    if rejected.height == 0:
        return []
    candidates = rejected.filter(pl.col("repairable") & ~pl.col("chunk_id").is_in(sorted(done_chunks)))
    best: dict[str, dict[str, Any]] = {}
    for row in candidates.sort("chunk_id", "item_id").iter_rows(named=True):
        current = best.get(row["chunk_id"])
        if current is None or FILTER_ORDER.get(row["filter"], 0) > FILTER_ORDER.get(current["filter"], 0):
            best[row["chunk_id"]] = row
    return [best[chunk] for chunk in sorted(best)]


def _sample_from_answer(answer: Any, target: dict[str, Any], task_name: str, task_type: str,
                        doc_id: str, round_: int, sample_index: int = 0) -> Sample:
    if answer.output is not None:
        status, output_json = SampleStatus.OK, answer.output.model_dump_json()
    else:
        status = SampleStatus.SCHEMA_ERROR if answer.error_kind == "schema" else SampleStatus.FAILED
        output_json = answer.raw_json
    usage = answer.usage
    return Sample(
        sample_id=content_id(target["chunk_id"], task_name, sample_index, round_, target["item_id"]),
        chunk_id=target["chunk_id"], doc_id=doc_id, task_type=task_type, sample_index=sample_index,
        round=round_, parent_id=target["item_id"], status=status, output_json=output_json,
        error=answer.error, request_hash=answer.request_hash, backend=answer.backend,
        model=answer.model, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
        cost_usd=usage.cost_usd, cached=bool(answer.cached),
    )


def build_request(env: FilterEnv, target: dict[str, Any], round_: int, sample_index: int = 0) -> Any:
    reason = f"{target['filter']}/{target['reason']}: {target['detail']}"
    return TeacherRequest(
        chunk_id=target["chunk_id"], system=system_prompt(env.task),
        chunk_text=env.chunks[target["chunk_id"]],
        instruction=refine_instruction(env.task, target.get("output_json") or "null", reason),
        response_model=output_model(env.task), sample_index=sample_index, round=round_, purpose="refine",
    )


def votes_needed(target: dict[str, Any], env: FilterEnv, revote: bool) -> int:
    """Answers to ask for one repair: a failed vote is voted again, anything else is one answer."""
    return env.expected_samples if revote and target["filter"] == "consistency" else 1


def agreed_label(target: dict[str, Any], env: FilterEnv) -> str | None:
    """The label the chunk's first vote agreed on, when the rejection came after the vote."""
    if env.task.type is not TaskType.CLASSIFICATION or FILTER_ORDER.get(target["filter"], 0) <= FILTER_ORDER["consistency"]:
        return None
    try:
        label = json.loads(target.get("output_json") or "null")
    except json.JSONDecodeError:
        return None
    return str(label["label"]) if isinstance(label, dict) and label.get("label") is not None else None


def refine(
    rejected: pl.DataFrame, examples: pl.DataFrame, doc_of_chunk: Mapping[str, str],
    env: FilterEnv, teacher: TeacherLike, rounds: int, revote: bool = True,
) -> RefineOutcome:
    """Up to `rounds` repair rounds over `rejected`; returns the new examples and the rest."""
    outcome = RefineOutcome()
    done = set(examples["chunk_id"].to_list()) if examples.height else set()
    pending = rejected.filter(pl.col("chunk_id").is_in(list(env.chunks))) if rejected.height else rejected
    for round_ in range(1, rounds + 1):
        targets = repair_targets(pending, done)
        if not targets:
            break
        asks = [(t, k) for t in targets for k in range(votes_needed(t, env, revote))]
        answers = teacher.ask_many([build_request(env, t, round_, k) for t, k in asks])
        samples: list[Sample] = []
        for (target, sample_index), answer in zip(asks, answers, strict=True):
            if answer.error_kind in ("budget", "api", "stopped"):  # not done: the next run asks again
                outcome.stopped = outcome.stopped or answer.error or "teacher budget reached"
                continue
            if answer.error_kind == "cassette_miss":
                outcome.skipped += 1
                continue
            outcome.attempted_chunks.add(target["chunk_id"])
            samples.append(_sample_from_answer(
                answer, target, env.task.name, env.task.type.value,
                doc_of_chunk.get(target["chunk_id"], ""), round_, sample_index,
            ))
        outcome.samples.extend(samples)
        result = _filter_repairs(samples, targets, env, revote, round_)
        outcome.funnels.extend(result.funnels)
        parent_of = {s.chunk_id: s.parent_id for s in samples}
        for example in result.examples:
            example = example.model_copy(update={"refine_round": round_})
            outcome.examples.append(example)
            done.add(example.chunk_id)
            outcome.recovered_chunks.add(example.chunk_id)
            parent = parent_of.get(example.chunk_id)
            if parent:
                outcome.recovered_by[parent] = example.example_id
        new_rejections = [r.model_copy(update={"refine_round": round_}) for r in result.rejections]
        outcome.rejections.extend(new_rejections)
        pending = records_frame(Rejection, new_rejections)
        if outcome.stopped:
            break
    return outcome


@dataclass
class _Filtered:
    examples: list[Example]
    rejections: list[Rejection]
    funnels: list[Funnel]


def _filter_repairs(samples: list[Sample], targets: list[dict[str, Any]], env: FilterEnv, revote: bool,
                    round_: int) -> _Filtered:
    """Every filter again; voted repairs need `min_votes` of their answers, single ones keep the agreed label."""
    voted = {t["chunk_id"] for t in targets if votes_needed(t, env, revote) > 1}
    agreed = {t["chunk_id"]: label for t in targets if revote and (label := agreed_label(t, env)) is not None}
    out = _Filtered([], [], [])
    for chunks, expected in ((voted, env.expected_samples), ({s.chunk_id for s in samples} - voted, 1)):
        group = [s for s in samples if s.chunk_id in chunks]
        if not group:
            continue
        group_env = FilterEnv(task=env.task, config=env.config, chunks=env.chunks, expected_samples=expected,
                              round_penalty=env.round_penalty, agreed_labels=agreed)
        result = run_filters(records_frame(Sample, group), group_env, stage="refine", round=round_)
        out.examples.extend(result.examples)
        out.rejections.extend(result.funnel.rejections)
        out.funnels.append(result.funnel)
    return out


def recovery_rate(attempted: int, recovered: int) -> float | None:
    return round(recovered / attempted, 4) if attempted else None
