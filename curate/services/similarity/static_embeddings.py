"""Static sentence embeddings distilled from a transformer: the fast encoder for large runs.

A transformer encoder (all-MiniLM-L6-v2 by default) reads every sentence through six attention
layers: on two CPU cores that is tens of sentences a second, hours at a million examples. A
static model keeps one vector per word piece and averages them; a sentence costs a tokenizer
call and a sum, so it encodes thousands a second. The vectors are distilled from the same
transformer with model2vec (MIT; MinishLab's distillation, the one semhash's potion models come
from): every word piece of the tokenizer's vocabulary is passed once through the transformer and
mean-pooled, the table is reduced by PCA (`dims`, 256 by default) and weighted by
Zipf-estimated frequency (SIF, 1e-4).

The distillation runs once, offline, from the transformer's local folder (for the default model,
the one unzipped from its PyPI wheel), and its result is kept in the model cache:
about two minutes on two cores. Loaded through model2vec's `StaticModel`. Vectors are float32
and L2-normalised, as `embeddings.encode` returns them.

model2vec's `distill` extra caps transformers below 5.4; the distillation used here
(`distill_from_model` on an already loaded model) runs with the transformers the project pins,
which tests/filter/test_static_embeddings.py checks, so the extra is not used: model2vec and the
tokenizer library it distils with (skeletoken) are listed on their own in the embed extra.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curate.services.similarity.embeddings import (
    DEFAULT_CACHE,
    DEFAULT_MODEL,
    EmbeddingModelMissing,
    model_source,
    staged_folder,
)

DEFAULT_DIMS = 256
_READY = ".assay-ready"


def _folder_name(model: str | None, dims: int) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "--", (model or DEFAULT_MODEL).strip("/"))
    return f"static-{base}-pca{dims}"


def static_model_folder(model: str | None = None, *, dims: int = DEFAULT_DIMS,
                        cache_dir: str | Path | None = None) -> Path:
    """The static model distilled from `model` (default all-MiniLM-L6-v2), made once in the cache."""
    target = Path(cache_dir or DEFAULT_CACHE).expanduser() / _folder_name(model, dims)
    if (target / _READY).exists():
        return target
    try:
        import torch
        from model2vec.distill import distill_from_model
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise EmbeddingModelMissing(f"the static encoder needs model2vec and skeletoken: pip install 'assay[embed]' ({exc})") from exc
    source = model_source(model, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(source)
    network = AutoModel.from_pretrained(source, dtype=torch.float32)
    static = distill_from_model(network, tokenizer, pca_dims=dims, device="cpu")  # type: ignore[arg-type]
    with staged_folder(target, ".static-") as staging:
        static.save_pretrained(str(staging))
        (staging / _READY).write_text(json.dumps({"distilled_from": model or DEFAULT_MODEL, "pca_dims": dims}))
    return target


@functools.cache
def _load(folder: str) -> Any:
    from model2vec import StaticModel

    return StaticModel.from_pretrained(folder, normalize=True)


def encode_static(texts: Sequence[str], *, model: str | None = None, dims: int = DEFAULT_DIMS,
                  cache_dir: str | Path | None = None, max_length: int | None = 256) -> np.ndarray:
    """Embed `texts` with the static model distilled from `model`: (len(texts), dims) float32, unit rows."""
    static = _load(str(static_model_folder(model, dims=dims, cache_dir=cache_dir)))
    if not texts:
        return np.zeros((0, int(static.dim)), dtype=np.float32)
    vectors = np.asarray(static.encode(list(texts), max_length=max_length), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
