"""Distributed and incremental dedup give the one-machine result (planted duplicates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.filter.dedup_index import DedupIndex
from curate.run.services import LocalServices, RayServices
from curate.services.similarity.dedup import DedupParams, datasketch_minhash, dedup_frame, tokenize
from curate.services.similarity.steps import dedup_steps
from tests.scale.corpus import planted_corpus


@pytest.fixture(scope="module")
def corpus() -> pl.DataFrame:
    return planted_corpus(300)


@pytest.fixture(scope="module")
def reference(corpus: pl.DataFrame) -> pl.DataFrame:
    out, _ = dedup_frame(corpus, text="text")
    return out


def test_planted_duplicates_are_found(corpus: pl.DataFrame, reference: pl.DataFrame) -> None:
    """The reference itself is right: planted exact/near copies and chains join their base."""
    base_component = reference.filter(pl.col("kind") == "base").select("group", base_comp="component")
    joined = reference.filter(pl.col("group") >= 0).join(base_component, on="group")
    for kind in ("exact", "exact_case", "near"):
        rows = joined.filter(pl.col("kind") == kind)
        assert (rows["component"] == rows["base_comp"]).all(), kind
        assert rows.height > 10
    # transitive chains: a~b and b~c above the threshold, a~c below it, all one component
    words = dict(zip(reference["example_id"], tokenize(reference["text"]).to_list(), strict=True))
    chained = 0
    for group in joined.filter(pl.col("kind") == "chain_c")["group"].to_list():
        members = joined.filter(pl.col("group") == group)
        ids = {k: members.filter(pl.col("kind") == k)["example_id"][0] for k in ("base", "chain_b", "chain_c")}
        a, c = (datasketch_minhash(words[ids[k]]) for k in ("base", "chain_c"))
        if a.jaccard(c) < 0.8 and members.filter(pl.col("kind").is_in(["base", "chain_b", "chain_c"]))["component"].n_unique() == 1:
            chained += 1
    assert chained >= 12  # of 34 chains (MinHash estimates put a~c above 0.8 for some)
    # one survivor per component, the best score (ties: smallest id)
    per_comp = reference.group_by("component").agg(pl.col("survivor").sum())
    assert (per_comp["survivor"] == 1).all()


@pytest.mark.parametrize(("partitions", "batch_rows"), [(1, 10_000), (3, 97), (8, 40)])
def test_parallel_dedup_equals_one_machine(corpus: pl.DataFrame, reference: pl.DataFrame, partitions: int, batch_rows: int) -> None:
    shuffled = corpus.sample(fraction=1.0, shuffle=True, seed=partitions)
    got, _ = dedup_steps(shuffled, text="text", partitions=partitions, batch_rows=batch_rows)
    assert got.equals(reference)


@pytest.mark.slow
def test_process_pool_dedup_equals_one_machine(corpus: pl.DataFrame, reference: pl.DataFrame) -> None:
    with LocalServices(workers=2).pool() as pool:
        got, _ = dedup_steps(corpus, text="text", pool=pool, partitions=3, batch_rows=150)
    assert got.equals(reference)


@pytest.mark.integration
def test_ray_dedup_on_two_nodes_equals_one_machine(ray_cluster, corpus: pl.DataFrame, reference: pl.DataFrame) -> None:
    with RayServices(workers=2).pool() as pool:
        got, result = dedup_steps(corpus, text="text", pool=pool, partitions=4, batch_rows=120)
    assert got.equals(reference)
    assert result.near_pairs > 0


def _component_ids(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("example_id").gather(pl.col("component")).alias("component_id"))


@pytest.mark.parametrize("split_seed", [1, 2])
def test_incremental_dedup_equals_dedup_of_everything(tmp_path: Path, corpus: pl.DataFrame, reference: pl.DataFrame, split_seed: int) -> None:
    """B deduplicated against a persisted index of A == dedup(A + B) restricted to B."""
    in_b = (corpus["example_id"].hash(split_seed) % 3 == 0).to_numpy()
    a, b = corpus.filter(pl.Series(~in_b)), corpus.filter(pl.Series(in_b))
    index = DedupIndex(str(tmp_path / "index"))
    first = index.dedup(a, text="text")
    alone, _ = dedup_frame(a, text="text")
    assert first["survivor"].to_list() == alone["survivor"].to_list()
    # a fresh object: everything B needs comes from the persisted files
    second = DedupIndex(str(tmp_path / "index")).dedup(b, text="text")
    expected = _component_ids(reference).filter(pl.col("example_id").is_in(b["example_id"].implode())).sort("example_id")
    assert second["example_id"].to_list() == expected["example_id"].to_list()
    for column in ("survivor", "exact_duplicate", "component_id"):
        assert second[column].to_list() == expected[column].to_list(), column
    assert (~second["survivor"]).sum() > 10  # B has duplicates of A rows, found through the index
    assert pl.read_parquet(tmp_path / "index/rows.parquet").height == corpus.height


def test_index_refuses_other_params_and_repeated_ids(tmp_path: Path, corpus: pl.DataFrame) -> None:
    index = DedupIndex(str(tmp_path / "index"))
    index.dedup(corpus.head(50), text="text")
    with pytest.raises(ValueError, match="not comparable"):
        index.dedup(corpus.slice(50, 10), text="text", params=DedupParams(num_perm=64))
    with pytest.raises(ValueError, match="already in the dedup index"):
        index.dedup(corpus.head(5), text="text")


def test_signatures_match_datasketch(corpus: pl.DataFrame) -> None:
    """The signatures the distributed steps shuffle are datasketch's."""
    from curate.services.similarity.dedup import minhash_signatures

    sample = corpus.head(20)
    sig = minhash_signatures(sample["text"])
    for row, words in enumerate(tokenize(sample["text"]).to_list()):
        if words:
            assert np.array_equal(sig[row], datasketch_minhash(words).hashvalues.astype(np.uint32))


def test_dedup_with_the_pool_of_a_configs_executor(corpus: pl.DataFrame, reference: pl.DataFrame) -> None:
    from curate.run.executor_services import services_for
    from tests.scale.helpers import toy_config

    for config in (toy_config("unused"), toy_config("unused", executor={"workers": 2})):
        with services_for(None, config).pool() as pool:
            assert pool.workers == config.executor.workers
            assert dedup_steps(corpus, text="text", pool=pool)[0].equals(reference)


@pytest.mark.parametrize("threshold", [0.85, 0.9])
def test_parallel_dedup_verifies_as_params_ask(corpus: pl.DataFrame, threshold: float) -> None:
    """verify="exact" (the pipeline's default) gives the serial result on a pool too; at these
    thresholds the estimate alone would decide some planted pairs differently."""
    params = DedupParams(verify="exact", threshold=threshold)
    serial, _ = dedup_frame(corpus, text="text", params=params)
    parallel, _ = dedup_steps(corpus, text="text", params=params, partitions=3, batch_rows=100)
    assert parallel.equals(serial)
