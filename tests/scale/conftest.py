"""Session fixtures for the scale tests: an S3 server (moto) and a real two-node Ray cluster.

The cluster (`ray.cluster_utils.Cluster`: a head and a worker node, one CPU each, on this
machine) is started once per test session; its workers get the S3 endpoint and test
credentials in their environment, so that both nodes can read and write an `s3://` run
directory served by moto's server mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto's server mode) on 127.0.0.1, for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    previous = {key: os.environ.get(key) for key in [*S3_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(S3_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    server.stop()
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def ray_cluster(s3_endpoint: str) -> Iterator[Any]:
    """A head node and a worker node, one CPU each; the driver connected to it."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 150 * 1024**2},
    )
    cluster.add_node(num_cpus=1, object_store_memory=150 * 1024**2)
    cluster.wait_for_nodes()
    env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}
    ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": env})
    yield cluster
    ray.shutdown()
    cluster.shutdown()
