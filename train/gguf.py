"""The merged model as a GGUF file, for Ollama and llama.cpp.

f32, f16, bf16 and q8_0 come straight from llama.cpp's converter (``convert_hf_to_gguf.py``,
run with this environment's python: it needs torch, transformers, numpy, sentencepiece, all
in the ``train`` extra, and imports its own vendored ``gguf-py``). The K-quants go through
``llama-quantize`` from a lossless bf16 intermediate (the merged model is bf16), which is
removed afterwards. Where the tools come from: ``train.gguf_tools``.

K-quants work on blocks of 256 weights; llama-quantize stores a tensor whose rows are not a
multiple of 256 in a fallback type instead (SmolLM2-135M's 576-wide rows, for one), so the
file's real tensor types are read back and reported, not assumed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from assay.errors import AssayError
from train.base_models import repair_byte_level_bpe
from train.gguf_tools import GGUFTools, require_tools

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
#: Q4_1 (legacy, blocks of 32) is here for models whose weights were dequantised from a Q4_1
#: file, like the default SmolLM2-135M: it re-quantises them almost losslessly (bench/gguf).
QUANTIZE_TYPES = ("Q2_K", "Q3_K_M", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K")
GGUF_TYPES = (*CONVERTER_TYPES, *QUANTIZE_TYPES)


class GGUFExportError(AssayError, RuntimeError):
    """A GGUF type we do not make, or a converter/quantize run that failed (its output tail)."""


def normalise_type(name: str) -> str:
    """``Q8_0``/``q4_k_m`` -> the spelling each tool takes (``q8_0``, ``Q4_K_M``)."""
    for known in GGUF_TYPES:
        if name.strip().lower() == known.lower():
            return known
    raise GGUFExportError(f"GGUF type {name!r}: choose one of {', '.join(GGUF_TYPES)}")


def gguf_name(gguf_type: str) -> str:
    """The file a run directory holds for one type: ``model-q8_0.gguf``, ``model-Q4_K_M.gguf``."""
    return f"model-{normalise_type(gguf_type)}.gguf"


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-1500:]
        raise GGUFExportError(f"{what} failed (exit {done.returncode}): `{' '.join(command)}`\n{tail}")


def convert(merged_dir: Path, out_file: Path, outtype: str, tools: GGUFTools) -> Path:
    """llama.cpp's converter on a ``save_pretrained`` folder, written atomically."""
    if outtype not in CONVERTER_TYPES:
        raise GGUFExportError(f"the converter writes {', '.join(CONVERTER_TYPES)}, not {outtype}")
    repair_byte_level_bpe(merged_dir / "tokenizer.json")
    partial = out_file.with_name(out_file.name + ".partial")
    command = [sys.executable, str(tools.converter), str(merged_dir), "--outfile", str(partial), "--outtype", outtype]
    _run(command, "convert_hf_to_gguf.py")
    partial.replace(out_file)
    return out_file


def quantize(source: Path, out_file: Path, qtype: str, tools: GGUFTools) -> Path:
    """``llama-quantize SOURCE OUT TYPE`` (CPU threads: all), written atomically."""
    if tools.quantize is None:
        raise GGUFExportError("llama-quantize is not built: run `make gguf-tools`")
    partial = out_file.with_name(out_file.name + ".partial")
    _run([str(tools.quantize), str(source), str(partial), qtype], "llama-quantize")
    partial.replace(out_file)
    return out_file


def tensor_types(gguf_file: Path) -> dict[str, int]:
    """How many tensors of each GGML type the file really holds (K-quants fall back on some)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_file))
    return dict(Counter(tensor.tensor_type.name for tensor in reader.tensors).most_common())


def write_gguf(merged_dir: Path, run_dir: Path, gguf_type: str, tools: GGUFTools | None = None) -> dict[str, Any]:
    """The merged model as ``run_dir/model-<TYPE>.gguf``; the facts for the report."""
    gguf_type = normalise_type(gguf_type)
    needs_quantize = gguf_type in QUANTIZE_TYPES
    tools = tools or require_tools(quantize=needs_quantize)
    out_file = run_dir / gguf_name(gguf_type)
    started = time.perf_counter()
    if needs_quantize:
        intermediate = run_dir / ".model-bf16.gguf.tmp"
        try:
            quantize(convert(merged_dir, intermediate, "bf16", tools), out_file, gguf_type, tools)
        finally:
            intermediate.unlink(missing_ok=True)
    else:
        convert(merged_dir, out_file, gguf_type, tools)
    return {
        "status": "ok",
        "type": gguf_type,
        "path": str(out_file),
        "bytes": out_file.stat().st_size,
        "tensor_types": tensor_types(out_file),
        "seconds": round(time.perf_counter() - started, 1),
        "tools": str(tools.llama_cpp),
    }
