"""A Dask client for the cluster data stage: a running scheduler's address, or a local cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tuneproof.protocol.schema import DataEngineSpec


@contextmanager
def dask_client(spec: DataEngineSpec) -> Iterator[Any]:
    """A ``distributed.Client`` on ``spec.scheduler``, else on a local cluster of ``spec.workers``
    single-threaded worker processes bound to 127.0.0.1 (closed on exit)."""
    from distributed import Client, LocalCluster

    if spec.scheduler is not None:
        with Client(spec.scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=spec.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
