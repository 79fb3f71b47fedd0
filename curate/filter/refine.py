"""Rejection-feedback refinement: repairable rejections go back to the teacher.

For each chunk that produced no example but has a repairable rejection, the teacher gets
the chunk, the rejected answer and the reason, for up to `refine.rounds` rounds. Each
repaired answer becomes a `Sample` (round r, parent_id = the rejected item) and passes
through every filter again (`run_filters`), so a repair is held to the same standard.
"""

from __future__ import annotations

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
from schemas.tasks import output_model

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
                        doc_id: str, round_: int) -> Sample:
    if answer.output is not None:
        status, output_json = SampleStatus.OK, answer.output.model_dump_json()
    else:
        status = SampleStatus.SCHEMA_ERROR if answer.error_kind == "schema" else SampleStatus.FAILED
        output_json = answer.raw_json
    usage = answer.usage
    return Sample(
        sample_id=content_id(target["chunk_id"], task_name, 0, round_, target["item_id"]),
        chunk_id=target["chunk_id"], doc_id=doc_id, task_type=task_type, sample_index=0,
        round=round_, parent_id=target["item_id"], status=status, output_json=output_json,
        error=answer.error, request_hash=answer.request_hash, backend=answer.backend,
        model=answer.model, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
        cost_usd=usage.cost_usd, cached=bool(answer.cached),
    )


def build_request(env: FilterEnv, target: dict[str, Any], round_: int) -> Any:
    reason = f"{target['filter']}/{target['reason']}: {target['detail']}"
    return TeacherRequest(
        chunk_id=target["chunk_id"], system=system_prompt(env.task),
        chunk_text=env.chunks[target["chunk_id"]],
        instruction=refine_instruction(env.task, target.get("output_json") or "null", reason),
        response_model=output_model(env.task), sample_index=0, round=round_, purpose="refine",
    )


def refine(
    rejected: pl.DataFrame, examples: pl.DataFrame, doc_of_chunk: Mapping[str, str],
    env: FilterEnv, teacher: TeacherLike, rounds: int,
) -> RefineOutcome:
    """Up to `rounds` repair rounds over `rejected`; returns the new examples and the rest."""
    outcome = RefineOutcome()
    done = set(examples["chunk_id"].to_list()) if examples.height else set()
    pending = rejected.filter(pl.col("chunk_id").is_in(list(env.chunks))) if rejected.height else rejected
    repair_env = FilterEnv(task=env.task, config=env.config, chunks=env.chunks, expected_samples=1,
                           round_penalty=env.round_penalty)
    for round_ in range(1, rounds + 1):
        targets = repair_targets(pending, done)
        if not targets:
            break
        answers = teacher.ask_many([build_request(env, t, round_) for t in targets])
        samples: list[Sample] = []
        for target, answer in zip(targets, answers, strict=True):
            if answer.error_kind in ("budget", "api", "stopped"):  # not done: the next run asks again
                outcome.stopped = outcome.stopped or answer.error or "teacher budget reached"
                continue
            if answer.error_kind == "cassette_miss":
                outcome.skipped += 1
                continue
            outcome.attempted_chunks.add(target["chunk_id"])
            samples.append(_sample_from_answer(
                answer, target, env.task.name, env.task.type.value,
                doc_of_chunk.get(target["chunk_id"], ""), round_,
            ))
        outcome.samples.extend(samples)
        result = run_filters(records_frame(Sample, samples), repair_env, stage="refine", round=round_)
        outcome.funnels.append(result.funnel)
        parent_of = {s.chunk_id: s.parent_id for s in samples}
        for example in result.examples:
            example = example.model_copy(update={"refine_round": round_})
            outcome.examples.append(example)
            done.add(example.chunk_id)
            outcome.recovered_chunks.add(example.chunk_id)
            parent = parent_of.get(example.chunk_id)
            if parent:
                outcome.recovered_by[parent] = example.example_id
        new_rejections = [r.model_copy(update={"refine_round": round_}) for r in result.funnel.rejections]
        outcome.rejections.extend(new_rejections)
        pending = records_frame(Rejection, new_rejections)
        if outcome.stopped:
            break
    return outcome


def recovery_rate(attempted: int, recovered: int) -> float | None:
    return round(recovered / attempted, 4) if attempted else None
