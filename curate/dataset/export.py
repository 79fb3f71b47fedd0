"""Export writers: chat JSONL (OpenAI `messages`), ShareGPT, Alpaca, Parquet, HF datasets.

Layout of `<run_dir>/<export.dir>/` (written into a temp folder, then renamed into place):

    train.jsonl validation.jsonl test.jsonl   OpenAI chat: {"messages": [...], metadata...}
    sharegpt/<split>.jsonl                    {"id", "conversations": [{"from", "value"}], ...}
    alpaca/<split>.jsonl                      {"instruction", "input", "output", "system", ...}
    parquet/<split>.parquet                   every exported column, messages as list<struct>
    hf/                                       datasets.DatasetDict.save_to_disk
    README.md, plots/*.png                    the dataset card
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from curate.dataset import chat
from curate.dataset.splitting import SPLITS
from schemas.ids import file_sha256
from schemas.tasks import TaskConfig

# Columns exported beside the conversation (the training engineer's contract).
METADATA = (
    "example_id", "chunk_id", "doc_id", "task_type", "label", "split",
    "review_status", "grounding_score", "agreement", "quality_score",
)
SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def export_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """The exported rows: metadata, messages and the task output, in a fixed column order."""
    wanted = [c for c in (*METADATA, "messages", "output_json") if c in frame.columns]
    messages = pl.List(pl.Struct({"role": pl.String(), "content": pl.String()}))
    return frame.select(wanted).with_columns(pl.col("messages").cast(messages)).sort("example_id")


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in METADATA if key in row}


def openai_record(row: dict[str, Any], *, metadata: bool) -> dict[str, Any]:
    record: dict[str, Any] = {"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]}
    if metadata:
        record.update(_metadata(row))
    return record


def sharegpt_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["example_id"],
        "conversations": [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in row["messages"]],
        **{k: v for k, v in _metadata(row).items() if k != "example_id"},
    }


def alpaca_record(row: dict[str, Any], task: TaskConfig) -> dict[str, Any]:
    """instruction/input/output; the task instruction is split off the user turn when it leads it.

    Multi-turn chats keep earlier turns in `history` ([[user, assistant], ...], the
    LLaMA-Factory convention); the system prompt goes to `system`.
    """
    messages = row["messages"]
    turns = [m for m in messages if m["role"] != "system"]
    history = [[turns[i]["content"], turns[i + 1]["content"]] for i in range(0, len(turns) - 2, 2)]
    prompt = turns[-2]["content"] if len(turns) >= 2 else ""
    instruction, given = prompt, ""
    lead = task.instruction.strip()
    if lead and prompt.startswith(lead) and prompt[len(lead):].strip():
        instruction, given = lead, prompt[len(lead):].strip()
    return {
        "instruction": instruction,
        "input": given,
        "output": chat.response_text(messages),
        "system": chat.system_text(messages) or "",
        "history": history,
        **_metadata(row),
    }


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_exports(
    rows: pl.DataFrame, folder: Path, *, formats: Iterable[str], task: TaskConfig, openai_metadata: bool
) -> list[dict[str, Any]]:
    """Write every format for every split into `folder`; return one entry per file written."""
    formats = tuple(formats)
    written: list[tuple[str, str, Path, int]] = []
    parts = {split: rows.filter(pl.col("split") == split) for split in SPLITS}
    for split, part in parts.items():
        dicts = part.to_dicts()
        if "openai" in formats:
            path = folder / f"{split}.jsonl"
            _write_jsonl(path, (openai_record(r, metadata=openai_metadata) for r in dicts))
            written.append(("openai", split, path, part.height))
        if "sharegpt" in formats:
            path = folder / "sharegpt" / f"{split}.jsonl"
            _write_jsonl(path, (sharegpt_record(r) for r in dicts))
            written.append(("sharegpt", split, path, part.height))
        if "alpaca" in formats:
            path = folder / "alpaca" / f"{split}.jsonl"
            _write_jsonl(path, (alpaca_record(r, task) for r in dicts))
            written.append(("alpaca", split, path, part.height))
        if "parquet" in formats:
            path = folder / "parquet" / f"{split}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            part.write_parquet(path, compression="zstd", statistics=True)
            written.append(("parquet", split, path, part.height))
    if "hf" in formats:
        import datasets
        from datasets import Dataset, DatasetDict

        datasets.disable_progress_bars()

        hf = DatasetDict({split: Dataset(_plain_arrow(part)) for split, part in parts.items()})
        hf.save_to_disk(str(folder / "hf"))
        written.append(("hf", "all", folder / "hf" / "dataset_dict.json", rows.height))
    return [
        {"format": fmt, "split": split, "path": str(path.relative_to(folder)), "rows": n,
         "sha256": file_sha256(str(path))}
        for fmt, split, path, n in written
    ]


def _plain_arrow(frame: pl.DataFrame) -> Any:
    """Arrow table with regular (not large) strings and lists, the types `datasets` expects."""
    import pyarrow as pa

    table = frame.to_arrow()

    def plain(dtype: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
            return pa.string()
        if pa.types.is_large_list(dtype) or pa.types.is_list(dtype):
            return pa.list_(plain(dtype.value_type))
        if pa.types.is_struct(dtype):
            return pa.struct([pa.field(f.name, plain(f.type)) for f in dtype])
        return dtype

    schema = pa.schema([pa.field(f.name, plain(f.type)) for f in table.schema])
    return table.cast(schema)
