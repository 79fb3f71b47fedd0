"""A driver run in its own process, to be killed midway (tests/scale/test_streaming.py).

    python -m tests.scale.resume_driver RUN_DIR STAGE local|RAY_ADDRESS PARTITIONS
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from curate.run.executor import Executor, LocalExecutor
from curate.run.runner import Runner
from tests.scale.helpers import toy_config
from tests.scale.toy_stages import BUCKET, KILL_MAP, KILL_SHUFFLE, SOURCE


def main() -> None:
    run, stage, where, partitions = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    (Path(run) / "driver-pid").write_text(str(os.getpid()))
    executor: Executor = LocalExecutor(workers=1, partitions=partitions)
    if where != "local":
        import ray

        from curate.run.ray_executor import RayExecutor

        ray.init(address=where, log_to_driver=False)
        executor = RayExecutor(partitions=partitions)
    killing = {"killmap": KILL_MAP, "killshuffle": KILL_SHUFFLE}[stage]
    Runner(toy_config(run, n=80), [SOURCE, BUCKET, killing], executor=executor, show_progress=False).run()


if __name__ == "__main__":
    main()
