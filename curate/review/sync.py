"""`curate review push` and `curate review pull`, as plain functions.

Push: the auto-curated examples (`dedup/examples`) -> a sample (every borderline example
plus a seeded, content-hashed audit share of the others) -> Label Studio tasks with the
candidate as a prediction. The project is found by exact title or created; tasks already
there (by our `example_id` in the task data) are never imported twice; import goes in
batches and the state after each batch is kept in `<run_dir>/review.state/`, so an
interrupted push resumes where it stopped.

Pull: the project's export -> one row per annotation (`annotations.parquet`), corrections
validated and grounded again -> one resolved decision per example (`decisions.parquet`,
written atomically) under the configured rule, with the reviewers' agreement reported.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import polars as pl

from curate.review.client import ReviewClient, ReviewServerError
from curate.review.config import ReviewSettings
from curate.review.doubt import Embed, default_embed, score_run_examples
from curate.review.explain import explain
from curate.review.labeling import (
    INTERNAL_DATA,
    check_correction,
    guidelines_html,
    label_config,
    read_annotation,
    task_payload,
)
from curate.review.merge import apply_review
from curate.review.selection import audit_draw, is_audit, select_for_review
from curate.run.rundir import atomic_write_parquet, atomic_write_text, read_parquet
from schemas.artifacts import (
    CHUNKS,
    DEDUPED,
    REDACTED_CHUNKS,
    REFINED_SAMPLES,
    REVIEW_ANNOTATIONS,
    REVIEW_DECISIONS,
    REVIEW_PUSHED,
    SAMPLES,
)
from schemas.tasks import TaskType

CHUNK_ARTIFACTS = (REDACTED_CHUNKS, CHUNKS)  # the redacted text when there is one
STATE_DIR = "review.state"
VIEW_TITLE = "Most doubtful first"
# Label Studio's own task-list columns that a reviewer does not need (it lists them before the
# data columns, so each one shown pushes the reason to the right).
LS_COLUMNS_HIDDEN = (
    "inner_id", "completed_at", "cancelled_annotations", "total_predictions", "annotators",
    "annotations_results", "annotations_ids", "predictions_score", "predictions_model_versions",
    "predictions_results", "file_upload", "storage_filename", "created_at", "updated_at", "updated_by",
    "avg_lead_time", "draft_exists",
)

SAMPLE_ARTIFACTS = (SAMPLES, REFINED_SAMPLES)
SEVERITY = {"reject": 2, "correct": 1, "accept": 0}

def state_dir(cfg: ReviewSettings) -> Path:
    return cfg.run_path / STATE_DIR


def project_title(cfg: ReviewSettings) -> str:
    return cfg.review.project_title or f"assay: {cfg.name}/{cfg.task.name}"[:50]


def examples_with_doubt(
    cfg: ReviewSettings, examples: pl.DataFrame, chunks: pl.DataFrame, embed: Embed | None = None,
) -> pl.DataFrame:
    """The examples with their doubt score and its parts (`curate/review/doubt.py`), from the
    run's own signals and the filters' floors."""
    doubt = cfg.review.doubt
    classification = cfg.task.type is TaskType.CLASSIFICATION
    if embed is None and classification and doubt.neighbour and doubt.weights.get("neighbour", 0.0) > 0:
        embed = default_embed(doubt)
    return score_run_examples(
        examples, chunks, run_path=cfg.run_path, config=doubt, samples=cfg.teacher.samples,
        min_votes=cfg.filter.min_votes, grounding_threshold=cfg.filter.grounding_threshold,
        judge_threshold=cfg.filter.judge.threshold, classification=classification, embed=embed,
    )


# --------------------------------------------------------------------------- run-dir inputs


def read_examples(cfg: ReviewSettings) -> pl.DataFrame:
    path = cfg.run_path / f"{DEDUPED}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `curate filter` (or `curate run`) before reviewing")
    return read_parquet(path)


def read_chunks(cfg: ReviewSettings) -> pl.DataFrame:
    for artifact in CHUNK_ARTIFACTS:
        path = cfg.run_path / f"{artifact}.parquet"
        if path.exists():
            return read_parquet(path, columns=["chunk_id", "text", "source_path", "heading_path"])
    raise FileNotFoundError(f"no chunks in {cfg.run_path}: run the pipeline up to the filters first")


def read_samples(cfg: ReviewSettings, chunk_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """chunk_id -> its teacher samples (generation and refinement rounds), for the reasons."""
    frames = [
        read_parquet(path, columns=["sample_id", "chunk_id", "round", "status", "output_json"])
        for artifact in SAMPLE_ARTIFACTS if (path := cfg.run_path / f"{artifact}.parquet").exists()
    ]
    found: dict[str, list[dict[str, Any]]] = {}
    if not frames:
        return found
    wanted = pl.concat(frames).filter(pl.col("chunk_id").is_in(chunk_ids) & (pl.col("status") == "ok"))
    for row in wanted.iter_rows(named=True):
        found.setdefault(row["chunk_id"], []).append(row)
    return found


def read_pushed(run_path: Path) -> pl.DataFrame | None:
    path = run_path / REVIEW_PUSHED.path
    return read_parquet(path) if path.exists() else None


def read_decisions(run_path: Path) -> pl.DataFrame | None:
    path = run_path / REVIEW_DECISIONS.path
    return read_parquet(path) if path.exists() else None


# --------------------------------------------------------------------------- push


@dataclass
class PushReport:
    url: str
    project_id: int
    project_title: str
    project_created: bool
    selected: int
    borderline: int
    audit: int
    already_present: int
    imported: int = 0
    batches: int = 0
    finished: bool = False
    view_id: int | None = None
    updated_at: str = ""


def build_tasks(cfg: ReviewSettings, examples: pl.DataFrame, chunks: pl.DataFrame, selection: pl.DataFrame) -> list[dict[str, Any]]:
    """The tasks of `selection`, in its order (most doubtful first), each with its reason in
    plain words and the other samples' answers."""
    chunk_by_id = {row["chunk_id"]: row for row in chunks.iter_rows(named=True)}
    example_by_id = {row["example_id"]: row for row in examples.iter_rows(named=True)}
    samples = read_samples(cfg, [example_by_id[eid]["chunk_id"] for eid in selection["example_id"] if eid in example_by_id])
    tasks = []
    for example_id, kind, doubt in selection.select("example_id", "kind", "doubt").iter_rows():
        row = example_by_id[example_id]
        chunk = chunk_by_id.get(row["chunk_id"])
        if chunk is None:
            raise ValueError(f"example {example_id}: its chunk {row['chunk_id']} is not in the run's chunks")
        source = " › ".join([chunk["source_path"], *(chunk["heading_path"] or [])])
        words = explain(cfg.task, row, samples.get(row["chunk_id"], []), audit=kind == "audit")
        reason = words.reason + neighbour_words(row)
        # the prediction's score is our confidence in the candidate: Label Studio lists the lowest first
        score = 1.0 - float(row["doubt"]) if row.get("doubt") is not None else float(row["quality_score"])
        tasks.append(task_payload(
            cfg.task,
            example_id=example_id, output_json=row["output_json"], chunk=chunk["text"],
            source=source, reason=reason, others=words.others, evidence=list(row["evidence"] or []),
            doubt=float(doubt), agreement=float(row["agreement"]), grounding=float(row["grounding_score"]),
            model_version="teacher", score=round(score, 4),
        ))
    return tasks


def neighbour_words(row: dict[str, Any]) -> str:
    """The neighbour signal in plain words, when a similar passage carries another label."""
    label, similarity = row.get("neighbour_label"), row.get("neighbour_similarity")
    if not label or label == row.get("label"):
        return ""
    alike = f" ({similarity:.0%} alike)" if similarity is not None else ""
    return f"; a similar passage{alike} is labelled {label}"


def review_view() -> dict[str, Any]:
    """The task list's tab: most doubtful first, reason, location, label and scores up front
    (Label Studio puts its own columns before the data's, so only the id and the annotation
    count stay of those), internal data hidden."""
    hidden = [f"tasks:{name}" for name in LS_COLUMNS_HIDDEN] + [f"tasks:data.{key}" for key in INTERNAL_DATA]
    return {
        "ordering": ["-tasks:data.doubt"],
        "hiddenColumns": {"explore": hidden, "labeling": hidden},
        "columnsWidth": {
            "tasks:data.reason": 470, "tasks:data.location": 270, "tasks:data.label": 150,
            "tasks:data.agreement": 110, "tasks:data.grounding": 110,
        },
    }


def push(
    cfg: ReviewSettings, client: ReviewClient | None = None, *, stop_after_batches: int | None = None,
    embed: Embed | None = None,
) -> PushReport:
    """Send the sample to Label Studio, most doubtful first; safe to repeat and to resume.

    `stop_after_batches` stops early on purpose (how tests stand for an interrupted push);
    `embed` replaces the embedding model of the doubt score's neighbour signal.
    """
    chunks = read_chunks(cfg)
    examples = examples_with_doubt(cfg, read_examples(cfg), chunks, embed)
    selection = select_for_review(examples, cfg.review)
    config = label_config(cfg.task, cfg.review.guidelines)  # checks review.guidelines before any request
    client = client or ReviewClient.from_config(cfg.review)
    client.whoami()
    title = project_title(cfg)
    project_id, created = client.ensure_project(
        title, config, description=f"assay expert review of {cfg.name} ({cfg.task.type.value})",
        annotations_per_task=cfg.review.annotations_per_task,
        instructions=guidelines_html(cfg.task, cfg.review.guidelines),
    )
    view_id = client.ensure_view(project_id, VIEW_TITLE, review_view())
    present = client.task_ids_by_example(project_id)
    tasks = [t for t in build_tasks(cfg, examples, chunks, selection) if t["data"]["example_id"] not in present]
    reasons = {t["data"]["example_id"]: t["data"]["reason"] for t in tasks}
    kinds = dict(selection.select("example_id", "kind").iter_rows())
    n_audit = sum(1 for kind in kinds.values() if kind == "audit")
    report = PushReport(
        url=client.url, project_id=project_id, project_title=title, project_created=created,
        selected=selection.height, borderline=selection.height - n_audit, audit=n_audit,
        already_present=sum(1 for eid in kinds if eid in present), view_id=view_id,
    )
    previous = read_pushed(cfg.run_path)
    earlier = dict(previous.select("example_id", "reason").iter_rows()) if previous is not None else {}
    pushed: dict[str, tuple[int | None, str]] = {
        eid: (tid, earlier.get(eid) or _kind_reason(kinds.get(eid))) for eid, tid in present.items()
    }
    state = state_dir(cfg)
    _save_push_state(state, report, pushed)
    batch_size = cfg.review.batch_size
    for start in range(0, len(tasks), batch_size):
        if stop_after_batches is not None and report.batches >= stop_after_batches:
            return report
        batch = tasks[start:start + batch_size]
        client.import_tasks(project_id, batch)
        for task in batch:
            pushed[task["data"]["example_id"]] = (None, task["data"]["reason"])
        report.imported += len(batch)
        report.batches += 1
        _save_push_state(state, report, pushed)
    for eid, tid in client.task_ids_by_example(project_id).items():
        pushed[eid] = (tid, pushed.get(eid, (None, reasons.get(eid) or _kind_reason(kinds.get(eid))))[1])
    report.finished = True
    _save_push_state(state, report, pushed)
    return report


def _kind_reason(kind: str | None) -> str:
    """The reason of a task pushed by an earlier run whose state was lost: its kind at least."""
    return {"audit": "Audit", "borderline": "Borderline"}.get(kind or "", "pushed earlier")


def _save_push_state(state: Path, report: PushReport, pushed: dict[str, tuple[int | None, str]]) -> None:
    report.updated_at = _now()
    frame = REVIEW_PUSHED.frame(
        [{"example_id": eid, "task_id": tid, "reason": reason} for eid, (tid, reason) in sorted(pushed.items())]
    )
    atomic_write_parquet(frame, state / REVIEW_PUSHED.name)
    atomic_write_text(state / "push.json", json.dumps(asdict(report), indent=2))


# --------------------------------------------------------------------------- pull


@dataclass
class PullReport:
    """What a pull found. `pending_tasks`: tasks with no valid decision yet (no annotation, only
    skipped ones, no decision chosen, or a refused correction). `counts` and `audit` are what
    the review stage will do with these decisions (the same function computes both)."""

    url: str
    project_id: int
    tasks: int
    annotations: int
    pending_tasks: int
    annotations_without_decision: int = 0
    invalid_corrections: list[dict[str, Any]] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    multi_annotated: int = 0
    mean_agreement: float | None = None
    resolution: str = ""
    updated_at: str = ""


def pull(cfg: ReviewSettings, client: ReviewClient | None = None) -> PullReport:
    """Export the annotations and store the resolved decisions (atomically)."""
    client = client or ReviewClient.from_config(cfg.review)
    state = state_dir(cfg)
    project_id = _project_id(cfg, client, state)
    exported = client.export(project_id)
    emails = client.user_emails()
    rows: list[dict[str, Any]] = []
    without_decision = 0
    for task in exported:
        data = task.get("data") or {}
        example_id = data.get("example_id")
        if not example_id:
            continue
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            read = read_annotation(
                cfg.task, data["output_json"], annotation.get("result") or [],
                chunk=data.get("chunk"), regions=data.get("regions"),
            )
            if read.decision is None:
                without_decision += 1
                continue
            row = _annotation_row(cfg, example_id, int(task["id"]), data, annotation, read, emails)
            rows.append(row)
    annotations = REVIEW_ANNOTATIONS.frame(rows)
    decisions = resolve(annotations.filter(pl.col("valid")), cfg.review.resolution)
    atomic_write_parquet(annotations, state / REVIEW_ANNOTATIONS.name)
    atomic_write_parquet(decisions, state / REVIEW_DECISIONS.name)
    multi = decisions.filter(pl.col("n_annotations") > 1)
    decided = set(decisions["example_id"].to_list())
    merged = _merge_report(cfg, decisions)
    report = PullReport(
        url=client.url, project_id=project_id, tasks=len(exported), annotations=annotations.height,
        pending_tasks=sum(1 for t in exported if (t.get("data") or {}).get("example_id") not in decided),
        annotations_without_decision=without_decision,
        invalid_corrections=[
            {"task_id": r["task_id"], "example_id": r["example_id"], "reviewer": r["reviewer"], "error": r["error"]}
            for r in annotations.filter(~pl.col("valid")).iter_rows(named=True)
        ],
        decisions=dict(Counter(decisions["decision"].to_list())),
        counts=merged.get("counts", {}), audit=merged.get("audit", {}),
        multi_annotated=multi.height,
        mean_agreement=round(float(multi["agreement"].mean()), 4) if multi.height else None,  # type: ignore[arg-type]
        resolution=cfg.review.resolution,
        updated_at=_now(),
    )
    atomic_write_text(state / "pull.json", json.dumps(asdict(report), indent=2))
    return report


def _merge_report(cfg: ReviewSettings, decisions: pl.DataFrame) -> dict[str, Any]:
    """The review stage's counts and audit for these decisions (empty without dedup/examples)."""
    try:
        examples = read_examples(cfg)
    except FileNotFoundError:
        return {}
    return apply_review(examples, decisions, read_pushed(cfg.run_path), cfg.review)[2]


def _project_id(cfg: ReviewSettings, client: ReviewClient, state: Path) -> int:
    push_state = state / "push.json"
    if push_state.exists():
        saved = json.loads(push_state.read_text())
        if saved.get("url") == client.url and saved.get("project_title") == project_title(cfg):
            return int(saved["project_id"])
    found = client.find_project(project_title(cfg))
    if found is None:
        raise ReviewServerError(
            f"Label Studio at {client.url} has no project titled {project_title(cfg)!r}: run `curate review push` first"
        )
    return found


def _annotation_row(
    cfg: ReviewSettings, example_id: str, task_id: int, data: dict[str, Any], annotation: dict[str, Any],
    read: Any, emails: dict[int, str],
) -> dict[str, Any]:
    completed_by = annotation.get("completed_by")
    if isinstance(completed_by, dict):
        reviewer = str(completed_by.get("email") or completed_by.get("id"))
    else:
        reviewer = emails.get(int(completed_by), str(completed_by)) if completed_by is not None else "unknown"
    row: dict[str, Any] = {
        "example_id": example_id, "decision": read.decision, "corrected_output_json": None,
        "note": read.note, "reviewer": reviewer,
        "reviewed_at": str(annotation.get("updated_at") or annotation.get("created_at")),
        "annotation_id": annotation.get("id"), "task_id": task_id, "valid": True, "error": None,
        "evidence_json": None, "grounding_score": None,
    }
    if read.decision == "correct" and not read.changed:
        row.update(valid=False, error=(
            f"task {task_id}: marked 'correct' but nothing was changed (the label, fields and quote are the "
            "teacher's): choose 'accept', or change what is wrong"
        ))
    elif read.decision == "correct":
        checked = check_correction(cfg.task, read.corrected or {}, data["chunk"], cfg.review.min_grounding, read.spans)
        if checked.error:
            row.update(valid=False, error=f"task {task_id}: {checked.error}")
        else:
            row.update(
                corrected_output_json=checked.output_json,
                evidence_json=json.dumps([e.model_dump() for e in checked.evidence]),
                grounding_score=checked.grounding_score,
            )
    return row


def resolve(annotations: pl.DataFrame, rule: str) -> pl.DataFrame:
    """One decision per example from its reviewers' annotations, under `rule`."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in annotations.iter_rows(named=True):
        groups.setdefault(row["example_id"], []).append(row)
    out = []
    for example_id, rows in sorted(groups.items()):
        rows.sort(key=lambda r: (r["reviewed_at"], r["annotation_id"] or 0))
        chosen = _choose(rows, rule)
        agreeing = [r for r in rows if r["decision"] == chosen["decision"]]
        out.append({
            "example_id": example_id, "decision": chosen["decision"],
            "corrected_output_json": chosen["corrected_output_json"],
            "note": " | ".join(r["note"] for r in rows if r["note"]) or None,
            "reviewer": ",".join(sorted({r["reviewer"] for r in agreeing})),
            "reviewed_at": max(r["reviewed_at"] for r in agreeing),
            "annotation_id": chosen["annotation_id"],
            "n_annotations": len(rows), "agreement": agreement(rows),
            "evidence_json": chosen["evidence_json"], "grounding_score": chosen["grounding_score"],
        })
    return REVIEW_DECISIONS.frame(out)


def _choose(rows: list[dict[str, Any]], rule: str) -> dict[str, Any]:
    """`rows` are in time order. Ties go to the stricter decision (reject > correct > accept)."""
    if rule == "most_recent":
        return rows[-1]
    if rule == "any_reject":
        for decision in ("reject", "correct", "accept"):
            matching = [r for r in rows if r["decision"] == decision]
            if matching:
                return matching[-1]
    counts = Counter(r["decision"] for r in rows)
    best = max(counts, key=lambda d: (counts[d], SEVERITY[d]))
    return [r for r in rows if r["decision"] == best][-1]


def agreement(rows: list[dict[str, Any]]) -> float | None:
    """Share of reviewer pairs that made the same decision (and the same correction)."""
    if len(rows) < 2:
        return None
    pairs = list(combinations(rows, 2))
    same = sum(
        1 for a, b in pairs
        if a["decision"] == b["decision"] and a["corrected_output_json"] == b["corrected_output_json"]
    )
    return same / len(pairs)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


__all__ = ["audit_draw", "is_audit", "pull", "push", "select_for_review"]
