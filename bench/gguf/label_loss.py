"""Where a fine-tune's loss goes: answer tokens against the label token, standard causal attention.

Reads a merged model (``RUN/merged``) and an export's ``validation.jsonl`` and prints the mean
cross-entropy over the assistant answer's tokens, over the label's tokens alone (answers of
the form ``{"label": "XX", ...}``), and how often the label's argmax is right. A model that
learned the answer's form but not the label shows a low answer figure and a label figure near
ln(number of labels). CPU, no packing: an independent check of what the GPU's packed
evaluation reported.

    .venv/bin/python bench/gguf/label_loss.py RUN_DIR EXPORT_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("export", type=Path)
    args = parser.parse_args()
    tok = AutoTokenizer.from_pretrained(args.run_dir / "merged")
    model = AutoModelForCausalLM.from_pretrained(args.run_dir / "merged", dtype=torch.float32).eval()
    rows = [json.loads(line) for line in (args.export / "validation.jsonl").read_text().splitlines() if line.strip()]
    head = tok('{"label": "', add_special_tokens=False)["input_ids"]
    answer_sum = answer_n = label_sum = label_n = 0.0
    right = 0
    for row in rows:
        messages = row["messages"]
        prompt = tok(tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]  # fmt: skip
        answer = tok(messages[-1]["content"], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1 : -1]
        ce = torch.nn.functional.cross_entropy(logits, torch.tensor(answer), reduction="none")
        answer_sum, answer_n = answer_sum + float(ce.sum()), answer_n + len(answer)
        label = tok(json.loads(messages[-1]["content"])["label"], add_special_tokens=False)["input_ids"]
        if answer[: len(head)] == head:
            span = range(len(head), len(head) + len(label))
            label_sum, label_n = label_sum + float(ce[span.start : span.stop].sum()), label_n + len(label)
            right += all(int(logits[i].argmax()) == label[i - len(head)] for i in span)
    print(
        f"validation rows {len(rows)}: mean CE over answer tokens {answer_sum / answer_n:.4f}; "
        f"over label tokens {label_sum / max(label_n, 1):.4f} ({int(label_n)} tokens); "
        f"label argmax right {right}/{len(rows)}"
    )


if __name__ == "__main__":
    main()
