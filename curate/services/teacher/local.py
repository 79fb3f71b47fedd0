"""The teacher's answers served without a provider call: the cassette (replay) and the cache.

Split from `client.TeacherClient` (a mixin it inherits): a locally served answer is
validated again against the request's schema and logged as not sent; a live answer is
recorded into the cassette when `teacher.record` is on.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from curate.services.teacher.config import TeacherConfig
from curate.services.teacher.request import ErrorKind, TeacherAnswer, TeacherRequest, canonical_request
from curate.services.teacher.retry import _short
from curate.services.teacher.store import Cassette, RequestLog, now_iso
from schemas.records import Usage


class LocalAnswers:
    """Replay and recording; `TeacherClient` supplies the state."""

    teacher: TeacherConfig
    purpose: str
    log: RequestLog
    counts: dict[str, int]
    cassette: Cassette | None
    backend_id: str

    def _answer(
        self, request: TeacherRequest, rhash: str, *, output: Any, raw_json: str | None, error: str | None,
        error_kind: ErrorKind | None, usage: Usage, cached: bool,
    ) -> TeacherAnswer:
        raise NotImplementedError

    def _from_recorded(
        self, request: TeacherRequest, rhash: str, raw_json: str | None, error: str | None,
        error_kind: str | None, usage: Usage,
    ) -> TeacherAnswer:
        """An answer served locally (response cache or cassette): validated again here."""
        if error_kind is None and raw_json is not None:
            try:
                output = request.response_model.model_validate_json(raw_json)
            except ValidationError as invalid:
                return self._answer(
                    request, rhash, output=None, raw_json=raw_json, error=_short(invalid),
                    error_kind="schema", usage=usage, cached=True,
                )
            return self._answer(
                request, rhash, output=output, raw_json=raw_json, error=None, error_kind=None,
                usage=usage, cached=True,
            )
        kind: ErrorKind = error_kind if error_kind in ("schema", "api") else "schema"  # type: ignore[assignment]
        return self._answer(
            request, rhash, output=None, raw_json=raw_json, error=error or "recorded failure",
            error_kind=kind, usage=usage, cached=True,
        )

    def _log_local(self, request: TeacherRequest, rhash: str, answer: TeacherAnswer, provider: str) -> None:
        self.log.write(
            provider=provider, model=self.teacher.model, base_url=self.teacher.base_url,
            purpose=answer.purpose, chunk_id=request.chunk_id, sample_index=request.sample_index,
            round=request.round, request_hash=rhash, sent=False,
            cached=answer.error_kind != "cassette_miss",
            status="ok" if answer.error_kind is None else answer.error_kind, attempt=0,
            payload=canonical_request(
                self.teacher, system=request.system, chunk_text=request.chunk_text,
                instruction=request.instruction, response_model=request.response_model,
                sample_index=request.sample_index,
            ),
            payload_kind="canonical", input_tokens=0, output_tokens=0, cache_read_tokens=0,
            cache_write_tokens=0, cost_usd=0.0, error=answer.error,
        )

    def _replay(self, request: TeacherRequest, rhash: str) -> TeacherAnswer:
        assert self.cassette is not None
        entry = self.cassette.get(rhash)
        if entry is None:
            answer = self._answer(
                request, rhash, output=None, raw_json=None,
                error=(
                    f"cassette miss: {self.cassette.path} has no answer for chunk {request.chunk_id} "
                    f"sample {request.sample_index} round {request.round} "
                    f"({request.purpose or self.purpose}), request hash {rhash}. "
                    "Record one with a live backend and teacher.record: true."
                ),
                error_kind="cassette_miss", usage=Usage(), cached=False,
            )
            self._log_local(request, rhash, answer, "replay")
            return answer
        usage = Usage.model_validate(entry.get("usage") or {})
        usage = usage.model_copy(update={"cost_usd": 0.0})  # replay pays nothing
        answer = self._from_recorded(
            request, rhash, entry.get("raw_json"), entry.get("error"), entry.get("error_kind"), usage
        )
        self.counts["replayed"] += 1
        self._log_local(request, rhash, answer, "replay")
        return answer

    def _record(self, request: TeacherRequest, answer: TeacherAnswer) -> None:
        if self.cassette is None or not self.teacher.record:
            return
        self.cassette.append(
            {
                "request_hash": answer.request_hash, "chunk_id": request.chunk_id,
                "sample_index": request.sample_index, "round": request.round,
                "purpose": answer.purpose, "model": self.teacher.model, "raw_json": answer.raw_json,
                "error": answer.error, "error_kind": answer.error_kind,
                "usage": answer.usage.model_dump(), "recorded_at": now_iso(),
                "source": f"recorded from {self.backend_id}",
            }
        )
