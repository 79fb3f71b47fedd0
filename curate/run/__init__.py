"""The run model: stage declarations, the run directory, the manifest and the executors."""

from curate.run.stage import Stage, StageContext, StepKind

__all__ = ["Stage", "StageContext", "StepKind"]
