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

from curate.config import PipelineConfig
from curate.review.client import ReviewClient, ReviewServerError
from curate.review.config import ReviewConfig
from curate.review.labeling import check_correction, label_config, read_annotation, task_payload
from curate.run.rundir import atomic_write_parquet, atomic_write_text
from schemas.ids import content_id
from schemas.records import ReviewDecision, polars_schema

EXAMPLES_ARTIFACT = ("dedup", "examples")
CHUNK_ARTIFACTS = (("redact", "chunks"), ("chunk", "chunks"))
STATE_DIR = "review.state"
SEVERITY = {"reject": 2, "correct": 1, "accept": 0}

PUSHED_SCHEMA = pl.Schema({"example_id": pl.String(), "task_id": pl.Int64(), "reason": pl.String()})
ANNOTATION_EXTRA = {
    "task_id": pl.Int64(),
    "valid": pl.Boolean(),
    "error": pl.String(),
    "evidence_json": pl.String(),
    "grounding_score": pl.Float64(),
}
DECISION_EXTRA = {
    "n_annotations": pl.Int64(),
    "agreement": pl.Float64(),
    "evidence_json": pl.String(),
    "grounding_score": pl.Float64(),
}


def state_dir(cfg: PipelineConfig) -> Path:
    return cfg.run_path / STATE_DIR


def project_title(cfg: PipelineConfig) -> str:
    return cfg.review.project_title or f"assay: {cfg.name}/{cfg.task.name}"[:50]


# --------------------------------------------------------------------------- sampling


def audit_draw(seed: str, example_id: str) -> float:
    """A uniform number in [0, 1) from the seed and the example id (no row order involved)."""
    return int(content_id("audit", seed, example_id), 16) / 2**64


def select_for_review(examples: pl.DataFrame, review: ReviewConfig) -> pl.DataFrame:
    """example_id and reason of every example to send: borderline ones, then the audit share."""
    rows = []
    for example_id, agreement, grounding in examples.select("example_id", "agreement", "grounding_score").iter_rows():
        reasons = []
        if agreement < review.borderline_agreement:
            reasons.append(f"agreement {agreement:.2f} < {review.borderline_agreement:.2f}")
        if grounding < review.borderline_grounding:
            reasons.append(f"grounding {grounding:.2f} < {review.borderline_grounding:.2f}")
        if reasons:
            rows.append((example_id, "borderline: " + ", ".join(reasons)))
        elif audit_draw(review.seed, example_id) < review.audit_fraction:
            rows.append((example_id, "audit: a random sample of auto-accepted examples"))
    return pl.DataFrame(rows, schema={"example_id": pl.String(), "reason": pl.String()}, orient="row")


def is_audit(reason: str) -> bool:
    return reason.startswith("audit")


# --------------------------------------------------------------------------- run-dir inputs


def read_examples(cfg: PipelineConfig) -> pl.DataFrame:
    path = cfg.run_path / EXAMPLES_ARTIFACT[0] / f"{EXAMPLES_ARTIFACT[1]}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `curate filter` (or `curate run`) before reviewing")
    return pl.read_parquet(path)


def read_chunks(cfg: PipelineConfig) -> pl.DataFrame:
    for stage, name in CHUNK_ARTIFACTS:
        path = cfg.run_path / stage / f"{name}.parquet"
        if path.exists():
            return pl.read_parquet(path, columns=["chunk_id", "text", "source_path", "heading_path"])
    raise FileNotFoundError(f"no chunks in {cfg.run_path}: run the pipeline up to the filters first")


def read_pushed(run_path: Path) -> pl.DataFrame | None:
    path = run_path / STATE_DIR / "pushed.parquet"
    return pl.read_parquet(path) if path.exists() else None


def read_decisions(run_path: Path) -> pl.DataFrame | None:
    path = run_path / STATE_DIR / "decisions.parquet"
    return pl.read_parquet(path) if path.exists() else None


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
    updated_at: str = ""


def build_tasks(cfg: PipelineConfig, examples: pl.DataFrame, chunks: pl.DataFrame, selection: pl.DataFrame) -> list[dict[str, Any]]:
    chunk_by_id = {row["chunk_id"]: row for row in chunks.iter_rows(named=True)}
    reasons = dict(selection.iter_rows())
    tasks = []
    for row in examples.filter(pl.col("example_id").is_in(selection["example_id"].implode())).iter_rows(named=True):
        chunk = chunk_by_id.get(row["chunk_id"])
        if chunk is None:
            raise ValueError(f"example {row['example_id']}: its chunk {row['chunk_id']} is not in the run's chunks")
        source = " › ".join([chunk["source_path"], *(chunk["heading_path"] or [])])
        tasks.append(task_payload(
            cfg.task,
            example_id=row["example_id"], output_json=row["output_json"], chunk=chunk["text"],
            source=source, reason=reasons[row["example_id"]], evidence=list(row["evidence"] or []),
            model_version="teacher", score=float(row["quality_score"]),
        ))
    tasks.sort(key=lambda task: task["data"]["example_id"])
    return tasks


def push(cfg: PipelineConfig, client: ReviewClient | None = None, *, stop_after_batches: int | None = None) -> PushReport:
    """Send the sample to Label Studio; safe to repeat and to resume.

    `stop_after_batches` stops early on purpose (how tests stand for an interrupted push).
    """
    examples = read_examples(cfg)
    chunks = read_chunks(cfg)
    selection = select_for_review(examples, cfg.review)
    client = client or ReviewClient.from_config(cfg.review)
    client.whoami()
    title = project_title(cfg)
    project_id, created = client.ensure_project(
        title, label_config(cfg.task), description=f"assay expert review of {cfg.name} ({cfg.task.type.value})",
        annotations_per_task=cfg.review.annotations_per_task,
    )
    present = client.task_ids_by_example(project_id)
    reasons = dict(selection.iter_rows())
    tasks = [t for t in build_tasks(cfg, examples, chunks, selection) if t["data"]["example_id"] not in present]
    n_audit = sum(1 for reason in reasons.values() if is_audit(reason))
    report = PushReport(
        url=client.url, project_id=project_id, project_title=title, project_created=created,
        selected=selection.height, borderline=selection.height - n_audit, audit=n_audit,
        already_present=sum(1 for eid in reasons if eid in present),
    )
    pushed: dict[str, tuple[int | None, str]] = {
        eid: (tid, reasons.get(eid, "pushed earlier")) for eid, tid in present.items()
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
        pushed[eid] = (tid, pushed.get(eid, (None, reasons.get(eid, "pushed earlier")))[1])
    report.finished = True
    _save_push_state(state, report, pushed)
    return report


def _save_push_state(state: Path, report: PushReport, pushed: dict[str, tuple[int | None, str]]) -> None:
    report.updated_at = _now()
    frame = pl.DataFrame(
        [(eid, tid, reason) for eid, (tid, reason) in sorted(pushed.items())], schema=PUSHED_SCHEMA, orient="row"
    )
    atomic_write_parquet(frame, state / "pushed.parquet")
    atomic_write_text(state / "push.json", json.dumps(asdict(report), indent=2))


# --------------------------------------------------------------------------- pull


@dataclass
class PullReport:
    url: str
    project_id: int
    tasks: int
    annotations: int
    undecided: int
    invalid_corrections: list[dict[str, str]] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    multi_annotated: int = 0
    mean_agreement: float | None = None
    resolution: str = ""
    updated_at: str = ""


def pull(cfg: PipelineConfig, client: ReviewClient | None = None) -> PullReport:
    """Export the annotations and store the resolved decisions (atomically)."""
    client = client or ReviewClient.from_config(cfg.review)
    state = state_dir(cfg)
    project_id = _project_id(cfg, client, state)
    exported = client.export(project_id)
    emails = client.user_emails()
    rows: list[dict[str, Any]] = []
    undecided = 0
    for task in exported:
        data = task.get("data") or {}
        example_id = data.get("example_id")
        if not example_id:
            continue
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            read = read_annotation(cfg.task, data["output_json"], annotation.get("result") or [])
            if read.decision is None:
                undecided += 1
                continue
            row = _annotation_row(cfg, example_id, int(task["id"]), data, annotation, read, emails)
            rows.append(row)
    annotations = pl.DataFrame(rows, schema=_schema(ANNOTATION_EXTRA), orient="row") if rows else pl.DataFrame(schema=_schema(ANNOTATION_EXTRA))
    decisions = resolve(annotations.filter(pl.col("valid")), cfg.review.resolution)
    atomic_write_parquet(annotations, state / "annotations.parquet")
    atomic_write_parquet(decisions, state / "decisions.parquet")
    multi = decisions.filter(pl.col("n_annotations") > 1)
    report = PullReport(
        url=client.url, project_id=project_id, tasks=len(exported), annotations=annotations.height,
        undecided=undecided,
        invalid_corrections=[
            {"example_id": r["example_id"], "reviewer": r["reviewer"], "error": r["error"]}
            for r in annotations.filter(~pl.col("valid")).iter_rows(named=True)
        ],
        decisions=dict(Counter(decisions["decision"].to_list())),
        multi_annotated=multi.height,
        mean_agreement=round(float(multi["agreement"].mean()), 4) if multi.height else None,  # type: ignore[arg-type]
        resolution=cfg.review.resolution,
        updated_at=_now(),
    )
    atomic_write_text(state / "pull.json", json.dumps(asdict(report), indent=2))
    return report


def _project_id(cfg: PipelineConfig, client: ReviewClient, state: Path) -> int:
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
    cfg: PipelineConfig, example_id: str, task_id: int, data: dict[str, Any], annotation: dict[str, Any],
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
    if read.decision == "correct":
        checked = check_correction(cfg.task, read.corrected or {}, data["chunk"], cfg.review.min_grounding)
        if checked.error:
            row.update(valid=False, error=checked.error)
        else:
            row.update(
                corrected_output_json=checked.output_json,
                evidence_json=json.dumps([e.model_dump() for e in checked.evidence]),
                grounding_score=checked.grounding_score,
            )
    return row


def _schema(extra: dict[str, pl.DataType]) -> pl.Schema:
    return pl.Schema({**polars_schema(ReviewDecision), **extra})


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
    schema = _schema(DECISION_EXTRA)
    return pl.DataFrame(out, schema=schema, orient="row") if out else pl.DataFrame(schema=schema)


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
