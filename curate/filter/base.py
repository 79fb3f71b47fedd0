"""The filter protocol and the shared counting behind the funnel.

Datatrove-style: every filter is a small object that answers, for one item, "keep, or why
not" (`check`), or for a group of items (the samples of one chunk) turns them into fewer
items (`apply_group`). `Funnel.run` applies a filter and does all the counting (rows in,
rows out, rejections per reason), so a new filter needs no reporting code of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel

from curate.run.stage import collect, count
from schemas.artifacts import STEP_FUNNEL
from schemas.records import Evidence, Message, Rejection, frame_of


@dataclass(frozen=True)
class Reject:
    """Why an item is not kept: a stable reason code, a detail for people, repairability."""

    reason: str
    detail: str = ""
    repairable: bool = False


@dataclass
class Item:
    """A sample on its way to becoming an example (mutable: filters annotate it)."""

    item_id: str  # sample_id, then example_id once consistency made an example of it
    chunk_id: str
    doc_id: str
    task_type: str
    raw_json: str | None
    sample_ids: list[str]
    sample_index: int = 0
    refine_round: int = 0
    status: str = "ok"
    error: str | None = None
    cost_usd: float = 0.0
    output: BaseModel | None = None
    agreement: float = 1.0
    grounding_score: float = 1.0
    evidence: list[Evidence] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def output_json(self) -> str | None:
        return self.output.model_dump_json() if self.output is not None else self.raw_json


class Filter:
    """One check on one item. Subclasses set `name` and implement `check`."""

    name: ClassVar[str] = "filter"
    unit_in: ClassVar[str] = "example"
    unit_out: ClassVar[str] = "example"

    def check(self, item: Item, env: Any) -> Reject | None:  # pragma: no cover - interface
        raise NotImplementedError

    def apply(self, items: Sequence[Item], env: Any) -> tuple[list[Item], list[tuple[Item, Reject]]]:
        kept: list[Item] = []
        rejected: list[tuple[Item, Reject]] = []
        for item in items:
            verdict = self.check(item, env)
            if verdict is None:
                kept.append(item)
            else:
                rejected.append((item, verdict))
        return kept, rejected


class GroupFilter(Filter):
    """A filter over the items of one chunk that may merge them (self-consistency)."""

    def apply_group(self, items: Sequence[Item], env: Any) -> tuple[list[Item], list[tuple[Item, Reject]]]:
        raise NotImplementedError  # pragma: no cover - interface

    def apply(self, items: Sequence[Item], env: Any) -> tuple[list[Item], list[tuple[Item, Reject]]]:
        by_chunk: dict[str, list[Item]] = {}
        for item in items:
            by_chunk.setdefault(item.chunk_id, []).append(item)
        kept: list[Item] = []
        rejected: list[tuple[Item, Reject]] = []
        for chunk_id in sorted(by_chunk):
            k, r = self.apply_group(by_chunk[chunk_id], env)
            kept.extend(k)
            rejected.extend(r)
        return kept, rejected


@dataclass
class Funnel:
    """Counts rows in/out and rejections of every filter it runs."""

    stage: str
    round: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def run(self, flt: Filter, items: Sequence[Item], env: Any) -> list[Item]:
        kept, rejected = flt.apply(items, env)
        self.rows.append({
            "stage": self.stage, "round": self.round, "order": len(self.rows), "step": flt.name,
            "unit_in": flt.unit_in, "unit_out": flt.unit_out, "rows_in": len(items),
            "rows_out": len(kept), "rejected": len(rejected),
        })
        for item, verdict in rejected:
            self.reject(flt.name, item, verdict)
        return kept

    def reject(self, filter_name: str, item: Item, verdict: Reject) -> None:
        self.rejections.append(Rejection(
            item_id=item.item_id, chunk_id=item.chunk_id, filter=filter_name,
            reason=verdict.reason, detail=verdict.detail[:2000], repairable=verdict.repairable,
            output_json=item.output_json(), refine_round=item.refine_round,
        ))

    def frame(self) -> pl.DataFrame:
        """The rows as a frame of `schemas.artifacts.STEP_FUNNEL` (filter's and refine's funnels)."""
        return pl.DataFrame(self.rows, schema=STEP_FUNNEL, orient="row") if self.rows else pl.DataFrame(schema=STEP_FUNNEL)


def aggregate_funnel(frame: pl.DataFrame) -> pl.DataFrame:
    """Sum per-shard funnel rows into one row per (stage, round, order, step)."""
    if frame.height == 0:
        return frame
    return (
        frame.group_by("stage", "round", "order", "step", "unit_in", "unit_out")
        .agg(pl.col("rows_in").sum(), pl.col("rows_out").sum(), pl.col("rejected").sum())
        .sort("stage", "round", "order")
    )


def reason_counts(rejected: pl.DataFrame | pl.LazyFrame) -> list[dict[str, Any]]:
    """Rejections per (filter, reason), most frequent first; of a lazy scan, only those
    three columns are read, a batch at a time."""
    frame = rejected.lazy()
    if count(frame) == 0:
        return []
    return collect(
        frame.group_by("filter", "reason", "repairable").agg(pl.len().alias("count"))
        .sort(["count", "filter", "reason"], descending=[True, False, False])
    ).to_dicts()


def records_frame(model: type[BaseModel], rows: Sequence[BaseModel]) -> pl.DataFrame:
    """`frame_of` for any sequence of records (typed covariantly)."""
    return frame_of(model, list[BaseModel](rows))

