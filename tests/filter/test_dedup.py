"""Dedup: MinHash equal to datasketch's, LSH recall, components, deterministic survivors."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.services.similarity import dedup as d
from curate.services.similarity.steps import cross_group_pairs

WORDS = [f"w{i}" for i in range(400)]


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def mutate(source: str, rng: random.Random, changes: int) -> str:
    words = source.split()
    for _ in range(changes):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return " ".join(words)


def test_signatures_identical_to_datasketch() -> None:
    rng = random.Random(7)
    texts = [text(rng, n) for n in (0, 1, 3, 4, 5, 6, 40, 200)]
    texts += ["Ünïcode  Text, with PUNCTUATION! and 1,024 numbers", "ﬁne ligature  ＦＵＬＬＷＩＤＴＨ"]
    series = pl.Series(texts)
    for num_perm, size, seed in ((128, 5, 1), (64, 3, 42), (16, 1, 3)):
        sig = d.minhash_signatures(series, num_perm=num_perm, shingle_size=size, seed=seed)
        assert sig.dtype == np.uint32 and sig.shape == (len(texts), num_perm)
        for row, words in enumerate(d.tokenize(series).to_list()):
            # plain datasketch: one MinHash, one update per shingle, the same hash function
            reference = MinHash(num_perm=num_perm, seed=seed, hashfunc=d.shingle_hash32)
            for shingle in d.shingles_of(words, size):
                reference.update(shingle)
            assert np.array_equal(reference.hashvalues, sig[row]), (num_perm, size, row)


def test_signatures_do_not_depend_on_batching() -> None:
    rng = random.Random(1)
    series = pl.Series([text(rng, rng.randint(0, 80)) for _ in range(300)])
    whole = d.minhash_signatures(series)
    parts = np.concatenate([d.minhash_signatures(series.slice(i, 37)) for i in range(0, 300, 37)])
    assert np.array_equal(whole, parts)


def test_shingle_hash_matches_scalar_reference() -> None:
    words = pl.Series([["alpha", "beta", "gamma", "delta"], ["solo"], []])
    hashes, lengths = d.word_hash_arrays(words)
    shingles, counts = d.shingle_hashes(hashes, lengths, 3)
    assert counts.tolist() == [2, 1, 0]
    expected = [d.shingle_hash32(s) for w in words.to_list() for s in d.shingles_of(w, 3)]
    assert shingles.tolist() == expected


def test_banding_is_looser_than_datasketch_default() -> None:
    bands, rows = d.choose_banding(128, 0.8)
    assert d.candidate_probability(0.8, bands, rows) >= 0.99
    assert bands * rows <= 128
    # datasketch's own choice for 0.8 / 128 permutations (9 bands x 13 rows) is far lower
    assert d.candidate_probability(0.85, 9, 13) < 0.85 < d.candidate_probability(0.85, bands, rows)


def test_components_join_transitive_chains() -> None:
    # A~B, B~C, A!~C -> one component; D alone
    edges = np.array([[0, 1], [1, 2]])
    labels = d.components(4, edges)
    assert labels.tolist() == [0, 0, 0, 3]


def test_transitive_near_duplicates_form_one_component() -> None:
    rng = random.Random(3)
    words = text(rng, 160).split()
    a, b, c = words[0:120], words[20:140], words[40:160]  # a sliding window: A~B, B~C, A!~C
    texts = [" ".join(a), " ".join(b), " ".join(c), text(rng, 120)]
    sig = d.minhash_signatures(pl.Series(texts))
    jac = lambda i, j: float((sig[i] == sig[j]).mean())  # noqa: E731
    threshold = 0.6
    assert jac(0, 1) >= threshold and jac(1, 2) >= threshold and jac(0, 2) < threshold
    frame = pl.DataFrame({"example_id": ["a", "b", "c", "d"], "t": texts, "quality_score": [0.5, 0.9, 0.7, 1.0]})
    out, result = d.dedup_frame(frame, text="t", params=d.DedupParams(threshold=threshold))
    survivors = out.filter(pl.col("survivor"))["example_id"].to_list()
    assert survivors == ["b", "d"]  # one per component; the best quality_score wins
    assert result.near_pairs == 2


def test_exact_duplicates_after_normalisation_and_tie_break() -> None:
    frame = pl.DataFrame({
        "example_id": ["z", "y", "x"],
        "t": ["Access control policy, reviewed yearly.", "access CONTROL policy reviewed   yearly", "Other text entirely here"],
        "quality_score": [1.0, 1.0, 1.0],
    })
    out, _ = d.dedup_frame(frame, text="t")
    rows = {r["example_id"]: r for r in out.to_dicts()}
    assert rows["y"]["survivor"] and not rows["z"]["survivor"] and rows["z"]["exact_duplicate"]
    assert rows["x"]["survivor"]


def planted_corpus(seed: int, n: int = 60, length: int = 60) -> pl.DataFrame:
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        base = text(rng, length)
        texts.append(base)
        if rng.random() < 0.5:
            texts.append(mutate(base, rng, 1))
        if rng.random() < 0.3:
            texts.append(base.upper())
    return pl.DataFrame({
        "example_id": [f"{i:04d}" for i in range(len(texts))],
        "t": texts,
        "quality_score": [round(rng.random(), 1) for _ in texts],
    })


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), perm_seed=st.integers(0, 10_000))
def test_dedup_is_independent_of_row_order(seed: int, perm_seed: int) -> None:
    frame = planted_corpus(seed % 7, 30)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=perm_seed)
    first, _ = d.dedup_frame(frame, text="t")
    second, _ = d.dedup_frame(shuffled, text="t")
    assert first.equals(second)


def test_planted_near_duplicates_found() -> None:
    frame = planted_corpus(11, 200, length=120)  # one changed word: Jaccard ~0.92
    out, _ = d.dedup_frame(frame, text="t")
    # exactly one survivor per base text, its one-word mutation and its upper-case copy
    assert out.filter(pl.col("survivor")).height == 200


def test_cross_group_pairs_find_split_leakage() -> None:
    rng = random.Random(5)
    base = [text(rng, 100) for _ in range(6)]
    frame = pl.DataFrame({
        "id": ["t0", "t1", "t2", "v0", "v1", "s0"],
        "text": [base[0], base[1], base[2], mutate(base[0], rng, 1), base[3], base[1]],
        "split": ["train", "train", "train", "test", "test", "train"],
    })
    leaks = cross_group_pairs(frame, text="text", group="split", id_col="id")
    assert leaks.select("id_a", "id_b").rows() == [("t0", "v0")]  # s0~t1 is within train
    assert leaks["jaccard"][0] >= 0.8


def test_exact_verification_matches_true_jaccard() -> None:
    rng = random.Random(9)
    base = [text(rng, 65) for _ in range(150)]
    copies = [mutate(b, rng, 1) for b in base]
    texts = pl.Series(base + copies)
    words = d.tokenize(texts)
    exact = d.DedupParams(verify="exact")
    edges, jac, _ = d.near_duplicate_edges(texts, exact)
    truth = []
    for i in range(150):
        a = set(d.shingles_of(words[i].to_list(), 5))
        b = set(d.shingles_of(words[150 + i].to_list(), 5))
        truth.append(len(a & b) / len(a | b))
    expected = {(i, 150 + i) for i in range(150) if truth[i] >= 0.8}
    assert {tuple(e) for e in edges.tolist()} == expected
    assert np.allclose(sorted(jac), sorted(t for t in truth if t >= 0.8))
    estimated, _, _ = d.near_duplicate_edges(texts, d.DedupParams())
    assert len(estimated) <= len(edges)  # every copy here is above 0.8: the estimate can only miss


@settings(max_examples=50, deadline=None)
@given(sets=st.lists(st.lists(st.integers(0, 40), max_size=30), min_size=1, max_size=12), data=st.data())
def test_set_jaccard_equals_python_sets(sets: list[list[int]], data: st.DataObject) -> None:
    """Hashes with repeats and empty texts: the Jaccard of the distinct hashes, 1.0 for two empty sets."""
    hashes = np.array([h for s in sets for h in s], dtype=np.uint32)
    counts = np.array([len(s) for s in sets], dtype=np.int64)
    index = st.integers(0, len(sets) - 1)
    pairs = np.array(data.draw(st.lists(st.tuples(index, index), min_size=1, max_size=30)), dtype=np.int64)
    expected = [len(set(sets[a]) & set(sets[b])) / len(set(sets[a]) | set(sets[b])) if sets[a] or sets[b] else 1.0
                for a, b in pairs.tolist()]
    assert d.set_jaccard(hashes, counts, pairs, step=4).tolist() == expected


def test_verifying_from_texts_equals_verifying_with_signatures() -> None:
    """`verify_texts` (candidates signed again from their texts, as `dedup_frame` does) keeps
    the pairs and Jaccard values that `verify_candidates` keeps with every signature at hand."""
    frame = planted_corpus(3, 120, length=65)
    texts = frame["t"]
    sig = d.minhash_signatures(texts)
    rows = np.arange(len(texts))
    pairs = d.streamed_candidate_pairs(d.band_major_keys(sig, *d.DedupParams().banding), rows)
    far = np.array([[i, i + 1] for i in range(0, len(texts) - 1, 3)])  # mostly unrelated texts
    pairs = np.unique(np.concatenate([pairs, far]), axis=0)
    for verify in ("estimate", "exact"):
        params = d.DedupParams(verify=verify)
        edges, jac = d.verify_texts(texts, pairs, params)
        ref_edges, ref_jac = d.verify_candidates(sig, pairs, params, words=texts)
        assert len(edges) > 30 and len(edges) < len(pairs)
        assert np.array_equal(edges, ref_edges) and np.array_equal(jac, ref_jac)


def test_permutation_major_signatures_and_their_band_keys() -> None:
    rng = random.Random(4)
    series = pl.Series([text(rng, rng.choice([0, 3, 30, 70, 600])) for _ in range(80)])  # 600 words: the long path
    hashes, counts, _ = d.text_shingle_hashes(series, 5)
    rows_major = d.signatures_from_shingles(hashes, counts)
    columns = d.signatures_from_shingles(hashes, counts, permutation_major=True)
    assert np.array_equal(columns, rows_major.T)
    assert np.array_equal(d.band_keys_from_columns(columns, 21, 6), d.band_major_keys(rows_major, 21, 6))
