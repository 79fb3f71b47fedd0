"""Dedup against earlier accepted datasets: `filter.dedup_index` and `curate index add`."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from curate.cli import app
from curate.config import load_config
from curate.filter.dedup_index import DedupIndex, drop_indexed_duplicates
from curate.pipeline import all_stages
from curate.run.runner import Runner
from curate.run.stage import Stage
from curate.services.similarity.dedup import DedupParams
from schemas.ids import content_id

WORDS = [f"w{i}" for i in range(3000)]


def rows(texts: dict[str, str], score: float = 1.0) -> pl.DataFrame:
    return pl.DataFrame({"example_id": list(texts), "text": list(texts.values()),
                         "quality_score": [score] * len(texts)})


def test_an_indexed_row_always_wins_and_new_pairs_are_left_alone(tmp_path: Path) -> None:
    rng = random.Random(3)
    shipped = {content_id("a", i): " ".join(rng.choices(WORDS, k=120)) for i in range(20)}
    index = DedupIndex(str(tmp_path / "index"))
    index.dedup(rows(shipped, score=0.1), text="text")  # an earlier dataset, low scores
    a = list(shipped)
    near = shipped[a[1]].split()
    near[60] = "changed"
    fresh = " ".join(rng.choices(WORDS, k=120))
    fresh_near = fresh.split()
    fresh_near[5] = "other"
    batch = rows({
        "copy": shipped[a[0]],            # exact copy of a shipped row, better score
        "near": " ".join(near),           # near copy of a shipped row
        a[2]: shipped[a[2]],              # the very same example again
        "fresh": fresh,                   # new
        "fresh-near": " ".join(fresh_near),  # near copy of a new row: the run's own dedup decides
    }, score=0.9)
    kept, dropped = drop_indexed_duplicates(batch, text="text", location=str(tmp_path / "index"),
                                            params=DedupParams())
    assert sorted(kept["example_id"]) == ["fresh", "fresh-near"]
    assert dict(zip(dropped["example_id"], dropped["duplicate_of"], strict=True)) == {
        "copy": a[0], "near": a[1], a[2]: a[2]}
    assert index.load().height == 20  # read, not changed


def test_empty_or_missing_index_drops_nothing(tmp_path: Path) -> None:
    batch = rows({"x": "one two three four five six", "y": "seven eight nine ten eleven twelve"})
    kept, dropped = drop_indexed_duplicates(batch, text="text", location=str(tmp_path / "none"), params=DedupParams())
    assert kept.equals(batch) and dropped.height == 0 and "duplicate_of" in dropped.columns


def through_dedup() -> list[Stage]:
    stages = all_stages()
    return stages[: [s.name for s in stages].index("dedup") + 1]


@pytest.mark.integration
def test_a_run_added_to_the_index_is_not_accepted_again(demo_config_path: Path, tmp_path: Path) -> None:
    """Demo through dedup; `curate index add`; the same run again: dedup re-runs (the index
    changed, nothing else did) and every example is now an indexed duplicate."""
    demo = tmp_path / "demo"
    shutil.copytree(demo_config_path.parent, demo, ignore=shutil.ignore_patterns("__pycache__"))
    config_file = demo / "pipeline.yaml"
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    data["run_dir"] = str(tmp_path / "run")
    data.setdefault("filter", {})["dedup_index"] = "../index"  # relative to the config's folder
    config_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    config = load_config(config_file)

    assert Runner(config, through_dedup(), show_progress=False).run().exit_code == 0
    accepted = pl.read_parquet(tmp_path / "run/dedup/examples.parquet")
    assert accepted.height > 0

    add = ["index", "add", str(config_file), "--artifact", "dedup/examples"]
    first = CliRunner().invoke(app, add)
    assert first.exit_code == 0, first.output
    assert f"added {accepted.height} examples" in first.output
    second = CliRunner().invoke(app, add)  # adding twice is harmless
    assert "added 0 examples" in second.output and f"({accepted.height} already indexed)" in second.output
    assert DedupIndex(str(tmp_path / "index")).load().height == accepted.height

    again = Runner(config, through_dedup(), show_progress=False).run()
    statuses = {s.name: s.status for s in again.stages}
    assert statuses["dedup"] == "complete" and statuses["filter"] == "skipped"
    assert pl.read_parquet(tmp_path / "run/dedup/examples.parquet").height == 0
    rejected = pl.read_parquet(tmp_path / "run/dedup/rejected.parquet")
    indexed = rejected.filter(pl.col("reason") == "indexed_duplicate")
    assert sorted(indexed["item_id"]) == sorted(accepted["example_id"])
    funnel = pl.read_parquet(tmp_path / "run/dedup/funnel.parquet")
    step = funnel.filter(pl.col("step") == "earlier datasets")
    assert step["rows_in"][0] == accepted.height and step["rows_out"][0] == 0


def test_index_add_without_an_index_in_the_config_says_so(demo_config_path: Path) -> None:
    result = CliRunner().invoke(app, ["index", "add", str(demo_config_path)])
    assert result.exit_code == 1 and "filter.dedup_index is not set" in result.output
