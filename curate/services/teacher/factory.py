"""Opening the teacher of a pipeline: where its state lives, and what it needs of the config.

`open_teacher(config, run_dir)` is the service's entry point for stages (generate, refine,
judge) and for train's judge; `config` is anything with a `teacher` section and a `resolve`
for relative paths (`TeacherSettings`), so the service knows no pipeline config class.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from curate.services.teacher.client import TeacherClient
from curate.services.teacher.config import TeacherConfig
from curate.services.teacher.limits import Limiter
from curate.services.teacher.request import STATE_DIR


class TeacherSettings(Protocol):
    """What the service needs of a pipeline's config: the teacher section and path resolution.

    A protocol, not the pipeline's config class, so that the service knows no pipeline."""

    @property
    def teacher(self) -> TeacherConfig: ...

    def resolve(self, path: str) -> Path: ...


def response_cache_path(config: TeacherSettings, run_dir: str | Path) -> Path:
    """Where a run's teacher answers are cached (`teacher.cache_path` shares one between runs)."""
    teacher = config.teacher
    return config.resolve(teacher.cache_path) if teacher.cache_path else Path(run_dir) / STATE_DIR / "responses.sqlite"

# ---------------------------------------------------------------- the client


def open_teacher(
    config: TeacherSettings,
    run_dir: str,
    *,
    purpose: str = "generate",
    limiter: Limiter | None = None,
    http_client_factory: Callable[[], Any] | None = None,
) -> TeacherClient:
    """The teacher of this pipeline config, with its state in `<run_dir>/generate.state/`.

    `limiter`: an object with `async acquire(tokens: int)` shared by several clients (a
    cluster-wide limit); default: `teacher.requests_per_minute` / `tokens_per_minute`.
    `http_client_factory`: returns an `httpx2.AsyncClient` for the SDK (tests, proxies).
    """
    teacher = config.teacher
    cache_path = response_cache_path(config, run_dir)
    cassette_path = config.resolve(teacher.cassette) if teacher.cassette else None
    return TeacherClient(
        teacher, run_dir=run_dir, cache_path=cache_path, cassette_path=cassette_path,
        purpose=purpose, limiter=limiter, http_client_factory=http_client_factory,
    )
