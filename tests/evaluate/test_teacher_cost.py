"""The teacher's cost per 1,000 requests comes from the usage report the generate stage writes."""

from __future__ import annotations

import json
from pathlib import Path

from curate.generate.stages import summarize
from schemas.records import Sample, SampleStatus, frame_of
from train.evaluate.evaluate import teacher_cost_per_1k


def sample(index: int, cost: float, cached: bool) -> Sample:
    return Sample(sample_id=f"s{index}", chunk_id=f"c{index}", doc_id="d", task_type="classification",
                  sample_index=0, status=SampleStatus.OK, request_hash=f"h{index}", backend="anthropic",
                  model="claude", input_tokens=100, output_tokens=20, cost_usd=cost, cached=cached)


def test_cost_per_1k_from_a_real_generate_report(tmp_path: Path) -> None:
    samples = frame_of(Sample, [sample(0, 0.002, False), sample(1, 0.004, False), sample(2, 0.003, True)])
    report = summarize({"samples": samples.lazy()})
    run = tmp_path / "run"
    (run / "dataset").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"stages": {"generate": {"report": report}}}))
    # the export folder sits inside the run directory; the manifest is found above it
    assert abs(teacher_cost_per_1k(run / "dataset") - 1000 * 0.009 / 3) < 1e-9  # type: ignore[operator]
    assert teacher_cost_per_1k(tmp_path / "elsewhere") is None
