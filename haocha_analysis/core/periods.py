"""Statistical periods (统计期): quarter, month, half-year, year or an explicit date range."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from haocha_analysis.core.errors import HaochaInputError

if TYPE_CHECKING:  # pandas is imported where timestamps are compared: `haocha --help` stays fast
    import pandas as pd

CN_NUMERALS = "一二三四"
PERIOD_HELP = "统计期: YYYYQn、YYYY-MM、YYYYHn、YYYY 或 YYYY-MM-DD..YYYY-MM-DD"


@dataclass(frozen=True)
class Period:
    """A closed range of calendar days with the label it was parsed from."""

    label: str
    kind: str  # quarter | month | half | year | range
    start: date
    end: date  # inclusive

    @property
    def start_ts(self) -> pd.Timestamp:
        """First instant of the period."""
        import pandas as pd

        return pd.Timestamp(self.start)

    @property
    def end_ts(self) -> pd.Timestamp:
        """First instant after the period (exclusive bound)."""
        import pandas as pd

        return pd.Timestamp(self.end + timedelta(days=1))

    def contains(self, timestamps: pd.Series) -> pd.Series:
        """Boolean mask: timestamps inside the period (missing timestamps are outside)."""
        return (timestamps >= self.start_ts) & (timestamps < self.end_ts)

    @property
    def days(self) -> int:
        """Number of calendar days."""
        return (self.end - self.start).days + 1

    def shifted(self, kind: str) -> Period | None:
        """The previous period (``'previous'``, 环比) or the same one a year earlier (``'year'``, 同比)."""
        if kind == "year":
            try:
                return parse_period(_shift_label(self, years=-1))
            except (HaochaInputError, ValueError):
                return None
        if kind != "previous":
            raise ValueError(kind)
        if self.kind == "quarter":
            y, q = self.start.year, (self.start.month - 1) // 3 + 1
            return parse_period(f"{y - 1}Q4" if q == 1 else f"{y}Q{q - 1}")
        if self.kind == "month":
            prev = self.start - timedelta(days=1)
            return parse_period(f"{prev.year}-{prev.month:02d}")
        if self.kind == "half":
            h = 1 if self.start.month == 1 else 2
            return parse_period(f"{self.start.year - 1}H2" if h == 1 else f"{self.start.year}H1")
        if self.kind == "year":
            return parse_period(str(self.start.year - 1))
        length = self.end - self.start
        end = self.start - timedelta(days=1)
        return parse_period(f"{end - length}..{end}")

    def with_previous(self) -> Period:
        """This period and the one before it, as one range (what is read to link earlier cases)."""
        previous = self.shifted("previous")
        if previous is None:
            return self
        return Period(f"{previous.start}..{self.end}", "range", previous.start, self.end)

    def quarters(self) -> list[Period]:
        """Calendar quarters that overlap the period."""
        out, y, q = [], self.start.year, (self.start.month - 1) // 3 + 1
        while True:
            p = parse_period(f"{y}Q{q}")
            if p.start > self.end:
                return out
            out.append(p)
            y, q = (y + 1, 1) if q == 4 else (y, q + 1)

    def title_cn(self) -> str:
        """Period as a bulletin title names it: 2023年第二季度, 2023年4月, 2023年上半年…."""
        y = self.start.year
        if self.kind == "quarter":
            return f"{y}年第{CN_NUMERALS[(self.start.month - 1) // 3]}季度"
        if self.kind == "month":
            return f"{y}年{self.start.month}月"
        if self.kind == "half":
            return f"{y}年{'上' if self.start.month == 1 else '下'}半年"
        if self.kind == "year":
            return f"{y}年"
        return self.range_cn()

    def short_cn(self) -> str:
        """Short form used inside annex titles: 第二季度, 4月, 上半年, 年度."""
        if self.kind == "quarter":
            return f"第{CN_NUMERALS[(self.start.month - 1) // 3]}季度"
        if self.kind == "month":
            return f"{self.start.month}月"
        if self.kind == "half":
            return "上半年" if self.start.month == 1 else "下半年"
        if self.kind == "year":
            return "年度"
        return "统计期"

    def range_cn(self) -> str:
        """Range as the annex 备注 writes it: 2023年4月1日至6月30日."""
        s, e = self.start, self.end
        end = f"{e.month}月{e.day}日" if e.year == s.year else f"{e.year}年{e.month}月{e.day}日"
        return f"{s.year}年{s.month}月{s.day}日至{end}"


def _shift_label(p: Period, years: int) -> str:
    y = p.start.year + years
    if p.kind == "quarter":
        return f"{y}Q{(p.start.month - 1) // 3 + 1}"
    if p.kind == "month":
        return f"{y}-{p.start.month:02d}"
    if p.kind == "half":
        return f"{y}H{1 if p.start.month == 1 else 2}"
    if p.kind == "year":
        return str(y)
    return f"{p.start.replace(year=p.start.year + years)}..{p.end.replace(year=p.end.year + years)}"


def parse_period(text: str) -> Period:
    """Parse ``2023Q2``, ``2023-04``, ``2023H1``, ``2023`` or ``2023-04-01..2023-05-15``."""
    s = str(text).strip()
    if m := re.fullmatch(r"(\d{4})[Qq]([1-4])", s):
        y, q = int(m[1]), int(m[2])
        start = date(y, 3 * q - 2, 1)
        end = (date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)) - timedelta(days=1)
        return Period(f"{y}Q{q}", "quarter", start, end)
    if m := re.fullmatch(r"(\d{4})-(\d{1,2})", s):
        y, mo = int(m[1]), int(m[2])
        if 1 <= mo <= 12:
            end = (date(y + 1, 1, 1) if mo == 12 else date(y, mo + 1, 1)) - timedelta(days=1)
            return Period(f"{y}-{mo:02d}", "month", date(y, mo, 1), end)
    if m := re.fullmatch(r"(\d{4})[Hh]([12])", s):
        y, h = int(m[1]), int(m[2])
        start, end = (date(y, 1, 1), date(y, 6, 30)) if h == 1 else (date(y, 7, 1), date(y, 12, 31))
        return Period(f"{y}H{h}", "half", start, end)
    if re.fullmatch(r"\d{4}", s):
        y = int(s)
        return Period(s, "year", date(y, 1, 1), date(y, 12, 31))
    if m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", s):
        try:
            start, end = date.fromisoformat(m[1]), date.fromisoformat(m[2])
        except ValueError:
            start = end = None
        if start and end and start <= end:
            return Period(f"{start}..{end}", "range", start, end)
    raise HaochaInputError(f"无法识别的统计期“{s}”", fix=f"请使用 {PERIOD_HELP}，例如 2023Q2")


def latest_complete_quarter(today: date | None = None) -> Period:
    """The last calendar quarter that has ended before ``today`` (for scheduled runs)."""
    today = today or date.today()
    q = (today.month - 1) // 3 + 1
    y, q = (today.year - 1, 4) if q == 1 else (today.year, q - 1)
    return parse_period(f"{y}Q{q}")


def resolve_period(text: str, today: date | None = None) -> Period:
    """Like :func:`parse_period`, and ``latest`` means the last complete quarter."""
    if str(text).strip().lower() == "latest":
        return latest_complete_quarter(today)
    return parse_period(text)
