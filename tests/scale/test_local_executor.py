"""The local executor: its process pool survives a dead worker; shard checkpoints; keyed splits."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from curate.run.executor import LocalExecutor, ShardStore, combine, frame_digest, shard_frame
from curate.run.runner import Runner
from curate.run.stage import Output, Stage, StageContext, StepKind
from tests.scale.helpers import toy_config
from tests.scale.toy_stages import BUCKET, DIES, SOURCE, STATS, TOTALS, bucket_totals


def test_pool_reruns_shards_of_a_dead_worker(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = toy_config(run, n=60)
    Runner(config, [SOURCE], show_progress=False).run()
    (run / "die-once").write_text(pl.read_parquet(run / "source/rows.parquet")["id"][30])
    result = Runner(config, [SOURCE, DIES], executor=LocalExecutor(workers=2, partitions=4), show_progress=False).run()
    assert result.stages[-1].status == "complete"
    assert not (run / "die-once").exists()  # the worker did die once
    out = pl.read_parquet(run / "dies/rows.parquet")
    assert out.height == 60 and (out["double"] == out["value"] * 2).all()


def test_pool_gives_up_after_repeated_deaths(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = toy_config(run, n=20)
    Runner(config, [SOURCE], show_progress=False).run()
    (run / "die-always").write_text("")
    executor = LocalExecutor(workers=2, partitions=2, max_pool_restarts=1)
    with pytest.raises(RuntimeError, match="worker processes died"):
        Runner(config, [SOURCE, DIES], executor=executor, show_progress=False).run()


def test_shard_digest_and_store_round_trip(tmp_path: Path) -> None:
    frame = pl.DataFrame({"id": ["a", "b"], "xs": [[1, 2], [3]], "s": [{"k": 1}, {"k": 2}]})
    assert frame_digest(frame) == frame_digest(frame.clone())
    assert frame_digest(frame) != frame_digest(frame.reverse())
    store = ShardStore(str(tmp_path), "stage", "token")
    shard = frame_digest(frame)
    assert not store.done(shard)
    store.save(shard, {"out": frame, "empty": frame.clear()})
    assert store.done(shard)
    loaded = store.load(shard)
    assert loaded["out"].equals(frame) and loaded["empty"].height == 0
    store.clear()
    assert not store.done(shard)


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_shuffle_shards_never_split_a_key(shards: int) -> None:
    frame = pl.DataFrame({"bucket": [f"k{i % 7}" for i in range(100)], "value": list(range(100))})
    parts = shard_frame(frame, STATS, shards)
    seen: dict[str, int] = {}
    for index, part in enumerate(parts):
        for key in part["bucket"].unique().to_list():
            assert seen.setdefault(key, index) == index
    assert sum(p.height for p in parts) == 100


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_keyed_io_stage_splits_by_key_and_passes_side_input_once(tmp_path: Path, shards: int) -> None:
    run = tmp_path / "run"
    config = toy_config(run, n=50)
    Runner(config, [SOURCE, BUCKET], show_progress=False).run()
    rows = pl.read_parquet(run / "bucket/rows.parquet")
    ctx = StageContext(config=config, run_dir=str(run), stage="totals", show_progress=False)
    parts = shard_frame(rows, TOTALS, shards)
    assert len({key for part in parts for key in part["bucket"].unique()}) == rows["bucket"].n_unique()
    assert sum(part["bucket"].n_unique() for part in parts) == rows["bucket"].n_unique()  # no key in two
    combined = combine(TOTALS, [bucket_totals(part, ctx) for part in parts], ctx)["rows"]
    assert combined.height == 50 + rows["bucket"].n_unique()
    assert combined["id"].is_sorted() and combined["id"].n_unique() == combined.height


def test_passthrough_must_name_an_output_and_a_side_input() -> None:
    with pytest.raises(ValueError, match="passthrough"):
        Stage("bad", StepKind.IO_POOL, bucket_totals, ("bucket/rows",), (Output("rows", "id"),),
              key="bucket", passthrough={"rows": "source/rows"})
