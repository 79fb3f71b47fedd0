"""GGUF files of the demo's fine-tune: size per type, and do they answer like the merged model?

For each type (f16, q8_0 through llama.cpp's converter; Q5_K_M, Q4_K_M through llama-quantize)
the merged model of a finished run is written as GGUF, loaded back through transformers' GGUF
loader (dequantised to float32) and asked every prompt of the export greedily, beside the
merged model itself. Printed per type: file size and real tensor types, the share of identical
answers (all prompts, and the test split alone) and the exact match on the test split against
the reference answers, with the paired bootstrap interval of its change against the merged
model (train/evaluate/intervals.py).

    make dataset && make train && make gguf-tools      # the demo's fine-tune and the tools
    .venv/bin/python bench/gguf/run.py                  # runs/demo/train
    .venv/bin/python bench/gguf/run.py --run-dir runs/x/train --types q8_0 Q4_K_M
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from train.gguf import QUANTIZE_TYPES, gguf_name, normalise_type, write_gguf  # noqa: E402
from train.gguf_check import (  # noqa: E402
    answers_of,
    check_tokenizer,
    compare,
    held_out,
    load_model,
    max_new_tokens_for,
    vocabulary_matches,
)
from train.gguf_tools import require_tools  # noqa: E402

TYPES = ("f16", "q8_0", "Q5_K_M", "Q4_K_M")
SPLITS = ("train", "validation", "test")


def prompts_of(export: Path) -> dict[str, tuple[list[Any], list[str]]]:
    return {s: held_out(export / f"{s}.jsonl", 10**9) for s in SPLITS if (export / f"{s}.jsonl").is_file()}


def flat(splits: dict[str, tuple[list[Any], list[str]]]) -> tuple[list[Any], list[str], list[str]]:
    prompts, references, names = [], [], []
    for name, (p, r) in splits.items():
        prompts += p
        references += r
        names += [name] * len(p)
    return prompts, references, names


def measure(run_dir: Path, out_dir: Path, types: list[str], batch_size: int) -> dict[str, Any]:
    cfg = yaml.safe_load((run_dir / "train_config.yaml").read_text(encoding="utf-8"))
    merged = run_dir / "merged"
    prompts, references, names = flat(prompts_of(Path(cfg["data"])))
    test = [i for i, n in enumerate(names) if n == "test"]
    tokenizer = check_tokenizer(merged)
    budget = max_new_tokens_for(tokenizer, references)
    started = time.perf_counter()
    merged_answers = answers_of(load_model(merged, None), tokenizer, prompts, budget, batch_size)
    result: dict[str, Any] = {
        "run_dir": str(run_dir), "prompts": len(prompts), "test_prompts": len(test), "max_new_tokens": budget,
        "merged_bytes": sum(f.stat().st_size for f in merged.glob("*.safetensors")),
        "merged_answer_s": round(time.perf_counter() - started, 1), "types": {},
    }
    tools = require_tools(quantize=any(normalise_type(t) in QUANTIZE_TYPES for t in types))
    for gguf_type in types:
        info = write_gguf(merged, out_dir, gguf_type, tools)
        file = out_dir / gguf_name(gguf_type)
        answers = answers_of(load_model(merged, file), tokenizer, prompts, budget, batch_size)
        on_all = compare(merged_answers, answers, references)
        on_test = compare([merged_answers[i] for i in test], [answers[i] for i in test], [references[i] for i in test])
        result["types"][info["type"]] = {
            "bytes": info["bytes"], "tensor_types": info["tensor_types"], "write_s": info["seconds"],
            "vocabulary": vocabulary_matches(tokenizer, file),
            "agreement_all": on_all["agreement"], "differing_examples": on_all["differing_examples"],
            "test": {k: on_test[k] for k in ("agreement", "exact_match_merged", "exact_match_gguf", "exact_match_change")},
        }
        print(json.dumps({gguf_type: result["types"][info["type"]]}, default=str)[:400], flush=True)
    return result


def percent_ci(interval: dict[str, float], signed: bool = False) -> str:
    """An interval of shares as percent: "5.9 [1.2, 11.8]" (signed: "+1.2 [-2.4, +4.7]")."""
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f"{fmt.format(interval['estimate'] * 100)} [{fmt.format(interval['low'] * 100)}, {fmt.format(interval['high'] * 100)}]"


def table(result: dict[str, Any]) -> str:
    lines = [
        f"merged model (bf16 safetensors): {result['merged_bytes'] / 2**20:.1f} MiB; "
        f"{result['prompts']} prompts ({result['test_prompts']} test), greedy, up to {result['max_new_tokens']} new tokens",
        "",
        "| type | file MiB | tensor types | same answers, all prompts % | same answers, test % "
        "| exact match test, merged % | exact match test, GGUF % | change, points [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["types"].items():
        test = row["test"]
        kinds = ", ".join(f"{k} {v}" for k, v in row["tensor_types"].items())
        lines.append(
            f"| {name} | {row['bytes'] / 2**20:.1f} | {kinds} | {percent_ci(row['agreement_all'])} | {percent_ci(test['agreement'])} "
            f"| {percent_ci(test['exact_match_merged'])} | {percent_ci(test['exact_match_gguf'])} "
            f"| {percent_ci(test['exact_match_change'], signed=True)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "demo" / "train")
    parser.add_argument("--types", nargs="+", default=list(TYPES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    run_dir = args.run_dir.resolve()
    if not (run_dir / "merged" / "config.json").is_file():
        raise SystemExit(f"{run_dir}: no merged model; run `make dataset && make train` first")
    out_dir = run_dir / "gguf-bench"
    out_dir.mkdir(exist_ok=True)
    started = time.perf_counter()
    result = measure(run_dir, out_dir, args.types, args.batch_size)
    result["machine"] = f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(table(result))
    print(f"wall {result['wall_s']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
