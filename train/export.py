"""Outputs of a run: merged 16-bit model, GGUF file (train.gguf), Ollama Modelfile.

Merging always reloads the base model in 16 bits (never the 4-bit training copy), attaches
the saved adapter and folds it in with peft's ``merge_and_unload``: the same path for both
backends, and the standard way to merge a QLoRA adapter.

The GGUF file is checked by loading it back (train.gguf_check) and the Modelfile points at it
(train.modelfile).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from train.modelfile import write_modelfile

ADAPTER = "adapter"
MERGED = "merged"


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


def _gguf_step(run_dir: Path, merged_dir: Path, cfg: dict[str, Any], gguf_type: str, strict: bool) -> dict[str, Any]:
    """Convert (and quantise); a missing tool or a failed run is reported, or raised when strict."""
    from train.gguf import GGUFExportError, write_gguf
    from train.gguf_tools import GGUFToolsMissing

    if cfg.get("random_init_standin"):
        reason = ("the random-init stand-in's tokenizer (trained on the export) is not one llama.cpp's "
                  "converter knows; real Llama/Qwen/SmolLM checkpoints convert")
        if strict:
            raise GGUFExportError(reason)
        return {"status": "skipped", "reason": reason}
    try:
        info = write_gguf(merged_dir, run_dir, gguf_type)
    except GGUFToolsMissing as exc:
        if strict:
            raise
        return {"status": "missing", "reason": str(exc)}
    except GGUFExportError as exc:
        if strict:
            raise
        return {"status": "failed", "reason": str(exc)}
    prompts = int(cfg.get("gguf_check_prompts", 8))
    if prompts > 0:
        from train.gguf_check import round_trip

        check = round_trip(merged_dir, Path(info["path"]), Path(cfg["data"]) / "test.jsonl", prompts)
        check.pop("merged_answers", None)
        info["round_trip"] = check
    return info


def export_run(
    run_dir: Path, gguf: str | None = None, *, enabled: bool | None = None, check_prompts: int | None = None
) -> dict[str, Any]:
    """(Re)build merged/, the GGUF file and the Modelfile of a finished run directory.

    ``gguf`` names a type and makes a failure an error (``train export --gguf TYPE``); without
    it the config's ``gguf_outtype`` is written when ``export_gguf`` is on, and a missing tool
    is reported in the result instead (``train run`` keeps its trained adapter either way).
    """
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "train_config.yaml").read_text(encoding="utf-8"))
    if check_prompts is not None:
        cfg["gguf_check_prompts"] = check_prompts
    adapter_dir = run_dir / ADAPTER
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir}: no adapter; did the run finish?")
    merged_dir = merge_adapter(cfg["base_model_path"], adapter_dir, run_dir / MERGED, cfg["merged_dtype"])
    want = (cfg.get("export_gguf", True) or gguf is not None) if enabled is None else enabled
    gguf_info = (
        _gguf_step(run_dir, merged_dir, cfg, gguf or cfg.get("gguf_outtype", "q8_0"), strict=gguf is not None)
        if want
        else {"status": "skipped", "reason": "disabled"}
    )
    source = f"./{Path(gguf_info['path']).name}" if gguf_info["status"] == "ok" else f"./{MERGED}"
    system = _common_system_prompt(Path(cfg["data"]) / "train.jsonl")
    num_ctx = cfg.get("serve_num_ctx") or cfg.get("max_seq_len", 2048)
    modelfile = write_modelfile(run_dir, merged_dir, source, system, cfg.get("serve_temperature", 0.0), num_ctx)
    return {"merged": str(merged_dir), "modelfile": str(modelfile), "gguf": gguf_info}
