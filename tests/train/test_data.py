"""Only assistant tokens carry loss: checked on the label mask, also after trl's preparation."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.data import IGNORE_INDEX, ChatEncoder, dataset_hash, encode_rows, load_export
from train.tiny import build_tiny_model

MULTI_TURN = [
    {"role": "system", "content": "You classify controls."},
    {"role": "user", "content": "Limit system access to authorized users."},
    {"role": "assistant", "content": "Access Control"},
    {"role": "user", "content": "Plan for incident handling."},
    {"role": "assistant", "content": "Incident Response"},
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory, chat_export: Path):
    from transformers import AutoTokenizer

    from train.config import TinyModelConfig
    from train.data import texts_of

    rows = load_export(chat_export)["train"]
    texts = [*texts_of(rows), *(m["content"] for m in MULTI_TURN)]
    folder = build_tiny_model(
        tmp_path_factory.mktemp("tiny"), texts, TinyModelConfig(hidden_size=32, vocab_size=500)
    )
    return AutoTokenizer.from_pretrained(folder)


def _spans(labels: list[int]) -> list[list[int]]:
    spans: list[list[int]] = []
    prev = IGNORE_INDEX
    for label in labels:
        if label != IGNORE_INDEX:
            if prev == IGNORE_INDEX:
                spans.append([])
            spans[-1].append(label)
        prev = label
    return spans


def test_only_assistant_tokens_carry_loss(tokenizer) -> None:
    enc = ChatEncoder.for_tokenizer(tokenizer, 2048)
    out = enc.encode(MULTI_TURN)
    ids, labels = out["input_ids"], out["labels"]
    assert len(ids) == len(labels)
    # every labelled position holds its own token; the rest is -100
    assert all(lab in (tok, IGNORE_INDEX) for tok, lab in zip(ids, labels, strict=True))
    spans = [tokenizer.decode(s) for s in _spans(labels)]
    assert spans == ["Access Control<|im_end|>", "Incident Response<|im_end|>"]
    masked = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab == IGNORE_INDEX])
    for prompt in ("You classify controls.", "Limit system access", "Plan for incident"):
        assert prompt in masked
    assert "<|im_start|>assistant" in masked  # the role header is prompt, not target


def test_prefix_diff_fallback_marks_the_same_content(tokenizer) -> None:
    marked = ChatEncoder.for_tokenizer(tokenizer, 2048).encode(MULTI_TURN)
    fallback = ChatEncoder(tokenizer, None, 2048)
    ids, mask = fallback._prefix_diff(MULTI_TURN)
    assert ids == marked["input_ids"]
    # the fallback covers each marked span (it may add the newline after <|im_end|>)
    for pos, label in enumerate(marked["labels"]):
        if label != IGNORE_INDEX:
            assert mask[pos] == 1


def test_truncation_drops_examples_without_assistant_tokens(tokenizer) -> None:
    row = {"messages": MULTI_TURN[:3]}
    short = ChatEncoder.for_tokenizer(tokenizer, 8)
    assert encode_rows(short, [row]) == []
    assert len(encode_rows(ChatEncoder.for_tokenizer(tokenizer, 512), [row])) == 1


def test_sft_trainer_keeps_our_labels(tokenizer, chat_export: Path, tmp_path: Path) -> None:
    """The labels the trainer actually trains on are ours (trl only truncates/packs)."""
    from tests.train.helpers import tiny_config
    from train.backends import load_for_training
    from train.data import to_dataset
    from train.runner import build_trainer

    cfg = tiny_config(chat_export, tmp_path / "run")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    tokenizer.save_pretrained(model_dir)
    from transformers import AutoModelForCausalLM, LlamaConfig

    AutoModelForCausalLM.from_config(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    ).save_pretrained(model_dir)
    loaded = load_for_training(cfg, str(model_dir), "peft")
    rows = load_export(chat_export)["train"][:8]
    encoded = encode_rows(ChatEncoder.for_tokenizer(tokenizer, 256), rows)
    trainer = build_trainer(cfg, loaded, to_dataset(encoded), None)
    prepared = trainer.train_dataset
    assert [r["labels"] for r in prepared] == [e["labels"] for e in encoded]
    # with a validation set: eval each epoch, early stopping on eval_loss, best checkpoint kept
    from transformers import EarlyStoppingCallback

    cfg_es = tiny_config(chat_export, tmp_path / "run", early_stopping_patience=2)
    with_eval = build_trainer(cfg_es, loaded, to_dataset(encoded), to_dataset(encoded[:4]))
    assert with_eval.args.eval_strategy == "epoch" and with_eval.args.save_strategy == "epoch"
    assert with_eval.args.load_best_model_at_end
    assert with_eval.args.metric_for_best_model == "eval_loss"
    stoppers = [c for c in with_eval.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)]
    assert len(stoppers) == 1 and stoppers[0].early_stopping_patience == 2
    batch = trainer.data_collator([prepared[0], prepared[1]])
    for row, lab in zip(encoded[:2], batch["labels"].tolist(), strict=True):
        targets = [t for t in lab if t != IGNORE_INDEX]
        assert targets == [t for t in row["labels"] if t != IGNORE_INDEX]
        assert tokenizer.decode(targets).endswith("<|im_end|>")


def test_dataset_hash_changes_with_content(chat_export: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(chat_export, copy)
    assert dataset_hash(copy) == dataset_hash(chat_export)
    with (copy / "train.jsonl").open("a") as fh:
        fh.write('{"messages": [{"role": "user", "content": "x"}]}\n')
    assert dataset_hash(copy) != dataset_hash(chat_export)
