"""What one teacher request is, what comes back, and the request's identity (its hash).

The hash of the canonical request is the key of the response cache and of the cassette, so
it must not depend on the backend: the same question asked of Claude or of a replay gives
the same key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from assay.errors import AssayError
from curate.services.teacher.config import TeacherConfig
from curate.services.teacher.store import canonical_json
from schemas.ids import sha256_hex
from schemas.records import Usage

# schema: answered, invalid after re-asks (kept); api: failed after retries (pending);
# budget: not sent, the budget is reached (pending); stopped: not sent (or failed) because the
# client stopped on a fatal error (pending); cassette_miss: replay has no answer.
ErrorKind = Literal["schema", "api", "budget", "cassette_miss", "stopped"]
PENDING_KINDS = ("api", "budget", "stopped")  # not done: the next run asks again
STATE_DIR = "generate.state"


class BudgetExceeded(AssayError):
    """The next request's worst-case cost would cross `teacher.budget_usd`."""


class TeacherSetupError(AssayError, ValueError):
    """The teacher cannot be opened as configured (missing key, cassette or price)."""


@dataclass(frozen=True)
class TeacherRequest:
    chunk_id: str
    system: str
    chunk_text: str
    instruction: str
    response_model: type[BaseModel]
    sample_index: int = 0
    round: int = 0
    purpose: str | None = None


@dataclass
class TeacherAnswer:
    output: BaseModel | None
    raw_json: str | None
    error: str | None
    error_kind: ErrorKind | None
    usage: Usage
    request_hash: str
    cached: bool
    model: str
    backend: str
    chunk_id: str = ""
    sample_index: int = 0
    round: int = 0
    purpose: str = "generate"

    @property
    def ok(self) -> bool:
        return self.output is not None and self.error_kind is None


# ---------------------------------------------------------------- request identity


def canonical_request(
    teacher: TeacherConfig,
    *,
    system: str,
    chunk_text: str,
    instruction: str,
    response_model: type[BaseModel],
    sample_index: int,
) -> dict[str, Any]:
    """The backend-independent request: what any backend would be asked, plus the sample index."""
    return {
        "model": teacher.model,
        "params": {"temperature": teacher.temperature, "max_tokens": teacher.max_tokens},
        "system": system,
        "passage": chunk_text,
        "instruction": instruction,
        "schema": _schema_of(response_model),
        "sample_index": sample_index,
    }


@functools.lru_cache(maxsize=256)
def _schema_of(response_model: type[BaseModel]) -> dict[str, Any]:
    return response_model.model_json_schema()


def request_hash(teacher: TeacherConfig, request: TeacherRequest) -> str:
    """sha256 of the canonical request: the cache key and the cassette key."""
    return sha256_hex(
        canonical_json(
            canonical_request(
                teacher,
                system=request.system,
                chunk_text=request.chunk_text,
                instruction=request.instruction,
                response_model=request.response_model,
                sample_index=request.sample_index,
            )
        )
    )
