"""Which services (`curate.run.services`) the executor that runs a stage lends it.

Apart from `curate.run.services` so that the stage context, which carries the services,
does not import the executors.
"""

from __future__ import annotations

from curate.run.config import RunSettings
from curate.run.executor import LocalExecutor
from curate.run.ray_executor import RayExecutor  # imports no ray: that happens on connecting
from curate.run.services import LocalServices, RayServices, StageServices


def services_for(executor: object, config: RunSettings) -> StageServices:
    """The services of the executor that runs a stage (the config's executor for any other)."""
    if isinstance(executor, LocalExecutor):
        return LocalServices(workers=executor.workers, threads_per_worker=executor.threads_per_worker)
    if isinstance(executor, RayExecutor):
        return RayServices(address=executor.address, workers=executor.workers,
                           threads_per_worker=executor.threads_per_worker, init_kwargs=executor.init_kwargs)
    settings = config.executor
    if settings.kind == "ray":
        return RayServices(address=settings.ray_address, workers=settings.workers,
                           threads_per_worker=settings.threads_per_worker)
    return LocalServices(workers=settings.workers, threads_per_worker=settings.threads_per_worker)
