"""filter.semantic_dedup: embedding clusters of instructions, then answers; the best-scored member stays."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from curate.filter.semantic_dedup import field_text, semantic_dedup, similar_pairs
from curate.filter.similarity_config import SemanticDedupConfig
from curate.filter.similarity_steps import semantic_dedup_step


def example(example_id: str, question: str, answer: str, score: float) -> dict[str, object]:
    output = json.dumps({"question": question, "answer": answer, "quote": "q"})
    return {"example_id": example_id, "chunk_id": f"c-{example_id}", "output_json": output, "quality_score": score,
            "refine_round": 0, "messages": [{"role": "system", "content": "s"},
                                            {"role": "user", "content": "Answer from the passage."},
                                            {"role": "assistant", "content": output}]}


QUESTIONS = pl.DataFrame([
    example("a", "How often is the access control policy reviewed?", "Every year, by the CISO.", 0.7),
    example("b", "At what interval must the access control policy be reviewed?", "Once a year.", 0.9),
    example("c", "What is the retention period for customer records?", "Seven years after the contract ends.", 0.8),
    example("d", "Who approves a request for a new account?", "The line manager and the system owner.", 0.8),
    example("e", "Which team receives reports of security incidents?", "The line manager and the system owner.", 0.6),
])


@pytest.mark.slow
def test_paraphrased_questions_keep_the_best_scored_and_answers_are_checked_separately() -> None:
    """Real all-MiniLM-L6-v2: a/b ask the same thing (b scores higher); d/e share an answer word for word."""
    outcome = semantic_dedup(QUESTIONS, SemanticDedupConfig(enabled=True, threshold=0.8))
    assert outcome.kept["example_id"].to_list() == ["b", "c", "d"]
    lost = {r["example_id"]: r for r in outcome.rejected.to_dicts()}
    assert lost["a"]["field"] == "instruction" and lost["a"]["survivor"] == "b" and lost["a"]["cosine"] >= 0.8
    assert lost["a"]["detail"].startswith("instruction means the same as b's (cosine ")
    assert lost["e"]["field"] == "answer" and lost["e"]["survivor"] == "d" and lost["e"]["cosine"] > 0.99
    report = outcome.report["fields"]
    assert report["instruction"]["rejected"] == 1 and report["answer"]["rows"] == 4
    assert report["instruction"]["method"] == "exact"


def encoder_for(vectors: dict[str, list[float]]):  # a stand-in encoder: fixed vectors per text
    def encode(texts: list[str]) -> np.ndarray:
        out = np.array([vectors[t] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)
    return encode


def test_clusters_are_connected_components_and_empty_texts_stay() -> None:
    frame = pl.DataFrame([example("x", "p", "1", 0.5), example("y", "q", "2", 0.9), example("z", "r", "3", 0.1),
                          example("w", "", "4", 1.0), example("v", "s", "5", 0.3)])
    fake = {"p": [1, 0, 0], "q": [1, 0.2, 0], "r": [1, 0.4, 0], "s": [0, 0, 1],
            "1": [1, 0, 0], "2": [0, 1, 0], "3": [0, 0, 1], "4": [1, 1, 0], "5": [1, -1, 0]}
    # p~q and q~r above 0.95, p~r not: one cluster all the same (chained), survivor y (best score)
    outcome = semantic_dedup(frame, SemanticDedupConfig(enabled=True, threshold=0.95, fields=("instruction",)),
                             encoder=encoder_for(fake))
    assert sorted(outcome.kept["example_id"]) == ["v", "w", "y"]
    assert set(outcome.rejected["survivor"]) == {"y"} and set(outcome.rejected["size"]) == {3}


def test_ivf_neighbours_find_the_planted_pairs_that_exact_search_finds() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(20_000, 48)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    planted = [(i, 10_000 + i) for i in range(0, 10_000, 97)]
    for i, j in planted:
        noisy = vectors[i] + rng.normal(scale=0.03, size=48).astype(np.float32)
        vectors[j] = noisy / np.linalg.norm(noisy)
    exact, exact_cos, method = similar_pairs(vectors, 0.9)
    approx, _, approx_method = similar_pairs(vectors, 0.9, exact_below=1000)
    assert method == "exact" and approx_method.startswith("ivf")
    assert {tuple(p) for p in exact.tolist()} == set(planted)  # random 48-d vectors are never that close
    assert (exact_cos >= 0.9).all()
    found = {tuple(p) for p in approx.tolist()}
    assert found <= set(planted) and len(found) >= 0.95 * len(planted)


def test_field_text_reads_the_task_output_or_falls_back_to_the_messages() -> None:
    frame = pl.DataFrame([example("a", "Q?", "A.", 1.0)]).with_columns(
        pl.lit('{"label": "x", "quote": "y"}').alias("output_json"))
    texts = frame.select(field_text("instruction").alias("i"), field_text("answer").alias("a")).row(0)
    assert texts == ("Answer from the passage.", json.dumps({"question": "Q?", "answer": "A.", "quote": "q"}))
    freeform = pl.DataFrame([example("b", "x", "y", 1.0)]).with_columns(
        pl.lit('{"instruction": "Write a memo", "response": "Memo."}').alias("output_json"))
    assert freeform.select(field_text("instruction"), field_text("answer").alias("r")).row(0) == ("Write a memo", "Memo.")


def test_the_step_writes_rejections_in_the_rejection_schema() -> None:
    class Config:
        class filter:  # the shape of PipelineConfig.filter
            semantic_dedup = SemanticDedupConfig(enabled=True, threshold=0.99, fields=("answer",))

    frame = pl.DataFrame([example("d", "q1", "same answer", 0.8), example("e", "q2", "same answer", 0.6)])
    kept, rejected, report = semantic_dedup_step(frame, Config())
    assert kept["example_id"].to_list() == ["d"]
    row = rejected.row(0, named=True)
    assert (row["item_id"], row["filter"], row["reason"], row["repairable"]) == ("e", "semantic_dedup", "semantic_duplicate", False)
    assert "as d's" in row["detail"] and report["fields"]["answer"]["rejected"] == 1


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="known: instruction, answer"):
        SemanticDedupConfig(fields=("question",))


@pytest.mark.slow
def test_the_static_encoder_is_distilled_offline_from_the_packaged_model(tmp_path) -> None:
    """model2vec's distillation of the wheel's all-MiniLM-L6-v2 (into an empty cache: no network),
    with the project's transformers; then the paraphrase a/b is one cluster, the rest stay apart."""
    import shutil

    from curate.services.similarity.embeddings import packaged_model_folder
    from curate.services.similarity.static_embeddings import encode_static, static_model_folder
    cache = tmp_path / "models"
    shutil.copytree(packaged_model_folder(), cache / packaged_model_folder().name)  # the unzipped wheel, no re-unzip
    folder = static_model_folder(dims=64, cache_dir=cache)
    assert (folder / ".assay-ready").exists() and static_model_folder(dims=64, cache_dir=cache) == folder
    vectors = encode_static(["How often is the access control policy reviewed?",
                             "At what interval must the access control policy be reviewed?",
                             "Who approves a request for a new account?", ""], dims=64, cache_dir=cache)
    assert vectors.shape == (4, 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5) and not vectors[3].any()
    sims = vectors[:3] @ vectors[:3].T
    assert sims[0, 1] > 0.8 > sims[0, 2]


def test_the_encoder_setting_picks_the_static_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import curate.services.similarity.static_embeddings as static
    from curate.filter.semantic_dedup import configured_encoder

    seen: dict[str, object] = {}

    def fake(texts: list[str], *, model: str | None, dims: int) -> np.ndarray:
        seen.update(texts=texts, model=model, dims=dims)
        return np.eye(len(texts), dtype=np.float32)

    monkeypatch.setattr(static, "encode_static", fake)
    config = SemanticDedupConfig(enabled=True, encoder="static", static_dims=128, model="some/model")
    outcome = semantic_dedup(QUESTIONS, config.model_copy(update={"fields": ("instruction",)}))
    assert seen["dims"] == 128 and seen["model"] == "some/model" and len(seen["texts"]) == QUESTIONS.height
    assert outcome.report["encoder"] == "static" and outcome.kept.height == QUESTIONS.height
    assert configured_encoder(SemanticDedupConfig()).__name__ == "transformer"
    with pytest.raises(ValueError):
        SemanticDedupConfig(encoder="onnx")
