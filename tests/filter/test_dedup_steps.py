"""Dedup as steps on a pool (`curate.services.similarity.steps`) gives the in-memory result.

`dedup_frame` (one machine, in memory) is the reference; the steps (sign, buckets, verify,
components, survivors) must give the same components, survivors and exact flags at 1 and
several partitions and sign batches, on a corpus with planted exact, near and chained
copies. `SerialPool(workers=k)` runs the steps in this process but partitions like a pool
of k workers; tests/scale runs them on processes and on a two-node Ray cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from curate.filter.base import records_frame
from curate.filter.dedup_index import DedupIndex
from curate.filter.stages import EXAMPLE_COLUMNS, dedup_examples
from curate.run.services import SerialPool
from curate.services.similarity import steps
from curate.services.similarity.banding import band_keys, candidate_pairs, streamed_candidate_pairs
from curate.services.similarity.dedup import DedupParams, dedup_frame
from curate.services.similarity.minhash import minhash_signatures
from curate.services.similarity.steps import (
    band_schema,
    cross_group_pairs,
    dedup_steps,
    sign_rows,
    verify_pairs_on,
    verify_texts_on,
)
from schemas.records import Example, Message
from tests.scale.corpus import planted_corpus

PARTITIONINGS = [(1, None), (1, 97), (3, 150), (8, 40)]  # (workers = partitions, rows per sign task)


@pytest.fixture(scope="module")
def corpus() -> pl.DataFrame:
    return planted_corpus(120)


@pytest.mark.parametrize("verify", ["estimate", "exact"])
@pytest.mark.parametrize(("workers", "batch_rows"), PARTITIONINGS)
def test_steps_give_the_in_memory_result(corpus: pl.DataFrame, verify: str, workers: int, batch_rows: int | None) -> None:
    params = DedupParams(verify=verify, threshold=0.85)
    reference, expected = dedup_frame(corpus, text="text", params=params)
    shuffled = corpus.sample(fraction=1.0, shuffle=True, seed=workers)
    got, result = dedup_steps(shuffled, text="text", params=params, pool=SerialPool(workers), batch_rows=batch_rows)
    assert got.equals(reference)
    assert (result.near_pairs, result.candidate_pairs) == (expected.near_pairs, expected.candidate_pairs)
    # the planted copies were found: every exact and near copy is in its base's component
    base = got.filter(pl.col("kind") == "base").select("group", base_component="component")
    copies = got.filter(pl.col("kind").is_in(["exact", "exact_case", "near"])).join(base, on="group")
    assert copies.height > 40 and (copies["component"] == copies["base_component"]).all()


def _examples(corpus: pl.DataFrame) -> pl.DataFrame:
    """The corpus as Example rows whose answer is the text (dedup's default field)."""
    return records_frame(Example, [
        Example(example_id=row["example_id"], chunk_id=f"chunk-{row['group']}", doc_id="d", task_type="freeform",
                output_json="{}", sample_ids=[], quality_score=row["quality_score"],
                messages=[Message(role="user", content="Say it."), Message(role="assistant", content=row["text"])])
        for row in corpus.iter_rows(named=True)
    ])


@pytest.mark.parametrize("workers", [1, 3])
def test_the_dedup_stage_names_the_in_memory_survivor(corpus: pl.DataFrame, workers: int) -> None:
    """The stage's survivors and rejections (reason, and the survivor named in the detail)
    are those of the in-memory dedup."""
    examples = _examples(corpus)
    params = DedupParams(verify="exact")
    survivors, rejected = dedup_examples(examples, params, "assistant", SerialPool(workers))
    reference, _ = dedup_frame(corpus, text="text", params=params)
    survivor_id = reference.select(
        "example_id", "survivor", "exact_duplicate",
        pl.col("example_id").filter(pl.col("survivor")).first().over("component").alias("of"),
        pl.len().over("component").alias("size"),
    )
    assert sorted(survivors["example_id"]) == sorted(survivor_id.filter("survivor")["example_id"])
    assert survivors.columns == EXAMPLE_COLUMNS
    expected = survivor_id.filter(~pl.col("survivor")).select(
        pl.col("example_id").alias("item_id"),
        pl.when("exact_duplicate").then(pl.lit("exact_duplicate")).otherwise(pl.lit("near_duplicate")).alias("reason"),
        pl.format("duplicate of {} (group of {})", "of", "size").alias("detail"),
    ).sort("item_id")
    assert rejected.select("item_id", "reason", "detail").sort("item_id").equals(expected)
    assert set(expected["reason"]) == {"exact_duplicate", "near_duplicate"}


@pytest.mark.parametrize("workers", [1, 4])
def test_split_check_finds_the_planted_pairs_across_groups(corpus: pl.DataFrame, workers: int) -> None:
    """The leakage check's pairs: every planted copy whose base lies in the other group."""
    frame = corpus.with_columns(
        pl.when(pl.col("kind") == "base").then(pl.lit("train")).otherwise(pl.lit("test")).alias("split"))
    got = cross_group_pairs(frame, text="text", group="split", id_col="example_id",
                            params=DedupParams(verify="exact"), pool=SerialPool(workers))
    base = frame.filter(pl.col("kind") == "base").select("group", base_id="example_id")
    planted = frame.filter(pl.col("kind").is_in(["exact", "exact_case", "near"])).join(base, on="group")
    pairs = {tuple(sorted(p)) for p in got.select("id_a", "id_b").rows()}
    assert {tuple(sorted(p)) for p in planted.select("example_id", "base_id").rows()} <= pairs
    assert (got["group_a"] != got["group_b"]).all()
    one_partition = cross_group_pairs(frame, text="text", group="split", id_col="example_id",
                                      params=DedupParams(verify="exact"))
    assert got.equals(one_partition)


@pytest.mark.parametrize("workers", [1, 3])
def test_index_steps_give_the_dedup_of_everything(tmp_path: Path, corpus: pl.DataFrame, workers: int) -> None:
    """A batch deduplicated against the index, by the steps on `workers` partitions, gets the
    survivors of the in-memory dedup of everything."""
    in_b = (corpus["example_id"].hash(5) % 3 == 0).to_numpy()
    a, b = corpus.filter(pl.Series(~in_b)), corpus.filter(pl.Series(in_b))
    index = DedupIndex(str(tmp_path / "index"))
    index.dedup(a, text="text", pool=SerialPool(workers))
    got = index.dedup(b, text="text", pool=SerialPool(workers), commit=False)
    reference, _ = dedup_frame(corpus, text="text")
    expected = reference.filter(pl.col("example_id").is_in(b["example_id"].implode())).sort("example_id")
    assert got["survivor"].to_list() == expected["survivor"].to_list()
    assert got["exact_duplicate"].to_list() == expected["exact_duplicate"].to_list()
    assert (~got["survivor"]).sum() > 5


@pytest.mark.parametrize("verify", ["estimate", "exact"])
def test_verification_in_threads_gives_the_one_thread_result(
    corpus: pl.DataFrame, verify: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verification in threads, over chunks of the candidate pairs, gives the one-thread edges
    (signing in batches of any size is covered by the sign tasks of 40 and 97 rows above)."""
    from curate.services.similarity import dedup as d

    one, one_result = dedup_frame(corpus, text="text", params=DedupParams(verify=verify, threads=1))
    monkeypatch.setattr(d, "_VERIFY_CHUNK", 5)  # every candidate set is split over the threads
    two, two_result = d.dedup_frame(corpus, text="text", params=DedupParams(verify=verify, threads=2))
    assert one_result.candidate_pairs > 10
    assert two.equals(one)
    assert (two_result.edges == one_result.edges).all() and two_result.edges.shape == one_result.edges.shape


class RecordingPool:
    """A serial pool that keeps every result its `map` returns (to look at what tasks send back)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.results: list[Any] = []

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> list[Any]:
        done = [fn(item) for item in items]
        self.results.extend(done)
        return done


@pytest.mark.parametrize(("workers", "batch_rows"), [(1, None), (3, 70)])
def test_signing_without_the_matrix_gives_the_same_keys_and_band_keys(
    corpus: pl.DataFrame, workers: int, batch_rows: int | None,
) -> None:
    """`keep_sig=False` returns no signature matrix, and the same exact keys, word counts and
    band keys (compact: `band_schema`) as signing with it; the band keys are those of the
    rows' MinHash signatures."""
    params = DedupParams()
    texts = corpus.sort("example_id")["text"]
    kept = sign_rows(texts, params, SerialPool(workers), workers, batch_rows)
    lean = sign_rows(texts, params, SerialPool(workers), workers, batch_rows, keep_sig=False)
    assert kept.sig.shape == (len(texts), params.num_perm) and lean.sig.shape == (0, params.num_perm)
    assert (lean.keys == kept.keys).all() and (lean.lengths == kept.lengths).all()
    sort = ["band", "key", "row"]
    lean_bands = pl.concat([frame for part in lean.bands for frame in part]).sort(sort)
    assert lean_bands.schema == pl.Schema(band_schema())
    assert lean_bands.equals(pl.concat([frame for part in kept.bands for frame in part]).sort(sort))
    rows = np.flatnonzero(kept.lengths > 0)
    bands = params.banding[0]
    reference = pl.DataFrame({
        "row": np.repeat(rows, bands).astype(np.uint32), "band": np.tile(np.arange(bands, dtype=np.uint8), len(rows)),
        "key": band_keys(minhash_signatures(texts.gather(rows)), *params.banding).ravel(),
    }, schema=band_schema()).sort(sort)
    assert lean_bands.equals(reference)
    assert int((kept.lengths == 0).sum()) > 0  # empty texts: no band keys


@pytest.mark.parametrize("verify", ["estimate", "exact"])
@pytest.mark.parametrize("workers", [1, 3])
def test_verifying_from_the_texts_gives_the_signature_verdict(
    corpus: pl.DataFrame, verify: str, workers: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`verify_texts_on` (candidates signed again from their texts, in batches and waves of
    `workers` batches) gives `verify_pairs_on`'s edges and Jaccard, in the same order."""
    params = DedupParams(verify=verify, threshold=0.85)
    texts = corpus.sort("example_id")["text"]
    signed = sign_rows(texts, params, SerialPool(1), 1)
    pairs = steps.bucket_pairs(signed.bands, params, SerialPool(1))
    expected_edges, expected_jac = verify_pairs_on(pairs, signed.sig, texts, params, SerialPool(1))
    monkeypatch.setattr(steps, "VERIFY_MIN_PAIRS", 7)
    monkeypatch.setattr(steps, "VERIFY_PAIRS", 11)  # many batches, so several waves
    pool = RecordingPool(workers)
    edges, jac = verify_texts_on(pairs, texts, params, pool)
    assert len(pairs) > 3 * 11 * workers and len(pool.results) >= len(pairs) // 11
    assert len(expected_edges) > 20
    assert np.array_equal(edges, expected_edges) and np.array_equal(jac, expected_jac)


def test_dedup_steps_keep_no_signature_matrix(corpus: pl.DataFrame) -> None:
    """The sign tasks of `dedup_steps` and of the split check send back band keys, not signatures."""
    for run in (lambda pool: dedup_steps(corpus, text="text", pool=pool, batch_rows=50),
                lambda pool: cross_group_pairs(corpus, text="text", group="kind", id_col="example_id", pool=pool)):
        pool = RecordingPool(2)
        run(pool)
        signed = [r for r in pool.results if isinstance(r, steps.Signed)]
        assert len(signed) >= 1 and all(part.sig.size == 0 and part.bands for part in signed)


def test_candidate_pairs_band_by_band_are_the_buckets_pairs() -> None:
    """`candidate_pairs` (one band at a time) gives every pair of a (band, key) bucket, a
    large bucket's rows each paired with its next `max_bucket - 1`, no pair across bands
    that happen to share a key value, as a brute-force count of the buckets does."""
    rng = np.random.default_rng(3)
    bands, n, max_bucket = 4, 300, 8
    keys = rng.integers(0, 40, size=(bands, n)).astype(np.uint64)  # many small buckets
    keys[2, :30] = 999  # one bucket larger than max_bucket
    keys[3, 100:103] = 999  # the same key value in another band: a bucket of its own
    rows = rng.permutation(np.arange(1000, 1000 + n))
    frame = pl.DataFrame({"row": np.tile(rows, bands).astype(np.uint32),
                          "band": np.repeat(np.arange(bands, dtype=np.uint8), n), "key": keys.ravel()},
                         schema=band_schema()).sample(fraction=1.0, shuffle=True, seed=1)
    expected: set[tuple[int, int]] = set()
    for band in range(bands):
        for key in np.unique(keys[band]):
            members = np.sort(rows[keys[band] == key])
            for i in range(len(members)):
                expected.update((int(members[i]), int(members[j])) for j in range(i + 1, min(len(members), i + max_bucket)))
    got = candidate_pairs(frame, max_bucket)
    assert {tuple(pair) for pair in got.tolist()} == expected and len(got) == len(expected)
    assert np.array_equal(got, np.unique(got, axis=0))  # distinct, sorted
    assert np.array_equal(got, streamed_candidate_pairs(keys, rows, max_bucket))
    assert candidate_pairs(frame.clear(), max_bucket).shape == (0, 2)
