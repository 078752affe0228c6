"""One entry per step for every engine: pick the backend, run the reduction, return aggregates."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import ClosedLoopLimits
from haocha_analysis.engine import ENGINES, EngineOptions
from haocha_analysis.engine.reduce import TableCounts


def _check(options: EngineOptions) -> None:
    if options.engine not in ENGINES:
        raise HaochaInputError(f"未知的计算引擎 {options.engine}", fix=f"--engine 取 {' 或 '.join(ENGINES)}")


@contextlib.contextmanager
def session(options: EngineOptions) -> Iterator[None]:
    """The engine's resources for a run: nothing for pandas, a Dask client for dask."""
    _check(options)
    if options.engine == "pandas":
        yield
        return
    from haocha_analysis.engine.dask_backend import cluster

    with cluster(options):
        yield


def tables_counts(
    data: str | Path,
    period: Period,
    options: EngineOptions = EngineOptions(),
    limits: ClosedLoopLimits | None = None,
) -> TableCounts:
    """The aggregates the annexes are built from (for dask: inside :func:`session`).

    ``limits``: the city's 差评 closed-loop limits (``CityReference.limits``).
    """
    _check(options)
    if options.engine == "pandas":
        from haocha_analysis.engine import pandas_backend

        return pandas_backend.tables_counts(data, period, limits)
    from haocha_analysis.engine import dask_backend

    return dask_backend.tables_counts(str(data), period, options, limits)
