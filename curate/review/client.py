"""The thin edge between our review logic and label-studio-sdk 2.x.

Everything vendor-specific (the SDK's client, its pagers, its errors) stays here; push and
pull talk to `ReviewClient`, whose errors (`ReviewServerError`) name the URL, the HTTP
status and what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from assay.errors import AssayError
from curate.review.config import ReviewConfig

T = TypeVar("T")


# Project settings push keeps: annotators and reviewers see every task, in the Data Manager's
# order (the review tab's: most doubtful first), with the instructions before the first one;
# an empty submission is refused.
PROJECT_SETTINGS: dict[str, Any] = {
    "show_instruction": True,
    "sampling": "Sequential sampling",
    "enable_empty_annotation": False,
    "show_collab_predictions": True,
    "show_skip_button": True,
}


class ReviewServerError(AssayError, RuntimeError):
    """Label Studio could not be reached or refused us; nothing was lost."""


def token_from_env(cfg: ReviewConfig) -> str:
    token = os.environ.get(cfg.token_env) or os.environ.get("LABEL_STUDIO_USER_TOKEN") or _local_server_token(cfg.url)
    if not token:
        raise ReviewServerError(
            f"no Label Studio token: set ${cfg.token_env} (or $LABEL_STUDIO_USER_TOKEN) to the API token "
            f"of a user of {cfg.url} (Account & Settings, legacy token; `python -m curate.review.server start` "
            "writes it to runs/label-studio/assay-credentials.json)"
        )
    return token


def _local_server_token(url: str) -> str | None:
    """The token of the server `python -m curate.review.server start` runs at `url`, if any."""
    from curate.review import server

    handle = server.read_state(server.DEFAULT_DATA_DIR)
    return handle.token if handle is not None and handle.url.rstrip("/") == url.rstrip("/") else None


class ReviewClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        self.sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout, max_retries=1)

    @classmethod
    def from_config(cls, cfg: ReviewConfig) -> ReviewClient:
        return cls(cfg.url, token_from_env(cfg), cfg.timeout_s)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        from label_studio_sdk.core.api_error import ApiError

        try:
            yield
        except ApiError as error:
            raise ReviewServerError(_api_message(self.url, action, error.status_code, error.body)) from None
        except httpx.HTTPError as error:
            raise ReviewServerError(
                f"cannot reach Label Studio at {self.url} while trying to {action} "
                f"({type(error).__name__}: {error}). Start it with `make review-server` "
                "(python -m curate.review.server start) or set review.url to a running server; "
                "nothing was lost: run the command again once it answers."
            ) from None

    def call(self, action: str, fn: Callable[[], T]) -> T:
        with self._errors(action):
            return fn()

    def whoami(self) -> dict[str, Any]:
        user = self.call("check the token", self.sdk.users.whoami)
        return {"id": user.id, "email": user.email, "username": user.username}

    def find_project(self, title: str) -> int | None:
        """The id of the project with exactly this title (the API matches substrings)."""
        with self._errors("list projects"):
            projects: list[Any] = list(self.sdk.projects.list(title=title))
            matches = [int(p.id) for p in projects if p.title == title]
        return min(matches) if matches else None

    def ensure_project(
        self, title: str, label_config: str, description: str = "", annotations_per_task: int = 1,
        instructions: str = "",
    ) -> tuple[int, bool]:
        """Find the project by exact title or create it; keep its labeling config and its
        review settings current (`PROJECT_SETTINGS`, the instructions panel)."""
        settings: dict[str, Any] = {**PROJECT_SETTINGS, "expert_instruction": instructions}
        project_id = self.find_project(title)
        if project_id is None:
            with self._errors("create the project"):
                project = self.sdk.projects.create(
                    title=title, label_config=label_config, description=description,
                    maximum_annotations=annotations_per_task, **settings,
                )
            assert project.id is not None
            return int(project.id), True
        with self._errors("read the project"):
            current = self.sdk.projects.get(id=project_id)
        changed = {key: value for key, value in settings.items() if getattr(current, key, None) != value}
        if current.label_config != label_config:
            changed["label_config"] = label_config
        if changed:
            with self._errors("update the project's labeling config and settings"):
                self.sdk.projects.update(id=project_id, **changed)
        return project_id, False

    def ensure_view(self, project_id: int, title: str, data: dict[str, Any]) -> int:
        """The project's Data Manager tab `title` (ordering, hidden columns), created or updated."""
        with self._errors("list the project's task-list tabs"):
            views = list(self.sdk.views.list(project=project_id))
        found = [v for v in views if v.data and v.data.get("title") == title and v.id is not None]
        payload: Any = {"title": title, **data}
        with self._errors("save the task-list tab"):
            if found:
                view = self.sdk.views.update(id=str(found[0].id), data=payload, project=project_id)
            else:
                view = self.sdk.views.create(data=payload, project=project_id)
        assert view.id is not None
        return int(view.id)

    def task_ids_by_example(self, project_id: int) -> dict[str, int]:
        """example_id -> task id of every task already in the project."""
        found: dict[str, int] = {}
        with self._errors("list the project's tasks"):
            listed: Any = self.sdk.tasks.list(project=project_id, page_size=500, include="id,data")
            for task in listed:
                data = task.data or {}
                example_id = data.get("example_id")
                if example_id and example_id not in found and task.id is not None:
                    found[str(example_id)] = int(task.id)
        return found

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> None:
        with self._errors(f"import {len(tasks)} tasks"):
            request: Any = tasks
            self.sdk.projects.import_tasks(id=project_id, request=request, return_task_ids=True)

    def export(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project with its annotations (JSON export)."""
        with self._errors("export annotations"):
            raw = b"".join(
                self.sdk.projects.exports.download_sync(id=project_id, export_type="JSON", download_all_tasks=True)
            )
        exported: list[dict[str, Any]] = json.loads(raw)
        return exported

    def user_emails(self) -> dict[int, str]:
        with self._errors("list users"):
            return {int(u.id): str(u.email or u.username) for u in self.sdk.users.list() if u.id is not None}


def _api_message(url: str, action: str, status: int | None, body: Any) -> str:
    detail_text = json.dumps(body, default=str)[:400] if body else ""
    if status in (401, 403):
        hint = (
            "the token was refused: check the token environment variable (review.token_env) holds the "
            "API token of a user of this server (legacy tokens must be enabled: "
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true at first boot)"
        )
    elif status == 404:
        hint = "not found: is review.url the Label Studio server, and does the project still exist?"
    elif status is not None and status >= 500:
        hint = "the server failed: see its log (runs/label-studio/server.log for the local one) and retry"
    else:
        hint = "the request was rejected"
    return (
        f"Label Studio at {url} answered HTTP {status} when trying to {action}: {hint}. "
        f"{detail_text} Nothing was lost: fix this and run the command again."
    ).strip()
