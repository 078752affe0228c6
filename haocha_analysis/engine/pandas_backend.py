"""The pandas backend: the whole window in one process is one partition."""

from __future__ import annotations

from pathlib import Path

from haocha_analysis.analysis.annexes import load_period_data
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import ClosedLoopLimits
from haocha_analysis.engine.reduce import TableCounts, table_counts


def tables_counts(
    data_dir: str | Path, period: Period, limits: ClosedLoopLimits | None = None
) -> TableCounts:
    """The tables' aggregates of a period, read through the one loading window."""
    data = load_period_data(Path(data_dir), period)
    return table_counts(data["cases"], data["evaluations"], data.get("rectifications"), period, limits)
