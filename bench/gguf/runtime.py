"""llama.cpp's own answer: greedy completions and perplexity of each GGUF file in llama.cpp.

transformers' GGUF loader dequantises every tensor to float32 (through gguf-py) and runs the
model in torch; llama.cpp runs the quantised tensors through its own kernels. This runs the
second: ``llama-completion`` (greedy, the merged tokenizer's chat template applied here) on
the export's prompts and ``llama-perplexity`` on the export's conversations rendered as chat
text, for every ``model-*.gguf`` of a run's bench folder. Answers are compared with the f16
file's answers in the same runtime (the runtime's own reference) and, when given, with the
answers transformers produced for the same file (``--against``, a labels.py JSON with answers).

    make gguf-runtime                          # builds llama-completion and llama-perplexity once
    .venv/bin/python bench/gguf/runtime.py --run-dir bench/out/gguf-labels/train \\
        --export bench/out/gguf-labels/export --splits test --json bench/gguf/runtime.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from train.evaluate.intervals import mean_interval  # noqa: E402
from train.gguf_check import check_tokenizer, held_out  # noqa: E402
from train.gguf_tools import require_runtime  # noqa: E402

ORDER = ("f16", "q8_0", "Q4_1", "Q5_K_M", "Q4_K_M")
#: what llama-completion prints after the answer when the model ends its turn
END = "[end of text]"
_PPL = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")


def complete(binary: Path, gguf: Path, prompt: str, max_new_tokens: int, threads: int) -> str:
    """One greedy completion, the prompt given verbatim (its special tokens parsed)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as fh:
        fh.write(prompt)
    command = [
        str(binary), "-m", str(gguf), "-f", fh.name, "-n", str(max_new_tokens), "--temp", "0", "--top-k", "1",
        "-no-cnv", "--no-display-prompt", "--no-warmup", "-t", str(threads), "-c", "1024", "--seed", "0",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    Path(fh.name).unlink()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-800:]}")
    return done.stdout.strip().removesuffix(END).strip()


def perplexity(binary: Path, gguf: Path, text_file: Path, threads: int, ctx: int) -> dict[str, float]:
    command = [str(binary), "-m", str(gguf), "-f", str(text_file), "-c", str(ctx), "-b", str(ctx), "-t", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _PPL.search(done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(command)} failed: {(done.stderr or done.stdout)[-800:]}")
    return {"ppl": float(found.group(1)), "error": float(found.group(2))}


def files_of(bench_dir: Path) -> list[tuple[str, Path]]:
    found = {p.stem.removeprefix("model-"): p for p in bench_dir.glob("model-*.gguf")}
    return [(t, found[t]) for t in ORDER if t in found] + [(t, p) for t, p in found.items() if t not in ORDER]


def measure(
    run_dir: Path, export: Path, splits: list[str], limit: int, max_new: int, threads: int, ctx: int
) -> dict[str, Any]:
    runtime = require_runtime()
    tokenizer = check_tokenizer(run_dir / "merged")
    prompts, references = [], []
    for split in splits:
        p, r = held_out(export / f"{split}.jsonl", limit)
        prompts, references = prompts + p, references + r
    rendered = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    corpus = Path(tempfile.mkdtemp()) / "chat.txt"
    corpus.write_text("".join(r + a + "<|im_end|>\n" for r, a in zip(rendered, references, strict=True)), encoding="utf-8")
    result: dict[str, Any] = {"prompts": len(prompts), "split": "+".join(splits), "max_new_tokens": max_new, "ctx": ctx, "types": {}}
    for name, gguf in files_of(run_dir / "gguf-bench"):
        started = time.perf_counter()
        answers = [complete(runtime.completion, gguf, r, max_new, threads) for r in rendered]
        row = {"answers": answers, "answer_s": round(time.perf_counter() - started, 1),
               "perplexity": perplexity(runtime.perplexity, gguf, corpus, threads, ctx)}
        result["types"][name] = row
        print(name, json.dumps({k: v for k, v in row.items() if k != "answers"}), flush=True)
    reference = result["types"].get("f16", {}).get("answers")
    for row in result["types"].values():
        if reference is not None:
            row["same_as_f16"] = mean_interval([float(a == b) for a, b in zip(reference, row["answers"], strict=True)]).as_dict()
    return result


def against_transformers(result: dict[str, Any], labels_json: Path) -> None:
    """The share of prompts where llama.cpp and transformers give the same answer per file."""
    other = json.loads(labels_json.read_text(encoding="utf-8"))
    for name, row in result["types"].items():
        theirs = other["types"].get(name, {}).get("answers")
        if theirs and len(theirs) == len(row["answers"]):
            row["same_as_transformers"] = mean_interval(
                [float(a == b.strip()) for a, b in zip(row["answers"], theirs, strict=True)]).as_dict()


def _percent(interval: dict[str, float] | None) -> str:
    return "" if interval is None else f"{interval['estimate'] * 100:.1f}"


def table(result: dict[str, Any]) -> str:
    lines = [
        f"llama.cpp runtime, {result['prompts']} {result['split']} prompts, greedy, up to {result['max_new_tokens']} "
        f"new tokens; perplexity over the same conversations as chat text (ctx {result['ctx']})",
        "", "| file | perplexity | same answer as f16 in llama.cpp % | same answer as transformers on the file % |",
        "|---|---|---|---|",
    ]
    for name, row in result["types"].items():
        same, cross = _percent(row.get("same_as_f16")), _percent(row.get("same_as_transformers"))
        ppl = row["perplexity"]
        lines.append(f"| {name} | {ppl['ppl']:.3f} ± {ppl['error']:.3f} | {same} | {cross} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", default=["test"])
    parser.add_argument("--limit", type=int, default=10**9)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=256)
    parser.add_argument("--against", type=Path, help="labels.py JSON whose answers to compare with")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = measure(args.run_dir, args.export, args.splits, args.limit, args.max_new_tokens, args.threads, args.ctx)
    if args.against:
        against_transformers(result, args.against)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
