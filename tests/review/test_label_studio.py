"""Push, annotate as reviewers would, pull and merge, against a real Label Studio server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from curate.config import PipelineConfig
from curate.dataset.card import review_lines
from curate.review.client import ReviewClient, ReviewServerError
from curate.review.server import free_port
from curate.review.stages import STAGES as REVIEW_STAGES
from curate.review.sync import VIEW_TITLE, examples_with_doubt, pull, push, read_chunks, select_for_review
from curate.run.rundir import RunDir
from curate.run.runner import Runner
from curate.run_report import print_status, write_run_report
from tests.review.conftest import build_run

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(label_studio: Any) -> ReviewClient:
    return ReviewClient(label_studio.url, label_studio.token)


@pytest.fixture()
def ls_run(shared_corpus: Path, tmp_path: Path, label_studio: Any, request: pytest.FixtureRequest) -> PipelineConfig:
    review = {
        "url": label_studio.url, "project_title": f"assay test {request.node.name}"[:50],
        "audit_fraction": 0.5, "batch_size": 2, "resolution": "majority", "pending": "keep",
        "audit_min_reviewed": 2, "guidelines": {"access-control": "Who may use which system, and how that is checked."},
    }
    return build_run(shared_corpus, tmp_path / "run", review)


def _tasks(client: ReviewClient, project_id: int) -> list[Any]:
    return list(client.sdk.tasks.list(project=project_id, fields="all"))


def _annotate(client: ReviewClient, task: Any, decision: str, *, user: int | None = None,
              label: str | None = None, quote_span: tuple[int, int] | None = None, quote_text: str | None = None,
              note: str | None = None) -> None:
    """What a reviewer's submit sends: the prediction's result (as the UI copies it), edited,
    plus the decision and note."""
    prediction = task.predictions[0]
    result = [json.loads(json.dumps(item)) for item in prediction.result]
    chunk = task.data["chunk"]
    if label:  # nothing is pre-selected: the reviewer picks the label
        result.append({"from_name": "fix_label", "to_name": "chunk", "type": "choices", "value": {"choices": [label]}})
    for item in result:
        if quote_span and item["type"] == "labels":
            start, end = quote_span
            item["value"].update(start=start, end=end, text=chunk[start:end])
        if quote_text and item["type"] == "labels":
            item["value"]["text"] = quote_text
    result.append({"from_name": "decision", "to_name": "chunk", "type": "choices", "value": {"choices": [decision]}})
    if note:
        result.append({"from_name": "note", "to_name": "chunk", "type": "textarea", "value": {"text": [note]}})
    extra = {"completed_by": user} if user is not None else {}
    client.sdk.annotations.create(id=task.id, result=result, parent_prediction=prediction.id, **extra)


def test_push_annotate_pull_merge(ls_run: PipelineConfig, client: ReviewClient) -> None:
    examples = pl.read_parquet(ls_run.run_path / "dedup" / "examples.parquet")
    original = {r["example_id"]: r for r in examples.iter_rows(named=True)}
    scored = examples_with_doubt(ls_run, examples, read_chunks(ls_run))  # the real embedding model
    doubt = dict(scored.select("example_id", "doubt").iter_rows())
    selection = select_for_review(scored, ls_run.review)
    order = selection["example_id"].to_list()
    report = push(ls_run, client)
    assert report.finished and report.project_created
    assert report.imported == report.selected == len(order)
    tasks = {t.data["example_id"]: t for t in _tasks(client, report.project_id)}
    assert tasks.keys() == set(order)

    # most doubtful first: in the review tab, and in task ids (the labeling stream's sequence)
    (view,) = [v for v in client.sdk.views.list(project=report.project_id) if v.data["title"] == VIEW_TITLE]
    listed = [t.data["example_id"] for t in client.sdk.tasks.list(project=report.project_id, view=view.id, fields="all")]
    assert listed == order == [eid for eid, _ in sorted(((e, tasks[e].id) for e in order), key=lambda p: p[1])]
    kinds = selection["kind"].to_list()
    assert kinds[0] == "borderline" and kinds == sorted(kinds, key=lambda k: k != "borderline")
    # the doubt reaches the server as the prediction's score (confidence = 1 - doubt), and Label
    # Studio's own ordering by prediction score (lowest first) lists the most doubtful first
    assert len(set(doubt.values())) > 2
    for eid, task in tasks.items():
        assert task.predictions[0].score == pytest.approx(1 - doubt[eid], abs=1e-4)
    by_score = client.sdk.views.create(data={"title": "by score", "ordering": ["tasks:predictions_score"]},
                                       project=report.project_id)
    listed_by_score = [t.data["example_id"] for t in
                       client.sdk.tasks.list(project=report.project_id, view=by_score.id, fields="all")]
    assert sorted(listed_by_score) == sorted(order)
    assert [doubt[e] for e in listed_by_score] == sorted(doubt[e] for e in order)[::-1]
    highest = client.sdk.views.create(data={"title": "by score, highest first", "ordering": ["-tasks:predictions_score"]},
                                      project=report.project_id)
    reverse = [t.data["example_id"] for t in client.sdk.tasks.list(project=report.project_id, view=highest.id, fields="all")]
    assert [doubt[e] for e in reverse] == sorted(doubt[e] for e in order)  # the server sorts: not the import order
    assert "tasks:data.output_json" in view.data["hiddenColumns"]["explore"]
    project = client.sdk.projects.get(id=report.project_id)
    assert project.show_instruction and "Who may use which system" in (project.expert_instruction or "")
    assert all(label in (project.expert_instruction or "") for label in ls_run.task.labels)
    for eid, task in tasks.items():  # the region holds the teacher's quote exactly, and the reason is plain
        (region,) = [r for r in task.predictions[0].result if r["type"] == "labels"]
        value = region["value"]
        assert task.data["chunk"][value["start"]:value["end"]] == value["text"] == json.loads(task.data["output_json"])["quote"]
        assert not [r for r in task.predictions[0].result if r["from_name"] == "fix_label"]
        assert task.data["reason"].startswith("Audit" if selection.filter(pl.col("example_id") == eid)["kind"][0] == "audit" else "Borderline")
        assert " of 3 samples said " in task.data["reason"] or "agreement" in task.data["reason"]

    borderline = [eid for eid, kind in zip(order, kinds, strict=True) if kind == "borderline"]
    audits = [eid for eid, kind in zip(order, kinds, strict=True) if kind == "audit"]
    assert len(borderline) >= 6 and len(audits) >= ls_run.review.audit_min_reviewed
    stop_quoted = [eid for eid in borderline if json.loads(original[eid]["output_json"])["quote"].endswith(".")]
    assert stop_quoted  # a quote ending in punctuation, whose evidence leaves the "." out
    relabelled_id = stop_quoted[0]
    rejected_id, moved_id, disputed_id, invalid_id, noop_id = [e for e in borderline if e != relabelled_id][:5]
    second = client.sdk.users.create(email="second@assay.local", username="second").id
    third = client.sdk.users.create(email="third@assay.local", username="third").id

    _annotate(client, tasks[rejected_id], "reject", note="quote does not support the label")
    _annotate(client, tasks[relabelled_id], "correct", label="incident-response")  # label only
    chunk = tasks[moved_id].data["chunk"]
    span = (chunk.index(" ", 20) + 1, chunk.index(" ", 90))
    _annotate(client, tasks[moved_id], "correct", label="incident-response", quote_span=span)
    _annotate(client, tasks[disputed_id], "accept")
    _annotate(client, tasks[disputed_id], "accept", user=second)
    _annotate(client, tasks[disputed_id], "reject", user=third)
    _annotate(client, tasks[invalid_id], "correct", label="audit", quote_text="Passwords rotate hourly using quantum keys.")
    _annotate(client, tasks[noop_id], "correct")  # "correct" that changes nothing
    for eid in audits:
        _annotate(client, tasks[eid], "accept", user=second)

    pulled = pull(ls_run, client)
    assert pulled.annotations == 8 + len(audits)
    assert pulled.decisions == {"reject": 1, "correct": 2, "accept": 1 + len(audits)}
    refused = {c["example_id"]: c for c in pulled.invalid_corrections}
    assert refused.keys() == {invalid_id, noop_id}
    assert refused[noop_id]["error"].startswith(f"task {tasks[noop_id].id}: marked 'correct' but nothing was changed")
    assert refused[invalid_id]["task_id"] == tasks[invalid_id].id
    assert pulled.pending_tasks == len(order) - 4 - len(audits)
    never_sent = examples.height - len(order)
    assert pulled.counts == {"accepted": 1 + len(audits), "corrected": 2, "rejected": 1,
                             "pending": len(borderline) - 4, "never_sent": never_sent}
    assert pulled.audit["status"] == "passed" and pulled.audit["reviewed"] == len(audits)
    assert pulled.multi_annotated == 1 and pulled.mean_agreement == pytest.approx(1 / 3, abs=1e-3)

    # the review stage, run by the pipeline's runner: manifest, report.md, `curate status`, card
    Runner(ls_run, REVIEW_STAGES, show_progress=False).run()
    kept = {r["example_id"]: r for r in pl.read_parquet(ls_run.run_path / "review" / "examples.parquet").iter_rows(named=True)}
    removed = pl.read_parquet(ls_run.run_path / "review" / "rejected.parquet")
    assert rejected_id not in kept
    assert removed.filter(pl.col("item_id") == rejected_id)["detail"].to_list() == ["quote does not support the label"]

    relabelled, before = kept[relabelled_id], original[relabelled_id]
    teacher_quote = json.loads(before["output_json"])["quote"]
    assert relabelled["review_status"] == "corrected" and relabelled["label"] == "incident-response"
    assert json.loads(relabelled["output_json"]) == {"label": "incident-response", "quote": teacher_quote}
    for role in ("system", "user"):  # byte-identical: the source passage is untouched
        new = next(m["content"] for m in relabelled["messages"] if m["role"] == role)
        old = next(m["content"] for m in before["messages"] if m["role"] == role)
        assert new.encode() == old.encode()
    assert json.loads(relabelled["messages"][-1]["content"])["quote"] == teacher_quote

    moved = kept[moved_id]
    assert json.loads(moved["output_json"]) == {"label": "incident-response", "quote": chunk[span[0]:span[1]]}
    (evidence,) = moved["evidence"]  # grounded by the region's offsets
    assert (evidence["field"], evidence["start"], evidence["end"], evidence["score"]) == ("quote", *span, 1.0)
    assert moved["reviewer"] == "reviewer@assay.local" and moved["reviewed_at"].startswith("20")
    assert [m["content"] for m in moved["messages"][:2]] == [m["content"] for m in original[moved_id]["messages"][:2]]
    assert kept[disputed_id]["review_status"] == "accepted"
    assert kept[disputed_id]["reviewer"] == "reviewer@assay.local,second@assay.local"
    assert kept[invalid_id]["review_status"] == kept[noop_id]["review_status"] == "pending"
    assert all(kept[eid]["review_status"] == "accepted" for eid in audits)
    assert len(kept) + removed.height == examples.height

    stage_report = RunDir(ls_run.run_path).load_manifest()["stages"]["review"]["report"]
    assert stage_report["counts"] == pulled.counts and stage_report["audit"] == pulled.audit
    report_md = write_run_report(ls_run.run_path).read_text()
    assert json.dumps(pulled.counts, indent=2) in report_md
    console = Console(record=True, width=200)
    print_status(ls_run.run_path, console)
    status = console.export_text()
    for key, value in pulled.counts.items():
        assert re.search(rf"{key}\s*│\s*{value}\s*│", status), key
    card = " ".join(review_lines(stage_report))
    c = pulled.counts
    assert (f"{c['accepted']} accepted, {c['corrected']} corrected and {c['rejected']} rejected" in card
            and f"{c['pending']} sent for review and not decided yet" in card and f"{c['never_sent']} never sent" in card)

    again = push(ls_run, client)  # re-push: nothing new, no duplicate
    assert (again.imported, again.already_present, again.project_created) == (0, len(order), False)
    ids = [t.data["example_id"] for t in _tasks(client, report.project_id)]
    assert sorted(ids) == sorted(order)


def test_interrupted_push_resumes(ls_run: PipelineConfig, client: ReviewClient) -> None:
    first = push(ls_run, client, stop_after_batches=1)
    assert not first.finished and first.imported == ls_run.review.batch_size
    state = json.loads((ls_run.run_path / "review.state" / "push.json").read_text())
    assert state["finished"] is False and state["batches"] == 1
    second = push(ls_run, client)
    assert second.finished and second.already_present == first.imported
    assert second.imported == second.selected - first.imported
    ids = [t.data["example_id"] for t in _tasks(client, second.project_id)]
    assert len(ids) == len(set(ids)) == second.selected


def test_wrong_token_and_server_down_are_clear_and_lose_nothing(ls_run: PipelineConfig, label_studio: Any, client: ReviewClient) -> None:
    with pytest.raises(ReviewServerError) as wrong:
        push(ls_run, ReviewClient(label_studio.url, "not-the-token-0000"))
    message = str(wrong.value)
    assert "HTTP 401" in message and label_studio.url in message and "token" in message
    assert not (ls_run.run_path / "review.state" / "push.json").exists()
    down_url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ReviewServerError) as down:
        pull(ls_run, ReviewClient(down_url, label_studio.token))
    assert down_url in str(down.value) and "make review-server" in str(down.value)
    report = push(ls_run, client)  # a later push goes on normally
    assert report.finished and report.imported == report.selected


def test_cli_push_and_pull(ls_run: PipelineConfig, label_studio: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from curate.cli import app

    config = tmp_path / "pipeline.yaml"
    dumped = ls_run.model_dump(mode="json", by_alias=True, exclude={"base_dir"})
    config.write_text(yaml.safe_dump({k: dumped[k] for k in ("name", "run_dir", "task", "review")}))
    runner = CliRunner()
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "wrong-token-1234")
    refused = runner.invoke(app, ["review", "push", str(config)])
    assert refused.exit_code == 1 and "HTTP 401" in refused.output
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    pushed = runner.invoke(app, ["review", "push", str(config)])
    assert pushed.exit_code == 0, pushed.output
    assert "imported" in pushed.output
    pulled = runner.invoke(app, ["review", "pull", str(config)])
    assert pulled.exit_code == 0, pulled.output
    assert (ls_run.run_path / "review.state" / "decisions.parquet").exists()
