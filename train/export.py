"""Outputs of a run: merged 16-bit model, Ollama Modelfile, GGUF (when llama.cpp is there).

Merging always reloads the base model in 16 bits (never the 4-bit training copy), attaches
the saved adapter and folds it in with peft's ``merge_and_unload``: the same path for both
backends, and the standard way to merge a QLoRA adapter.

GGUF needs llama.cpp's ``convert_hf_to_gguf.py`` (plus the ``gguf`` Python package it
imports): set ``LLAMA_CPP_DIR`` to a llama.cpp checkout or put the script on PATH. Without
it the step is skipped and the report says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ADAPTER = "adapter"
MERGED = "merged"
GGUF_NAME = "model.gguf"


def merge_adapter(base_path: str, adapter_dir: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    merged = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(out_dir)
    return out_dir


def find_llama_cpp_convert() -> Path | None:
    """llama.cpp's HF -> GGUF converter, from LLAMA_CPP_DIR or PATH."""
    candidates: list[Path] = []
    if os.environ.get("LLAMA_CPP_DIR"):
        candidates.append(Path(os.environ["LLAMA_CPP_DIR"]) / "convert_hf_to_gguf.py")
    for name in ("convert_hf_to_gguf.py", "convert-hf-to-gguf.py"):
        found = shutil.which(name)
        if found:
            candidates.append(Path(found))
    return next((c for c in candidates if c.is_file()), None)


def export_gguf(merged_dir: Path, out_file: Path, outtype: str = "q8_0") -> dict[str, Any]:
    script = find_llama_cpp_convert()
    if script is None:
        return {
            "status": "skipped",
            "reason": "llama.cpp convert_hf_to_gguf.py not found (set LLAMA_CPP_DIR or add it to PATH)",
        }
    cmd = [sys.executable, str(script), str(merged_dir), "--outfile", str(out_file), "--outtype", outtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out_file.exists():
        return {"status": "failed", "command": cmd, "stderr_tail": proc.stderr[-2000:]}
    return {"status": "ok", "path": str(out_file), "bytes": out_file.stat().st_size}


def _common_system_prompt(train_jsonl: Path) -> str | None:
    if not train_jsonl.exists():
        return None
    prompts = set()
    with train_jsonl.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                msgs = json.loads(line)["messages"]
                prompts.add(msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else None)
            if len(prompts) > 1:
                return None
    return prompts.pop() if len(prompts) == 1 else None


def write_modelfile(run_dir: Path, chat_template: str | None, system: str | None, gguf: bool) -> Path:
    """Ollama Modelfile: FROM the GGUF when there is one, else the merged safetensors folder."""
    lines = [f"FROM ./{GGUF_NAME}" if gguf else f"FROM ./{MERGED}"]
    if chat_template and "<|im_start|>" in chat_template:
        lines += [
            'TEMPLATE """{{- if .System }}<|im_start|>system',
            "{{ .System }}<|im_end|>",
            "{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}",
            "{{ .Content }}<|im_end|>",
            "{{ end }}<|im_start|>assistant",
            '"""',
            'PARAMETER stop "<|im_end|>"',
        ]
    else:
        lines.append("# TEMPLATE: none written; Ollama reads the chat template from the model")
    if system:
        lines.append('SYSTEM """' + system.replace('"""', "'''") + '"""')
    lines.append("PARAMETER temperature 0")
    path = run_dir / "Modelfile"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def export_run(run_dir: Path, gguf: bool | None = None) -> dict[str, Any]:
    """(Re)build merged/, Modelfile and GGUF of a finished run directory."""
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "train_config.yaml").read_text(encoding="utf-8"))
    adapter_dir = run_dir / ADAPTER
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir}: no adapter; did the run finish?")
    merged_dir = merge_adapter(cfg["base_model_path"], adapter_dir, run_dir / MERGED, cfg["merged_dtype"])
    want_gguf = cfg.get("export_gguf", True) if gguf is None else gguf
    gguf_info = (
        export_gguf(merged_dir, run_dir / GGUF_NAME, cfg.get("gguf_outtype", "q8_0"))
        if want_gguf
        else {"status": "skipped", "reason": "disabled"}
    )
    from transformers import AutoTokenizer

    template = AutoTokenizer.from_pretrained(str(merged_dir)).chat_template
    system = _common_system_prompt(Path(cfg["data"]) / "train.jsonl")
    modelfile = write_modelfile(run_dir, template, system, gguf_info["status"] == "ok")
    return {"merged": str(merged_dir), "modelfile": str(modelfile), "gguf": gguf_info}
