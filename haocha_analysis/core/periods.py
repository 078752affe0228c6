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
# What ``latest`` means, the same for every verb that reads data (ingest.storage.resolve_period_in).
LATEST_HELP = "，或 latest（数据中最后一个完整季度；haocha run 给了 --inbox 时为上一个完整季度）"


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
        """The previous period (``'previous'``, 环比) or the same one a year earlier (``'year'``, 同比).

        None when that period falls outside the years a period may take (see ``MIN_YEAR``).
        """
        if kind not in ("previous", "year"):
            raise ValueError(kind)
        try:
            return parse_period(_shift_label(self, years=-1) if kind == "year" else _previous_label(self))
        except (HaochaInputError, ValueError):
            return None

    def with_previous(self) -> Period:
        """This period and the one before it, as one range (what is read to link earlier cases)."""
        previous = self.shifted("previous")
        if previous is None:
            return self
        return Period(f"{previous.start}..{self.end}", "range", previous.start, self.end)

    def quarters(self) -> list[Period]:
        """Calendar quarters that overlap the period."""
        out, y, q = [], self.start.year, (self.start.month - 1) // 3 + 1
        while y <= MAX_YEAR:
            p = parse_period(f"{y}Q{q}")
            if p.start > self.end:
                return out
            out.append(p)
            y, q = (y + 1, 1) if q == 4 else (y, q + 1)
        return out

    def title_cn(self) -> str:
        """The one way a period is written for readers: 2023年第二季度, 2023年5月, 2023年上半年, 2023年.

        A range names both years: 2023年4月1日至2023年5月31日. Every title, heading, sentence,
        XLSX title row, chart title, CLI summary line and log line writes a period this way (through
        :func:`period_label` where only the code travels); the code (``2023Q2``) is for folder and
        file names and machine keys in JSON only.
        """
        y = self.start.year
        if self.kind == "quarter":
            return f"{y}年第{CN_NUMERALS[(self.start.month - 1) // 3]}季度"
        if self.kind == "month":
            return f"{y}年{self.start.month}月"
        if self.kind == "half":
            return f"{y}年{'上' if self.start.month == 1 else '下'}半年"
        if self.kind == "year":
            return f"{y}年"
        s, e = self.start, self.end
        return f"{s.year}年{s.month}月{s.day}日至{e.year}年{e.month}月{e.day}日"

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


def period_label(period: Period | str) -> str:
    """A period, or its code (``2023Q2``, ``2023-05``…), as readers see it: :meth:`Period.title_cn`."""
    return (period if isinstance(period, Period) else parse_period(str(period))).title_cn()


def _previous_label(p: Period) -> str:
    if p.kind == "quarter":
        y, q = p.start.year, (p.start.month - 1) // 3 + 1
        return f"{y - 1}Q4" if q == 1 else f"{y}Q{q - 1}"
    if p.kind == "month":
        prev = p.start - timedelta(days=1)
        return f"{prev.year}-{prev.month:02d}"
    if p.kind == "half":
        return f"{p.start.year - 1}H2" if p.start.month == 1 else f"{p.start.year}H1"
    if p.kind == "year":
        return str(p.start.year - 1)
    end = p.start - timedelta(days=1)
    return f"{end - (p.end - p.start)}..{end}"


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


# Years a period may fall in: wide enough for any real 好差评 data (the system dates from 2019) and
# for synthetic history, narrow enough that the previous period, the same period a year earlier and
# every timestamp of the period stay valid dates and pandas timestamps (1677–2262).
MIN_YEAR, MAX_YEAR = 1900, 2199


def _period_error(problem: str, text: str, fix: str | None = None) -> HaochaInputError:
    return HaochaInputError(
        f"统计期“{text}”{problem}",
        column="--period",
        fix=fix or f"请使用 {PERIOD_HELP}，例如 2023Q2",
    )


def _year(text: str, original: str) -> int:
    y = int(text)
    if not MIN_YEAR <= y <= MAX_YEAR:
        raise _period_error(f"的年份 {text} 超出范围", original, f"年份取 {MIN_YEAR}–{MAX_YEAR}，例如 2023Q2")
    return y


def _day(text: str, original: str) -> date:
    _year(text[:4], original)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _period_error(
            f"中的日期 {text} 不存在", original, "日期写成 YYYY-MM-DD，如 2023-04-01"
        ) from None


def parse_period(text: str) -> Period:
    """Parse ``2023Q2``, ``2023-04``, ``2023H1``, ``2023`` or ``2023-04-01..2023-05-15``.

    Only ASCII digits are read (a full-width ``２０２３`` would otherwise become a folder name), years lie
    in ``MIN_YEAR``–``MAX_YEAR``, and a range's start is not after its end.

    Raises:
        HaochaInputError: anything else, with what to write instead.
    """
    s = str(text).strip()
    if any(ch.isdigit() and not ch.isascii() for ch in s):
        raise _period_error("含全角或其他非 ASCII 数字", s, "用半角数字书写，例如 2023Q2")
    if m := re.fullmatch(r"([0-9]{4})[Qq]([1-4])", s):
        y, q = _year(m[1], s), int(m[2])
        start = date(y, 3 * q - 2, 1)
        end = (date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)) - timedelta(days=1)
        return Period(f"{y}Q{q}", "quarter", start, end)
    if m := re.fullmatch(r"([0-9]{4})-([0-9]{1,2})", s):
        y, mo = _year(m[1], s), int(m[2])
        if not 1 <= mo <= 12:
            raise _period_error(f"的月份 {m[2]} 不在 1–12 之间", s, "月份写成 YYYY-MM，如 2023-04")
        end = (date(y + 1, 1, 1) if mo == 12 else date(y, mo + 1, 1)) - timedelta(days=1)
        return Period(f"{y}-{mo:02d}", "month", date(y, mo, 1), end)
    if m := re.fullmatch(r"([0-9]{4})[Hh]([12])", s):
        y, h = _year(m[1], s), int(m[2])
        start, end = (date(y, 1, 1), date(y, 6, 30)) if h == 1 else (date(y, 7, 1), date(y, 12, 31))
        return Period(f"{y}H{h}", "half", start, end)
    if re.fullmatch(r"[0-9]{4}", s):
        y = _year(s, s)
        return Period(s, "year", date(y, 1, 1), date(y, 12, 31))
    if m := re.fullmatch(r"([0-9]{4}-[0-9]{2}-[0-9]{2})\.\.([0-9]{4}-[0-9]{2}-[0-9]{2})", s):
        start, end = _day(m[1], s), _day(m[2], s)
        if start > end:
            raise _period_error("的开始晚于结束", s, f"把两端对调：{end}..{start}")
        return Period(f"{start}..{end}", "range", start, end)
    raise _period_error("无法识别", s)


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
