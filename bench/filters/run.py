"""Planted-defect benchmark of the quality filters, on real NIST SP 800-53 r4 statements.

Each control statement is a chunk whose true label is its family (AC, AU, ...). A
simulated teacher answers it three times (self-consistency samples). Defects are planted
at known rates among clean answers that carry realistic, harmless noise (a minority
vote, quotes with changed case, curly quotes, extra spaces, a one-letter typo), and each
filter's rejections are compared with the planted truth:

  schema        broken samples (invalid JSON, missing field, label outside the taxonomy)
  consistency   wrong labels: two of three samples vote for other labels
                (+ "confident" wrong labels: all three agree on one wrong label; no
                 mechanical filter can see these -- shown to state the limit)
  grounding     quotes not in the source (from another control, or reworded)
  audit         identity leakage / refusals / empty answers in free-form answers
  dedup         near-duplicate examples at known Jaccard similarity (truth: every pair with
                exact shingle Jaccard >= 0.8, planted or natural to the corpus)
  leakage       test examples that nearly repeat training examples (cross_group_pairs)

  .venv/bin/python bench/filters/run.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from curate.filter.base import records_frame  # noqa: E402
from curate.filter.checks import FilterEnv, run_filters  # noqa: E402
from curate.filter.config import FilterConfig  # noqa: E402
from curate.services.similarity.dedup import (  # noqa: E402
    DedupParams,
    dedup_frame,
    shingles_of,
    tokenize,
)
from curate.services.similarity.steps import cross_group_pairs  # noqa: E402
from schemas.ids import content_id  # noqa: E402
from schemas.records import Sample  # noqa: E402
from schemas.tasks import TaskConfig  # noqa: E402

CONTROLS = ROOT.parent / "shared" / "corpus" / "sp800-53r4" / "controls.jsonl"
RATES = {"schema": 0.05, "wrong_label": 0.10, "confident_wrong_label": 0.02, "quote_not_in_source": 0.10}


def load_controls() -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in CONTROLS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if len(r["statement"].split()) >= 8]


def span(words: list[str], rng: random.Random) -> str:
    size = min(len(words), rng.randint(6, 14))
    start = rng.randint(0, len(words) - size)
    return " ".join(words[start : start + size])


def cosmetic(quote: str, rng: random.Random) -> str:
    """Harmless changes a grounding filter must tolerate."""
    choice = rng.randrange(4)
    if choice == 0:
        return quote.lower()
    if choice == 1:
        return quote.replace(" ", "  ", 2)
    if choice == 2:
        return "\u201c" + quote.rstrip(".;,") + "\u201d"
    # one-letter typo in a long word
    words = quote.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    w = words[longest]
    if len(w) > 5:
        k = rng.randrange(1, len(w) - 1)
        words[longest] = w[:k] + w[k + 1 :]
    return " ".join(words)


def reword(quote: str, rng: random.Random) -> str:
    words = quote.split()
    rng.shuffle(words)
    return " ".join(words)


def make_sample(chunk_id: str, index: int, raw: str | None, status: str = "ok", task_type: str = "classification") -> Sample:
    return Sample(sample_id=content_id(chunk_id, "bench", index, 0), chunk_id=chunk_id, doc_id="sp800-53r4",
                  task_type=task_type, sample_index=index, status=status, output_json=raw,
                  request_hash=content_id("bench", chunk_id, index), backend="simulated", model="simulated",
                  cost_usd=0.003)


def classification_bench(controls: list[dict[str, Any]], rng: random.Random) -> tuple[list[dict[str, Any]], Any, dict[str, str]]:
    families = sorted({c["family"] for c in controls})
    task = TaskConfig(type="classification", name="family", instruction="Which control family is this?",
                      labels=tuple(families))
    chunks: dict[str, str] = {}
    samples: list[Sample] = []
    truth_chunk: dict[str, str] = {}
    truth_sample: set[str] = set()
    for control in controls:
        cid = control["id"]
        text = control["statement"]
        chunks[cid] = text
        words = text.split()
        family = control["family"]
        others = [f for f in families if f != family]
        roll = rng.random()
        kind = "clean"
        edges = np.cumsum(list(RATES.values()))
        for name, edge in zip(RATES, edges, strict=True):
            if roll < edge:
                kind = name
                break
        truth_chunk[cid] = kind
        outputs: list[dict[str, Any]] = []
        for _ in range(3):
            quote = span(words, rng)
            if rng.random() < 0.3:
                quote = cosmetic(quote, rng)
            outputs.append({"label": family, "quote": quote})
        if kind == "clean" and rng.random() < 0.15:
            outputs[rng.randrange(3)]["label"] = rng.choice(others)  # a harmless minority vote
        if kind == "wrong_label":
            for k in rng.sample(range(3), 2):
                outputs[k]["label"] = rng.choice(others)
        if kind == "confident_wrong_label":
            wrong = rng.choice(others)
            for out in outputs:
                out["label"] = wrong
        if kind == "quote_not_in_source":
            source = rng.choice([c for c in controls if c["family"] == family and c["id"] != cid])
            foreign = span(source["statement"].split(), rng)
            for out in outputs:
                out["quote"] = foreign if rng.random() < 0.5 else reword(out["quote"], rng)
        raws: list[str | None] = [json.dumps(o) for o in outputs]
        if kind == "schema":
            k = rng.randrange(3)
            broken = rng.randrange(4)
            raws[k] = ['{"label": "' + family + '", "quote": ', json.dumps({"label": family}),
                       json.dumps({"label": "not-a-family", "quote": outputs[k]["quote"]}),
                       json.dumps({"label": 7, "quote": outputs[k]["quote"]})][broken]
            truth_sample.add(content_id(cid, "bench", k, 0))
        samples.extend(make_sample(cid, i, raw) for i, raw in enumerate(raws))
    env = FilterEnv(task=task, config=FilterConfig(), chunks=chunks, expected_samples=3)
    outcome = run_filters(records_frame(Sample, samples), env)
    rejected_chunks: dict[str, set[str]] = defaultdict(set)
    rejected_samples: set[str] = set()
    for r in outcome.funnel.rejections:
        if r.filter == "schema":
            rejected_samples.add(r.item_id)
        elif r.filter == "consistency" and r.reason == "no_majority":
            rejected_chunks["consistency"].add(r.chunk_id)
        elif r.filter in ("grounding", "audit"):
            rejected_chunks[r.filter].add(r.chunk_id)
    rows = [
        metric("schema", "broken sample (4 kinds)", truth_sample, rejected_samples),
        metric("consistency", "wrong label (2 of 3 votes)", {c for c, k in truth_chunk.items() if k == "wrong_label"},
               rejected_chunks["consistency"]),
        metric("consistency", "confident wrong label (3 of 3)",
               {c for c, k in truth_chunk.items() if k == "confident_wrong_label"},
               rejected_chunks["consistency"] & {c for c, k in truth_chunk.items() if k == "confident_wrong_label"},
               precision_of=None),
        metric("grounding", "quote not in source", {c for c, k in truth_chunk.items() if k == "quote_not_in_source"},
               rejected_chunks["grounding"]),
    ]
    # baseline: plain substring test, no normalisation and no fuzzy match
    reached = [(e.chunk_id, e.output_json) for e in outcome.examples]
    reached += [(r.chunk_id, r.output_json) for r in outcome.funnel.rejections
                if r.filter in ("grounding", "audit") and r.output_json]
    naive = {cid for cid, raw in reached if json.loads(raw or "{}").get("quote", "") not in chunks[cid]}
    rows.append(metric("grounding, baseline", "quote not in source (plain `quote in chunk`)",
                       {c for c, k in truth_chunk.items() if k == "quote_not_in_source"}, naive))
    kept_wrong = sum(1 for e in outcome.examples if e.label != next(c["family"] for c in controls if c["id"] == e.chunk_id))
    return rows, outcome, {"accepted": str(len(outcome.examples)), "accepted_with_wrong_label": str(kept_wrong)}


def audit_bench(controls: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    task = TaskConfig(type="freeform", name="summary", instruction="Write a task and a response.")
    chunks = {c["id"]: c["statement"] for c in controls}
    samples = []
    truth: set[str] = set()
    defects = ["As an AI language model, I can say that {x}", "I'm sorry, but I can't help with that request.",
               "As an AI, I do not have access to policies. {x}", " "]
    for control in controls:
        response = control["statement"].split(". ")[0]
        if rng.random() < 0.10:
            response = rng.choice(defects).format(x=response)
            truth.add(control["id"])
        elif rng.random() < 0.05:
            response = f"The control says: {response} (a language of obligation, not an apology)"
        output = {"instruction": f"Summarise control {control['id']} ({control['title']}).", "response": response}
        samples.append(make_sample(control["id"], 0, json.dumps(output), task_type="freeform"))
    env = FilterEnv(task=task, config=FilterConfig(), chunks=chunks, expected_samples=1)
    outcome = run_filters(records_frame(Sample, samples), env)
    flagged = {r.chunk_id for r in outcome.funnel.rejections if r.filter == "audit"}
    return metric("audit", "identity leakage / refusal / empty", truth, flagged)


def shingle_set(text: str) -> set[bytes]:
    words = tokenize(pl.Series([text])).to_list()[0]
    return set(shingles_of(words, 5))


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def true_pairs(texts: list[str], threshold: float) -> set[tuple[int, int]]:
    """Every pair with exact shingle Jaccard >= threshold (all pairs; candidates via shared shingles)."""
    sets = [shingle_set(t) for t in texts]
    index: dict[bytes, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        for sh in s:
            index[sh].append(i)
    candidates: set[tuple[int, int]] = set()
    for members in index.values():
        if len(members) < 200:
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    candidates.add((members[x], members[y]))
    return {(i, j) for i, j in candidates if jaccard(sets[i], sets[j]) >= threshold}


def perturb(words: list[str], changes: int, rng: random.Random, vocabulary: list[str]) -> list[str]:
    out = list(words)
    for position in rng.sample(range(len(out)), min(changes, len(out))):
        out[position] = rng.choice(vocabulary)
    return out


def dedup_bench(
    controls: list[dict[str, Any]], rng: random.Random, verify: str
) -> tuple[dict[str, Any], dict[str, Any], list[str], tuple[list[str], set[tuple[int, int]]]]:
    long = [c for c in controls if len(c["statement"].split()) >= 40]
    vocabulary = sorted({w for c in controls for w in c["statement"].split()})
    texts = [c["statement"] for c in controls]
    ids = [c["id"] for c in controls]
    planted: list[tuple[int, float]] = []  # (copy index, true jaccard)
    for control in rng.choices(long, k=int(0.25 * len(controls))):
        words = control["statement"].split()
        changes = rng.choice([1, 1, 2, 2, 3, 4, 6, 10])
        copy = " ".join(perturb(words, changes, rng, vocabulary))
        source = ids.index(control["id"])
        texts.append(copy)
        ids.append(f"{control['id']}~{changes}~{len(texts)}")
        planted.append((len(texts) - 1, jaccard(shingle_set(copy), shingle_set(texts[source]))))
    frame = pl.DataFrame({"example_id": ids, "text": texts, "quality_score": [1.0] * len(ids)})
    out, result = dedup_frame(frame, text="text", params=DedupParams(threshold=0.8, verify=verify))
    # positions in `out` (sorted by id) -> positions in `texts`
    position = {eid: i for i, eid in enumerate(ids)}
    sorted_ids = out["example_id"].to_list()
    comp = dict(zip(sorted_ids, out["component"].to_list(), strict=True))
    edges = {(min(position[sorted_ids[a]], position[sorted_ids[b]]), max(position[sorted_ids[a]], position[sorted_ids[b]]))
             for a, b in result.edges.tolist()}
    truth = true_pairs(texts, 0.8)
    found = {(i, j) for i, j in truth if comp[ids[i]] == comp[ids[j]]}
    true_edges = {e for e in edges if comp[ids[e[0]]] == comp[ids[e[1]]] and jaccard(shingle_set(texts[e[0]]), shingle_set(texts[e[1]])) >= 0.8}
    row = {"filter": f"dedup ({verify})", "defect": "pairs with Jaccard >= 0.8 (planted + natural)", "planted": len(truth),
           "flagged": len(edges), "hits": len(found),
           "precision": round(len(true_edges) / len(edges), 3) if edges else None,
           "recall": round(len(found) / len(truth), 3) if truth else None}
    bins: dict[str, list[bool]] = defaultdict(list)
    for copy_index, jac in planted:
        source_index = ids.index(ids[copy_index].split("~")[0])
        merged = comp[ids[copy_index]] == comp[ids[source_index]]
        label = ">=0.95" if jac >= 0.95 else ">=0.9" if jac >= 0.9 else ">=0.85" if jac >= 0.85 else ">=0.8" if jac >= 0.8 else ">=0.7" if jac >= 0.7 else "<0.7"
        bins[label].append(merged)
    by_bin = {k: f"{sum(v)}/{len(v)} merged" for k, v in sorted(bins.items())}
    natural = len({(i, j) for i, j in truth if i < len(controls) and j < len(controls)})
    return row, by_bin, [f"natural near-duplicate pairs in the corpus itself: {natural}"], (texts, truth)


def datasketch_baseline(texts: list[str], truth: set[tuple[int, int]]) -> dict[str, Any]:
    """Plain datasketch: one MinHash per record, MinHashLSH(0.8), query then insert."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    edges: set[tuple[int, int]] = set()
    for i, text in enumerate(texts):
        mh = MinHash(num_perm=128)
        for sh in shingle_set(text):
            mh.update(sh)
        hits = lsh.query(mh)
        if hits:
            for h in hits:
                edges.add((min(i, h), max(i, h)))
                parent[find(i)] = find(h)
        else:
            lsh.insert(i, mh)
    found = {(i, j) for i, j in truth if find(i) == find(j)}
    true_edges = {e for e in edges if jaccard(shingle_set(texts[e[0]]), shingle_set(texts[e[1]])) >= 0.8}
    return {"filter": "dedup, baseline", "defect": "same, datasketch MinHashLSH(0.8) query-then-insert",
            "planted": len(truth), "flagged": len(edges), "hits": len(found),
            "precision": round(len(true_edges) / len(edges), 3) if edges else None,
            "recall": round(len(found) / len(truth), 3) if truth else None}


def leakage_bench(controls: list[dict[str, Any]], rng: random.Random, verify: str) -> dict[str, Any]:
    vocabulary = sorted({w for c in controls for w in c["statement"].split()})
    texts = [c["statement"] for c in controls]
    ids = [c["id"] for c in controls]
    splits = ["test" if int(content_id(i), 16) % 5 == 0 else "train" for i in ids]
    train_long = [k for k, c in enumerate(controls) if splits[k] == "train" and len(c["statement"].split()) >= 40]
    for k in rng.sample(train_long, 30):
        texts.append(" ".join(perturb(texts[k].split(), rng.choice([1, 2]), rng, vocabulary)))
        ids.append(f"{ids[k]}#leak")
        splits.append("test")
    frame = pl.DataFrame({"id": ids, "text": texts, "split": splits})
    leaks = cross_group_pairs(frame, text="text", group="split", id_col="id", params=DedupParams(threshold=0.8, verify=verify))
    position = {eid: i for i, eid in enumerate(ids)}
    flagged = {(min(position[a], position[b]), max(position[a], position[b])) for a, b in leaks.select("id_a", "id_b").rows()}
    truth = {(i, j) for i, j in true_pairs(texts, 0.8) if splits[i] != splits[j]}
    return metric(f"leakage ({verify})", "train/test pairs with Jaccard >= 0.8 (30 copies, 1-2 words changed)", truth, flagged)


def metric(name: str, defect: str, truth: set[Any], flagged: set[Any], precision_of: str | None = "flagged") -> dict[str, Any]:
    hits = len(truth & flagged)
    return {"filter": name, "defect": defect, "planted": len(truth), "flagged": len(flagged), "hits": hits,
            "precision": round(hits / len(flagged), 3) if flagged and precision_of else None,
            "recall": round(hits / len(truth), 3) if truth else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    controls = load_controls()
    started = time.perf_counter()
    rows, outcome, extra = classification_bench(controls, rng)
    rows.append(audit_bench(controls, rng))
    bins: dict[str, Any] = {}
    notes: list[str] = []
    for verify in ("estimate", "exact"):
        state = rng.getstate()  # the same planted copies for both modes
        dedup_row, bins[verify], notes, (texts, truth) = dedup_bench(controls, rng, verify)
        rows.append(dedup_row)
        rng.setstate(state)
    rows.append(datasketch_baseline(texts, truth))
    dedup_bench(controls, rng, "estimate")  # advance as one run would
    for verify in ("estimate", "exact"):
        state = rng.getstate()
        rows.append(leakage_bench(controls, rng, verify))
        rng.setstate(state)
    seconds = time.perf_counter() - started
    print(f"Planted-defect benchmark: {len(controls)} SP 800-53 r4 control statements, 3 simulated samples each, seed {args.seed}")
    print(f"planted rates per chunk: {RATES}; clean chunks carry harmless noise (15% one minority vote, 30% cosmetic quotes)")
    table = pl.DataFrame(rows)
    with pl.Config(tbl_rows=-1, tbl_width_chars=170, fmt_str_lengths=70, tbl_hide_dataframe_shape=True,
                   tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True):
        print(table)
    for verify, by_bin in bins.items():
        print(f"dedup ({verify}) by planted similarity (exact shingle Jaccard): {by_bin}")
    for note in notes:
        print(note)
    print(f"classification: {extra['accepted']} examples accepted, {extra['accepted_with_wrong_label']} of them with a wrong label")
    funnel = [(r["step"], r["rows_in"], r["rows_out"]) for r in outcome.funnel.rows]
    print("funnel (step, in, out):", funnel)
    print(f"({seconds:.1f}s)")


if __name__ == "__main__":
    main()
