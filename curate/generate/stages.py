"""The `generate` stage: n self-consistency samples of the task output per chunk."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

import polars as pl
from pydantic import BaseModel

from curate.run.config import RunSettings
from curate.run.stage import Stage, StageContext, StageStopped, StepKind, collect, count
from curate.services.teacher import prompts
from curate.services.teacher.factory import TeacherSettings, open_teacher
from curate.services.teacher.failures import TeacherFatal
from curate.services.teacher.request import PENDING_KINDS, TeacherAnswer, TeacherRequest
from schemas.artifacts import GENERATE_ERRORS, PENDING, REDACTED_CHUNKS, REQUEST_LOG, SAMPLES
from schemas.ids import content_id
from schemas.records import ErrorRecord, Sample, SampleStatus, frame_of
from schemas.tasks import TaskConfig, output_model


class GenerateSettings(RunSettings, TeacherSettings, Protocol):
    """What the generate stage reads of the pipeline config."""

    @property
    def task(self) -> TaskConfig: ...

EXIT_TEACHER_FATAL = 4  # the command's exit status when the teacher stopped on a fatal error


def sample_id(chunk_id: str, task_type: str, sample_index: int, round_: int = 0) -> str:
    return content_id(chunk_id, task_type, sample_index, round_)


def requests_for_chunks(ctx_config: GenerateSettings, chunks: pl.DataFrame) -> list[TeacherRequest]:
    """The teacher requests of the generate stage: `teacher.samples` per chunk."""
    task = ctx_config.task
    model = output_model(task)
    system = prompts.system_prompt(task)
    instruction = prompts.instruction(task)
    return [
        TeacherRequest(
            chunk_id=row["chunk_id"], system=system, chunk_text=row["text"], instruction=instruction,
            response_model=model, sample_index=index, round=0, purpose="generate",
        )
        for row in chunks.select("chunk_id", "text").iter_rows(named=True)
        for index in range(ctx_config.teacher.samples)
    ]


def sample_of(answer: TeacherAnswer, *, doc_id: str, task_type: str) -> Sample:
    if answer.ok:
        status, output_json = SampleStatus.OK, answer.raw_json
    elif answer.error_kind == "schema":
        status, output_json = SampleStatus.SCHEMA_ERROR, answer.raw_json
    else:
        status, output_json = SampleStatus.FAILED, None
    return Sample(
        sample_id=sample_id(answer.chunk_id, task_type, answer.sample_index, answer.round),
        chunk_id=answer.chunk_id,
        doc_id=doc_id,
        task_type=task_type,
        sample_index=answer.sample_index,
        round=answer.round,
        status=status,
        output_json=output_json,
        error=answer.error,
        request_hash=answer.request_hash,
        backend=answer.backend,
        model=answer.model,
        input_tokens=answer.usage.input_tokens,
        output_tokens=answer.usage.output_tokens,
        cache_read_tokens=answer.usage.cache_read_tokens,
        cache_write_tokens=answer.usage.cache_write_tokens,
        cost_usd=answer.usage.cost_usd,
        cached=answer.cached,
    )


def generate(batch: pl.DataFrame, ctx: StageContext[GenerateSettings]) -> dict[str, pl.DataFrame]:
    """Ask the teacher for `teacher.samples` answers per chunk; keep every answer as a Sample.

    Schema failures (after instructor's re-asks) are kept as `schema_error` samples for the
    filters to count; cassette misses become `failed` samples and error rows. A request
    that is not done (API failure after retries, budget, a fatal stop) is a `pending` row,
    never a sample: the stage stops (StageStopped, exit 3; 4 after a fatal error) with the
    answers it has, and the next run sends exactly the pending requests again (the
    answered ones come from the response cache).
    """
    config = ctx.config
    task_type = config.task.type.value
    doc_of = dict(zip(batch["chunk_id"].to_list(), batch["doc_id"].to_list(), strict=True))
    requests = requests_for_chunks(config, batch)
    with open_teacher(config, ctx.run_dir, purpose="generate", limiter=ctx.limiter("teacher", config.teacher)) as teacher:
        answers = teacher.ask_many(
            requests, show_progress=ctx.show_progress, description=f"generate ({len(requests)} requests)"
        )
        spent = teacher.spent_usd
        counts = dict(teacher.counts)
        fatal = teacher.fatal
    samples: list[BaseModel] = []
    errors: list[BaseModel] = []
    pending: list[dict[str, Any]] = []
    for answer in answers:
        if answer.error_kind in PENDING_KINDS:
            pending.append({
                "request_hash": answer.request_hash, "chunk_id": answer.chunk_id,
                "doc_id": doc_of[answer.chunk_id], "sample_index": answer.sample_index,
                "round": answer.round, "reason": answer.error_kind, "error": answer.error,
            })
            continue
        samples.append(sample_of(answer, doc_id=doc_of[answer.chunk_id], task_type=task_type))
        if answer.error_kind == "cassette_miss":
            errors.append(
                ErrorRecord(stage=ctx.stage, source=answer.chunk_id, reason="teacher_cassette_miss",
                            message=answer.error or "")
            )
    reasons = Counter(row["reason"] for row in pending)
    ctx.write_json(
        f"usage.shard{ctx.shard}.json",
        {"spent_usd_run_dir": spent, "counts": counts, "pending": dict(reasons),
         "budget_refused": reasons.get("budget", 0), "fatal": fatal.cause if fatal else None},
    )
    outputs = {
        "samples": frame_of(Sample, samples), "errors": frame_of(ErrorRecord, errors),
        "pending": PENDING.frame(pending),
    }
    if pending:
        raise StageStopped(
            stop_message(config, len(samples), len(requests), reasons, spent, fatal, pending),
            outputs, exit_code=EXIT_TEACHER_FATAL if fatal is not None else 3,
        )
    return outputs


def stop_message(
    config: GenerateSettings, kept: int, asked: int, reasons: Counter[str], spent: float, fatal: TeacherFatal | None,
    pending: list[dict[str, Any]],
) -> str:
    """Why the stage stopped, what is kept and what the next run will do (cause first)."""
    tally = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    resume = (f"{kept} of {asked} answers kept, {sum(reasons.values())} requests pending ({tally}); "
              "the next `curate run` sends exactly those, nothing upstream runs again")
    if fatal is not None:
        return f"teacher stopped: {fatal.message} {resume}"
    if reasons.get("budget"):
        return (f"teacher budget ${config.teacher.budget_usd} reached (spent ${spent:.4f}): {resume}; "
                "raise teacher.budget_usd to go on")
    first = next(row["error"] for row in pending if row["reason"] == "api")
    return f"teacher requests failed after {config.teacher.max_retries} retries (first: {first}): {resume}"


def usage_report(samples: pl.LazyFrame) -> dict[str, Any]:
    """Tokens and cost of a samples frame (cached answers: paid in an earlier run); the
    backend and model of its first sample in key order."""
    answers = count(samples)
    if answers == 0:
        return {"answers": 0}
    token_cols = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd"]
    total = collect(samples.select(
        pl.col(token_cols).sum(), pl.col("cached").sum().alias("_cached"),
        pl.col("cost_usd").filter(~pl.col("cached")).sum().alias("_paid"),
    )).row(0, named=True)
    cached, paid_now = total.pop("_cached"), total.pop("_paid")
    key = str(SAMPLES.key)
    first = collect(samples.select(key, "backend", "model").bottom_k(1, by=key)).row(0, named=True)
    return {
        "answers": answers,
        "cached_answers": int(cached),
        **{k: (round(v, 6) if k == "cost_usd" else int(v)) for k, v in total.items()},
        "cost_usd_paid_this_run": round(float(paid_now or 0.0), 6),
        "backend": first["backend"],
        "model": first["model"],
    }


def pending_report(requests: pl.LazyFrame | None) -> dict[str, Any]:
    """`curate status`: how many requests are not done, and why (the first error of each
    kind, in key order)."""
    if requests is None or count(requests) == 0:
        return {}
    pending = collect(requests).sort(str(PENDING.key), maintain_order=True)  # the requests not done: few
    by_reason = pending.group_by("reason").agg(pl.len().alias("requests"), pl.col("error").first())
    return {
        "requests": pending.height,
        **{f"{row['reason']}": f"{row['requests']} ({row['error']})" for row in by_reason.sort("reason").iter_rows(named=True)},
        "next": "a plain `curate run` sends exactly these requests again",
    }


def summarize(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    samples = outputs["samples"]
    rows = count(samples)
    statuses: dict[str, int] = dict(collect(samples.group_by("status").len()).iter_rows()) if rows else {}
    chunks = collect(samples.select(pl.col("chunk_id").n_unique())).item() if rows else 0
    return {
        "funnel": [
            {"step": "chunks asked", "rows": chunks},
            {"step": "samples", "rows": rows},
            {"step": "samples ok", "rows": statuses.get("ok", 0)},
            {"step": "schema errors", "rows": statuses.get("schema_error", 0)},
            {"step": "failed", "rows": statuses.get("failed", 0)},
        ],
        "usage": {"generate": usage_report(samples)},
        "pending": pending_report(outputs.get("pending")),
    }


STAGES: list[Stage] = [
    Stage(
        name="generate",
        kind=StepKind.IO_POOL,
        fn=generate,
        inputs=(REDACTED_CHUNKS,),
        outputs=(SAMPLES, GENERATE_ERRORS, PENDING),
        side_files=(REQUEST_LOG,),
        config_sections=("task", "teacher"),
        summarize=summarize,
        description="teacher samples per chunk (instructor; cached, rate-limited, budgeted)",
    )
]
