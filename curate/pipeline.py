"""The pipeline: every stage in order, grouped by the package (and CLI command) that owns it.

Data flows one way: ingest -> redact -> generate -> filter -> review -> dataset.
"""

from __future__ import annotations

from curate.run.stage import Stage


def stage_groups() -> dict[str, list[Stage]]:
    from curate.dataset.stages import STAGES as dataset
    from curate.filter.stages import STAGES as filters
    from curate.generate.stages import STAGES as generate
    from curate.ingest.stages import STAGES as ingest
    from curate.redact.stages import STAGES as redact
    from curate.review.stages import STAGES as review

    return {
        "ingest": ingest,
        "redact": redact,
        "generate": generate,
        "filter": filters,
        "review": review,
        "dataset": dataset,
    }


def all_stages() -> list[Stage]:
    return [stage for group in stage_groups().values() for stage in group]
