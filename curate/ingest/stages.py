"""Stage declarations of this package, in pipeline order (placeholder until built)."""

from curate.run.stage import Stage

STAGES: list[Stage] = []
