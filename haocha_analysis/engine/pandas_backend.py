"""The pandas backend: the whole window in one process is one partition."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from haocha_analysis.analysis.annexes import load_period_data
from haocha_analysis.analysis.anomalies.findings import detect
from haocha_analysis.analysis.anomalies.run import load_history, load_period
from haocha_analysis.analysis.anomalies.settings import Settings
from haocha_analysis.core.coverage import Coverage, coverage
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference, ClosedLoopLimits
from haocha_analysis.engine.reduce import TableCounts, table_counts


def tables_counts(
    data_dir: str | Path, period: Period, limits: ClosedLoopLimits | None = None
) -> TableCounts:
    """The tables' aggregates of a period, read through the one loading window."""
    data = load_period_data(Path(data_dir), period)
    return table_counts(data["cases"], data["evaluations"], data.get("rectifications"), period, limits)


def anomaly_findings(
    folder: str | Path,
    ref: CityReference,
    period: Period,
    history_n: int,
    settings: Settings | None = None,
) -> tuple[pd.DataFrame, Coverage, int]:
    """A city's findings, its records' coverage and the history periods found (one city's folder).

    An empty period comes back with an empty coverage and no findings (the caller refuses it).
    ``settings``: the detectors' thresholds (default: the city's settings.yml, as ``detect``).
    """
    data = load_period(Path(folder), period)
    cov = coverage(data, period)
    if cov.empty:
        return pd.DataFrame(), cov, 0
    history = load_history(Path(folder), period, history_n)
    return detect(ref, data, period, history, settings), cov, len(history)
