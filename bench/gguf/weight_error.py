"""Relative error of one dequantised MLP weight per GGML type in the bench's files, against the
merged model's bf16 weight (gguf-py's numpy dequantisers, which transformers' GGUF loader uses).

    .venv/bin/python bench/gguf/weight_error.py        # after bench/gguf/run.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFReader, dequantize
from safetensors.torch import load_file

RUN = Path(__file__).resolve().parents[2] / "runs" / "demo" / "train"
MLP = {"ffn_down": "down_proj", "ffn_up": "up_proj", "ffn_gate": "gate_proj"}


def main() -> None:
    weights = load_file(str(RUN / "merged" / "model.safetensors"))
    for name in ("model-q8_0.gguf", "model-Q5_K_M.gguf", "model-Q4_K_M.gguf"):
        seen: set[str] = set()
        for tensor in GGUFReader(str(RUN / "gguf-bench" / name)).tensors:
            parts = tensor.name.split(".")  # blk.<layer>.<part>.weight
            kind = tensor.tensor_type.name
            if len(parts) != 4 or parts[2] not in MLP or kind in seen:
                continue
            layer, part = parts[1], parts[2]
            seen.add(kind)
            reference = weights[f"model.layers.{layer}.mlp.{MLP[part]}.weight"].float().numpy()
            values = dequantize(tensor.data, tensor.tensor_type).reshape(reference.shape)
            error = np.linalg.norm(values - reference) / np.linalg.norm(reference)
            print(f"{name} {tensor.name} {kind} relative error {error:.4f}")


if __name__ == "__main__":
    main()
