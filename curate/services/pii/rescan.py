"""Residual scan of the final dataset: what the detector still finds after redaction.

`rescan(frame, config)` runs the same detector as the redact stage over every text of the
final examples (String columns and message contents) and counts findings per entity type,
leaving out types whose policy is `keep` (kept on purpose). Placeholders (`<EMAIL_ADDRESS_1>`)
and masked values are not findings. Run it BEFORE `restore_placeholders` (restored values
would be counted). `check_residual` fails the run when the total passes `redact.max_residual`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import polars as pl

from assay.errors import AssayError
from curate.services.pii.config import PiiSettings, RedactConfig, resolve_ner_model

if TYPE_CHECKING:
    from curate.services.pii.engine import RedactEngine

SKIPPED_COLUMNS = frozenset({"example_id", "chunk_id", "doc_id", "sample_ids", "task_type", "review_status", "split"})


class ResidualFindingsError(AssayError, RuntimeError):
    """The final dataset holds more detected entities than `redact.max_residual` allows."""

    def __init__(self, counts: dict[str, int], limit: int):
        self.counts, self.limit = counts, limit
        listed = ", ".join(f"{k}={v}" for k, v in counts.items())
        super().__init__(f"redact: residual scan of the final dataset found {sum(counts.values())} entities ({listed}), more than redact.max_residual={limit}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.counts, self.limit))


def _redact_config(config: RedactConfig | PiiSettings) -> tuple[RedactConfig, str | None]:
    if isinstance(config, RedactConfig):
        return config, None
    cfg = config.redact
    return cfg, ner_model_path(config)


def ner_model_path(config: PiiSettings) -> str | None:
    return resolve_ner_model(config.redact.ner_model, config.base_dir)


def texts_of(frame: pl.DataFrame) -> Iterator[str]:
    """Every text of a frame that a person or a model could read: String columns (ids left
    out) and strings nested in lists and structs (message contents)."""
    for name, dtype in frame.schema.items():
        if name in SKIPPED_COLUMNS:
            continue
        if dtype == pl.String:
            yield from (v for v in frame[name].to_list() if v)
        elif isinstance(dtype, pl.List | pl.Struct):
            for value in frame[name].to_list():
                yield from _strings(value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "role":
                yield from _strings(item)


def rescan(frame: pl.DataFrame, config: RedactConfig | PiiSettings) -> dict[str, int]:
    """Counts per entity type (policy not `keep`) found in the frame's texts, sorted by type."""
    from curate.services.pii.engine import get_engine  # Presidio (seconds to import) only when a scan runs

    cfg, ner = _redact_config(config)
    counts = residual_counts(get_engine(cfg, ner), cfg, texts_of(frame))
    return dict(sorted(counts.items()))


def residual_counts(engine: RedactEngine, cfg: RedactConfig, texts: Iterable[str]) -> Counter[str]:
    """What the detector still finds in `texts`, per entity type whose policy is not `keep`."""
    counts: Counter[str] = Counter()
    for text in texts:
        for result in engine.detect(text):
            if cfg.policy_for(result.entity_type) != "keep":
                counts[result.entity_type] += 1
    return counts


def check_residual(counts: dict[str, int], config: RedactConfig | PiiSettings) -> None:
    """Raise ResidualFindingsError when the counts pass `redact.max_residual` (None: never).

    Only enforced when redaction is enabled: with `redact.enabled: false` the counts are
    still shown in the card, but the client chose to send the text as it is.
    """
    cfg, _ = _redact_config(config)
    if cfg.enabled and cfg.max_residual is not None and sum(counts.values()) > cfg.max_residual:
        raise ResidualFindingsError(counts, cfg.max_residual)


def residual_report(frame: pl.DataFrame, config: RedactConfig | PiiSettings) -> dict[str, Any]:
    """For the dataset card and the export step: the counts, the limit and whether they pass.

    `{"counts": {type: n}, "total": n, "max_residual": limit, "enforced": bool, "passed": bool}`;
    call `check_residual` (or raise on `passed: false`) to fail the run.
    """
    cfg, _ = _redact_config(config)
    counts = rescan(frame, config)
    total = sum(counts.values())
    enforced = cfg.enabled and cfg.max_residual is not None
    return {
        "counts": counts,
        "total": total,
        "max_residual": cfg.max_residual,
        "enforced": enforced,
        "passed": not enforced or total <= (cfg.max_residual or 0),
    }
