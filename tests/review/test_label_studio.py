"""Push, annotate as reviewers would, pull and merge, against a real Label Studio server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from curate.config import PipelineConfig
from curate.review.client import ReviewClient, ReviewServerError
from curate.review.server import free_port
from curate.review.stages import review_stage
from curate.review.sync import pull, push, select_for_review
from curate.run.stage import StageContext
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
    for item in result:
        if label and item["from_name"] == "fix_label":
            item["value"]["choices"] = [label]
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
    selection = dict(select_for_review(examples, ls_run.review).iter_rows())
    report = push(ls_run, client)
    assert report.finished and report.project_created
    assert report.imported == report.selected == len(selection)
    tasks = {t.data["example_id"]: t for t in _tasks(client, report.project_id)}
    assert tasks.keys() == selection.keys()
    for task in tasks.values():  # the evidence is highlighted where it is in the chunk
        (region,) = [r for r in task.predictions[0].result if r["type"] == "labels"]
        value = region["value"]
        assert task.data["chunk"][value["start"]:value["end"]] == value["text"]

    borderline = sorted(eid for eid, reason in selection.items() if reason.startswith("borderline"))
    audits = sorted(eid for eid, reason in selection.items() if reason.startswith("audit"))
    assert len(borderline) >= 4 and audits
    rejected_id, corrected_id, disputed_id, invalid_id = borderline[:4]
    second = client.sdk.users.create(email="second@assay.local", username="second").id
    third = client.sdk.users.create(email="third@assay.local", username="third").id

    _annotate(client, tasks[rejected_id], "reject", note="quote does not support the label")
    chunk = tasks[corrected_id].data["chunk"]
    span = (chunk.index(" ", 20) + 1, chunk.index(" ", 90))
    _annotate(client, tasks[corrected_id], "correct", label="incident-response", quote_span=span)
    _annotate(client, tasks[disputed_id], "accept")
    _annotate(client, tasks[disputed_id], "accept", user=second)
    _annotate(client, tasks[disputed_id], "reject", user=third)
    _annotate(client, tasks[invalid_id], "correct", label="audit", quote_text="Passwords rotate hourly using quantum keys.")
    for eid in audits:
        _annotate(client, tasks[eid], "accept", user=second)

    pulled = pull(ls_run, client)
    assert pulled.annotations == 6 + len(audits)
    assert pulled.decisions == {"reject": 1, "correct": 1, "accept": 1 + len(audits)}
    assert [c["example_id"] for c in pulled.invalid_corrections] == [invalid_id]
    assert pulled.multi_annotated == 1 and pulled.mean_agreement == pytest.approx(1 / 3, abs=1e-3)
    decisions = pl.read_parquet(ls_run.run_path / "review.state" / "decisions.parquet")
    assert decisions.height == 3 + len(audits)

    ctx = StageContext(config=ls_run, run_dir=str(ls_run.run_path), stage="review", show_progress=False)
    merged = review_stage(examples, ctx)
    kept = {r["example_id"]: r for r in merged["examples"].iter_rows(named=True)}
    assert rejected_id not in kept
    assert merged["rejected"].filter(pl.col("item_id") == rejected_id)["detail"].to_list() == ["quote does not support the label"]
    fixed = kept[corrected_id]
    assert fixed["review_status"] == "corrected" and fixed["label"] == "incident-response"
    assert json.loads(fixed["output_json"]) == {"label": "incident-response", "quote": chunk[span[0]:span[1]]}
    assert json.loads(fixed["messages"][-1]["content"])["label"] == "incident-response"
    (evidence,) = fixed["evidence"]  # grounded again: the moved quote's place in the chunk
    assert evidence["field"] == "quote" and evidence["score"] == 1.0
    assert chunk[evidence["start"]:evidence["end"]] in chunk[span[0]:span[1]]
    assert abs(evidence["start"] - span[0]) <= 1 and abs(evidence["end"] - span[1]) <= 1
    assert fixed["reviewer"] == "reviewer@assay.local" and fixed["reviewed_at"].startswith("20")
    assert kept[disputed_id]["review_status"] == "accepted"
    assert kept[disputed_id]["reviewer"] == "reviewer@assay.local,second@assay.local"
    assert kept[invalid_id]["review_status"] == "auto"  # invalid correction not applied: still pending
    assert all(kept[eid]["review_status"] == "accepted" for eid in audits)
    assert len(kept) + merged["rejected"].height == examples.height

    again = push(ls_run, client)  # re-push: nothing new, no duplicate
    assert (again.imported, again.already_present, again.project_created) == (0, len(selection), False)
    ids = [t.data["example_id"] for t in _tasks(client, report.project_id)]
    assert sorted(ids) == sorted(selection)


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
