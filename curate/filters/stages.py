"""Stage declarations of the quality package, in pipeline order.

filter (SHUFFLE by chunk_id) -> refine (IO_POOL by chunk_id) -> judge (IO_POOL) -> dedup (GLOBAL).
`dedup/examples` is the final auto-curated artifact; `dedup` also assembles the funnel of
the whole package (rows in/out per filter, reasons, recovery, cost per accepted example),
writes it to `<run_dir>/dedup.state/funnel.json`, and returns it as its report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import polars as pl

from curate.filters.base import FUNNEL_SCHEMA, aggregate_funnel, reason_counts, records_frame
from curate.filters.checks import FilterEnv, run_filters
from curate.filters.dedup import DedupParams, dedup_frame
from curate.filters.dedup_index import dedup_frame_for, drop_indexed_duplicates, index_digest, index_location
from curate.filters.refine import recovery_rate
from curate.filters.similarity_steps import decontaminate_step, eval_sets_digest, semantic_dedup_step
from curate.run.limits import limiter_for
from curate.run.stage import Output, Stage, StageContext, StageStopped, StepKind
from schemas.records import Example, Rejection, Sample, empty_frame, polars_schema

EXAMPLE_COLUMNS = list(polars_schema(Example).names())
REJECTION_COLUMNS = list(polars_schema(Rejection).names())


def _chunk_texts(ctx: StageContext, chunk_ids: list[str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    chunks = ctx.side("redact/chunks").select("chunk_id", "doc_id", "text")
    if chunk_ids is not None:
        chunks = chunks.filter(pl.col("chunk_id").is_in(chunk_ids))
    texts = dict(zip(chunks["chunk_id"].to_list(), chunks["text"].to_list(), strict=True))
    docs = dict(zip(chunks["chunk_id"].to_list(), chunks["doc_id"].to_list(), strict=True))
    return texts, docs


def _env(ctx: StageContext, chunks: dict[str, str]) -> FilterEnv:
    cfg = ctx.config
    return FilterEnv(task=cfg.task, config=cfg.filter, chunks=chunks,
                     expected_samples=cfg.teacher.samples, round_penalty=cfg.refine.round_penalty)


# ------------------------------------------------------------------------------ filter
def filter_stage(batch: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    chunks, _ = _chunk_texts(ctx, batch["chunk_id"].unique().to_list() if batch.height else [])
    outcome = run_filters(batch, _env(ctx, chunks))
    return {
        "examples": records_frame(Example, outcome.examples),
        "rejected": records_frame(Rejection, outcome.funnel.rejections),
        "funnel": outcome.funnel.frame(),
    }


def summarize_filter(outputs: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    return {
        "funnel": [row for row in funnel_rows(aggregate_funnel(outputs["funnel"])) if row["step"] != "render"],
        "reasons": reason_counts(outputs["rejected"]),
        "labels": label_counts(outputs["examples"]),
    }


# ------------------------------------------------------------------------------ refine
def refine_stage(batch: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    """Repairs of one batch of rejections (all of a chunk's together); `examples` holds only
    the repaired ones: the executor adds filter's examples once (`passthrough`)."""
    from curate.filters.refine import refine, repair_targets

    examples = ctx.side("filter/examples")
    rounds = ctx.config.refine.rounds
    done = set(examples["chunk_id"].to_list())
    targets = repair_targets(batch, done) if rounds else []
    rejected = batch.with_columns(pl.lit(None, dtype=pl.String).alias("recovered_by"))
    if not targets:
        return {"examples": examples.clear(), "rejected": rejected, "samples": empty_frame(Sample),
                "funnel": _repair_row(0, 0, 0, 0.0)}
    from curate.generate.teacher import open_teacher

    chunks, docs = _chunk_texts(ctx, batch["chunk_id"].unique().to_list())  # the batch's chunks only

    with open_teacher(ctx.config, ctx.run_dir, purpose="refine", limiter=limiter_for(ctx.config)) as teacher:
        outcome = refine(batch, examples, docs, _env(ctx, chunks), teacher, rounds)
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
        "funnel": pl.concat(funnel_frames, how="diagonal_relaxed"),
    }
    if outcome.stopped:
        raise StageStopped(fatal.message if fatal else outcome.stopped, outputs, exit_code=4 if fatal else 3)
    return outputs


def _repair_row(attempted: int, recovered: int, skipped: int, cost: float) -> pl.DataFrame:
    frame = pl.DataFrame([{
        "stage": "refine", "round": 0, "order": -1, "step": "repair", "unit_in": "chunk",
        "unit_out": "chunk", "rows_in": attempted, "rows_out": recovered, "rejected": attempted - recovered,
    }], schema=FUNNEL_SCHEMA, orient="row")
    return frame.with_columns(pl.lit(skipped).alias("skipped"), pl.lit(cost).alias("cost_usd"))


def summarize_refine(outputs: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    funnel = outputs["funnel"]
    repair = funnel.filter(pl.col("step") == "repair")
    attempted = int(repair["rows_in"].sum()) if repair.height else 0
    recovered = int(repair["rows_out"].sum()) if repair.height else 0
    skipped = int(repair["skipped"].sum()) if repair.height and "skipped" in repair.columns else 0
    return {
        "refine": {
            "chunks_attempted": attempted, "chunks_recovered": recovered,
            "recovery_rate": recovery_rate(attempted, recovered),
            "unanswered_requests": skipped, "repair_samples": outputs["samples"].height,
            "cost_usd": round(float(outputs["samples"]["cost_usd"].sum() or 0.0), 6),
        },
        "funnel": funnel_rows(aggregate_funnel(funnel.filter(pl.col("step") != "repair").select(FUNNEL_SCHEMA.names()))),
    }


# ------------------------------------------------------------------------------- judge
def judge_stage(batch: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    from curate.filters.judge import JUDGMENT_SCHEMA, judge

    config = ctx.config.filter.judge
    empty_judgments = pl.DataFrame(schema=JUDGMENT_SCHEMA)
    selected = batch.filter(pl.col("task_type").is_in(list(config.task_types))) if config.enabled else batch.clear()
    if selected.height == 0:
        return {"examples": batch, "rejected": empty_frame(Rejection), "judgments": empty_judgments}
    from curate.generate.teacher import open_teacher

    chunks, _ = _chunk_texts(ctx, selected["chunk_id"].unique().to_list())
    with open_teacher(ctx.config, ctx.run_dir, purpose="judge", limiter=limiter_for(ctx.config)) as teacher:
        outcome = judge(selected, chunks, config, teacher)
    judgments = pl.DataFrame(outcome.judgments, schema=JUDGMENT_SCHEMA, orient="row")
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


def summarize_judge(outputs: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    judgments = outputs["judgments"]
    return {"judge": {
        "judged": judgments.height,
        "passed": int(judgments["passed"].sum()) if judgments.height else 0,
        "mean_score": round(float(judgments["mean_score"].mean()), 3) if judgments.height else None,  # type: ignore[arg-type]
        "cost_usd": round(float(judgments["cost_usd"].sum()), 6) if judgments.height else 0.0,
    }}


# ------------------------------------------------------------------------------- dedup
def dedup_text(field: str) -> pl.Expr:
    contents = pl.col("messages").list.eval(pl.element().struct.field("content"))
    if field == "assistant":
        return contents.list.last().fill_null("")
    if field == "user":
        return contents.list.get(1, null_on_oob=True).fill_null("")
    non_system = pl.col("messages").list.eval(
        pl.element().filter(pl.element().struct.field("role") != "system").struct.field("content")
    )
    return non_system.list.join("\n").fill_null("")


def dedup_params(ctx_config: Any) -> DedupParams:
    f = ctx_config.filter
    return DedupParams(threshold=f.dedup_threshold, num_perm=f.num_perm, shingle_size=f.shingle_size,
                       bands=f.lsh_bands, seed=f.dedup_seed, verify=f.dedup_verify)


def dedup_examples(
    frame: pl.DataFrame, params: DedupParams, field: str, run_dedup: Any = dedup_frame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Survivors (Example columns) and dedup rejections of a frame of examples.

    `run_dedup` is `dedup_frame` or a drop-in spreading its per-row work over the executor's
    workers (`curate.filters.dedup_index.dedup_frame_for`): the result is the same.
    """
    if frame.height == 0:
        return frame.select(EXAMPLE_COLUMNS), empty_frame(Rejection)
    with_text = frame.with_columns(dedup_text(field).alias("__text"))
    out, _ = run_dedup(with_text, text="__text", params=params)
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


def dedup_stage(batch: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    dedup_in = batch
    batch, contaminated, contamination = decontaminate_step(
        batch, ctx.config, dedup_text(ctx.config.filter.decontaminate.field))
    if "dedup" in ctx.config.filter.disable:  # switched off: everything passes, the funnel is still written
        survivors, rejected = batch.select(EXAMPLE_COLUMNS), empty_frame(Rejection)
    else:
        survivors, rejected = dedup_examples(
            batch, dedup_params(ctx.config), ctx.config.filter.dedup_field, dedup_frame_for(ctx.config)
        )
    location = index_location(ctx.config) if "dedup" not in ctx.config.filter.disable else None
    if location is not None:
        survivors, indexed = against_index(survivors, ctx.config, location)
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
        "funnel": pl.DataFrame(report["funnel"]),
        "reasons": pl.DataFrame(report["reasons"], schema={"filter": pl.String, "reason": pl.String,
                                                           "repairable": pl.Boolean, "count": pl.Int64}),
        "summary": pl.DataFrame([{k: v for k, v in report["summary"].items()}]),
        "similarity": pl.DataFrame({"json": [json.dumps(similarity, sort_keys=True)]}),
    }


def against_index(examples: pl.DataFrame, config: Any, location: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Examples kept, and rejections of those that duplicate an earlier accepted dataset."""
    with_text = examples.with_columns(dedup_text(config.filter.dedup_field).alias("__text"))
    kept, dropped = drop_indexed_duplicates(with_text, text="__text", location=location, params=dedup_params(config))
    rejected = dedup_rejections(dropped, pl.lit("indexed_duplicate"),
                                pl.format("duplicate of {} in the dedup index {}", "duplicate_of", pl.lit(location)))
    return kept.select(EXAMPLE_COLUMNS), rejected


def _read(ctx: StageContext, artifact: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    from curate.run.rundir import path_exists, read_parquet

    location = ctx.path(artifact)
    if not path_exists(location):
        return None
    frame = read_parquet(location)
    return frame.select(columns) if columns else frame


def package_report(ctx: StageContext, dedup_in: pl.DataFrame, survivors: pl.DataFrame,
                   dedup_rejected: pl.DataFrame) -> dict[str, Any]:
    """The funnel of the whole package, from the artifacts of generate, filter, refine, judge."""
    rows: list[dict[str, Any]] = []
    samples = _read(ctx, "generate/samples", ["chunk_id", "status", "cost_usd"])
    cost = {"generate": 0.0, "refine": 0.0, "judge": 0.0}
    chunks_in = 0
    if samples is not None:
        ok = samples.filter(pl.col("status") == "ok").height
        rows.append(_row("generate", "teacher", "sample", "sample", samples.height, ok))
        cost["generate"] = float(samples["cost_usd"].sum() or 0.0)
        chunks_in = samples["chunk_id"].n_unique()
    for stage in ("filter", "refine"):
        funnel = _read(ctx, f"{stage}/funnel")
        if funnel is None:
            continue
        steps = funnel.filter(pl.col("step") != "repair").select(FUNNEL_SCHEMA.names())
        for row in funnel_rows(aggregate_funnel(steps)):
            if row["step"] == "render":
                continue
            label = row["step"] if stage == "filter" else f"refine r{row['round']}: {row['step']}"
            rows.append(_row(stage, label, row["unit_in"], row["unit_out"], row["rows_in"], row["rows_out"], row["rejected"]))
        repair = funnel.filter(pl.col("step") == "repair")
        if repair.height:
            rows.append(_row("refine", "repair", "chunk", "chunk", int(repair["rows_in"].sum()), int(repair["rows_out"].sum())))
    refine_samples = _read(ctx, "refine/samples", ["cost_usd"])
    if refine_samples is not None:
        cost["refine"] = float(refine_samples["cost_usd"].sum() or 0.0)
    judgments = _read(ctx, "judge/judgments")
    if judgments is not None and judgments.height:
        cost["judge"] = float(judgments["cost_usd"].sum() or 0.0)
        rows.append(_row("judge", "judge", "example", "example", judgments.height, int(judgments["passed"].sum())))
    def count(reason: str) -> int:
        return int((dedup_rejected["reason"] == reason).sum()) if dedup_rejected.height else 0

    exact, indexed = count("exact_duplicate"), count("indexed_duplicate")
    contaminated, semantic = count("contaminated"), count("semantic_duplicate")
    if ctx.config.filter.decontaminate.enabled:
        rows.append(_row("dedup", "decontaminate", "example", "example", dedup_in.height, dedup_in.height - contaminated))
    minhash_in = dedup_in.height - contaminated
    rows.append(_row("dedup", "exact", "example", "example", minhash_in, minhash_in - exact))
    rows.append(_row("dedup", "near", "example", "example", minhash_in - exact, survivors.height + semantic + indexed))
    if index_location(ctx.config) is not None:
        rows.append(_row("dedup", "earlier datasets", "example", "example", survivors.height + semantic + indexed,
                         survivors.height + semantic))
    if ctx.config.filter.semantic_dedup.enabled:
        rows.append(_row("dedup", "semantic", "example", "example", survivors.height + semantic, survivors.height))
    rejections = [f for f in (_read(ctx, "refine/rejected"), _read(ctx, "judge/rejected")) if f is not None]
    rejections.append(dedup_rejected)
    all_rejected = pl.concat([f.select(REJECTION_COLUMNS) for f in rejections])
    repair_rows = [r for r in rows if r["step"] == "repair"]
    attempted = int(repair_rows[0]["rows_in"]) if repair_rows else 0
    recovered = int(repair_rows[0]["rows_out"]) if repair_rows else 0
    total_cost = sum(cost.values())
    accepted = survivors.height
    labels = label_counts(survivors)
    summary = {
        "chunks_in": chunks_in,
        "examples_accepted": accepted,
        "chunk_yield": round(accepted / chunks_in, 4) if chunks_in else None,
        "chunks_repaired": attempted,
        "recovery_rate": recovery_rate(attempted, recovered),
        "cost_generate_usd": round(cost["generate"], 8),
        "cost_refine_usd": round(cost["refine"], 8),
        "cost_judge_usd": round(cost["judge"], 8),
        "cost_total_usd": round(total_cost, 8),
        "cost_per_accepted_usd": round(total_cost / accepted, 8) if accepted else None,
        "label_warning": label_warning(labels, ctx.config.task.labels, ctx.config.filter.label_imbalance_ratio) or "",
    }
    return {"funnel": rows, "reasons": reason_counts(all_rejected), "summary": summary, "labels": labels}


def _row(stage: str, step: str, unit_in: str, unit_out: str, rows_in: int, rows_out: int,
         rejected: int | None = None) -> dict[str, Any]:
    return {
        "stage": stage, "step": step, "unit": unit_in if unit_in == unit_out else f"{unit_in}->{unit_out}",
        "rows_in": int(rows_in), "rows_out": int(rows_out),
        "rejected": int(rows_in - rows_out if rejected is None else rejected),
        "survival": round(rows_out / rows_in, 4) if rows_in else None,
    }


def funnel_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {**row, "survival": round(row["rows_out"] / row["rows_in"], 4) if row["rows_in"] else None}
        for row in frame.to_dicts()
    ]


def label_counts(examples: pl.DataFrame) -> dict[str, int]:
    if examples.height == 0 or examples["label"].null_count() == examples.height:
        return {}
    counts = examples.drop_nulls("label").group_by("label").len().sort("label")
    return dict(zip(counts["label"].to_list(), counts["len"].to_list(), strict=True))


def label_warning(counts: Mapping[str, int], labels: tuple[str, ...], ratio: float) -> str | None:
    """A warning when a taxonomy label has no examples or the largest outnumbers the smallest."""
    if not labels or not counts:
        return None
    missing = [label for label in labels if counts.get(label, 0) == 0]
    if missing:
        return "no examples for label(s): " + ", ".join(missing)
    high = max(counts.items(), key=lambda kv: kv[1])
    low = min(counts.items(), key=lambda kv: kv[1])
    if high[1] >= ratio * low[1]:
        return f"label imbalance: {high[0]}={high[1]} vs {low[0]}={low[1]} (ratio >= {ratio:g})"
    return None


def dedup_external(config: Any) -> str | None:
    """What dedup reads outside the run: the dedup index and the eval sets."""
    parts = [index_digest(config), eval_sets_digest(config)]
    return None if parts == [None, None] else "|".join(p or "-" for p in parts)


def summarize_dedup(outputs: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    summary = outputs["summary"].to_dicts()[0] if outputs["summary"].height else {}
    similarity = outputs.get("similarity")
    return {
        "funnel": outputs["funnel"].to_dicts(),
        "reasons": outputs["reasons"].to_dicts(),
        "summary": summary,
        **(json.loads(similarity["json"][0]) if similarity is not None and similarity.height else {}),
    }


STAGES: list[Stage] = [
    Stage(
        name="filter", kind=StepKind.SHUFFLE, fn=filter_stage, key="chunk_id",
        inputs=("generate/samples", "redact/chunks"),
        outputs=(Output("examples", "example_id"), Output("rejected", "item_id"), Output("funnel")),
        config_sections=("task", "filter", "refine", "teacher"),
        summarize=summarize_filter,
        description="schema, self-consistency, grounding and audit filters",
    ),
    Stage(
        name="refine", kind=StepKind.IO_POOL, fn=refine_stage, key="chunk_id",
        inputs=("filter/rejected", "redact/chunks", "filter/examples"),
        passthrough={"examples": "filter/examples"},
        outputs=(Output("examples", "example_id"), Output("rejected", "item_id"),
                 Output("samples", "sample_id"), Output("funnel")),
        config_sections=("task", "filter", "refine", "teacher"),
        summarize=summarize_refine,
        description="repairable rejections back to the teacher, re-filtered",
    ),
    Stage(
        name="judge", kind=StepKind.IO_POOL, fn=judge_stage,
        inputs=("refine/examples", "redact/chunks"),
        outputs=(Output("examples", "example_id"), Output("rejected", "item_id"),
                 Output("judgments", "example_id")),
        config_sections=("task", "filter", "teacher"),
        summarize=summarize_judge,
        description="optional LLM-as-judge rubric (filter.judge)",
    ),
    Stage(
        name="dedup", kind=StepKind.GLOBAL, fn=dedup_stage,
        inputs=("judge/examples", "generate/samples", "filter/funnel", "refine/funnel",
                "refine/samples", "refine/rejected", "judge/rejected", "judge/judgments"),
        outputs=(Output("examples", "example_id"), Output("rejected", "item_id"), Output("funnel"),
                 Output("reasons"), Output("summary"), Output("similarity")),
        config_sections=("task", "filter", "refine"),
        external=dedup_external,  # a dataset added to the dedup index, or an edited eval set, re-runs dedup
        summarize=summarize_dedup,
        description="decontamination, exact, MinHash and semantic duplicate removal; the package funnel",
    ),
]

