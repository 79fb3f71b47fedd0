from __future__ import annotations

from pathlib import Path

import pytest

from train.backends import select_backend
from train.config import ALL_PROJECTIONS, ConfigError, TrainConfig, load_config, parse_config


def test_defaults_follow_qlora_practice() -> None:
    cfg = TrainConfig()
    assert cfg.lora.r == 16
    assert cfg.lora.alpha == 16
    assert cfg.lora.dropout_for("unsloth") == 0.0
    assert cfg.lora.dropout_for("peft") == 0.05
    assert set(cfg.lora.target_modules) == set(ALL_PROJECTIONS) and len(ALL_PROJECTIONS) == 7
    assert cfg.learning_rate == 2e-4 and cfg.lr_scheduler == "cosine" and cfg.warmup_ratio > 0
    assert cfg.epochs == 3 and cfg.max_seq_len == 2048
    assert cfg.effective_batch_size == 16 and cfg.grad_accum * cfg.per_device_batch_size == 16
    assert cfg.eval_each_epoch and cfg.early_stopping_patience
    assert cfg.model == "HuggingFaceTB/SmolLM2-135M-Instruct"  # pretrained, installs offline


def test_explicit_dropout_wins() -> None:
    cfg = parse_config({"lora": {"dropout": 0.1}})
    assert cfg.lora.dropout_for("unsloth") == 0.1


def test_yaml_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "cfgs").mkdir()
    path = tmp_path / "cfgs" / "train.yaml"
    path.write_text("data: ../runs/x/export\noutput_dir: ../runs/x/train\nepochs: 1\n")
    cfg = load_config(path)
    assert cfg.data_path.resolve() == (tmp_path / "runs" / "x" / "export").resolve()
    assert cfg.run_path.resolve() == (tmp_path / "runs" / "x" / "train").resolve()


def test_invalid_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("per_device_batch_size: 3\neffective_batch_size: 16\n")
    with pytest.raises(ConfigError, match="multiple of"):
        load_config(path)
    path.write_text("lora: {rank: 8}\n")
    with pytest.raises(ConfigError, match=r"lora\.rank"):
        load_config(path)


def test_backend_selection_on_cpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU-only expectation")
    assert select_backend("auto") == "peft"
    assert select_backend("peft") == "peft"
    with pytest.raises(RuntimeError, match="CUDA"):
        select_backend("unsloth")


def test_a_mistyped_key_gets_the_nearest_valid_one(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("learning_rte: 0.001\nlora: {alpah: 8}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "learning_rte: unknown key; did you mean learning_rate?" in message
    assert "lora.alpah: unknown key; did you mean lora.alpha?" in message
    assert "Extra inputs are not permitted" not in message


def test_paths_are_normalised(tmp_path: Path) -> None:
    """The report names `runs/demo/train`, not `data/demo/../../runs/demo/train`."""
    (tmp_path / "data" / "demo").mkdir(parents=True)
    path = tmp_path / "data" / "demo" / "train.yaml"
    path.write_text("data: ../../runs/demo/dataset\noutput_dir: ../../runs/demo/train\n")
    cfg = load_config(path)
    assert ".." not in cfg.data_path.parts and ".." not in cfg.run_path.parts
    assert cfg.run_path == (tmp_path / "runs" / "demo" / "train").resolve()
