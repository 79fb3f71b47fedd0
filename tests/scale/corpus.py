"""A synthetic corpus with planted exact, near and transitive duplicates (for dedup tests).

Texts are random word sequences from a fixed vocabulary (seeded), so unrelated texts
share almost no 5-word shingles; duplicates are planted on purpose:
- exact: the same text again (also with different case and spacing: equal once normalised);
- near: a copy of a 400-word text with 2 words replaced (5-shingle Jaccard ~0.95);
- transitive: a chain a -> b -> c where b changes 4 words of a (Jaccard ~0.90) and c
  changes 6 other words of b (~0.86), so that a and c differ in 10 words (~0.78, under
  the 0.8 threshold): only connected components join all three; keeping the first of
  each pair that comes (greedy) would not.
"""

from __future__ import annotations

import random

import polars as pl

from schemas.ids import content_id

VOCAB = [f"w{i}" for i in range(5000)]


def _text(rng: random.Random, words: int) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(words)]


def _mutate(rng: random.Random, words: list[str], every: int, offset: int = 0) -> list[str]:
    out = list(words)
    for i in range(offset, len(out), every):
        out[i] = rng.choice(VOCAB)
    return out


def planted_corpus(n_base: int = 300, seed: int = 7, words: int = 400) -> pl.DataFrame:
    """Rows (example_id, text, quality_score, kind, group) with duplicates planted among
    n_base texts; `group` is the base text a row was made from (-1 for the empty texts)."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []

    group = 0

    def add(tokens: list[str], kind: str, *, shout: bool = False) -> None:
        text = " ".join(tokens)
        if shout:
            text = "  " + text.upper().replace(" ", "   ") + "\n"
        rows.append({"example_id": content_id(kind, len(rows), text), "text": text,
                     "quality_score": round(rng.uniform(0, 1), 1), "kind": kind,
                     "group": -1 if not tokens else group})

    for i in range(n_base):
        group = i
        base = _text(rng, words)
        add(base, "base")
        if i % 5 == 0:
            add(base, "exact")
        if i % 7 == 0:
            add(base, "exact_case", shout=True)
        if i % 4 == 0:
            add(_mutate(rng, base, words // 2, words // 4), "near")
        if i % 9 == 0:
            b = _mutate(rng, base, words // 4, words // 8)  # 4 words, away from the ends
            c = _mutate(rng, b, words // 6 + 1, words // 16)  # 6 other words
            add(b, "chain_b")
            add(c, "chain_c")
        if i % 11 == 0:
            add([], "empty") if i % 22 == 0 else add(base[:3], "short")
    return pl.DataFrame(rows)
