"""How the analysts' notebooks and charts show numbers: one place for every display format.

Tables: shares as the bulletin writes rates ("3.86%", :func:`haocha_analysis.core.text.format_rate`),
counts with thousands separators ("12,345"), p-values by one rule ("< 0.0001" below 0.0001, otherwise
four decimals), dates as 2023-04-03, times to the minute, never an ``e-`` exponent, every column and
row shown. Charts: counts and rates on axes that start at zero (a rate axis runs 0–100 %), dates as
月-日, hours of the day as 时:分.

matplotlib is imported inside the chart helpers, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import pandas as pd

from haocha_analysis.core.text import NOT_APPLICABLE, format_rate

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from pandas.io.formats.style import Styler

# What a number measures, and so how it is written.
SHARE = "share"  # a fraction 0..1 → "3.86%"
COUNT = "count"  # a whole number → "12,345"
P_VALUE = "p"  # a probability from a test → "< 0.0001" or "0.0123"
DECIMAL = "decimal"  # any other quantity → "1,234.57" (two decimals at most)
SCORE = "score"  # a 0–1 score (an anomaly's severity) → "0.795": three decimals, as the XLSX shows it
P_VALUE_FLOOR = 1e-4  # below this a p-value is written "< 0.0001": more digits tell a reader nothing

# Column names that say what a float column holds (Chinese headers as the library writes them).
_SHARE_NAME = re.compile(r"(率|占比|比例|比重|share|rate)$", re.IGNORECASE)
_P_NAME = re.compile(r"(概率|p值|p_value|pvalue)$", re.IGNORECASE)

MAX_ROWS = 1000  # a notebook table longer than this is cut (the full table is in the output files)


def format_count(value: float | None) -> str:
    """A count with thousands separators: 1428423 → "1,428,423"; "/" when missing."""
    if value is None or pd.isna(value):
        return NOT_APPLICABLE
    return f"{round(float(value)):,}"


def format_share(value: float | None) -> str:
    """A share (fraction) as a percentage, written as the bulletin writes rates: 0.038674 → "3.86%"."""
    return format_rate(value)


def format_p_value(value: float | None) -> str:
    """A p-value: "< 0.0001" below :data:`P_VALUE_FLOOR`, otherwise four decimals ("0.0123", "0.5")."""
    if value is None or pd.isna(value):
        return NOT_APPLICABLE
    if float(value) < P_VALUE_FLOOR:
        return "< 0.0001"
    return f"{float(value):.4f}".rstrip("0").rstrip(".")


def format_decimal(value: float | None, digits: int = 2) -> str:
    """Any other quantity: thousands separators, at most ``digits`` decimals, never an exponent."""
    if value is None or pd.isna(value):
        return NOT_APPLICABLE
    v = float(value)
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    text = f"{v:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_score(value: float | None) -> str:
    """A 0–1 score with three decimals: 0.795; "/" when missing."""
    return NOT_APPLICABLE if value is None or pd.isna(value) else f"{float(value):.3f}"


_FORMATTERS = {
    SHARE: format_share,
    COUNT: format_count,
    P_VALUE: format_p_value,
    DECIMAL: format_decimal,
    SCORE: format_score,
}


def format_value(value: float | None, unit: str) -> str:
    """``value`` written as its unit says: SHARE, COUNT, P_VALUE, DECIMAL or SCORE."""
    return _FORMATTERS[unit](value)


def column_unit(name: object, column: pd.Series) -> str | None:
    """What a numeric column holds, from its dtype and header; None for text, dates and flags.

    Integer columns are counts; float columns are shares when the header ends in 率/占比/比例/比重,
    p-values when it ends in 概率/p值, counts when every value is whole, otherwise decimals.
    """
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return None
    if pd.api.types.is_integer_dtype(column):
        return COUNT
    label = str(name)
    if _P_NAME.search(label):
        return P_VALUE
    if _SHARE_NAME.search(label):
        return SHARE
    values = column.dropna().astype(float)
    if len(values) and values.map(lambda v: math.isfinite(v) and v.is_integer()).all():
        return COUNT
    return DECIMAL


def _time_formatter(column: pd.Series):
    """Dates as 2023-04-03; timestamps with a time of day to the minute."""
    values = column.dropna()
    whole_days = bool(len(values)) and bool((values == values.dt.normalize()).all())
    pattern = "%Y-%m-%d" if whole_days else "%Y-%m-%d %H:%M"
    return lambda v: "" if pd.isna(v) else v.strftime(pattern)


def _mixed(value: object) -> str:
    """A cell of a text column that may hold a number (a settings value): no exponent, no padding."""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int | float) and not pd.isna(value):
        return format_decimal(value, digits=6)
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def show(frame: pd.DataFrame, units: dict[str, str] | None = None, index: bool = False) -> Styler:
    """A table as analysts read it: every column and row, numbers written by the rules above.

    Args:
        frame: the table; its values stay as they are (numbers stay numbers).
        units: column → :data:`SHARE` / :data:`COUNT` / :data:`P_VALUE` / :data:`DECIMAL` /
            :data:`SCORE`, for columns whose header does not say it (see :func:`column_unit`).
        index: show the frame's index (a meaningful one, e.g. age bins); a 0..n index is hidden.

    Returns:
        A pandas Styler; a notebook renders it as an HTML table.
    """
    units = units or {}
    formats: dict[object, object] = {}
    for name in frame.columns:
        column = frame[name]
        unit = units.get(name) or column_unit(name, column)
        if unit is not None:
            formats[name] = _FORMATTERS[unit]
        elif pd.api.types.is_datetime64_any_dtype(column):
            formats[name] = _time_formatter(column)
        elif pd.api.types.is_bool_dtype(column):
            formats[name] = lambda v: "是" if v else "否"
        else:
            formats[name] = _mixed
    styler = frame.head(MAX_ROWS).style.format(formats, na_rep="")
    if not index:
        styler = styler.hide(axis="index")
    return styler


def setup_notebook() -> None:
    """Pandas display options for an analysts' notebook (every column, no exponents) and the CJK font.

    Call once, in the first code cell after ``parameters``.
    """
    from haocha_analysis.core.fonts import use_cjk_font

    pd.set_option("display.max_columns", None)
    pd.set_option("display.max_rows", MAX_ROWS)
    pd.set_option("display.width", None)
    pd.set_option("display.max_colwidth", 200)
    pd.set_option("display.float_format", format_decimal)
    pd.set_option("styler.render.max_elements", 2**22)
    use_cjk_font()


# --- chart axes ----------------------------------------------------------------------------------


def count_axis(ax: Axes, axis: str = "y") -> None:
    """A count axis: from zero, whole-number ticks with thousands separators."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(MaxNLocator(integer=True))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: format_count(v)))
    _from_zero(ax, axis)


def share_axis(ax: Axes, axis: str = "y", scale: float = 1.0, headroom: float = 0.02) -> None:
    """A rate axis from 0 to 100 %: values are fractions (``scale=1``) or percentages (``scale=100``).

    ``headroom`` leaves room above 100 % (a fraction of the axis) for labels beside the bars.
    """
    from matplotlib.ticker import PercentFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(PercentFormatter(scale, decimals=0))
    (ax.set_ylim if axis == "y" else ax.set_xlim)(0, scale * (1 + headroom))


def _from_zero(ax: Axes, axis: str) -> None:
    _low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    (ax.set_ylim if axis == "y" else ax.set_xlim)(0, max(high, 1))


def date_axis(ax: Axes, axis: str = "x") -> None:
    """A date axis labelled 月-日 (04-03)."""
    from matplotlib.dates import AutoDateLocator, DateFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(AutoDateLocator(maxticks=10))
    target.set_major_formatter(DateFormatter("%m-%d"))


def hour_of_day(timestamps: pd.Series) -> pd.Series:
    """Time of day in hours (9:30 → 9.5), to plot on an :func:`hour_axis`."""
    return timestamps.dt.hour + timestamps.dt.minute / 60 + timestamps.dt.second / 3600


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def hour_axis(ax: Axes, axis: str = "y", step: int = 3) -> None:
    """A time-of-day axis from 0:00 to 24:00, ticks every ``step`` hours labelled 时:分 (09:00)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(FixedLocator(list(range(0, 25, step))))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: _clock(round(v * 60))))
    (ax.set_ylim if axis == "y" else ax.set_xlim)(0, 24)
