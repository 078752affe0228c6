"""The steps that touch every record, on one machine (pandas) or a cluster (Dask).

As pandera splits *what* a check is (``api/``) from *how* it runs on an engine (``backends/``), the
reduction of records to small aggregates is written once (:mod:`.reduce`, on pandas frames: one
partition of the records) and run by a backend:

* :mod:`.pandas_backend`: the whole window is one partition (the default engine);
* :mod:`.dask_backend`: canonical Parquet from a folder or an fsspec URL, locality first: a
  *locality group* (a city's folder ``city=<key>/`` of a province, or the whole folder of one city)
  holds every case with all its evaluations, so it is read and reduced whole by one task where it
  is read, with no shuffle; only a group larger than ``group_rows`` is read with
  ``dask.dataframe`` and partitioned by case (:mod:`.partition`: a case and every evaluation naming
  it together, so the first-evaluation rule of :mod:`haocha_analysis.core.linkage` holds exactly).
  Either way the reduction runs on a ``distributed`` cluster and only the aggregates travel.

Everything after the aggregates (annexes, rates, headline, reconciliation) is the existing code,
unchanged, whichever engine reduced the records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENGINES = ("pandas", "dask")
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
# A locality group (cases + evaluations rows of a city's window) is reduced by one task when it fits
# a worker: at most the smallest worker memory limit / BYTES_PER_ROW rows (measured: 190-380 bytes per
# window row for tables and quality in one process, whole-process peak; 400 leaves room), else
# GROUP_ROWS when the workers have no limit. A larger group is shuffled by case into ~2 M-row parts.
BYTES_PER_ROW = 400
GROUP_ROWS = 25_000_000


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
        group_rows: a locality group of at most this many rows is reduced whole by one task;
            a larger one is shuffled by case (0 = shuffle every group; None = from the workers'
            memory limit, see ``BYTES_PER_ROW``).
    """

    engine: str = "pandas"
    scheduler: str = ""
    workers: int = 2
    memory_limit: str = "auto"
    partitions: int = 0
    progress: bool = False
    group_rows: int | None = None

    @property
    def scheduler_address(self) -> str:
        """The scheduler given, else the one in the environment ("" = start a local cluster)."""
        return self.scheduler or os.environ.get(SCHEDULER_ENV, "")


def refuse_url_on_pandas(data: object, options: EngineOptions | None) -> None:
    """Only the dask engine reads an fsspec URL (its workers open it): on pandas a URL is exit 2.

    Raises:
        HaochaInputError: ``data`` is a URL and the engine is pandas (or none was given).
    """
    from haocha_analysis.core.config import is_url

    if data is None or not is_url(data) or (options is not None and options.engine != "pandas"):
        return
    from haocha_analysis.core.errors import HaochaInputError

    raise HaochaInputError(
        "pandas 引擎只读取本地目录",
        file=str(data),
        fix="--data 用本地或挂载的目录，或加 --engine dask 读取 s3://、hdfs://、memory:// 等地址",
    )
