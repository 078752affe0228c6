"""A Dask cluster of 2 workers shared by the engine tests (threads in one process: fast to start)."""

from __future__ import annotations

import pytest

from haocha_analysis.ingest.storage import write_tables
from haocha_analysis.synth.generate import generate


@pytest.fixture(scope="session")
def dask_client():
    """A ``distributed`` client on a LocalCluster of 2 in-process workers."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def small_zibo(tmp_path_factory, zibo):
    """淄博 at scale 0.01: canonical Parquet partitions 2023Q1 and 2023Q2."""
    folder = tmp_path_factory.mktemp("zibo-small")
    for label in ("2023Q1", "2023Q2"):
        write_tables(generate(zibo, label, scale=0.01, seed=3).tables, folder, label)
    return folder
