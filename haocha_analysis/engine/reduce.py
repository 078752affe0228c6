"""The per-record reduction, written once: one partition of records → additive aggregates.

A partition holds whole linkage groups (a case with every evaluation naming it; see
:mod:`.partition`), so calling the one linkage rule inside it gives the flags it gives on the whole
window. Every aggregate here is a sum (or a min/max), so the aggregates of disjoint partitions
combine into those of the whole: :func:`combine_table_counts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from haocha_analysis.analysis.metrics import (
    COUNT_COLUMNS,
    check_counts,
    rank_source_systems,
    source_system_counts,
    unit_counts,
)
from haocha_analysis.core.coverage import Coverage, coverage
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import ClosedLoopLimits


@dataclass(frozen=True)
class TableCounts:
    """What the annexes are built from.

    Attributes:
        units: per-unit counts (``unit_id`` + ``COUNT_COLUMNS``), as ``unit_counts`` returns them.
        systems: cases finished in the period per source system, ranked.
        coverage: the dates the period's records cover.
    """

    units: pd.DataFrame
    systems: pd.Series
    coverage: Coverage


def empty_unit_counts() -> pd.DataFrame:
    """Per-unit counts of no record."""
    frame = pd.DataFrame({col: pd.Series(dtype="int64") for col in COUNT_COLUMNS})
    frame.insert(0, "unit_id", pd.Series(dtype="str"))
    return frame


def table_counts(
    cases: pd.DataFrame,
    evaluations: pd.DataFrame,
    rectifications: pd.DataFrame | None,
    period: Period,
    limits: ClosedLoopLimits | None = None,
) -> TableCounts:
    """Reduce one partition of records (or the whole window) to the tables' aggregates.

    ``limits``: the city's 差评 closed-loop limits (the default deadlines of the rectifications).
    """
    if len(cases) or len(evaluations):
        units = unit_counts(cases, evaluations, rectifications, period, limits)
    else:
        units = empty_unit_counts()
    data = {"cases": cases, "evaluations": evaluations}
    return TableCounts(units, source_system_counts(cases, period), coverage(data, period))


def combine_table_counts(parts: list[TableCounts], period: Period) -> TableCounts:
    """Sum the aggregates of disjoint partitions (the per-unit relations are checked again)."""
    frames = [p.units for p in parts if len(p.units)]
    if frames:
        units = pd.concat(frames, ignore_index=True).groupby("unit_id", sort=True)[COUNT_COLUMNS].sum()
        units = units.astype("int64").reset_index()
        units["unit_id"] = units["unit_id"].astype("str")
    else:
        units = empty_unit_counts()
    check_counts(units)
    series = [p.systems for p in parts if len(p.systems)]
    systems = rank_source_systems(pd.concat(series)) if series else parts[0].systems if parts else None
    if systems is None:
        systems = pd.Series(dtype="int64", name="cases")
    return TableCounts(units, systems, combine_coverage([p.coverage for p in parts], period))


def combine_coverage(parts: list[Coverage], period: Period) -> Coverage:
    """The coverage of the union of disjoint parts: the earliest first date, the latest last."""
    firsts = [c.first for c in parts if c.first is not None]
    lasts = [c.last for c in parts if c.last is not None]
    return Coverage(period, min(firsts) if firsts else None, max(lasts) if lasts else None)
