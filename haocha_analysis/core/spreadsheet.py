"""Spreadsheet output for every haocha workbook: typed cells, a printable layout, no formula injection.

One module writes all of haocha's XLSX files (annex tables, quality report, anomaly list), so they
look and behave alike:

* numbers are written as numbers (counts as integers, rates as fractions with a ``0.00%`` format,
  measured values as plain decimals; never scientific notation), so Excel can sum and sort them;
* an optional merged title row, an optional two-level header (merged group cells above the column
  names), the 备注 lines under the table;
* a bold, filled, bordered header that stays in view (frozen panes), an autofilter over the table,
  column widths from the content (CJK characters count double), A4 print setup that fits the width,
  landscape when the table is wide, and the header repeated on every printed page;
* text that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a
  carriage return; OWASP "CSV injection") is prefixed with a single quote. :func:`neutralise_frame`
  does the same for CSV files.

A workbook is described by :class:`SheetSpec` objects and written by :func:`write_workbook`, atomically
(temporary file in the target folder, then ``os.replace``).
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import os
import re
import tempfile
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from copy import copy
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# --- formula injection -----------------------------------------------------------------------------

# A cell starting with one of these is a formula (or the start of one) to Excel, LibreOffice and
# Google Sheets when the text is typed or imported from CSV (OWASP, "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
# Text that is just a negative number ("-12", "-1,234.5", "-3.5%") is a number to a spreadsheet, not a
# formula: it is left as it is.
_NEGATIVE_NUMBER = re.compile(r"-(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?")


def neutralise(value: Any) -> Any:
    """Make one value safe to put in a spreadsheet cell or a CSV field.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading single
    quote (``"=1+1"`` → ``"'=1+1"``), except text that is only a negative number (``"-12.5"``).
    Anything that is not text (numbers, including negative ones, dates, missing values) is returned
    unchanged.

    Args:
        value: any cell value.

    Returns:
        The value, quoted when it is dangerous text.
    """
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_TRIGGERS)
        and not _NEGATIVE_NUMBER.fullmatch(value)
    ):
        return QUOTE + value
    return value


def neutralise_series(series: pd.Series) -> pd.Series:
    """:func:`neutralise` every text value of a Series (vectorised); other values stay as they are.

    Numeric, boolean and datetime Series are returned unchanged (same object). A categorical Series
    keeps its dtype when the quoted categories stay distinct.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = series.cat.categories
        quoted = [neutralise(c) for c in categories]
        if list(quoted) == list(categories):
            return series
        if len(set(quoted)) == len(quoted):
            return series.cat.rename_categories(quoted)
        series = series.astype(object)
    if not (pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)):
        return series
    text = series.map(lambda v: v if isinstance(v, str) else None).astype("str")
    dangerous = text.str.startswith(FORMULA_TRIGGERS).fillna(False).astype(bool) & ~text.str.fullmatch(
        _NEGATIVE_NUMBER.pattern
    ).fillna(False).astype(bool)
    if not dangerous.any():
        return series
    out = series.copy()
    out[dangerous] = QUOTE + text[dangerous]
    return out


def neutralise_frame(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """A copy of ``frame`` whose text is neutralised (see :func:`neutralise`); for CSV writers.

    The column names are neutralised too: a CSV header is a row like any other (附件3's columns are
    district names from the reference data).

    Args:
        frame: the table to write.
        columns: only these columns' values (default: every object, string or categorical column).

    Returns:
        A new DataFrame; ``frame`` is not modified.
    """
    out = frame.copy()
    for col in out.columns if columns is None else columns:
        out[col] = neutralise_series(out[col])
    out.columns = [neutralise(c) for c in out.columns]
    return out


# --- the sheet description --------------------------------------------------------------------------

PERCENT_FORMAT = "0.00%"
WHOLE_PERCENT_FORMAT = "0%"
CHANGE_FORMAT = "+0.00%;-0.00%;0.00%"  # a signed relative change: +12.50%, -3.33%, 0.00%
INTEGER_FORMAT = "#,##0"
PLAIN_INTEGER_FORMAT = "0"
FLOAT_FORMAT = "0.00"
MEASURE_FORMAT = "#,##0.00##"  # a measured value: two to four decimals, never scientific notation
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
TEXT_FORMAT = "General"
MISSING = "/"  # the bulletin's mark for "not applicable" (a rate with a 0 denominator)
WIDE = 8  # more columns than this: landscape
PAPER_A4 = "9"  # the OOXML paper size code of A4
EXCEL_MAX_TEXT = 32767
_SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


@dataclass
class SheetSpec:
    """One worksheet: a table of typed values with its title, header, formats and notes.

    Column kinds, in order of precedence: ``number_formats`` (any Excel format), ``percent_columns``
    (fractions, ``0.00%``), ``integer_columns`` (``#,##0``), ``float_columns`` (``0.00``); other columns
    follow their dtype (integer → ``#,##0``, float → ``0.00``, datetime → date or date-time, anything
    else → text). A value that is already text (e.g. a ``"/"`` the caller put there) is written as text
    in any column.

    Attributes:
        name: sheet name (at most 31 characters, none of ``[ ] : * ? /`` and no backslash).
        frame: the table; column names are the header. Typed values: ints, floats (rates as
            fractions 0..1), strings, dates; ``NaN``/``NA``/``None`` are missing.
        title: a merged, bold title row above the table.
        notes: lines under the table (备注), one merged row each.
        header_groups: a two-level header: either one ``(group, label)`` pair per column, in column
            order (``label`` is printed in the second header row, consecutive equal groups are merged
            into one cell above; ``group=None`` gives a cell spanning both rows with ``label``), or a
            mapping column → group (labels are the column names; unmapped columns span both rows).
        percent_columns: columns of fractions shown as percentages.
        integer_columns: columns of counts.
        float_columns: columns of measured values (plain decimals).
        number_formats: column → Excel number format; overrides the kinds above.
        slash_columns: columns whose missing values are written as the text ``"/"`` (not applicable)
            rather than left empty; ``True`` for every non-text column.
        total_rows: positions (0-based, in ``frame``) of summary rows: bold, and missing values there
            stay empty even in ``slash_columns`` (the bulletin's 汇总/总数 rows).
        landscape: page orientation; ``None`` picks landscape for more than :data:`WIDE` columns.
        freeze_columns: also keep this many leading columns in view when scrolling right.
    """

    name: str
    frame: pd.DataFrame
    title: str | None = None
    notes: Sequence[str] = ()
    header_groups: Sequence[tuple[str | None, str]] | Mapping[str, str | None] | None = None
    percent_columns: Collection[str] = ()
    integer_columns: Collection[str] = ()
    float_columns: Collection[str] = ()
    number_formats: Mapping[str, str] = field(default_factory=dict)
    slash_columns: Collection[str] | bool = ()
    total_rows: Collection[int] = ()
    landscape: bool | None = None
    freeze_columns: int = 0

    def __post_init__(self) -> None:
        """Reject names Excel refuses and columns the frame lacks (a typo would lose a format)."""
        if not self.name or len(self.name) > 31 or _SHEET_NAME_FORBIDDEN.search(self.name):
            raise ValueError(f"invalid sheet name {self.name!r}: 1–31 characters, none of []:*?/\\")
        if len(self.frame.columns) == 0:
            raise ValueError(f"sheet {self.name!r}: the table has no column")
        self.frame = self.frame.set_axis([str(c) for c in self.frame.columns], axis=1)
        if isinstance(self.notes, str):
            self.notes = [self.notes]
        columns = [str(c) for c in self.frame.columns]
        if len(set(columns)) != len(columns):
            raise ValueError(f"sheet {self.name!r}: repeated column names")
        named = [
            *self.percent_columns,
            *self.integer_columns,
            *self.float_columns,
            *self.number_formats,
            *(self.slash_columns if not isinstance(self.slash_columns, bool) else ()),
            *(self.header_groups if isinstance(self.header_groups, Mapping) else ()),
        ]
        unknown = sorted({str(c) for c in named} - set(columns))
        if unknown:
            raise ValueError(f"sheet {self.name!r}: no such column(s): {', '.join(unknown)}")
        if self.header_groups is not None and not isinstance(self.header_groups, Mapping):
            if len(self.header_groups) != len(columns):
                raise ValueError(
                    f"sheet {self.name!r}: header_groups has {len(self.header_groups)} entries "
                    f"for {len(columns)} columns"
                )
        bad_rows = [r for r in self.total_rows if not 0 <= r < len(self.frame)]
        if bad_rows:
            raise ValueError(f"sheet {self.name!r}: total_rows out of range: {bad_rows}")

    # -- derived layout --

    @property
    def columns(self) -> list[str]:
        """Column names as text."""
        return [str(c) for c in self.frame.columns]

    def header_cells(self) -> list[tuple[str | None, str]]:
        """``(group, label)`` per column; all groups ``None`` for a one-row header."""
        if self.header_groups is None:
            return [(None, c) for c in self.columns]
        if isinstance(self.header_groups, Mapping):
            groups = {str(k): v for k, v in self.header_groups.items()}
            return [(groups.get(c), c) for c in self.columns]
        return [(g, str(label)) for g, label in self.header_groups]

    @property
    def header_rows(self) -> int:
        """1, or 2 with a two-level header."""
        return 2 if any(g is not None for g, _ in self.header_cells()) else 1

    def number_format(self, column: str) -> str | None:
        """The Excel number format of a column; ``None`` for a text column."""
        if column in self.number_formats:
            return self.number_formats[column]
        if column in self.percent_columns:
            return PERCENT_FORMAT
        if column in self.integer_columns:
            return INTEGER_FORMAT
        if column in self.float_columns:
            return FLOAT_FORMAT
        dtype = self.frame[column].dtype
        if pd.api.types.is_bool_dtype(dtype):
            return TEXT_FORMAT
        if pd.api.types.is_integer_dtype(dtype):
            return INTEGER_FORMAT
        if pd.api.types.is_float_dtype(dtype):
            return FLOAT_FORMAT
        if pd.api.types.is_datetime64_any_dtype(dtype):
            times = pd.Series(self.frame[column]).dropna()
            return DATE_FORMAT if (times == times.dt.normalize()).all() else DATETIME_FORMAT
        return None

    def slashes(self, column: str) -> bool:
        """Whether missing values of ``column`` are written as "/"."""
        if isinstance(self.slash_columns, bool):
            return self.slash_columns and self.number_format(column) is not None
        return column in self.slash_columns


def groups_by_prefix(columns: Sequence[str], groups: Mapping[str, str]) -> list[tuple[str | None, str]]:
    """Two-level header cells from column-name prefixes, as the bulletin prints 附件4.

    ``groups_by_prefix(["序号", "镇级评价总数"], {"镇级": "镇 级"})`` gives
    ``[(None, "序号"), ("镇 级", "评价总数")]``.

    Args:
        columns: the column names.
        groups: name prefix → group label printed above the columns that start with it.

    Returns:
        One ``(group, label)`` pair per column for :attr:`SheetSpec.header_groups`.
    """
    cells: list[tuple[str | None, str]] = []
    for col in map(str, columns):
        prefix = next((p for p in groups if col.startswith(p) and len(col) > len(p)), None)
        cells.append((None, col) if prefix is None else (groups[prefix], col[len(prefix) :]))
    return cells


def truncate_fraction(value: Any, decimals: int = 4, eps: float = 1e-9) -> float | None:
    """A fraction truncated (toward zero) to ``decimals`` places: 0.99996 → 0.9999 (99.99%).

    The bulletin truncates rates, never rounding 99.996% up to 100%; storing the truncated fraction
    makes a ``0.00%`` cell show the figure the printed table shows. ``eps`` absorbs binary noise
    (0.29 * 100 is 28.999999999999996). Missing values give ``None``.
    """
    if value is None or pd.isna(value):
        return None
    v = float(value)
    if not math.isfinite(v):
        return None
    scale = 10**decimals
    out = math.floor(abs(v) * scale + eps) / scale
    return math.copysign(out, v) if out else 0.0


# --- widths ------------------------------------------------------------------------------------------

_WIDE_CHARS = re.compile(
    "[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf"
    "\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]"
)
MIN_WIDTH, MAX_WIDTH, PADDING = 6, 50, 2


def display_width(text: str) -> int:
    """Width of text in character cells: East Asian wide and full-width characters count double."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in str(text))


def _text_width(values: pd.Series) -> int:
    text = values.dropna().astype("str")
    if text.empty:
        return 0
    longest = text.str.len() + text.str.count(_WIDE_CHARS.pattern)
    return int(longest.max())


def _strings_width(texts: list[str]) -> int:
    """:func:`_text_width` of Python strings, without a pandas call per column (a workbook has hundreds)."""
    return max((len(text) + len(_WIDE_CHARS.findall(text)) for text in texts), default=0)


def _number_width(values: pd.Series, number_format: str) -> int:
    numbers_ = pd.to_numeric(values, errors="coerce").dropna()
    numbers_ = numbers_[np.isfinite(numbers_.astype("float64"))]
    if numbers_.empty:
        return 1
    if "yy" in number_format:
        return len(number_format)
    biggest = float(numbers_.abs().max())
    if "%" in number_format:
        biggest *= 100
    digits = len(f"{int(biggest):,}" if "," in number_format else str(int(biggest)))
    decimals = len(number_format.split(";")[0].split(".")[1].rstrip("%")) if "." in number_format else 0
    return digits + (decimals + 1 if decimals else 0) + ("%" in number_format) + 1


def _column_widths(spec: SheetSpec) -> list[float]:
    widths = []
    for (_, label), col in zip(spec.header_cells(), spec.columns, strict=True):
        values = spec.frame[col]
        fmt = spec.number_format(col)
        items = values.tolist()
        is_text = np.fromiter((isinstance(v, str) for v in items), dtype=bool, count=len(items))
        content = _strings_width([v for v, text in zip(items, is_text, strict=True) if text])
        if fmt is not None and fmt != TEXT_FORMAT:
            content = max(content, _number_width(values[~is_text], fmt))
        elif not is_text.all():
            content = max(content, _text_width(values[~is_text]))
        widths.append(float(min(max(content, display_width(label), MIN_WIDTH) + PADDING, MAX_WIDTH)))
    # A group label spanning several columns fits in their total width.
    cells = spec.header_cells()
    i = 0
    while i < len(cells):
        group, j = cells[i][0], i + 1
        while group is not None and j < len(cells) and cells[j][0] == group:
            j += 1
        if group is not None:
            short = display_width(group) + PADDING - sum(widths[i:j])
            if short > 0:
                for k in range(i, j):
                    widths[k] += math.ceil(short / (j - i))
        i = j
    return widths


# --- cell values -------------------------------------------------------------------------------------


# Control characters an XML file cannot hold (openpyxl refuses them); tab, LF and CR are allowed.
_ILLEGAL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _clean_text(text: str) -> str:
    text = _ILLEGAL_CHARACTERS.sub("", text)
    if len(text) > EXCEL_MAX_TEXT:
        text = text[: EXCEL_MAX_TEXT - 1] + "…"
    return neutralise(text)


def cell_value(value: Any) -> Any:
    """A pandas or numpy value as openpyxl takes it: Python numbers, naive datetimes, safe text, or None.

    Non-finite floats (inf) have no spreadsheet form and are treated as missing.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real | Decimal):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, pd.Timestamp | dt.datetime):
        ts = pd.Timestamp(value)
        if ts.tzinfo is not None:
            ts = ts.tz_localize(None)  # Excel has no time zones: keep the local clock reading
        return ts.to_pydatetime()
    if isinstance(value, dt.date | dt.time):
        return value
    if isinstance(value, pd.Timedelta | dt.timedelta):
        return pd.Timedelta(value).to_pytimedelta()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).to_pydatetime()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return _clean_text(str(value))


# --- writing -----------------------------------------------------------------------------------------

HEADER_FILL = "1F4E79"
HEADER_FONT_COLOR = "FFFFFF"
BORDER_COLOR = "999999"
TITLE_SIZE = 14
LINE_HEIGHT = 15  # points per line of 11-point text


class _Styles:
    """The handful of cell styles a sheet uses, built once per workbook."""

    def __init__(self) -> None:
        from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

        thin = Side(style="thin", color=BORDER_COLOR)
        self.border = Border(left=thin, right=thin, top=thin, bottom=thin)
        self.header_font = Font(bold=True, color=HEADER_FONT_COLOR)
        self.header_fill = PatternFill("solid", fgColor=HEADER_FILL)
        self.header_align = Alignment(horizontal="center", vertical="center", wrap_text=True)
        self.title_font = Font(bold=True, size=TITLE_SIZE)
        self.title_align = Alignment(horizontal="center", vertical="center", wrap_text=True)
        self.note_align = Alignment(horizontal="left", vertical="top", wrap_text=True)
        self.bold = Font(bold=True)
        self.text_align = Alignment(horizontal="left", vertical="center")
        self.wrap_align = Alignment(horizontal="left", vertical="center", wrap_text=True)
        self.number_align = Alignment(horizontal="right", vertical="center")
        # Cell style arrays by the styles set, found once: openpyxl hashes every style on assignment.
        self.arrays: dict[tuple, Any] = {}


def _cell(ws: Any, value: Any, styles: _Styles, **style: Any) -> Any:
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(ws, value=value)
    key = tuple((name, id(setting)) for name, setting in style.items())  # settings: ``styles``' own
    array = styles.arrays.get(key)
    if array is None:
        for name, setting in style.items():
            setattr(cell, name, setting)
        styles.arrays[key] = copy(cell._style)
    else:
        cell._style = copy(array)
    if cell.data_type == "f":  # defence in depth: every text went through neutralise
        raise AssertionError(f"formula in a cell: {value!r}")
    return cell


def _header(ws: Any, spec: SheetSpec, first_row: int, styles: _Styles) -> None:
    from openpyxl.utils import get_column_letter

    cells = spec.header_cells()
    style = {"font": styles.header_font, "fill": styles.header_fill, "border": styles.border}
    style["alignment"] = styles.header_align
    if spec.header_rows == 1:
        ws.append([_cell(ws, cell_value(label), styles, **style) for _, label in cells])
        return
    top, bottom = [], []
    i = 0
    while i < len(cells):
        group, label = cells[i]
        letter = get_column_letter(i + 1)
        if group is None:
            top.append(_cell(ws, cell_value(label), styles, **style))
            bottom.append(_cell(ws, None, styles, **style))
            ws.merged_cells.add(f"{letter}{first_row}:{letter}{first_row + 1}")
            i += 1
            continue
        j = i
        while j < len(cells) and cells[j][0] == group:
            top.append(_cell(ws, cell_value(group) if j == i else None, styles, **style))
            bottom.append(_cell(ws, cell_value(cells[j][1]), styles, **style))
            j += 1
        if j - i > 1:
            ws.merged_cells.add(f"{letter}{first_row}:{get_column_letter(j)}{first_row}")
        i = j
    ws.append(top)
    ws.append(bottom)


def _data_rows(ws: Any, spec: SheetSpec, widths: list[float], styles: _Styles) -> Iterable[list[Any]]:
    from openpyxl.cell import WriteOnlyCell

    columns = spec.columns
    formats = [spec.number_format(c) for c in columns]
    slashes = [spec.slashes(c) for c in columns]
    totals = set(spec.total_rows)
    # One prototype cell per column and row kind; data cells copy its style (fast, and identical).
    prototypes: dict[tuple[int, bool, str], Any] = {}

    def styled(col: int, total: bool, kind: str, value: Any) -> Any:
        key = (col, total, kind)
        proto = prototypes.get(key)
        if proto is None:
            proto = WriteOnlyCell(ws)
            proto.border = styles.border
            if total:
                proto.font = styles.bold
            fmt = formats[col]
            if kind.startswith("number:"):
                proto.number_format = kind.removeprefix("number:")
                proto.alignment = styles.number_align
            elif kind == "text" and fmt is not None and fmt != TEXT_FORMAT:
                proto.alignment = styles.number_align  # "/" in a number column lines up with numbers
            else:
                proto.alignment = styles.wrap_align if widths[col] >= MAX_WIDTH else styles.text_align
            prototypes[key] = proto
        cell = WriteOnlyCell(ws, value=value)
        cell._style = proto._style  # shared StyleArray: cells are written and dropped at once
        return cell

    for position, row in enumerate(spec.frame.itertuples(index=False, name=None)):
        total = position in totals
        cells = []
        for col, raw in enumerate(row):
            value = cell_value(raw)
            if value is None:
                value = MISSING if slashes[col] and not total else None
            if isinstance(value, str):
                kind = "text"
            elif value is None:
                kind = "empty"
            elif isinstance(value, bool):
                kind = "bool"
            elif formats[col] not in (None, TEXT_FORMAT):
                kind = f"number:{formats[col]}"
            else:  # a typed value in a text column: a format of its own type
                kind = f"number:{_fallback_format(value)}"
            cells.append(styled(col, total, kind, value))
        yield cells


def _fallback_format(value: Any) -> str:
    """The format of a typed value found in a text column (never General: no scientific notation)."""
    if isinstance(value, int):
        return INTEGER_FORMAT
    if isinstance(value, float):
        return FLOAT_FORMAT
    if isinstance(value, dt.datetime):
        return DATETIME_FORMAT
    if isinstance(value, dt.date):
        return DATE_FORMAT
    if isinstance(value, dt.time):
        return "hh:mm:ss"
    if isinstance(value, dt.timedelta):
        return "[h]:mm:ss"
    return TEXT_FORMAT


def _note_height(text: str, width: float) -> float:
    lines = sum(max(1, math.ceil(display_width(part) / max(width - 1, 1))) for part in text.split("\n"))
    return LINE_HEIGHT * lines


def _write_sheet(wb: Any, spec: SheetSpec, styles: _Styles) -> None:
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.properties import PageSetupProperties

    ws = wb.create_sheet(spec.name)
    n_cols = len(spec.columns)
    last = get_column_letter(n_cols)
    widths = _column_widths(spec)
    total_width = sum(widths)
    # The layout is known before the first row: a write-only sheet writes its columns, view (frozen
    # panes) and properties (fit to page) when the first row arrives.
    header_first = 2 if spec.title else 1
    header_last = header_first + spec.header_rows - 1
    data_last = header_last + len(spec.frame)
    notes_first = data_last + 2  # one blank row keeps the notes out of the table's region
    last_row = notes_first + len(spec.notes) - 1 if spec.notes else data_last

    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    first_scrolling = get_column_letter(spec.freeze_columns + 1)
    ws.freeze_panes = f"{first_scrolling}{header_last + 1}"
    ws.auto_filter.ref = f"A{header_last}:{last}{data_last}"
    ws.print_title_rows = f"{header_first}:{header_last}"
    ws.print_area = f"A1:{last}{last_row}"
    landscape = spec.landscape if spec.landscape is not None else n_cols > WIDE
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.paperSize = PAPER_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0  # as many pages tall as needed
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.5
    ws.page_margins.top = ws.page_margins.bottom = 0.6

    if spec.title:
        ws.row_dimensions[1].height = max(28, _note_height(spec.title, total_width / 1.3) * 1.3 + 6)
        title = _cell(
            ws, cell_value(spec.title), styles, font=styles.title_font, alignment=styles.title_align
        )
        ws.append([title])
        if n_cols > 1:
            ws.merged_cells.add(f"A1:{last}1")
    _header(ws, spec, header_first, styles)
    for cells in _data_rows(ws, spec, widths, styles):
        ws.append(cells)
    if spec.notes:
        ws.append([])
        for row, note in enumerate(spec.notes, start=notes_first):
            ws.row_dimensions[row].height = _note_height(str(note), total_width)
            ws.append([_cell(ws, cell_value(str(note)), styles, alignment=styles.note_align)])
            if n_cols > 1:
                ws.merged_cells.add(f"A{row}:{last}{row}")


def write_workbook(path: Path | str, sheets: Sequence[SheetSpec], mode: int = 0o644) -> Path:
    """Write the sheets to one XLSX file, atomically.

    The workbook is written to a temporary file in the target folder and renamed into place, so a
    reader never sees a half-written file and a failure leaves the previous file untouched.

    Args:
        path: the target ``.xlsx`` file; its folder must exist.
        sheets: the sheets, in order (at least one, distinct names).
        mode: permissions of the written file (the temporary file is created 0600).

    Returns:
        The path written.

    Raises:
        ValueError: no sheet, or two sheets with the same name (Excel compares names ignoring case).
    """
    from openpyxl import Workbook

    if not sheets:
        raise ValueError("a workbook needs at least one sheet")
    names = [s.name.casefold() for s in sheets]
    if len(set(names)) != len(names):
        raise ValueError(f"repeated sheet names: {[s.name for s in sheets]}")
    path = Path(path)
    wb = Workbook(write_only=True)
    wb.properties.creator = "haocha"
    styles = _Styles()
    for spec in sheets:
        _write_sheet(wb, spec, styles)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".xlsx", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        wb.save(tmp)
        tmp.chmod(mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


__all__ = [
    "CHANGE_FORMAT",
    "FLOAT_FORMAT",
    "FORMULA_TRIGGERS",
    "INTEGER_FORMAT",
    "MEASURE_FORMAT",
    "MISSING",
    "PERCENT_FORMAT",
    "PLAIN_INTEGER_FORMAT",
    "WHOLE_PERCENT_FORMAT",
    "SheetSpec",
    "cell_value",
    "display_width",
    "groups_by_prefix",
    "neutralise",
    "neutralise_frame",
    "neutralise_series",
    "truncate_fraction",
    "write_workbook",
]


# A printed rate ("99.91%", "100%") or "/" (not applicable): what the bulletin's tables show.
_RATE_TEXT = r"\d+(?:\.\d+)?%"


def printed_rates_as_fractions(
    frame: pd.DataFrame, suffixes: tuple[str, ...] = ("率", "比")
) -> tuple[pd.DataFrame, list[str]]:
    """Columns of printed rates (named ``…率``/``…比``, every cell a rate or "/") back as fractions.

    The printed figure is kept exactly (a truncated "99.99%" is 0.9999); "/" becomes missing, which a
    sheet writes as "/" when the column is in ``slash_columns``. Dates printed as YYYY-MM-DD in a
    column named 日期 become dates.

    Returns:
        The converted copy and the names of the rate columns.
    """
    out, rates = frame.copy(), []
    for col in frame.columns:
        values = frame[col]
        if not len(values) or not (
            pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)
        ):
            continue
        text = values.astype("str")
        if str(col).endswith(suffixes) and text.str.fullmatch(f"{_RATE_TEXT}|/").all():
            percent = pd.to_numeric(text.str.removesuffix("%"), errors="coerce")  # "/" → NaN
            out[col] = (percent / 100).where(text.str.fullmatch(_RATE_TEXT))
            rates.append(str(col))
        elif col == "日期":
            out[col] = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    return out, rates
