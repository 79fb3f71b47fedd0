"""bench/gguf's arithmetic on answers whose scores are known: the parsed label's exact match
per file, its paired change against the merged model, and llama.cpp's output trimmed to the
answer (the full runs are `bench/gguf/labels.py` and `bench/gguf/runtime.py`)."""

from __future__ import annotations

from pathlib import Path

from bench.gguf.labels import labels_of, row_of, table
from bench.gguf.runtime import END, files_of
from schemas.tasks import TaskConfig

TASK = TaskConfig.model_validate(
    {"type": "classification", "name": "family", "labels": ["AC", "AU", "IR"], "instruction": "Which family?"}
)
REFERENCES = ['{"label": "AC", "quote": "a"}', '{"label": "AU", "quote": "b"}', '{"label": "IR", "quote": "c"}']


def test_the_label_is_parsed_scored_and_its_change_is_paired() -> None:
    merged_answers = ['{"label": "AC", "quote": "x"}', '{"label": "AU", "quote": "y"}', '{"label": "AC", "quote": "z"}']
    file_answers = ['{"label": "AC", "quote": "other"}', "not json", '{"label": "IR", "quote": "z"}']
    merged = (merged_answers, *labels_of(TASK, merged_answers, REFERENCES))
    file = (file_answers, *labels_of(TASK, file_answers, REFERENCES))
    assert merged[1] == [1.0, 1.0, 0.0] and file[1] == [1.0, 0.0, 1.0]
    assert file[2] == ["AC", None, "IR"]
    row = row_of(merged, file)
    assert row["change"]["estimate"] == 0.0 and row["change"]["low"] < 0 < row["change"]["high"]
    assert abs(row["same_label"]["estimate"] - 1 / 3) < 1e-9  # only row 1 keeps its label
    assert row["same_answer"]["estimate"] == 0.0  # the quote changed in row 1
    assert abs(row["parsed"] - 2 / 3) < 1e-9
    row.update(bytes=2**20, answers=file_answers)
    result = {"test_rows": 3, "max_new_tokens": 48, "runtime": "llama.cpp", "types": {"Q4_1": row},
              "merged": {"parsed": 1.0, "exact_match": row["exact_match"]}}
    assert "| GGUF Q4_1 | 1.0 | 66.7 |" in table(result)


def test_the_files_come_in_a_fixed_order_and_the_end_marker_is_known(tmp_path: Path) -> None:
    for name in ("model-Q4_K_M.gguf", "model-f16.gguf", "model-Q2_K.gguf", "model-q8_0.gguf"):
        (tmp_path / name).write_text("")
    assert [t for t, _ in files_of(tmp_path)] == ["f16", "q8_0", "Q4_K_M", "Q2_K"]
    assert '{"label":"AC"} [end of text]'.removesuffix(END).strip() == '{"label":"AC"}'
