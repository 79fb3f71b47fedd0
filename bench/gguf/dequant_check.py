"""Why does Q5_K_M answer worse than Q4_K_M? The evidence, from the files and from ggml itself.

1. **gguf-py against ggml.** Every tensor of each file is dequantised twice: by gguf-py's numpy
   dequantisers (what transformers' GGUF loader calls) and by ggml's own ``to_float``
   (ggml-quants.c, through ``ggml_ref.c`` linked against llama.cpp's built libggml-base). The
   largest difference per GGML type, relative to the tensor's largest value.
2. **What each file holds.** Each MLP and attention-output/value tensor's relative error
   (Frobenius) against the merged model's weight, per type, and the share of the fine-tune's
   change (merged - base weight) the file keeps; then tensor by tensor, Q4_K_M's against
   Q5_K_M's.
3. **Why.** One MLP weight of the *base* model, of the merged model, and a Gaussian matrix of the
   same shape, quantised by ggml to each type and back (``ggml_quantize_chunk``).

    make gguf-tools                                   # libggml-base is built with llama-quantize
    .venv/bin/python bench/gguf/dequant_check.py --run-dir runs/demo/train
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from gguf import GGUFReader, dequantize
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2]
MAP = {"ffn_down": "mlp.down_proj", "ffn_up": "mlp.up_proj", "ffn_gate": "mlp.gate_proj",
       "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj"}


def build_reference(work: Path) -> Path:
    import sys

    sys.path.insert(0, str(ROOT))
    from train.gguf_tools import require_tools

    llama_cpp = require_tools(fetch=False).llama_cpp
    library = llama_cpp / "build" / "ggml" / "src" / "libggml-base.a"
    if not library.is_file():
        raise SystemExit(f"{library} is not built: run `make gguf-tools`")
    binary = work / "ggml_ref"
    subprocess.run(["cc", "-O2", f"-I{llama_cpp / 'ggml' / 'include'}", str(Path(__file__).with_name("ggml_ref.c")),
                    str(library), "-lm", "-lpthread", "-lstdc++", "-o", str(binary)], check=True)
    return binary


def against_ggml(binary: Path, gguf: Path, work: Path) -> dict[str, tuple[int, float]]:
    """Per GGML type: tensors, and the largest |gguf-py - ggml| relative to the tensor's max."""
    dump = work / "ggml.f32"
    subprocess.run([str(binary), "dequant", str(gguf), str(dump)], check=True)
    reference, offset = np.fromfile(dump, dtype=np.float32), 0
    worst: dict[str, list[float]] = defaultdict(list)
    for tensor in GGUFReader(str(gguf)).tensors:
        n = int(tensor.n_elements)
        ours = dequantize(tensor.data, tensor.tensor_type).reshape(-1).astype(np.float32)
        theirs = reference[offset : offset + n]
        offset += n
        worst[tensor.tensor_type.name].append(float(np.abs(ours - theirs).max() / (np.abs(theirs).max() or 1.0)))
    dump.unlink()
    return {kind: (len(v), max(v)) for kind, v in worst.items()}


def tensor_errors(
    gguf: Path, weights: dict[str, np.ndarray], base: dict[str, np.ndarray]
) -> dict[str, tuple[str, float, float]]:
    """Per tensor: its GGML type, relative error against the merged weight, and the share of the
    fine-tune's change (merged - base) the file keeps (projection; 1 = all, 0 = back to the base)."""
    errors = {}
    for tensor in GGUFReader(str(gguf)).tensors:
        parts = tensor.name.split(".")  # blk.<layer>.<part>.weight
        if len(parts) != 4 or parts[2] not in MAP:
            continue
        key = f"model.layers.{parts[1]}.{MAP[parts[2]]}.weight"
        reference, before = weights[key].astype(np.float32), base[key].astype(np.float32)
        values = dequantize(tensor.data, tensor.tensor_type).reshape(reference.shape)
        change = reference - before
        kept = float(np.sum((values - before) * change) / (np.sum(change * change) or 1.0))
        error = float(np.linalg.norm(values - reference) / np.linalg.norm(reference))
        errors[tensor.name] = (tensor.tensor_type.name, error, kept)
    return errors


def requantised(binary: Path, matrix: np.ndarray, work: Path) -> dict[str, float]:
    path = work / "matrix.f32"
    matrix.astype(np.float32).tofile(path)
    done = subprocess.run([str(binary), "requant", str(path), *map(str, matrix.shape)], capture_output=True, text=True, check=True)
    return {line.split()[0]: float(line.split()[1]) for line in done.stdout.splitlines()}


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    import torch
    from safetensors.torch import load_file as load_torch

    try:
        return load_file(str(folder / "model.safetensors"))
    except TypeError:  # bf16 has no numpy dtype
        return {k: v.to(torch.float32).numpy() for k, v in load_torch(str(folder / "model.safetensors")).items()}


def report(run_dir: Path) -> dict[str, Any]:
    bench = run_dir / "gguf-bench"
    merged = load_weights(run_dir / "merged")
    base_path = Path(yaml.safe_load((run_dir / "train_config.yaml").read_text())["base_model_path"])
    base = load_weights(base_path)
    out: dict[str, Any] = {"against_ggml": {}, "errors": {}}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        binary = build_reference(work)
        for gguf in sorted(bench.glob("model-*.gguf")):
            out["against_ggml"][gguf.name] = against_ggml(binary, gguf, work)
            out["errors"][gguf.name] = tensor_errors(gguf, merged, base)
            print(gguf.name, "gguf-py vs ggml, largest relative difference per type:", out["against_ggml"][gguf.name])
        name = "model.layers.3.mlp.down_proj.weight"
        gauss = np.random.default_rng(0).standard_normal(merged[name].shape)
        out["requantised"] = {label: requantised(binary, m, work) for label, m in
                              (("base", base[name]), ("merged", merged[name]), ("gaussian", gauss))}
    return out


def print_report(out: dict[str, Any]) -> None:
    for file, errors in out["errors"].items():
        by_type: dict[str, list[float]] = defaultdict(list)
        for kind, error, _ in errors.values():
            by_type[kind].append(error)
        kept = np.mean([k for _, _, k in errors.values()])
        print(file, "relative error per type (tensors):", {k: f"{np.mean(v):.4f} ({len(v)})" for k, v in sorted(by_type.items())},
              f"share of the fine-tune's change kept {kept:.3f}")
    q4, q5 = out["errors"].get("model-Q4_K_M.gguf"), out["errors"].get("model-Q5_K_M.gguf")
    if q4 and q5:
        pairs: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        for name, (kind, error, _) in q4.items():
            pairs[(kind, q5[name][0])].append((error, q5[name][1]))
        for (k4, k5), values in sorted(pairs.items()):
            v = np.array(values)
            print(f"Q4_K_M {k4} {v[:, 0].mean():.4f} vs Q5_K_M {k5} {v[:, 1].mean():.4f}: "
                  f"Q5_K_M worse on {(v[:, 1] > v[:, 0]).sum()} of {len(v)}")
    for label, errors in out["requantised"].items():
        print(f"layer 3 down_proj, {label}, requantised:", " ".join(f"{k} {v:.4f}" for k, v in errors.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "demo" / "train")
    args = parser.parse_args()
    print_report(report(args.run_dir.resolve()))


if __name__ == "__main__":
    main()
