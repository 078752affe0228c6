"""Which dates the data actually cover within a period: empty, partial or whole.

A bulletin of a period without records, or with records for only part of it, must not look like a
normal one: an empty period is an error, a partial one a warning and a sentence in the bulletin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from haocha_analysis.core.calendar import is_workday
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, period_label

# Up to this many working days without any record at either end of a period still count as whole
# (a few quiet days are normal for a small city or a short period; a whole working week is not).
PARTIAL_WORKING_DAYS = 4


def _working_days(first: date, last: date) -> int:
    """Working days from first to last, both included (0 when last < first)."""
    days, day = 0, first
    while day <= last:
        days += is_workday(day)
        day += timedelta(days=1)
    return days


def _cn_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


@dataclass(frozen=True)
class Coverage:
    """The dates of the period's records: cases finished and evaluations made in the period."""

    period: Period
    first: date | None
    last: date | None

    @property
    def empty(self) -> bool:
        """No record in the period."""
        return self.first is None

    @property
    def missing_before(self) -> int:
        """Working days of the period before its first record."""
        return 0 if self.first is None else _working_days(self.period.start, self.first - timedelta(days=1))

    @property
    def missing_after(self) -> int:
        """Working days of the period after its last record."""
        return 0 if self.last is None else _working_days(self.last + timedelta(days=1), self.period.end)

    @property
    def partial(self) -> bool:
        """Records cover only part of the period (more than PARTIAL_WORKING_DAYS missing at an end)."""
        return not self.empty and max(self.missing_before, self.missing_after) > PARTIAL_WORKING_DAYS

    def sentence(self) -> str:
        """The bulletin's sentence about a partial period (empty string when whole)."""
        if not self.partial:
            return ""
        gaps = []
        if self.missing_before > PARTIAL_WORKING_DAYS:
            gaps.append(f"此前{self.missing_before}个工作日")
        if self.missing_after > PARTIAL_WORKING_DAYS:
            gaps.append(f"此后{self.missing_after}个工作日")
        return (
            f"需要说明的是，本期数据仅覆盖{_cn_date(self.first)}至{_cn_date(self.last)}，"
            f"统计期内{'与'.join(gaps)}无数据，以上数字仅反映已覆盖时段。"
        )

    def as_dict(self) -> dict:
        """For headline.json and manifest.json."""
        return {
            "period_start": self.period.start.isoformat(),
            "period_end": self.period.end.isoformat(),
            "first_record": self.first.isoformat() if self.first else None,
            "last_record": self.last.isoformat() if self.last else None,
            "partial": self.partial,
            "working_days_missing_before": self.missing_before,
            "working_days_missing_after": self.missing_after,
        }


def coverage(data: dict[str, pd.DataFrame], period: Period) -> Coverage:
    """The coverage of ``period`` by the cases' finished_at and the evaluations' evaluated_at."""
    stamps = []
    for table, column in (("cases", "finished_at"), ("evaluations", "evaluated_at")):
        frame = data.get(table)
        if frame is None or column not in frame:
            continue
        times = frame[column]
        inside = times[period.contains(times).to_numpy(dtype=bool)]
        if len(inside):
            stamps += [inside.min(), inside.max()]
    if not stamps:
        return Coverage(period, None, None)
    return Coverage(period, min(stamps).date(), max(stamps).date())


def require_records(cov: Coverage, source: str | Path, available: list[str] | None = None) -> None:
    """Refuse a period without any record (exit 2): its bulletin would be all zeros."""
    if not cov.empty:
        return
    have = f"（数据中的统计期：{'、'.join(map(period_label, available))}）" if available else ""
    raise HaochaInputError(
        f"统计期 {cov.period.title_cn()}（{cov.period.start} 至 {cov.period.end}）"
        f"没有任何办件或评价记录{have}",
        file=str(source),
        fix="检查 --period 是否写错、--data 是否指向该统计期的数据；尚未导入时先运行 haocha ingest",
    )
