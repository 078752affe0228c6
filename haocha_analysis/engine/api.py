"""One entry per step for every engine: pick the backend, run the reduction, return aggregates."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import date
from pathlib import Path

import pandas as pd

from haocha_analysis.analysis.annexes import TablesResult, comparison_bases, tables_from_counts
from haocha_analysis.analysis.anomalies.settings import Settings
from haocha_analysis.core.coverage import Coverage
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference, ClosedLoopLimits
from haocha_analysis.engine import ENGINES, EngineOptions
from haocha_analysis.engine.reduce import TableCounts
from haocha_analysis.quality.report import QualityCounts
from haocha_analysis.quality.settings import QualitySettings


def _check(options: EngineOptions) -> None:
    if options.engine not in ENGINES:
        raise HaochaInputError(f"未知的计算引擎 {options.engine}", fix=f"--engine 取 {' 或 '.join(ENGINES)}")


_IN_SESSION: ContextVar[bool] = ContextVar("haocha_engine_session", default=False)


@contextlib.contextmanager
def session(options: EngineOptions) -> Iterator[None]:
    """The engine's resources for a run: nothing for pandas, a Dask client for dask.

    Inside a session, another one is the same session: a verb's steps share one cluster.
    """
    _check(options)
    if options.engine == "pandas" or _IN_SESSION.get():
        yield
        return
    from haocha_analysis.engine.dask_backend import cluster

    with cluster(options):
        token = _IN_SESSION.set(True)
        try:
            yield
        finally:
            _IN_SESSION.reset(token)


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


def tables_result(
    data: str | Path,
    period: Period,
    ref: CityReference,
    options: EngineOptions,
    extracted_on: date | None = None,
    compare: bool = False,
) -> tuple[TablesResult, Coverage]:
    """The annexes from the engine's counts, with 环比/同比 columns when asked (in :func:`session`).

    As :func:`haocha_analysis.analysis.annexes.build_tables` does on loaded records: each period
    compared with (the previous one, a year earlier) is counted by the same engine over its own
    loading window, and compared with only when it holds records.

    Returns:
        The tables and the coverage of the period by the records.

    Raises:
        HaochaInputError: the period holds no record (refused before anything else is counted).
    """
    from haocha_analysis.core.coverage import require_records
    from haocha_analysis.ingest.storage import available_periods

    counts = tables_counts(data, period, options, ref.limits)
    require_records(counts.coverage, data, available_periods(data))

    def base(shifted: Period) -> TablesResult | None:
        c = tables_counts(data, shifted, options, ref.limits)
        return (
            None if c.coverage.empty else tables_from_counts(ref, c.units, c.systems, shifted, extracted_on)
        )

    bases = comparison_bases(period, base) if compare else None
    result = tables_from_counts(ref, counts.units, counts.systems, period, extracted_on, bases)
    return result, counts.coverage


def tables_counts_by_group(
    data: str,
    period: Period,
    options: EngineOptions,
    limits_of: Callable[[str], ClosedLoopLimits | None],
) -> dict[str, TableCounts]:
    """Dask: the tables' aggregates of every city of a province folder (inside :func:`session`)."""
    _check(options)
    from haocha_analysis.engine import dask_backend

    return dask_backend.tables_counts_by_group(str(data), period, options, limits_of)


def quality_counts(
    data: str | Path,
    period: Period,
    ref: CityReference,
    settings: QualitySettings,
    options: EngineOptions = EngineOptions(),
) -> tuple[QualityCounts, Coverage]:
    """The quality report's counts and the records' coverage (for dask: inside :func:`session`).

    The report itself is :func:`haocha_analysis.quality.report.quality_report` of these counts,
    whichever engine counted.
    """
    _check(options)
    if options.engine == "pandas":
        from haocha_analysis.core.coverage import coverage
        from haocha_analysis.quality.report import combine_quality_counts
        from haocha_analysis.quality.report import quality_counts as count
        from haocha_analysis.quality.run import load_quality_data

        tables = load_quality_data(Path(data), period)
        return combine_quality_counts([count(ref, tables, period, settings)], settings), coverage(
            tables, period
        )
    from haocha_analysis.engine import dask_backend

    (result,) = dask_backend.quality_counts_by_group(
        str(data), period, options, lambda key: ref, lambda key: settings
    ).values()
    return result


def anomaly_findings(
    data: str | Path,
    period: Period,
    ref: CityReference,
    history_n: int,
    options: EngineOptions = EngineOptions(),
    settings: Settings | None = None,
) -> tuple[pd.DataFrame, Coverage, int]:
    """A city's findings, its records' coverage and its history periods (dask: inside :func:`session`).

    An empty period comes back with an empty coverage and no findings (the caller refuses it).
    ``settings``: the detectors' thresholds (default: the city's settings.yml).
    """
    _check(options)
    if options.engine == "pandas":
        from haocha_analysis.engine import pandas_backend

        return pandas_backend.anomaly_findings(data, ref, period, history_n, settings)
    from haocha_analysis.engine import dask_backend

    (result,) = dask_backend.anomalies_by_group(
        str(data), period, options, lambda key: ref, history_n, settings
    ).values()
    return result


def ledger_records(
    data: str | Path, period: Period, options: EngineOptions = EngineOptions()
) -> tuple[dict[str, pd.DataFrame], Coverage]:
    """The records the 差评 ledger reads (rows' origin kept) and the period's coverage (in :func:`session`).

    pandas: the ledger's columns through the one loading window; dask: only the 差评, the records
    the linkage rule judges them by and the rectification rows, filtered where each file is read.
    Either way :func:`haocha_analysis.analysis.rectification.build_ledger` builds the ledger.
    """
    _check(options)
    if options.engine == "pandas":
        from haocha_analysis.analysis.rectification import load_ledger_data
        from haocha_analysis.core.coverage import coverage

        records = load_ledger_data(Path(data), period)
        return records, coverage(records, period)
    from haocha_analysis.engine import dask_backend

    return dask_backend.ledger_records(str(data), period, options)


def quality_counts_by_group(
    data: str,
    period: Period,
    options: EngineOptions,
    refs: Callable[[str], CityReference],
    settings: Callable[[str], QualitySettings],
) -> dict[str, tuple[QualityCounts, Coverage]]:
    """Dask: the quality counts and coverage of every city of a province folder (in :func:`session`)."""
    _check(options)
    from haocha_analysis.engine import dask_backend

    return dask_backend.quality_counts_by_group(str(data), period, options, refs, settings)


def anomalies_by_group(
    data: str,
    period: Period,
    options: EngineOptions,
    refs: Callable[[str], CityReference],
    history_n: int,
) -> dict[str, tuple[pd.DataFrame, Coverage, int]]:
    """Dask: every city's findings, coverage and history periods (inside :func:`session`)."""
    _check(options)
    from haocha_analysis.engine import dask_backend

    return dask_backend.anomalies_by_group(str(data), period, options, refs, history_n)
