"""Stage declarations of the quality package, in pipeline order.

filter (SHUFFLE by chunk_id) -> refine (IO_POOL by chunk_id) -> judge (IO_POOL) -> dedup (GLOBAL).
`dedup/examples` is the final auto-curated artifact; `dedup` also assembles the funnel of
the whole package (`funnel.package_report`: rows in/out per filter, reasons, recovery, cost
per accepted example), writes it to `<run_dir>/dedup.state/funnel.json`, and returns it as
its report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import polars as pl

from curate.filter.base import aggregate_funnel, reason_counts, records_frame
from curate.filter.checks import FilterEnv, run_filters
from curate.filter.config import FilterSettings
from curate.filter.dedup_index import (
    dedup_params,
    dedup_text,
    drop_indexed_duplicates,
    index_digest,
    index_location,
)
from curate.filter.funnel import funnel_rows, label_counts, package_report
from curate.filter.judge import judge
from curate.filter.refine import recovery_rate, refine, repair_targets
from curate.filter.similarity_steps import decontaminate_step, eval_sets_digest, semantic_dedup_step
from curate.run.services import SerialPool, WorkerPool
from curate.run.stage import Stage, StageContext, StageStopped, StepKind, collect, count
from curate.services.similarity.dedup import DedupParams
from curate.services.similarity.steps import dedup_steps
from schemas.artifacts import (
    DEDUP_FUNNEL,
    DEDUP_REASONS,
    DEDUP_REJECTED,
    DEDUP_SIMILARITY,
    DEDUP_SUMMARY,
    DEDUPED,
    FILTER_FUNNEL,
    FILTER_REJECTED,
    FILTERED,
    JUDGE_REJECTED,
    JUDGED,
    JUDGMENTS,
    REDACTED_CHUNKS,
    REFINE_FUNNEL,
    REFINE_REJECTED,
    REFINED,
    REFINED_SAMPLES,
    REQUEST_LOG,
    SAMPLES,
    STEP_FUNNEL,
)
from schemas.records import Example, Rejection, Sample, empty_frame, polars_schema

EXAMPLE_COLUMNS = list(polars_schema(Example).names())
REJECTION_COLUMNS = list(polars_schema(Rejection).names())


def _chunk_texts(ctx: StageContext[FilterSettings], chunk_ids: list[str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    chunks = ctx.side(REDACTED_CHUNKS).select("chunk_id", "doc_id", "text")
    if chunk_ids is not None:
        chunks = chunks.filter(pl.col("chunk_id").is_in(chunk_ids))
    texts = dict(zip(chunks["chunk_id"].to_list(), chunks["text"].to_list(), strict=True))
    docs = dict(zip(chunks["chunk_id"].to_list(), chunks["doc_id"].to_list(), strict=True))
    return texts, docs


def _env(ctx: StageContext[FilterSettings], chunks: dict[str, str]) -> FilterEnv:
    cfg = ctx.config
    return FilterEnv(task=cfg.task, config=cfg.filter, chunks=chunks,
                     expected_samples=cfg.teacher.samples, round_penalty=cfg.refine.round_penalty)


# ------------------------------------------------------------------------------ filter
def filter_stage(batch: pl.DataFrame, ctx: StageContext[FilterSettings]) -> dict[str, pl.DataFrame]:
    chunks, _ = _chunk_texts(ctx, batch["chunk_id"].unique().to_list() if batch.height else [])
    outcome = run_filters(batch, _env(ctx, chunks))
    return {
        "examples": records_frame(Example, outcome.examples),
        "rejected": records_frame(Rejection, outcome.funnel.rejections),
        "funnel": outcome.funnel.frame(),
    }


def summarize_filter(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    funnel = collect(outputs["funnel"])  # a few rows per task
    return {
        "funnel": [row for row in funnel_rows(aggregate_funnel(funnel)) if row["step"] != "render"],
        "reasons": reason_counts(outputs["rejected"]),
        "labels": label_counts(outputs["examples"]),
    }


# ------------------------------------------------------------------------------ refine
def refine_stage(batch: pl.DataFrame, ctx: StageContext[FilterSettings]) -> dict[str, pl.DataFrame]:
    """Repairs of one batch of rejections (all of a chunk's together); `examples` holds only
    the repaired ones: the executor adds filter's examples once (`passthrough`)."""
    examples = ctx.side(FILTERED)
    rounds = ctx.config.refine.rounds
    done = set(examples["chunk_id"].to_list())
    targets = repair_targets(batch, done) if rounds else []
    rejected = batch.with_columns(pl.lit(None, dtype=pl.String).alias("recovered_by"))
    if not targets:
        return {"examples": examples.clear(), "rejected": rejected, "samples": empty_frame(Sample),
                "funnel": _repair_row(0, 0, 0, 0.0)}
    from curate.services.teacher.factory import open_teacher

    chunks, docs = _chunk_texts(ctx, batch["chunk_id"].unique().to_list())  # the batch's chunks only

    with open_teacher(ctx.config, ctx.run_dir, purpose="refine", limiter=ctx.limiter("teacher", ctx.config.teacher)) as teacher:
        outcome = refine(batch, examples, docs, _env(ctx, chunks), teacher, rounds, ctx.config.refine.revote)
        fatal = getattr(teacher, "fatal", None)  # a rejected key, an unreachable endpoint: stop
    new_rejections = records_frame(Rejection, outcome.rejections).with_columns(
        pl.lit(None, dtype=pl.String).alias("recovered_by"))
    recovered = pl.DataFrame(
        {"item_id": list(outcome.recovered_by), "__by": list(outcome.recovered_by.values())},
        schema={"item_id": pl.String, "__by": pl.String},
    )
    all_rejected = pl.concat([rejected, new_rejections]).join(recovered, on="item_id", how="left")
    all_rejected = all_rejected.with_columns(pl.coalesce("__by", "recovered_by").alias("recovered_by")).drop("__by")
    samples = records_frame(Sample, outcome.samples)
    funnel_frames = [f.frame() for f in outcome.funnels]
    funnel_frames.append(_repair_row(len(outcome.attempted_chunks), len(outcome.recovered_chunks),
                                     outcome.skipped, float(samples["cost_usd"].sum() or 0.0)))
    outputs = {
        "examples": pl.concat([examples.clear(), records_frame(Example, outcome.examples)]),
        "rejected": all_rejected,
        "samples": samples,
        "funnel": pl.concat([REFINE_FUNNEL.frame(), *funnel_frames], how="diagonal_relaxed"),
    }
    if outcome.stopped:
        raise StageStopped(fatal.message if fatal else outcome.stopped, outputs, exit_code=4 if fatal else 3)
    return outputs


def _repair_row(attempted: int, recovered: int, skipped: int, cost: float) -> pl.DataFrame:
    frame = pl.DataFrame([{
        "stage": "refine", "round": 0, "order": -1, "step": "repair", "unit_in": "chunk",
        "unit_out": "chunk", "rows_in": attempted, "rows_out": recovered, "rejected": attempted - recovered,
    }], schema=STEP_FUNNEL, orient="row")
    return frame.with_columns(pl.lit(skipped).alias("skipped"), pl.lit(cost).alias("cost_usd")).cast(REFINE_FUNNEL.schema)


def summarize_refine(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    funnel = collect(outputs["funnel"])  # a few rows per task
    samples = collect(outputs["samples"].select(pl.len().alias("rows"), pl.col("cost_usd").sum())).row(0, named=True)
    repair = funnel.filter(pl.col("step") == "repair")
    attempted = int(repair["rows_in"].sum()) if repair.height else 0
    recovered = int(repair["rows_out"].sum()) if repair.height else 0
    skipped = int(repair["skipped"].sum()) if repair.height and "skipped" in repair.columns else 0
    return {
        "refine": {
            "chunks_attempted": attempted, "chunks_recovered": recovered,
            "recovery_rate": recovery_rate(attempted, recovered),
            "unanswered_requests": skipped, "repair_samples": samples["rows"],
            "cost_usd": round(float(samples["cost_usd"] or 0.0), 6),
        },
        "funnel": funnel_rows(aggregate_funnel(funnel.filter(pl.col("step") != "repair").select(STEP_FUNNEL.names()))),
    }


# ------------------------------------------------------------------------------- judge
def judge_stage(batch: pl.DataFrame, ctx: StageContext[FilterSettings]) -> dict[str, pl.DataFrame]:
    config = ctx.config.filter.judge
    empty_judgments = JUDGMENTS.frame()
    selected = batch.filter(pl.col("task_type").is_in(list(config.task_types))) if config.enabled else batch.clear()
    if selected.height == 0:
        return {"examples": batch, "rejected": empty_frame(Rejection), "judgments": empty_judgments}
    from curate.services.teacher.factory import open_teacher

    chunks, _ = _chunk_texts(ctx, selected["chunk_id"].unique().to_list())
    with open_teacher(ctx.config, ctx.run_dir, purpose="judge", limiter=ctx.limiter("teacher", ctx.config.teacher)) as teacher:
        outcome = judge(selected, chunks, config, teacher)
    judgments = JUDGMENTS.frame(outcome.judgments)
    scores = pl.DataFrame({"example_id": list(outcome.scores), "__judge": list(outcome.scores.values())},
                          schema={"example_id": pl.String, "__judge": pl.Float64})
    rejected_ids = [r.item_id for r in outcome.rejections]
    kept = (
        batch.filter(~pl.col("example_id").is_in(rejected_ids))
        .join(scores, on="example_id", how="left")
        .with_columns((pl.col("quality_score") * pl.col("__judge").fill_null(1.0)).round(6).alias("quality_score"))
        .drop("__judge")
    )
    costs = judgments.group_by("example_id").agg(pl.col("cost_usd").sum().alias("__jc"))
    kept = kept.join(costs, on="example_id", how="left").with_columns(
        (pl.col("cost_usd") + pl.col("__jc").fill_null(0.0)).alias("cost_usd")).drop("__jc")
    outputs = {"examples": kept.select(EXAMPLE_COLUMNS), "rejected": records_frame(Rejection, outcome.rejections),
               "judgments": judgments}
    if outcome.stopped:
        raise StageStopped(outcome.stopped, outputs)
    return outputs


def summarize_judge(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    judged = count(outputs["judgments"])
    if judged == 0:
        return {"judge": {"judged": 0, "passed": 0, "mean_score": None, "cost_usd": 0.0}}
    sums = collect(outputs["judgments"].select(
        pl.col("passed").sum(), pl.col("mean_score").mean(), pl.col("cost_usd").sum()
    )).row(0, named=True)
    return {"judge": {
        "judged": judged,
        "passed": int(sums["passed"]),
        "mean_score": round(float(sums["mean_score"]), 3),
        "cost_usd": round(float(sums["cost_usd"]), 6),
    }}


# ------------------------------------------------------------------------------- dedup
def dedup_examples(
    frame: pl.DataFrame, params: DedupParams, field: str, pool: WorkerPool | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Survivors (Example columns) and dedup rejections of a frame of examples.

    The dedup steps (`curate.services.similarity.steps`: sign, buckets, verify, components,
    survivors) run on `pool`, the executor's (`ctx.pool()`); the result does not depend on it.
    """
    if frame.height == 0:
        return frame.select(EXAMPLE_COLUMNS), empty_frame(Rejection)
    with_text = frame.with_columns(dedup_text(field).alias("__text"))
    out, _ = dedup_steps(with_text, text="__text", params=params, pool=pool or SerialPool())
    survivor_of = out.select(
        "component", pl.col("example_id").filter(pl.col("survivor")).first().over("component").alias("__survivor"),
        pl.len().over("component").alias("__size"),
    )
    out = out.with_columns(survivor_of["__survivor"], survivor_of["__size"])
    reason = pl.when(pl.col("exact_duplicate")).then(pl.lit("exact_duplicate")).otherwise(pl.lit("near_duplicate"))
    rejected = dedup_rejections(out.filter(~pl.col("survivor")), reason,
                                pl.format("duplicate of {} (group of {})", "__survivor", "__size"))
    return out.filter(pl.col("survivor")).select(EXAMPLE_COLUMNS), rejected


def dedup_rejections(losers: pl.DataFrame, reason: pl.Expr, detail: pl.Expr) -> pl.DataFrame:
    """Rejection rows of dedup for examples that lost to a duplicate."""
    return losers.select(
        pl.col("example_id").alias("item_id"), "chunk_id", pl.lit("dedup").alias("filter"),
        reason.alias("reason"), detail.alias("detail"),
        pl.lit(False).alias("repairable"), "output_json", "refine_round",
    ).cast(polars_schema(Rejection))


def dedup_stage(batch: pl.DataFrame, ctx: StageContext[FilterSettings]) -> dict[str, pl.DataFrame]:
    dedup_in = batch
    batch, contaminated, contamination = decontaminate_step(
        batch, ctx.config, dedup_text(ctx.config.filter.decontaminate.field))
    if "dedup" in ctx.config.filter.disable:  # switched off: everything passes, the funnel is still written
        survivors, rejected = batch.select(EXAMPLE_COLUMNS), empty_frame(Rejection)
    else:
        with ctx.pool() as pool:
            survivors, rejected = dedup_examples(batch, dedup_params(ctx.config), ctx.config.filter.dedup_field, pool)
            location = index_location(ctx.config)
            if location is not None:
                survivors, indexed = against_index(survivors, ctx.config, location, pool)
                rejected = pl.concat([rejected, indexed])
    survivors, semantic, semantic_report = semantic_dedup_step(survivors, ctx.config)
    rejected = pl.concat([contaminated, rejected, semantic])
    report = package_report(ctx, dedup_in, survivors, rejected)
    similarity = {k: v for k, v in (("contamination", contamination), ("semantic_dedup", semantic_report)) if v}
    report.update(similarity)
    ctx.write_json("funnel.json", report)
    return {
        "examples": survivors,
        "rejected": rejected,
        "funnel": DEDUP_FUNNEL.frame(report["funnel"]),
        "reasons": DEDUP_REASONS.frame(report["reasons"]),
        "summary": DEDUP_SUMMARY.frame([report["summary"]]),
        "similarity": DEDUP_SIMILARITY.frame([{"json": json.dumps(similarity, sort_keys=True)}]),
    }


def against_index(
    examples: pl.DataFrame, config: FilterSettings, location: str, pool: WorkerPool | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Examples kept, and rejections of those that duplicate an earlier accepted dataset."""
    with_text = examples.with_columns(dedup_text(config.filter.dedup_field).alias("__text"))
    kept, dropped = drop_indexed_duplicates(with_text, text="__text", location=location,
                                            params=dedup_params(config), pool=pool)
    rejected = dedup_rejections(dropped, pl.lit("indexed_duplicate"),
                                pl.format("duplicate of {} in the dedup index {}", "duplicate_of", pl.lit(location)))
    return kept.select(EXAMPLE_COLUMNS), rejected


def dedup_external(config: FilterSettings) -> str | None:
    """What dedup reads outside the run: the dedup index and the eval sets."""
    parts = [index_digest(config), eval_sets_digest(config)]
    return None if parts == [None, None] else "|".join(p or "-" for p in parts)


def summarize_dedup(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    # dedup runs on the driver: these are its small report frames, in memory already
    summaries = collect(outputs["summary"]).to_dicts()
    similarity = collect(outputs["similarity"].select("json")) if "similarity" in outputs else None
    return {
        "funnel": collect(outputs["funnel"]).to_dicts(),
        "reasons": collect(outputs["reasons"]).to_dicts(),
        "summary": summaries[0] if summaries else {},
        **(json.loads(similarity.item(0, 0)) if similarity is not None and similarity.height else {}),
    }


STAGES: list[Stage] = [
    Stage(
        name="filter", kind=StepKind.SHUFFLE, fn=filter_stage, key="chunk_id",
        inputs=(SAMPLES, REDACTED_CHUNKS),
        outputs=(FILTERED, FILTER_REJECTED, FILTER_FUNNEL),
        config_sections=("task", "filter", "refine", "teacher"),
        summarize=summarize_filter,
        description="schema, self-consistency, grounding and audit filters",
    ),
    Stage(
        name="refine", kind=StepKind.IO_POOL, fn=refine_stage, key="chunk_id",
        inputs=(FILTER_REJECTED, REDACTED_CHUNKS, FILTERED),
        passthrough={"examples": FILTERED.path},
        outputs=(REFINED, REFINE_REJECTED, REFINED_SAMPLES, REFINE_FUNNEL),
        side_files=(REQUEST_LOG,),
        config_sections=("task", "filter", "refine", "teacher"),
        summarize=summarize_refine,
        description="repairable rejections back to the teacher, re-filtered",
    ),
    Stage(
        name="judge", kind=StepKind.IO_POOL, fn=judge_stage,
        inputs=(REFINED, REDACTED_CHUNKS),
        outputs=(JUDGED, JUDGE_REJECTED, JUDGMENTS),
        side_files=(REQUEST_LOG,),
        config_sections=("task", "filter", "teacher"),
        summarize=summarize_judge,
        description="optional LLM-as-judge rubric (filter.judge)",
    ),
    Stage(
        name="dedup", kind=StepKind.GLOBAL, fn=dedup_stage,
        inputs=(JUDGED, SAMPLES, FILTER_FUNNEL, REFINE_FUNNEL,
                REFINED_SAMPLES, REFINE_REJECTED, JUDGE_REJECTED, JUDGMENTS),
        outputs=(DEDUPED, DEDUP_REJECTED, DEDUP_FUNNEL, DEDUP_REASONS, DEDUP_SUMMARY, DEDUP_SIMILARITY),
        config_sections=("task", "filter", "refine"),
        external=dedup_external,  # a dataset added to the dedup index, or an edited eval set, re-runs dedup
        summarize=summarize_dedup,
        description="decontamination, exact, MinHash and semantic duplicate removal; the package funnel",
    ),
]

