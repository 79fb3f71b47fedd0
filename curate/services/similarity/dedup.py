"""Exact and near-duplicate detection as composable, vectorised steps (the similarity library).

Each step is a plain function over arrays or Polars frames, so a distributed executor can
run the per-row steps per batch and shuffle by key between them:

1. `tokenize` / `exact_keys`      per batch: normalised words, a stable content hash.
2. `minhash_signatures`           per batch: MinHash signatures, identical to datasketch's
                                   `MinHash(num_perm, seed)` (scheme "affine32") fed the same
                                   shingles with `hashfunc=shingle_hash32`.
3. `band_keys` / `band_frame`     per batch: one 64-bit key per LSH band.
4. `candidate_pairs`              shuffle by (band, key): pairs of rows sharing a bucket
                                   (`streamed_candidate_pairs`: one band at a time, on one
                                   machine, from `band_major_keys`).
5. `verify_candidates`            per pair batch: estimated Jaccard >= threshold
                                   (`verify_pairs`), or with verify="exact" the estimate as
                                   a pre-filter and then the exact shingle-set Jaccard
                                   (`verify_texts`: the same from the texts alone, the
                                   candidates signed again; `dedup_frame` keeps no
                                   signature matrix).
6. `components`                   global: connected components of the verified edges
                                   (scipy.sparse.csgraph), not first-come greedy.
7. `choose_survivors`             per component: best quality_score, ties by id.

`dedup_frame` chains them for one machine, in memory; `steps` chains the same steps over
a worker pool (the pipeline's dedup, the dedup index, the split-leakage check). Row indices passed between steps are positions in
a frame the caller sorted by a content id, so results never depend on input order.
The steps live in `minhash`, `banding`, `jaccard` and `components`; this module chains
them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from curate.run.worker_threads import usable_cpus
from curate.services.similarity.banding import (
    band_frame,
    band_keys,
    band_keys_from_columns,
    band_major_keys,
    candidate_pairs,
    candidate_probability,
    choose_banding,
    streamed_candidate_pairs,
)
from curate.services.similarity.components import (
    choose_survivors,
    components,
    exact_edges,
    survivors_by_component,
)
from curate.services.similarity.jaccard import (
    estimated_jaccard,
    exact_jaccard,
    set_jaccard,
    verify_pairs,
)
from curate.services.similarity.minhash import (
    WORD_PATTERN,
    datasketch_minhash,
    exact_keys,
    fmix32,
    minhash_signatures,
    permutations,
    shingle_hash32,
    shingle_hashes,
    shingles_of,
    signatures_from_shingles,
    text_shingle_hashes,
    tokenize,
    word_hash32,
    word_hash_arrays,
)
from curate.services.similarity.wordbytes import span_exact_keys

_VERIFY_CHUNK = 50_000  # candidate pairs below which verification stays in one thread
# Rows signed at once per thread. Every temporary of a batch then stays under glibc's 32 MiB
# ceiling for mmap'd blocks, so freed memory is reused instead of mapped and faulted in again
# (2 threads, 200k rows, loaded 2-core machine: sys time 1.9 of 5.3 CPU-s at 50,000 rows a batch,
# 0.8 of 3.7-4.4 at 16,384).
SIGN_BATCH = 16_384


@dataclass(frozen=True)
class DedupParams:
    threshold: float = 0.8
    num_perm: int = 128
    shingle_size: int = 5
    bands: int | None = None
    seed: int = 1
    max_bucket: int = 64
    verify: str = "estimate"  # "estimate": MinHash only; "exact": shingle-set Jaccard of candidates
    prefilter_margin: float = 0.15  # exact check only for candidates estimated >= threshold - margin
    threads: int | None = None  # batches signed at once (numpy and Polars release the GIL);
    # None: the CPUs this process may run on, at most 4. Results never depend on it.

    @property
    def sign_threads(self) -> int:
        return self.threads if self.threads is not None else max(1, min(4, usable_cpus()))

    @property
    def banding(self) -> tuple[int, int]:
        if self.bands is None:
            return choose_banding(self.num_perm, self.threshold)
        return self.bands, self.num_perm // self.bands


@dataclass
class DedupResult:
    """Per row (in the sorted order of `ids`): component label, exact/near flags, survivor."""

    ids: pl.Series
    component: np.ndarray
    survivor: np.ndarray
    exact_duplicate: np.ndarray  # a non-survivor whose normalised text equals another row's
    near_pairs: int
    candidate_pairs: int
    edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    # ^ exact and verified near edges (positions in the sorted frame)


def sign_batches(
    texts: pl.Series, params: DedupParams, batch_rows: int = SIGN_BATCH
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per batch of rows, straight from the text bytes (`wordbytes`): exact keys (uint64),
    MinHash signatures (n x num_perm, uint32) and word counts of all `texts`. The outputs
    are allocated once and filled batch by batch, `params.sign_threads` batches at a time."""
    keys, sig, lengths, _ = sign_and_band(texts, params, batch_rows, with_bands=False)
    return keys, sig, lengths


def sign_and_band(
    texts: pl.Series, params: DedupParams, batch_rows: int = SIGN_BATCH, *, with_bands: bool = True,
    with_sig: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`sign_batches`, plus each row's LSH band keys (band-major: bands x n, uint64),
    computed in the same threads while a batch's signatures are still in cache.
    `with_sig=False`: the signatures are not kept (an empty 0 x num_perm array is returned;
    n x num_perm x 4 B saved: 512 MB at 1M rows), for callers that verify with `verify_texts`."""
    n = len(texts)
    keys = np.empty(n, dtype=np.uint64)
    sig = np.empty((n if with_sig else 0, params.num_perm), dtype=np.uint32)
    lengths = np.empty(n, dtype=np.int64)
    bands, per_band = params.banding
    band_keys_ = np.empty((bands if with_bands else 0, n), dtype=np.uint64)
    permutations(params.num_perm, params.seed)  # imports datasketch once, before any thread

    def sign(lo: int) -> None:
        hashes, counts, spans = text_shingle_hashes(texts.slice(lo, batch_rows), params.shingle_size)
        hi = lo + len(counts)
        keys[lo:hi] = span_exact_keys(spans)
        lengths[lo:hi] = spans.counts
        del spans
        columns = signatures_from_shingles(hashes, counts, params.num_perm, params.seed, permutation_major=True)
        if with_sig:
            sig[lo:hi] = columns.T
        if with_bands:
            band_keys_[:, lo:hi] = band_keys_from_columns(columns, bands, per_band)

    starts = range(0, n, batch_rows)
    if params.sign_threads <= 1 or len(starts) <= 1:
        for lo in starts:
            sign(lo)
    else:
        with ThreadPoolExecutor(params.sign_threads) as pool:
            list(pool.map(sign, starts))
    return keys, sig, lengths, band_keys_


def near_edges_of(
    sig: np.ndarray, rows: np.ndarray, params: DedupParams, texts: pl.Series | None = None,
    band_keys_: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Verified near-duplicate edges among `rows` (indices into `sig` and `texts`), their
    Jaccard, and the number of candidate pairs. `band_keys_`: every row's band keys
    (`sign_and_band`), else they are computed from `sig` here."""
    if band_keys_ is None:
        bands, per_band = params.banding
        pairs = streamed_candidate_pairs(band_major_keys(sig, bands, per_band, select=rows), rows,
                                         params.max_bucket, threads=params.sign_threads)
    else:
        pairs = streamed_candidate_pairs(band_keys_, rows, params.max_bucket, select=rows,
                                         threads=params.sign_threads)
    edges, jac = verify_candidates(sig, pairs, params, words=texts)
    return edges, jac, len(pairs)


def near_duplicate_edges(
    texts: pl.Series, params: DedupParams, *, batch_rows: int = SIGN_BATCH,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Verified near-duplicate edges (i < j, positions in `texts`), their Jaccard (estimated
    or exact, per `params.verify`), and the number of candidate pairs."""
    _, sig, lengths = sign_batches(texts, params, batch_rows)
    return near_edges_of(sig, np.flatnonzero(lengths > 0), params, texts)


def verify_candidates(
    sig: np.ndarray, pairs: np.ndarray, params: DedupParams, *, words: pl.Series | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Verified edges and their Jaccard, as `params.verify` asks.

    "estimate": MinHash estimate >= threshold (needs only signatures).
    "exact": estimate >= threshold - prefilter_margin, then the exact Jaccard of the two
    shingle sets >= threshold (needs the rows' `words`; recall 1.0 on planted pairs at
    0.85-0.97 in bench/dedup, against ~0.95 for the estimate alone).
    """
    if params.verify != "estimate" and words is None:
        raise ValueError("verify='exact' needs the rows' words (tokenize(texts))")
    threads = params.sign_threads
    if threads <= 1 or len(pairs) < 2 * _VERIFY_CHUNK:
        return _verify_chunk(sig, pairs, params, words)
    # contiguous chunks of the pairs in threads (numpy releases the GIL), joined in order
    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(lambda chunk: _verify_chunk(sig, chunk, params, words), np.array_split(pairs, threads)))
    return np.concatenate([edges for edges, _ in done]), np.concatenate([jac for _, jac in done])


def _verify_chunk(
    sig: np.ndarray, pairs: np.ndarray, params: DedupParams, words: pl.Series | None
) -> tuple[np.ndarray, np.ndarray]:
    if params.verify == "estimate" or words is None:
        return verify_pairs(sig, pairs, params.threshold)
    likely, _ = verify_pairs(sig, pairs, max(0.0, params.threshold - params.prefilter_margin))
    jac = exact_jaccard(words, likely, params.shingle_size)
    keep = jac >= params.threshold
    return likely[keep], jac[keep]


def verify_texts(texts: pl.Series, pairs: np.ndarray, params: DedupParams) -> tuple[np.ndarray, np.ndarray]:
    """`verify_candidates` without the signatures at hand: the rows of `pairs` are signed
    again from `texts` (the same signatures: they depend on the text alone), and their
    shingle hashes serve the exact check too. Pairs in contiguous chunks, in threads."""
    threads = params.sign_threads
    if threads <= 1 or len(pairs) < 2 * _VERIFY_CHUNK:
        return _verify_texts_chunk(texts, pairs, params)
    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(lambda chunk: _verify_texts_chunk(texts, chunk, params), np.array_split(pairs, threads)))
    return np.concatenate([edges for edges, _ in done]), np.concatenate([jac for _, jac in done])


def _verify_texts_chunk(texts: pl.Series, pairs: np.ndarray, params: DedupParams) -> tuple[np.ndarray, np.ndarray]:
    if len(pairs) == 0:
        return pairs, np.zeros(0)
    rows, inverse = np.unique(pairs.ravel(), return_inverse=True)
    local = inverse.reshape(-1, 2)
    needed = texts.gather(rows)
    # shingled in batches of `SIGN_BATCH` rows, as signing does (temporaries stay small)
    parts = [text_shingle_hashes(needed.slice(lo, SIGN_BATCH), params.shingle_size)[:2]
             for lo in range(0, len(rows), SIGN_BATCH)]
    hashes, counts = np.concatenate([h for h, _ in parts]), np.concatenate([c for _, c in parts])
    del parts, needed
    sig = signatures_from_shingles(hashes, counts, params.num_perm, params.seed)
    estimate = params.verify == "estimate"
    floor = params.threshold if estimate else max(0.0, params.threshold - params.prefilter_margin)
    est = estimated_jaccard(sig, local)
    likely = np.flatnonzero(est >= floor)
    jac = est[likely] if estimate else set_jaccard(hashes, counts, local[likely])
    keep = likely[jac >= params.threshold]
    return pairs[keep], jac[jac >= params.threshold]


def dedup_frame(
    frame: pl.DataFrame, *, text: str, id_col: str = "example_id", score: str = "quality_score",
    params: DedupParams | None = None,
) -> tuple[pl.DataFrame, DedupResult]:
    """Exact + near dedup of a frame. Returns the frame sorted by `id_col` with columns
    `component`, `survivor`, `exact_duplicate`, and the result summary.

    Exact duplicates (equal normalised text) are collapsed first; MinHash runs on one
    representative per exact group; exact and near edges form one graph whose connected
    components each keep one survivor.
    """
    params = params or DedupParams()
    ordered = frame.sort(id_col)
    texts = ordered[text]
    # band keys only: the candidates' signatures are made again from their texts to verify
    keys, _, lengths, bands = sign_and_band(texts, params, with_sig=False)
    ex_edges = exact_edges(keys)
    # near duplicates among one representative per exact group (its first row in id order)
    _, first_index = np.unique(keys, return_index=True)
    reps = np.sort(first_index)
    reps = reps[lengths[reps] > 0]
    pairs = streamed_candidate_pairs(bands, reps, params.max_bucket, select=reps, threads=params.sign_threads)
    del bands
    near_edges, _ = verify_texts(texts, pairs, params)
    n_candidates = len(pairs)
    return finish_dedup(ordered, keys, ex_edges, near_edges, n_candidates, id_col=id_col, score=score)


def finish_dedup(
    ordered: pl.DataFrame, keys: np.ndarray, ex_edges: np.ndarray, near_edges: np.ndarray,
    n_candidates: int, *, id_col: str, score: str, pool: Any = None, partitions: int = 1,
) -> tuple[pl.DataFrame, DedupResult]:
    """Components (global, over the edges only), then survivors and exact flags per component
    (`components.survivor_step`, over `partitions` of the components on `pool`)."""
    edges = np.concatenate([ex_edges, near_edges]) if len(near_edges) else ex_edges
    comp = components(ordered.height, edges)
    survivor, exact_dup = survivors_by_component(ordered, comp, keys, id_col=id_col, score=score,
                                                 pool=pool, partitions=partitions)
    result = DedupResult(
        ids=ordered[id_col], component=comp, survivor=survivor, exact_duplicate=exact_dup,
        near_pairs=len(near_edges), candidate_pairs=n_candidates, edges=edges,
    )
    out = ordered.with_columns(
        pl.Series("component", comp), pl.Series("survivor", survivor), pl.Series("exact_duplicate", exact_dup)
    )
    return out, result


__all__ = [
    "WORD_PATTERN",
    "DedupParams",
    "DedupResult",
    "band_frame",
    "band_keys",
    "band_keys_from_columns",
    "band_major_keys",
    "candidate_pairs",
    "candidate_probability",
    "choose_banding",
    "choose_survivors",
    "components",
    "datasketch_minhash",
    "dedup_frame",
    "estimated_jaccard",
    "exact_edges",
    "exact_jaccard",
    "exact_keys",
    "finish_dedup",
    "fmix32",
    "minhash_signatures",
    "near_duplicate_edges",
    "near_edges_of",
    "permutations",
    "set_jaccard",
    "shingle_hash32",
    "shingle_hashes",
    "shingles_of",
    "sign_and_band",
    "sign_batches",
    "signatures_from_shingles",
    "streamed_candidate_pairs",
    "text_shingle_hashes",
    "tokenize",
    "verify_candidates",
    "verify_pairs",
    "verify_texts",
    "word_hash32",
    "word_hash_arrays",
]
