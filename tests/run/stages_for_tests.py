"""Toy stages for runner tests: module-level so that process pools can pickle them."""

from __future__ import annotations

import polars as pl

from curate.run.stage import Output, Stage, StageContext, StageStopped, StepKind
from schemas.ids import content_id


def numbers(_: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    values = list(range(int(ctx.config.name.split("-")[-1])))
    ids = [content_id("n", v) for v in values]
    return {"rows": pl.DataFrame({"id": ids, "value": values})}


def doubled(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    return {"rows": batch.with_columns(value=pl.col("value") * 2, group=pl.col("value") % 3)}


def group_sizes(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    return {"groups": batch.group_by("group").agg(pl.len().alias("size"))}


def explode(_: pl.DataFrame, __: StageContext) -> dict[str, pl.DataFrame]:
    raise RuntimeError("killed midway")


def stop_half(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    raise StageStopped("budget reached", {"rows": batch.head(batch.height // 2)})


SOURCE = Stage("source", StepKind.GLOBAL, numbers, (), (Output("rows", "id"),), config_sections=("name",))
DOUBLE = Stage("double", StepKind.MAP, doubled, ("source/rows",), (Output("rows", "id"),), config_sections=("chunk",))
GROUPS = Stage("groups", StepKind.SHUFFLE, group_sizes, ("double/rows",), (Output("groups", "group"),), key="group")
EXPLODE = Stage("double", StepKind.MAP, explode, ("source/rows",), (Output("rows", "id"),), config_sections=("chunk",))
STOP = Stage("double", StepKind.MAP, stop_half, ("source/rows",), (Output("rows", "id"),))
