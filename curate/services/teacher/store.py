"""What the teacher client keeps on disk: the response cache, the spend ledger, the
cassette and the request log.

- `ResponseCache` (SQLite, WAL): one row per answered request, keyed by the backend (and
  its endpoint) and the request hash (which covers model, parameters, prompt, schema and
  sample index). The `attempts` table keeps every paid provider response the moment it
  arrives, keyed by the hash of the exact payload sent, in the same transaction as its
  ledger entry: an answer that failed validation and is being re-asked is durable too, so
  a run killed mid re-ask resumes by reusing it. The `spend` table is the ledger of every
  paid response per run directory; `reservations` holds the worst-case cost of each
  request in flight (written before it is sent, replaced by its spend when it is answered,
  dropped when it certainly was not). The budget counts both, so a reservation left by a
  killed process keeps counting as spent: the request may have been paid.
- `Cassette` (JSONL): request hash -> recorded answer, for the `replay` backend.
- `RequestLog` (JSONL): every request that leaves the machine (and every answer served
  locally, marked `sent: false`), for `curate audit`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.ids import sha256_hex
from schemas.records import Usage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    backend TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    chunk_id TEXT,
    sample_index INTEGER,
    purpose TEXT,
    raw_json TEXT,
    error TEXT,
    error_kind TEXT,
    usage_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (backend, request_hash)
);
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_dir TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    cost_usd REAL NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_run ON spend (run_dir);
CREATE TABLE IF NOT EXISTS attempts (
    backend TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_json TEXT NOT NULL,
    usage_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (backend, payload_hash)
);
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_dir TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    cost_usd REAL NOT NULL,
    pid INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_run ON reservations (run_dir);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    custom_ids_json TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass(frozen=True)
class StoredAttempt:
    """A provider response as received (the SDK object's JSON) and what it cost."""

    response_json: str
    usage: Usage


@dataclass(frozen=True)
class CachedResponse:
    raw_json: str | None
    error: str | None
    error_kind: str | None
    usage: Usage
    model: str


class ResponseCache:
    """The persistent response cache and spend ledger (one SQLite file, WAL mode)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # autocommit: every statement commits by itself; `_transaction` opens BEGIN IMMEDIATE
        # where a check and a write must be one step across processes (the budget).
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.commit()

    def get(self, backend: str, request_hash: str) -> CachedResponse | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT raw_json, error, error_kind, usage_json, model FROM responses "
                "WHERE backend = ? AND request_hash = ?",
                (backend, request_hash),
            ).fetchone()
        if row is None:
            return None
        return CachedResponse(row[0], row[1], row[2], Usage.model_validate_json(row[3]), row[4])

    def put(
        self,
        backend: str,
        request_hash: str,
        *,
        model: str,
        chunk_id: str,
        sample_index: int,
        purpose: str,
        raw_json: str | None,
        error: str | None,
        error_kind: str | None,
        usage: Usage,
    ) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    backend, request_hash, model, chunk_id, sample_index, purpose,
                    raw_json, error, error_kind, usage.model_dump_json(), now_iso(),
                ),
            )
            self._conn.commit()

    def count(self, backend: str | None = None) -> int:
        with self._lock:
            if backend is None:
                return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
            return int(
                self._conn.execute(
                    "SELECT COUNT(*) FROM responses WHERE backend = ?", (backend,)
                ).fetchone()[0]
            )

    def record_spend(self, run_dir: str, request_hash: str, cost: float) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO spend (run_dir, request_hash, cost_usd, created_at) VALUES (?,?,?,?)",
                (run_dir, request_hash, cost, now_iso()),
            )
            self._conn.commit()

    def spent(self, run_dir: str) -> float:
        with self._lock:
            value = self._conn.execute(
                "SELECT COALESCE(SUM(cost_usd), 0) FROM spend WHERE run_dir = ?", (run_dir,)
            ).fetchone()[0]
        return float(value)

    def _committed_locked(self, run_dir: str) -> float:
        paid = self._conn.execute(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM spend WHERE run_dir = ?", (run_dir,)
        ).fetchone()[0]
        held = self._conn.execute(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM reservations WHERE run_dir = ?", (run_dir,)
        ).fetchone()[0]
        return float(paid) + float(held)

    def committed(self, run_dir: str) -> float:
        """Paid plus reserved (in flight now, or left in flight by a killed process)."""
        with self._lock:
            return self._committed_locked(run_dir)

    def reserved(self, run_dir: str) -> float:
        with self._lock:
            value = self._conn.execute(
                "SELECT COALESCE(SUM(cost_usd), 0) FROM reservations WHERE run_dir = ?", (run_dir,)
            ).fetchone()[0]
        return float(value)

    def reserve(self, run_dir: str, request_hash: str, worst: float, budget: float | None) -> int | None:
        """Hold `worst` against `budget` (None: no limit, still recorded); None when it would
        cross it. Check and write are one IMMEDIATE transaction: two processes sharing the
        ledger cannot both take the last dollars."""
        import os

        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if budget is not None and self._committed_locked(run_dir) + worst > budget:
                    self._conn.execute("ROLLBACK")
                    return None
                cursor = self._conn.execute(
                    "INSERT INTO reservations (run_dir, request_hash, cost_usd, pid, created_at) VALUES (?,?,?,?,?)",
                    (run_dir, request_hash, worst, os.getpid(), now_iso()),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return int(cursor.lastrowid or 0)

    def release(self, reservation: int | None) -> None:
        """Drop a reservation whose request certainly was not paid (an HTTP error answer)."""
        if reservation is None:
            return
        with self._lock:
            self._conn.execute("DELETE FROM reservations WHERE id = ?", (reservation,))

    def settle(
        self, reservation: int | None, *, run_dir: str, backend: str, request_hash: str,
        payload_hash: str, response_json: str, usage: Usage,
    ) -> None:
        """A paid response, in one transaction: its ledger entry replaces its reservation and
        the response itself is stored (durable before anyone validates it)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if reservation is not None:
                    self._conn.execute("DELETE FROM reservations WHERE id = ?", (reservation,))
                self._conn.execute(
                    "INSERT INTO spend (run_dir, request_hash, cost_usd, created_at) VALUES (?,?,?,?)",
                    (run_dir, request_hash, usage.cost_usd, now_iso()),
                )
                self._conn.execute(
                    "INSERT OR REPLACE INTO attempts VALUES (?,?,?,?,?,?)",
                    (backend, payload_hash, request_hash, response_json, usage.model_dump_json(), now_iso()),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def get_attempt(self, backend: str, payload_hash: str) -> StoredAttempt | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT response_json, usage_json FROM attempts WHERE backend = ? AND payload_hash = ?",
                (backend, payload_hash),
            ).fetchone()
        return None if row is None else StoredAttempt(row[0], Usage.model_validate_json(row[1]))

    def save_batch(self, batch_id: str, backend: str, custom_ids: list[str], status: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO batches VALUES (?,?,?,?,?)",
                (batch_id, backend, json.dumps(custom_ids), status, now_iso()),
            )
            self._conn.commit()

    def open_batches(self, backend: str) -> list[tuple[str, list[str]]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT batch_id, custom_ids_json FROM batches WHERE backend = ? AND status != 'collected' "
                "ORDER BY created_at",
                (backend,),
            ).fetchall()
        return [(row[0], json.loads(row[1])) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class Cassette:
    """Recorded teacher answers: one JSON object per line, looked up by request hash.

    A line: {"request_hash", "chunk_id", "sample_index", "round", "purpose", "model",
    "raw_json" (the teacher's answer as JSON text, validated again on replay),
    "error", "error_kind", "usage", "recorded_at", "source" (free-form provenance)}.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                        self.entries[entry["request_hash"]] = entry
                    except (json.JSONDecodeError, KeyError) as error:
                        raise ValueError(f"{self.path}:{number}: not a cassette entry ({error})") from None
        self._lock = threading.Lock()

    def get(self, request_hash: str) -> dict[str, Any] | None:
        return self.entries.get(request_hash)

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if entry["request_hash"] in self.entries:
                return
            self.entries[entry["request_hash"]] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")


class RequestLog:
    """`<run_dir>/generate.state/requests.jsonl`: what was sent, to whom, at what cost.

    One JSON object per line:
      time, provider, model, base_url, purpose, chunk_id, sample_index, round,
      request_hash (cache key), sent (true: the payload left the machine),
      cached (true: answered from the response cache or a cassette, nothing sent),
      status ("ok" | "http_<code>" | "error"), attempt,
      payload_sha256 (sha256 of `payload` as logged), payload (the exact request body
      sent to the provider for sent requests; the backend-independent request for
      answers served locally, see `payload_kind`), payload_kind ("provider" | "canonical"),
      input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, error.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, **fields: Any) -> None:
        payload = fields.get("payload")
        payload_text = canonical_json(payload) if payload is not None else None
        record = {
            "time": now_iso(),
            **fields,
            # the logged payload is the JSON text that was hashed, read back: the two agree
            "payload": json.loads(payload_text) if payload_text is not None else None,
            "payload_sha256": sha256_hex(payload_text) if payload_text is not None else None,
        }
        line = json.dumps(record, ensure_ascii=False, sort_keys=True, default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON: the text whose sha256 is a payload's hash."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
