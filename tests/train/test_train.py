"""A tiny random-init model trains end to end on CPU; adapter and merged model agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from train.data import dataset_hash

pytestmark = pytest.mark.slow  # minutes on 2 cores: `make test-fast` leaves it out


def test_loss_falls(tiny_run: dict[str, Any]) -> None:
    report = tiny_run["report"]
    m = report["metrics"]
    train = [loss for _, loss in report["curves"]["train"]]
    evals = [loss for _, loss in report["curves"]["eval"]]
    assert m["global_step"] == 18  # 48 examples / batch 8 = 6 steps x 3 epochs
    assert len(evals) == 3  # validation loss each epoch
    # mean of the last three logged losses well under the first three
    assert sum(train[-3:]) / 3 < sum(train[:3]) / 3 - 0.3
    # the validation loss, too, sits well under the untrained model's first training loss
    assert min(evals) < train[0] - 0.3
    assert evals[-1] < evals[0]
    assert report["random_init_standin"] is True
    assert report["backend"] == "peft" and not report["quantized"]


def test_report_has_figures_and_outputs(tiny_run: dict[str, Any], chat_export: Path) -> None:
    run_dir: Path = tiny_run["run_dir"]
    report = tiny_run["report"]
    m = report["metrics"]
    assert report["dataset_sha256"] == dataset_hash(chat_export)
    assert m["tokens_seen"] > 0 and m["tokens_per_s"] > 0
    assert m["peak_memory_gib"] > 0 and m["wall_time_s"] >= m["train_runtime_s"] > 0
    assert (run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"
    md = (run_dir / "report.md").read_text()
    assert "RANDOMLY INITIALISED" in md and "tokens/s" in md
    resolved = yaml.safe_load((run_dir / "train_config.yaml").read_text())
    assert Path(resolved["base_model_path"]).is_dir()
    assert resolved["lora"]["r"] == 16
    for name in (
        "adapter/adapter_config.json",
        "adapter/tokenizer_config.json",
        "merged/config.json",
        "merged/tokenizer_config.json",
        "Modelfile",
    ):
        assert (run_dir / name).exists(), name
    gguf = report["outputs"]["gguf"]
    assert gguf["status"] == "skipped" and "stand-in" in gguf["reason"]  # llama.cpp knows no such tokenizer
    assert list((run_dir / "checkpoints").glob("checkpoint-*"))
    assert "random-init stand-in" in tiny_run["cli_output"]


def test_modelfile(tiny_run: dict[str, Any]) -> None:
    text = (tiny_run["run_dir"] / "Modelfile").read_text()
    assert text.startswith("FROM ./merged")  # the stand-in has no GGUF file
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert "SYSTEM" in text and "NIST SP 800-53" in text  # the export's one system prompt


def _logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_adapter_reloads_and_merged_matches(tiny_run: dict[str, Any]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir: Path = tiny_run["run_dir"]
    base_path = yaml.safe_load((run_dir / "train_config.yaml").read_text())["base_model_path"]
    tok = AutoTokenizer.from_pretrained(run_dir / "adapter")
    msgs = [{"role": "user", "content": "The organization develops an audit policy."}]
    rendered: Any = tok.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    ids: torch.Tensor = rendered["input_ids"]

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
    base_logits = _logits(base, ids)
    with_adapter = PeftModel.from_pretrained(base, str(run_dir / "adapter")).eval()
    adapter_logits = _logits(with_adapter, ids)
    # the adapter learned something: it changes the base model's outputs
    assert (adapter_logits - base_logits).abs().max() > 1e-3

    merged_in_memory = with_adapter.merge_and_unload()
    torch.testing.assert_close(_logits(merged_in_memory, ids), adapter_logits, atol=1e-4, rtol=1e-4)

    # the saved merged model is 16-bit: equal within bf16 rounding of the weights
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "merged").eval()
    assert merged.dtype == torch.bfloat16
    merged_logits = _logits(merged.float(), ids)
    scale = adapter_logits.abs().max()
    assert (merged_logits - adapter_logits).abs().max() < 0.02 * scale
    assert torch.equal(merged_logits.argmax(-1), adapter_logits.argmax(-1))


def test_export_command_rebuilds_outputs(tiny_run: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from train.cli import app

    run_dir: Path = tiny_run["run_dir"]
    (run_dir / "Modelfile").unlink()
    result = CliRunner().invoke(app, ["export", str(run_dir), "--no-gguf"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    info = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert info["gguf"]["status"] == "skipped"
    assert (run_dir / "Modelfile").exists()
