"""Chat JSONL -> token ids + labels with loss on assistant tokens only.

Each example is rendered with the model's own chat template. Assistant spans come from the
template's ``{% generation %}`` markers (``return_assistant_tokens_mask``): the tiny model's
template has them, trl's ``get_training_chat_template`` supplies them for the common hub
templates (Llama 3, Qwen 2/3, ...). For any other template a prefix-difference fallback
renders the conversation turn by turn and marks the tokens each assistant turn adds.
Everything else gets label -100.

The output (``input_ids``, ``labels``) is what trl's SFTTrainer takes as an already
tokenized dataset: it then only truncates or packs, keeping our labels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.artifacts import SPLITS

IGNORE_INDEX = -100


def read_chat_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of an OpenAI chat JSONL file (the first `limit` when given)."""
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("messages"), list) or not row["messages"]:
                raise ValueError(f"{path}:{n}: no 'messages' list (OpenAI chat format expected)")
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    return rows


def require_export(folder: Path) -> None:
    """Fail early, before torch is imported, when `folder` holds no export."""
    if not (Path(folder) / "train.jsonl").exists():
        raise FileNotFoundError(
            f"{folder}/train.jsonl not found: run the dataset export first (make dataset)"
        )


def load_export(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """The export folder's splits that exist (train is required)."""
    folder = Path(folder)
    require_export(folder)
    return {s: read_chat_jsonl(folder / f"{s}.jsonl") for s in SPLITS if (folder / f"{s}.jsonl").exists()}


def dataset_hash(folder: Path) -> str:
    """sha256 over the split files' bytes, in split order (what the adapter was trained on)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        path = Path(folder) / f"{split}.jsonl"
        if path.exists():
            digest.update(split.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def texts_of(rows: Iterable[dict[str, Any]]) -> Iterable[str]:
    for row in rows:
        for message in row["messages"]:
            yield str(message.get("content") or "")


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": str(m.get("content") or "")} for m in row["messages"]]


@dataclass
class ChatEncoder:
    """Encodes conversations with a tokenizer; ``template`` is the one used for masking."""

    tokenizer: Any
    template: str | None
    max_len: int

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, max_len: int) -> ChatEncoder:
        from trl.chat_template_utils import get_training_chat_template, has_generation_markers

        current = tokenizer.chat_template
        if current is None:
            raise ValueError("the tokenizer has no chat template; pick an instruct/chat model")
        if has_generation_markers(current):
            return cls(tokenizer, None, max_len)
        try:
            patched = get_training_chat_template(tokenizer)
        except Exception:  # unknown template: trl raises rather than guess
            patched = None
        return cls(tokenizer, patched, max_len)

    @property
    def uses_markers(self) -> bool:
        from trl.chat_template_utils import has_generation_markers

        return self.template is not None or has_generation_markers(self.tokenizer.chat_template)

    def _render(self, messages: list[dict[str, str]], **kw: Any) -> Any:
        kwargs: dict[str, Any] = {"tokenize": True, "return_dict": True, **kw}
        if self.template is not None:
            kwargs["chat_template"] = self.template
        return self.tokenizer.apply_chat_template(messages, **kwargs)

    def encode(self, messages: Sequence[dict[str, str]]) -> dict[str, list[int]]:
        msgs = list(messages)
        if self.uses_markers:
            out = self._render(msgs, return_assistant_tokens_mask=True)
            ids = list(out["input_ids"])
            mask = list(out["assistant_masks"])
        else:
            ids, mask = self._prefix_diff(msgs)
        labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
        return {"input_ids": ids[: self.max_len], "labels": labels[: self.max_len]}

    def _prefix_diff(self, msgs: list[dict[str, str]]) -> tuple[list[int], list[int]]:
        """Mark the tokens each assistant turn adds to the rendered conversation."""
        ids: list[int] = []
        mask: list[int] = []
        for i, message in enumerate(msgs):
            if message["role"] == "assistant":
                prompt = list(self._render(msgs[:i], add_generation_prompt=True)["input_ids"])
                full = list(self._render(msgs[: i + 1])["input_ids"])
                if full[: len(prompt)] != prompt:
                    raise ValueError("chat template is not prefix-preserving; cannot mask turns")
                mask += [0] * (len(prompt) - len(ids)) + [1] * (len(full) - len(prompt))
                ids = full
        full = list(self._render(msgs)["input_ids"])
        mask += [0] * (len(full) - len(mask))
        return full, mask[: len(full)]


def encode_rows(encoder: ChatEncoder, rows: Sequence[dict[str, Any]]) -> list[dict[str, list[int]]]:
    """Encode rows; drop those whose assistant tokens were all truncated away."""
    encoded = [encoder.encode(_messages(row)) for row in rows]
    return [e for e in encoded if any(label != IGNORE_INDEX for label in e["labels"])]


def to_dataset(encoded: list[dict[str, list[int]]]):
    from datasets import Dataset

    return Dataset.from_list(encoded)
