"""Working days and working hours: the one calendar of the package.

Working days come from chinese-calendar (weekends, public holidays and 调休 make-up working
Saturdays/Sundays as the State Council publishes them). For a year chinese-calendar does not cover,
Monday–Friday is used. Every deadline, lag in working days and after-hours rule calls this module.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import chinese_calendar
import numpy as np
import pandas as pd

from haocha_analysis.core import config


@lru_cache(maxsize=8192)
def is_workday(day: date) -> bool:
    """True on an official working day (调休 make-up days included, holidays excluded)."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        # chinese_calendar covers 2004..(its release year); outside it, Monday–Friday.
        return day.weekday() < 5


@lru_cache(maxsize=8192)
def holiday_name(day: date) -> str | None:
    """The official holiday a day belongs to (its days off and its 调休 make-up working days).

    Names as chinese-calendar gives them ('Spring Festival', 'National Day', …); None for an
    ordinary day or a year chinese-calendar does not cover.
    """
    try:
        return chinese_calendar.get_holiday_detail(day)[1]
    except NotImplementedError:
        return None


def workday_calendar(first: date, last: date) -> pd.Series:
    """Boolean Series indexed by every date from first to last: True on working days (调休 included)."""
    days = pd.date_range(first, last, freq="D")
    return pd.Series([is_workday(d.date()) for d in days], index=days)


def add_working_days(day: date, n: int) -> date:
    """The date ``n`` working days after ``day`` (n ≥ 0; ``day`` itself never counts).

    With n = 0 the result is ``day`` if it is a working day, else the next working day: a deadline
    that would end on a holiday moves to the next working day.
    """
    current = day
    if n <= 0:
        while not is_workday(current):
            current += timedelta(days=1)
        return current
    left = n
    while left:
        current += timedelta(days=1)
        if is_workday(current):
            left -= 1
    return current


def add_working_days_series(days: pd.Series, n: int) -> pd.Series:
    """:func:`add_working_days` over a Series of timestamps (dates kept as midnight timestamps)."""
    normal = pd.to_datetime(days).dt.normalize()
    unique = normal.dropna().unique()
    mapping = {d: pd.Timestamp(add_working_days(pd.Timestamp(d).date(), n)) for d in unique}
    return normal.map(mapping).astype("datetime64[us]")


def working_days_between(start: pd.Series, end: pd.Series) -> pd.Series:
    """Working days from ``start``'s date to ``end``'s date: workdays in (start date, end date].

    An evaluation on the 5th working day after the case finished gives 5. Missing timestamps give
    <NA>; an end before the start gives a negative count.
    """
    s = pd.to_datetime(start).to_numpy("datetime64[D]")
    e = pd.to_datetime(end).to_numpy("datetime64[D]")
    ok = ~(np.isnat(s) | np.isnat(e))
    out = pd.Series(pd.NA, index=start.index, dtype="Int64")
    if not ok.any():
        return out
    lo = min(s[ok].min(), e[ok].min())
    hi = max(s[ok].max(), e[ok].max())
    cal = workday_calendar(pd.Timestamp(lo).date(), pd.Timestamp(hi).date())
    cum = np.cumsum(cal.to_numpy().astype(np.int64))
    si = (s[ok] - lo).astype(np.int64)
    ei = (e[ok] - lo).astype(np.int64)
    out[ok] = cum[ei] - cum[si]
    return out


def after_hours(ts: pd.Series) -> pd.Series:
    """True where a timestamp falls outside working hours or on a non-working day."""
    t = pd.to_datetime(ts)
    hour = t.dt.hour + t.dt.minute / 60
    outside = (hour < config.WORKDAY_START_HOUR) | (hour >= config.WORKDAY_END_HOUR)
    days = t.dt.normalize()
    if t.notna().any():
        cal = workday_calendar(days.min().date(), days.max().date())
        work = days.map(cal).astype("boolean").fillna(True)
    else:
        work = pd.Series(True, index=t.index)
    return (outside | ~work.astype(bool)).fillna(False).astype(bool)
