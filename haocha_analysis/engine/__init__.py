"""The steps that touch every record, on one machine (pandas) or a cluster (Dask).

As pandera splits *what* a check is (``api/``) from *how* it runs on an engine (``backends/``), the
reduction of records to small aggregates is written once (:mod:`.reduce`, on pandas frames: one
partition of the records) and run by a backend:

* :mod:`.pandas_backend`: the whole window is one partition (the default engine);
* :mod:`.dask_backend`: canonical Parquet read with ``dask.dataframe`` from a folder or an fsspec
  URL, records partitioned by case (:mod:`.partition`: a case and every evaluation naming it
  together, so the first-evaluation rule of :mod:`haocha_analysis.core.linkage` holds exactly), the
  reduction run per partition on a ``distributed`` cluster, the aggregates summed.

Everything after the aggregates (annexes, rates, headline, reconciliation) is the existing code,
unchanged, whichever engine reduced the records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENGINES = ("pandas", "dask")
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


@dataclass(frozen=True)
class EngineOptions:
    """Which engine reduces the records, and the Dask cluster it uses.

    Attributes:
        engine: ``pandas`` (one process) or ``dask``.
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``); empty = the
            ``DASK_SCHEDULER_ADDRESS`` environment variable, else a local cluster.
        workers: local cluster size (worker processes).
        memory_limit: per local worker (``4GB``, ``auto``).
        partitions: output partitions of the shuffle by case (0 = from the row count).
        progress: show a progress bar while the cluster works.
    """

    engine: str = "pandas"
    scheduler: str = ""
    workers: int = 2
    memory_limit: str = "auto"
    partitions: int = 0
    progress: bool = False

    @property
    def scheduler_address(self) -> str:
        """The scheduler given, else the one in the environment ("" = start a local cluster)."""
        return self.scheduler or os.environ.get(SCHEDULER_ENV, "")
