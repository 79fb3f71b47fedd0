"""Toy stages for the scale tests: module-level so that Ray workers can unpickle them."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import polars as pl

from curate.run.stage import Output, Stage, StageContext, StepKind
from schemas.ids import content_id


def words(_: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    """GLOBAL source: `n` rows (n from the config name "toy-<n>")."""
    n = int(ctx.config.name.split("-")[-1])
    ids = [content_id("w", i) for i in range(n)]
    return {"rows": pl.DataFrame({"id": ids, "value": list(range(n)), "text": [f"t{i % 17} x{i}" for i in range(n)]})}


def split_even_odd(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    """MAP with two outputs of different schemas."""
    even = batch.filter(pl.col("value") % 2 == 0).select("id", (pl.col("value") * 10).alias("tens"))
    odd = batch.filter(pl.col("value") % 2 == 1).select("id", pl.col("text").str.to_uppercase().alias("shout"))
    return {"even": even, "odd": odd}


def key_stats(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    """SHUFFLE by `bucket`: wrong if a bucket were split across batches."""
    with_bucket = batch.with_columns(bucket=pl.col("text").str.split(" ").list.first())
    return {"stats": with_bucket.group_by("bucket").agg(pl.len().alias("n"), pl.col("value").sum().alias("total"))}


def add_bucket(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    return {"rows": batch.with_columns(bucket=pl.col("text").str.split(" ").list.first())}


def bucket_stats(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    return {"stats": batch.group_by("bucket").agg(pl.len().alias("n"), pl.col("value").sum().alias("total"))}


def fake_io(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    """IO_POOL stand-in for teacher calls: awaits per row, many in flight (no network)."""

    async def one(value: int) -> int:
        await asyncio.sleep(0.001)
        return value * value

    async def run() -> list[int]:
        return await asyncio.gather(*(one(v) for v in batch["value"].to_list()))

    squares = asyncio.run(run())
    return {"rows": batch.select("id").with_columns(square=pl.Series(squares, dtype=pl.Int64))}


def where_am_i(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    """Which Ray node ran each row (to show the work spread over both nodes)."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    return {"rows": batch.select("id").with_columns(node=pl.lit(node), pid=pl.lit(os.getpid()))}


def flaky(batch: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    """Records every call; fails on the batch holding the row named in `<run>/poison`."""
    calls = Path(ctx.run_dir) / "calls"
    calls.mkdir(parents=True, exist_ok=True)
    (calls / uuid.uuid4().hex).write_text(",".join(batch["id"].to_list()))
    poison = Path(ctx.run_dir) / "poison"
    if poison.exists() and poison.read_text() in set(batch["id"].to_list()):
        raise RuntimeError("worker killed midway")
    return {"rows": batch.with_columns(double=pl.col("value") * 2)}


def bucket_totals(batch: pl.DataFrame, _: StageContext) -> dict[str, pl.DataFrame]:
    """Keyed IO_POOL (like refine): one new row per bucket; wrong if a bucket were split.
    Its output also carries `source/rows` whole, added once by the executor."""
    totals = batch.group_by("bucket").agg(pl.col("value").sum())
    return {"rows": totals.select(
        pl.concat_str(pl.lit("total-"), "bucket").alias("id"), "value", pl.col("bucket").alias("text"),
    )}


SOURCE = Stage("source", StepKind.GLOBAL, words, (), (Output("rows", "id"),), config_sections=("name",))
SPLIT = Stage("split", StepKind.MAP, split_even_odd, ("source/rows",), (Output("even", "id"), Output("odd", "id")))
BUCKET = Stage("bucket", StepKind.MAP, add_bucket, ("source/rows",), (Output("rows", "id"),))
STATS = Stage("stats", StepKind.SHUFFLE, bucket_stats, ("bucket/rows",), (Output("stats", "bucket"),), key="bucket")
IO = Stage("io", StepKind.IO_POOL, fake_io, ("source/rows",), (Output("rows", "id"),))
NODES = Stage("nodes", StepKind.MAP, where_am_i, ("source/rows",), (Output("rows", "id"),))
FLAKY = Stage("flaky", StepKind.MAP, flaky, ("source/rows",), (Output("rows", "id"),))

TOTALS = Stage("totals", StepKind.IO_POOL, bucket_totals, ("bucket/rows", "source/rows"), (Output("rows", "id"),),
               key="bucket", passthrough={"rows": "source/rows"})

PIPELINE = [SOURCE, SPLIT, BUCKET, STATS, IO, TOTALS]


def dies_once(batch: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    """Kills its own worker process (as the OOM killer would) the first time it sees the
    row named in `<run>/die-once`; always when `<run>/die-always` exists."""
    run = Path(ctx.run_dir)
    target = run / "die-once"
    if (run / "die-always").exists() or (target.exists() and target.read_text() in set(batch["id"].to_list())):
        target.unlink(missing_ok=True)
        os._exit(9)
    return {"rows": batch.with_columns(double=pl.col("value") * 2)}


DIES = Stage("dies", StepKind.MAP, dies_once, ("source/rows",), (Output("rows", "id"),))


def killer(batch: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    """Records every call; SIGKILLs the driver (its pid in `<run>/driver-pid`) on the batch
    holding the row named in `<run>/poison`: a whole run killed midway, local or on Ray."""
    run = Path(ctx.run_dir)
    (run / "calls").mkdir(parents=True, exist_ok=True)
    (run / "calls" / uuid.uuid4().hex).write_text(",".join(batch["id"].to_list()))
    poison, pid = run / "poison", run / "driver-pid"
    if poison.exists() and pid.exists() and poison.read_text() in set(batch["id"].to_list()):
        os.kill(int(pid.read_text()), signal.SIGKILL)
        time.sleep(30)  # on Ray: the driver is gone, this task is never collected
    return {"rows": batch.with_columns(double=pl.col("value") * 2)}


KILL_MAP = Stage("killmap", StepKind.MAP, killer, ("bucket/rows",), (Output("rows", "id"),))
KILL_SHUFFLE = Stage("killshuffle", StepKind.SHUFFLE, killer, ("bucket/rows",), (Output("rows", "id"),), key="bucket")


def _pid(_: int) -> int:
    return os.getpid()


def pools_seen(batch: pl.DataFrame, ctx: StageContext) -> dict[str, pl.DataFrame]:
    """Which pool the executor lent this call (`ctx.pool()`), where the call ran and where
    the pool's work ran."""
    with ctx.pool() as pool:
        pids = sorted(set(pool.map(_pid, range(8))))
        kind, workers = type(pool).__name__, pool.workers
    return {"rows": batch.select("id").with_columns(
        pool=pl.lit(kind), workers=pl.lit(workers), pid=pl.lit(os.getpid()),
        pool_pids=pl.lit(",".join(map(str, pids))),
    )}


POOLS_MAP = Stage("poolsmap", StepKind.MAP, pools_seen, ("source/rows",), (Output("rows", "id"),))
POOLS_GLOBAL = Stage("poolsglobal", StepKind.GLOBAL, pools_seen, ("source/rows",), (Output("rows", "id"),))
