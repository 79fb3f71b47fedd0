"""validate -> split -> export: the final dataset, checked, split without leakage, written out.

- validate (GLOBAL): a great-expectations suite derived from the task config; a critical
  failure raises `ValidationFailed` naming the failing expectations (after writing the
  Data Docs to `<run_dir>/validate.state/data_docs/`).
- split (GLOBAL): group-aware stratified assignment (documents never span splits), then a
  cross-split near-duplicate check; leaking pairs are reported and, by default, resolved.
- export (GLOBAL): chat JSONL, ShareGPT, Alpaca, Parquet, HF datasets and a dataset card,
  into `<run_dir>/<export.dir>/`, swapped in atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from curate.dataset import chat
from curate.dataset.card import card_sources, mask_secrets, render_card
from curate.dataset.config import DatasetSettings
from curate.dataset.export import export_columns, write_exports
from curate.dataset.plots import plot_distributions
from curate.dataset.splitting import (
    SPLITS,
    assert_disjoint,
    distribution,
    leak_pairs,
    split_frame,
    split_warnings,
)
from curate.dataset.validation import (
    ValidationFailed,
    build_checks,
    critical_failures,
    redacted_originals,
    run_suite,
    validation_view,
)
from curate.run.rundir import RunDir, run_location, staged_folder
from curate.run.stage import Stage, StageContext, StepKind, collect, count
from curate.services.pii.mapping import restore_placeholders
from schemas.artifacts import (
    EXPORT_DIVERSITY,
    EXPORT_MANIFEST,
    LEAKS,
    REVIEWED,
    SPLIT_EXAMPLES,
    SPLIT_REPORT,
    VALIDATED,
    VALIDATION_RESULTS,
)
from schemas.ids import sha256_hex
from schemas.tasks import TaskType

__all__ = ["STAGES", "ValidationFailed"]


# ------------------------------------------------------------------ validate
def validate_examples(batch: pl.DataFrame, ctx: StageContext[DatasetSettings]) -> dict[str, pl.DataFrame]:
    config = ctx.config.validate_
    task = ctx.config.task
    frame = batch.sort("example_id") if "example_id" in batch.columns else batch
    rejected = 0
    if config.drop_rejected and "review_status" in frame.columns:
        keep = frame.get_column("review_status").fill_null("") != "rejected"
        rejected = frame.height - int(keep.sum())
        frame = frame.filter(keep)
    checks = build_checks(task, config)
    docs_dir = ctx.stage_dir / "data_docs" if config.data_docs else None
    doc_ids = frame.get_column("doc_id").drop_nulls().unique().to_list() if frame.height else []
    originals = redacted_originals(ctx.run_dir, doc_ids)
    results, index = run_suite(
        validation_view(frame, task, originals), checks, docs_dir=docs_dir, site_name=config.site_name,
        suite_name=f"{task.name}-examples",
    )
    results = results.with_columns(pl.lit(rejected, dtype=pl.Int64).alias("rejected_dropped"))
    ctx.write_json("validation_results.json", {"data_docs": index, "rejected_dropped": rejected,
                                               "results": results.to_dicts()})
    failures = critical_failures(results)
    if failures:
        raise ValidationFailed(failures, index)
    return {"examples": frame, "results": results}


def summarize_validate(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    results = collect(outputs["results"])  # one row per check
    return {
        "summary": {
            "evaluated": results.height,
            "passed": int(results.get_column("success").sum()),
            "warnings": ", ".join(results.filter(~pl.col("success")).get_column("check").to_list()),
            "rejected_dropped": int(results.get_column("rejected_dropped")[0]) if results.height else 0,
            "examples": count(outputs["examples"]),
        },
        "checks": results.drop("rejected_dropped").to_dicts(),
    }


# ------------------------------------------------------------------ split
def _stratify_column(ctx: StageContext[DatasetSettings]) -> str:
    mode = ctx.config.split.stratify_by
    if mode == "auto":
        return "label" if ctx.config.task.type is TaskType.CLASSIFICATION else "task_type"
    return mode


def leak_text(messages: list[dict[str, Any]], instruction: str) -> str:
    """What must not repeat across splits: the user text (less the shared task instruction) + answer."""
    prompt = chat.user_text(messages)
    if instruction and prompt.startswith(instruction):
        prompt = prompt[len(instruction):]
    return prompt.strip() + "\n\n" + chat.response_text(messages)


def split_examples(batch: pl.DataFrame, ctx: StageContext[DatasetSettings]) -> dict[str, pl.DataFrame]:
    config = ctx.config.split
    by = _stratify_column(ctx)
    frame = split_frame(batch, ratios=config.ratios(), seed=config.seed, group_by=config.group_by, stratify_by=by)
    assert_disjoint(frame, config.group_by)
    instruction = ctx.config.task.instruction.strip()
    texts = [leak_text(m, instruction) for m in frame.get_column("messages").to_list()] if frame.height else []
    with_text = frame.select("example_id", "split").with_columns(pl.Series("leak_text", texts, dtype=pl.String))
    params: dict[str, Any] = {
        "threshold": config.near_dup_threshold, "num_perm": config.num_perm, "shingle_words": config.shingle_words,
        "ngram_words": config.ngram_leak_words, "ngram_share": config.ngram_leak_share,
    }
    with ctx.pool() as pool:  # the executor's workers run the MinHash steps
        leaks = leak_pairs(with_text, text="leak_text", pool=pool, **params)
        if config.leak_policy == "drop" and leaks.height:
            dropped = set(leaks.get_column("example_id").to_list())
            leaks = leaks.with_columns(pl.lit("dropped").alias("action"))
            frame = frame.filter(~pl.col("example_id").is_in(sorted(dropped)))
            remaining = leak_pairs(with_text.filter(~pl.col("example_id").is_in(sorted(dropped))), text="leak_text",
                                   pool=pool, **params)
            leaks = pl.concat([leaks, remaining.with_columns(pl.lit("remaining").alias("action"))])
        else:
            leaks = leaks.with_columns(pl.lit("reported").alias("action"))
    actions = leaks.get_column("action").to_list()
    dist = distribution(frame, by)
    warnings = split_warnings(frame, ratios=config.ratios(), by=by, group_by=config.group_by,
                              min_eval_rows=config.min_eval_rows)
    report = {
        "summary": {
            "group_by": config.group_by,
            "stratify_by": by,
            "seed": config.seed,
            "ratios": "/".join(f"{r:g}" for r in config.ratios().values()),
        },
        "rows": {s: int((frame.get_column("split") == s).sum()) for s in SPLITS},
        "groups": {s: frame.filter(pl.col("split") == s).get_column(config.group_by).n_unique() for s in SPLITS},
        "distribution": [
            {"class": c, **{s: dist[s].get(c, 0) for s in SPLITS}}
            for c in sorted({c for counts in dist.values() for c in counts})
        ],
        "leakage": {
            "method": "MinHash/LSH (curate.services.similarity) over user text without the task instruction + answer; "
                      f"{config.ngram_leak_words}-gram containment of validation/test in train "
                      f"(share >= {config.ngram_leak_share:g})",
            "threshold": config.near_dup_threshold,
            "policy": config.leak_policy,
            "pairs_found": sum(1 for a in actions if a in {"dropped", "reported"}),
            "dropped": leaks.filter(pl.col("action") == "dropped").get_column("example_id").n_unique(),
            "pairs_remaining": sum(1 for a in actions if a in {"remaining", "reported"}),
        },
        "warnings": warnings,
    }
    ctx.write_json("split_report.json", report)
    return {
        "examples": frame,
        "leaks": leaks.select(LEAKS.schema.names()),
        "report": SPLIT_REPORT.frame([{"json": json.dumps(report, sort_keys=True)}]),
    }


def summarize_split(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(collect(outputs["report"].select("json")).item(0, 0))
    return report


# ------------------------------------------------------------------ export
def export_dataset(batch: pl.DataFrame, ctx: StageContext[DatasetSettings]) -> dict[str, pl.DataFrame]:
    config = ctx.config.export
    run_dir = Path(ctx.run_dir)
    final = run_dir / config.dir
    rows = export_columns(batch)
    residual = residual_scan(rows, ctx)
    if ctx.config.redact.restore_in_final:
        rows = restore_placeholders(rows, ctx.run_dir)
    with staged_folder(final) as staging:  # swapped in whole once every file is written
        files = write_exports(rows, staging, formats=config.formats, task=ctx.config.task,
                              openai_metadata=config.openai_metadata)
        # the config that produced the export (secret-looking keys masked): `train eval` reads its task
        config_dump = ctx.config.model_dump(mode="json", by_alias=True, exclude={"base_dir"})
        (staging / "pipeline.yaml").write_text(yaml.safe_dump(mask_secrets(config_dump), sort_keys=False),
                                               encoding="utf-8")
        if config.card:
            card_rows = rows.with_columns(batch.sort("example_id").get_column("cost_usd")) if "cost_usd" in batch.columns else rows
            plots = plot_distributions(rows, staging / "plots") if rows.height else {}
            diversity = measure_diversity(rows, ctx, staging / "plots")
            card = render_card(
                card_rows,
                manifest=RunDir(ctx.run_dir).load_manifest(),
                config=config_dump,
                files=files,
                plots=plots,
                name=ctx.config.name,
                residual=residual,
                diversity=diversity,
            )
            leaked = [v for values in redacted_originals(ctx.run_dir).values()
                      for v in values if v in card]
            if leaked:
                raise RuntimeError(f"the dataset card would contain {len(leaked)} redacted original value(s); not written")
            (staging / "README.md").write_text(card, encoding="utf-8")
    return {"manifest": EXPORT_MANIFEST.frame([{**file, "export_dir": str(final)} for file in files]),
            "diversity": EXPORT_DIVERSITY.frame([{"json": json.dumps(diversity or {}, sort_keys=True)}])}


def measure_diversity(rows: pl.DataFrame, ctx: StageContext[DatasetSettings], plots: Path) -> dict[str, Any] | None:
    """The card's diversity figures, warnings and plot (`export.diversity`), or None when off."""
    from curate.dataset.diversity import diversity_report, plot_diversity, shared_embed

    config = ctx.config.export.diversity
    if not config.enabled:
        return None
    embed = shared_embed(config.embedding_model) if config.embeddings else None
    report = diversity_report(rows, Path(ctx.run_dir), config, shared_instruction=ctx.config.task.instruction,
                              embed=embed)
    report["plot"] = plot_diversity(report, plots) if rows.height else None
    return report


def residual_scan(rows: pl.DataFrame, ctx: StageContext[DatasetSettings]) -> dict[str, Any] | None:
    """Scan the final rows again for personal data and secrets; fail past `redact.max_residual`.

    Runs only when redaction is enabled (the client asked for it); the card says which.
    """
    if not ctx.config.redact.enabled:
        return None
    from curate.services.pii.rescan import check_residual, residual_report

    report = residual_report(rows, ctx.config)
    check_residual(report["counts"], ctx.config)
    return report


def export_digest(config: DatasetSettings) -> str:
    """What the export depends on besides `split/examples`, for its fingerprint: the whole config
    (pipeline.yaml and the card carry it), what the card takes from the manifest, and the export
    folder as it lies on disk (names, sizes, modification times), so that a deleted or edited
    file makes the next run write the folder again and an unchanged re-run skips the stage."""
    folder = config.run_path / config.export.dir
    files = sorted(
        (str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns)
        for path in folder.rglob("*") if path.is_file() and (stat := path.stat())
    ) if folder.is_dir() else []
    payload = {"config": config.config_hash(), "card": card_sources(RunDir(run_location(config)).load_manifest()),
               "files": files}
    return sha256_hex(json.dumps(payload, sort_keys=True, default=str))


def summarize_export(outputs: Mapping[str, pl.LazyFrame]) -> dict[str, Any]:
    manifest = collect(outputs["manifest"])  # one row per exported file
    diversity = json.loads(collect(outputs["diversity"].select("json")).item(0, 0)) if "diversity" in outputs else {}
    return {
        "summary": {"dir": manifest.get_column("export_dir")[0] if manifest.height else None,
                    "files": manifest.height},
        "files": manifest.drop("export_dir").to_dicts(),
        "diversity": diversity,
    }


STAGES: list[Stage] = [
    Stage(
        name="validate",
        kind=StepKind.GLOBAL,
        fn=validate_examples,
        inputs=(REVIEWED,),
        outputs=(VALIDATED, VALIDATION_RESULTS),
        config_sections=("task", "validate"),
        summarize=summarize_validate,
        description="great-expectations suite over the final examples",
    ),
    Stage(
        name="split",
        kind=StepKind.GLOBAL,
        fn=split_examples,
        inputs=(VALIDATED,),
        outputs=(SPLIT_EXAMPLES, LEAKS, SPLIT_REPORT),
        config_sections=("task", "split"),
        summarize=summarize_split,
        description="group-aware stratified split + cross-split near-duplicate check",
    ),
    Stage(
        name="export",
        kind=StepKind.GLOBAL,
        fn=export_dataset,
        inputs=(SPLIT_EXAMPLES,),
        outputs=(EXPORT_MANIFEST, EXPORT_DIVERSITY),
        config_sections=("task", "validate", "split", "export", "name"),
        summarize=summarize_export,
        description="chat JSONL, ShareGPT, Alpaca, Parquet, HF datasets + dataset card",
        external=export_digest,  # the folder lives outside the artifacts and the card reads the manifest
    ),
]
