"""Decontamination: eval items planted into answers, found by 13-gram alone vs assay's checks.

Answers stand in for teacher output: 3-6 consecutive prose sentences of the NIST SP 800-53 r4
manuals (../shared/corpus, public domain; the "Discussion" paragraphs). Eval items are other
sentences of the same manuals (12-40 words), plus every sentence with a number of those manuals
and of the demo's policy documents (data/demo/docs; SP 800-53 prose has few numbers), kept only
when none of their 8-grams occurs in any answer, so a clean answer that is flagged is a real
false positive. Into a share of the answers
one eval item is planted as a sentence of its own, in one of three variants:

- verbatim: the item as it is;
- paraphrase: light rewording, a fixed synonym table (organization -> agency, information system
  -> IT system, ensures -> makes sure, ...), about 3-6 words changed in a 25-word item;
- number: one number of the item changed (items that hold a number).

Every method runs on the same answers in one process: plain 13-gram matching (the baseline, as in
GPT-3's and datatrove's decontamination), assay's default (13-gram + MinHash sentence
near-match), and the default + embedding cosine (all-MiniLM-L6-v2 from its PyPI wheel).

  .venv/bin/python bench/decontam/run.py                  # 3000 answers, 150 plants per variant
  .venv/bin/python bench/decontam/run.py --no-embedding   # skip the embedding method
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from curate.filter.decontaminate import EvalIndex, decontaminate  # noqa: E402
from curate.filter.similarity_config import DecontaminateConfig, EvalSet  # noqa: E402
from curate.services.similarity.ngrams import text_ngrams  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "sp800-53r4" / "docs"
DEMO_DOCS = ROOT / "data" / "demo" / "docs"  # the demo's policy manuals: sentences with numbers (90 days, 4 hours)
SYNONYMS = {
    "organization": "agency", "organizations": "agencies", "organizational": "agency",
    "information system": "IT system", "information systems": "IT systems", "ensures": "makes sure",
    "ensure": "make sure", "requires": "calls for", "require": "call for", "includes": "covers",
    "include": "cover", "provides": "gives", "provide": "give", "security": "protection",
    "mechanisms": "means", "mechanism": "means", "personnel": "staff", "establishes": "sets up",
    "implementation": "rollout", "associated": "related", "appropriate": "suitable", "additional": "extra",
    "employ": "use", "employs": "uses", "typically": "usually", "example": "instance", "capability": "ability",
    "individuals": "people", "individual": "person", "activities": "tasks", "authorized": "approved",
}
SYNONYM_PATTERN = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b")
NUMBER = re.compile(r"\b\d+\b")
VARIANTS = ("verbatim", "paraphrase", "number")


def corpus_sentences() -> list[tuple[str, int, str]]:
    """(document, paragraph number, sentence) of every Discussion paragraph, in reading order."""
    out = []
    for path in sorted(CORPUS.glob("*.md")):
        for p, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if line.startswith("**Discussion.**"):
                text = line.removeprefix("**Discussion.**").strip()
                for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
                    if 8 <= len(sentence.split()) <= 60:
                        out.append((path.stem, p, sentence))
    return out


def numbered_sentences() -> list[str]:
    """Sentences holding a number, for the changed-number variant: SP 800-53 prose has few."""
    found = [s for _, _, s in corpus_sentences() if NUMBER.search(s)]
    for path in sorted([*DEMO_DOCS.glob("*.md"), *DEMO_DOCS.glob("*.txt")]):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.lstrip("-#* ").strip()
            found += [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", line) if NUMBER.search(s)]
    return found


def paraphrase(text: str) -> str:
    return SYNONYM_PATTERN.sub(lambda m: SYNONYMS[m.group(1)], text)


def change_number(text: str, rng: np.random.Generator) -> str:
    numbers = list(NUMBER.finditer(text))
    match = numbers[int(rng.integers(len(numbers)))]
    value = int(match.group()) + int(rng.integers(1, 9))
    return text[: match.start()] + str(value) + text[match.end():]


def build(answers: int, plants: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Answers (id, text, variant, planted item) and eval items (item, text)."""
    rng = np.random.default_rng(seed)
    sentences = corpus_sentences()
    paragraphs: dict[tuple[str, int], list[str]] = {}
    for doc, p, s in sentences:
        paragraphs.setdefault((doc, p), []).append(s)
    keys = list(paragraphs)
    rng.shuffle(keys)  # type: ignore[arg-type]
    eval_keys, answer_keys = keys[: len(keys) // 3], keys[len(keys) // 3:]
    numbered = set(numbered_sentences())  # reserved for eval items: they carry the changed-number variant
    pool = [[s for s in paragraphs[k] if s not in numbered] for k in answer_keys]
    pool = [p for p in pool if len(p) >= 3]
    texts = []
    for _ in range(answers):
        para = pool[int(rng.integers(len(pool)))]
        size = int(rng.integers(3, min(6, len(para)) + 1))
        start = int(rng.integers(0, len(para) - size + 1))
        texts.append(para[start:start + size])
    # eval items: sentences of other paragraphs, 12-40 words, sharing no 8-gram with any answer
    answer_grams, _ = text_ngrams(pl.Series([" ".join(t) for t in texts]), 8)
    candidates = sorted({s for s in [*(s for k in eval_keys for s in paragraphs[k]), *numbered]
                         if 12 <= len(s.split()) <= 40})
    grams, doc = text_ngrams(pl.Series(candidates), 8)
    dirty = set(doc[np.isin(grams, answer_grams)].tolist())
    clean = [c for i, c in enumerate(candidates) if i not in dirty]
    order = rng.permutation(len(clean))
    items = [clean[i] for i in order]
    with_number = [c for c in items if NUMBER.search(c)]
    without = [c for c in items if not NUMBER.search(c)]
    n_number = min(plants, len(with_number))
    chosen = {"number": with_number[:n_number], "verbatim": without[:plants], "paraphrase": without[plants:2 * plants]}
    eval_items = [*with_number, *without]  # every candidate is in the eval set, planted or not
    item_id = {text: f"e{i}" for i, text in enumerate(eval_items)}
    slots = rng.permutation(answers)
    rows: list[dict[str, Any]] = []
    used = 0
    planted_at: dict[int, tuple[str, str]] = {}
    for variant in VARIANTS:
        for text in chosen[variant]:
            planted_at[int(slots[used])] = (variant, text)
            used += 1
    for i, sentences_of_answer in enumerate(texts):
        variant, item = planted_at.get(i, ("clean", ""))
        parts = list(sentences_of_answer)
        if item:
            planted = (item if variant == "verbatim" else paraphrase(item) if variant == "paraphrase"
                       else change_number(item, rng))
            parts.insert(int(rng.integers(0, len(parts) + 1)), planted)
        rows.append({"example_id": f"a{i:05d}", "text": " ".join(parts), "variant": variant,
                     "item": item_id.get(item) if item else None})
    return pl.DataFrame(rows), pl.DataFrame({"item": list(item_id.values()), "text": list(item_id)})


def evaluate(answers: pl.DataFrame, items: pl.DataFrame, config: DecontaminateConfig) -> dict[str, Any]:
    start = time.perf_counter()
    index = EvalIndex.build(config, items.with_columns(pl.lit("bench").alias("set")))
    outcome = decontaminate(answers, text="text", index=index)
    seconds = time.perf_counter() - start
    flagged = outcome.rejected.select("example_id", "eval_item")
    joined = answers.join(flagged, on="example_id", how="left")
    result: dict[str, Any] = {"seconds": seconds}
    for variant in VARIANTS:
        part = joined.filter(pl.col("variant") == variant)
        result[variant] = (part["eval_item"].is_not_null().sum(), part.height)
    tp = joined.filter(pl.col("variant") != "clean")["eval_item"].is_not_null().sum()
    fp = joined.filter(pl.col("variant") == "clean")["eval_item"].is_not_null().sum()
    right_item = joined.filter((pl.col("variant") != "clean") & (pl.col("eval_item") == pl.col("item"))).height
    result.update(tp=tp, fp=fp, clean=joined.filter(pl.col("variant") == "clean").height,
                  precision=tp / (tp + fp) if tp + fp else float("nan"), attributed=right_item)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=3000)
    parser.add_argument("--plants", type=int, default=150, help="planted answers per variant")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-embedding", action="store_true")
    args = parser.parse_args()
    answers, items = build(args.answers, args.plants, args.seed)
    spec = (EvalSet(path="bench", name="bench"),)
    methods = {
        "13-gram only (baseline)": DecontaminateConfig(eval_sets=spec, minhash=False),
        "assay default (13-gram + MinHash)": DecontaminateConfig(eval_sets=spec),
    }
    if not args.no_embedding:
        methods["assay + embedding (cos>=0.85)"] = DecontaminateConfig(eval_sets=spec, embedding=True)
    results = {name: evaluate(answers, items, config) for name, config in methods.items()}
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{answers.height} answers ({answers.filter(pl.col('variant') == 'clean').height} clean), "
          f"{items.height} eval items; planted per variant: "
          + ", ".join(f"{v} {answers.filter(pl.col('variant') == v).height}" for v in VARIANTS))
    names = list(results)
    width = max(len(n) for n in names) + 2
    print("".ljust(22) + "".join(n.rjust(width) for n in names))
    for variant in VARIANTS:
        print(f"recall {variant}".ljust(22) + "".join(
            f"{results[n][variant][0]}/{results[n][variant][1]} = {results[n][variant][0] / max(1, results[n][variant][1]):.3f}".rjust(width)
            for n in names))
    print("false positives".ljust(22) + "".join(f"{results[n]['fp']}/{results[n]['clean']}".rjust(width) for n in names))
    print("precision".ljust(22) + "".join(f"{results[n]['precision']:.3f}".rjust(width) for n in names))
    print("right item named".ljust(22) + "".join(f"{results[n]['attributed']}/{results[n]['tp']}".rjust(width) for n in names))
    print("seconds".ljust(22) + "".join(f"{results[n]['seconds']:.1f}".rjust(width) for n in names))
    base = results[names[0]]
    for name in names[1:]:
        ratios = [(results[name][v][0] / base[v][0]) if base[v][0] else float("inf") for v in VARIANTS]
        print(f"recall ratio {name} / baseline: " + ", ".join(f"{v} {r:.2f}x" for v, r in zip(VARIANTS, ratios, strict=True)))


if __name__ == "__main__":
    main()
