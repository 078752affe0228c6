"""Value helpers, vectorised: Python runs once per distinct value, never per row."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from haocha_analysis.ingest.labels import EXCEL_EPOCH, EXCEL_SERIAL_MAX, EXCEL_SERIAL_MIN, LOG_MAX_ROWS
from haocha_analysis.ingest.profiles import (
    LOCAL_TIMEZONE,
)

# --- value helpers (vectorized: Python runs once per distinct value, never per row) ---------------


def _text(series: pd.Series) -> pd.Series:
    """A column as stripped strings; empty cells are missing."""
    if pd.api.types.is_float_dtype(series.dtype):
        whole = series.dropna()
        if len(whole) and (whole == whole.round()).all():
            series = series.astype("Int64")
    text = series if str(series.dtype) == "str" else series.astype("str")
    text = text.str.strip()
    return text.mask(text == "")


def _norm(value: Any) -> str:
    """One distinct code value as text: 5, 5.0, '5', '５ ' all become '5'."""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    text = unicodedata.normalize("NFKC", str(value)).strip()
    if m := re.fullmatch(r"(\d+)\.0+", text):
        return m[1]
    return text


def _map_distinct(series: pd.Series, convert: Callable[[str], Any]) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``convert`` to each distinct value; return the mapped values and the codes (-1 = missing)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    mapped = np.empty(len(uniques) + 1, dtype=object)
    mapped[:-1] = [convert(_norm(u)) for u in uniques]
    mapped[-1] = None
    return mapped[codes], codes


def _first_rows(rows: np.ndarray) -> list[int]:
    return [int(r) for r in rows[:LOG_MAX_ROWS]]


_SHAPE_MAX = 24
_SHAPE = str.maketrans(
    {
        **{str(d): "9" for d in range(10)},
        **{chr(c): "x" for c in range(97, 123)},
        **{chr(c): "X" for c in range(65, 91)},
    }
)


def value_shape(value: Any) -> str:
    """What a value looks like, never the value: digits become 9 and Latin letters x/X.

    ``2023年4月1日`` → ``9999年9月9日``; an identity or phone number keeps only its length. Messages
    show shapes so a user sees the form to fix while no number of a person is ever printed.
    """
    text = unicodedata.normalize("NFKC", str(value)).translate(_SHAPE)
    return text if len(text) <= _SHAPE_MAX else text[:_SHAPE_MAX] + "…"


def _examples(values: Iterable[Any], n: int = 5) -> str:
    """Up to ``n`` distinct value shapes (:func:`value_shape`), quoted, for a message."""
    seen = list(dict.fromkeys(value_shape(v) for v in values))
    more = "…" if len(seen) > n else ""
    return "形如" + "、".join(f"“{v}”" for v in seen[:n]) + more + "（数字以 9、字母以 x 表示）"


# Key columns: the same id written with full-width characters, padding or invisible characters is
# the same id (NFKC, trimmed, zero-width characters removed).
_INVISIBLE = r"[\u200b-\u200f\u2060\ufeff]"
# A key that Excel turned into a floating-point number: 1.64479E+18 (the trailing digits are lost).
EXCEL_SCIENTIFIC = r"^[+-]?\d(?:\.\d+)?[eE][+-]?\d+$"


def normalize_keys(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Normalise key values (NFKC, invisible characters removed, trimmed).

    Returns the normalised column and a mask of the values that changed.
    """
    text = values if str(values.dtype) == "str" else values.astype("str")
    out = text.str.normalize("NFKC").str.replace(_INVISIBLE, "", regex=True).str.strip()
    out = out.mask(out == "")
    changed = (out.fillna("\0") != text.fillna("\0")).to_numpy(dtype=bool)
    return out, changed


def excel_scientific(values: pd.Series) -> np.ndarray:
    """Mask of values written in Excel's scientific notation (an id whose last digits are lost)."""
    return values.str.fullmatch(EXCEL_SCIENTIFIC).fillna(False).to_numpy(dtype=bool)


# An ISO 8601 time with a zone: ...+08:00, ...+0800, ...Z.
_ZONED = r"\d[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d{2}:?\d{2})$"


def parse_timestamps(series: pd.Series, formats: Sequence[str]) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse timestamps into Beijing wall time (Asia/Shanghai, naive).

    Typed timestamps (Parquet) are kept, time-zone-aware ones converted. Text with a zone (``+08:00``,
    ``Z``, mixed in one column) is converted to Beijing time; other text is tried with the given
    formats in order, then as Excel serial dates.

    Returns:
        The parsed column (``datetime64[us]``), the positions of non-empty values that nothing
        parses, and the positions of values converted from another zone (UTC ``Z``, ``+00:00`` …).
    """
    none = np.array([], dtype=int)
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        local = series.dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None).astype("datetime64[us]")
        return local, none, none
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series.astype("datetime64[us]"), none, none
    out = np.full(len(series), np.datetime64("NaT"), dtype="datetime64[us]")
    if pd.api.types.is_numeric_dtype(series.dtype):
        text = series.astype("Float64").astype("str")
    else:
        text = _text(series)
    todo = text.notna().to_numpy(dtype=bool).copy()
    shifted = none
    zoned = text.str.contains(_ZONED, regex=True).fillna(False).to_numpy(dtype=bool) & todo
    if zoned.any():
        positions = np.flatnonzero(zoned)
        parsed = pd.to_datetime(text.iloc[positions], utc=True, format="ISO8601", errors="coerce")
        ok = parsed.notna().to_numpy(dtype=bool)
        local = parsed[ok].dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None)
        out[positions[ok]] = local.to_numpy().astype("datetime64[us]")
        todo[positions[ok]] = False
        beijing = text.iloc[positions[ok]].str.contains(r"\+08:?00$", regex=True).to_numpy(dtype=bool)
        shifted = positions[ok][~beijing]
    for fmt in formats:
        if not todo.any():
            break
        positions = np.flatnonzero(todo)
        parsed = pd.to_datetime(text.iloc[positions], format=fmt, errors="coerce")
        ok = parsed.notna().to_numpy(dtype=bool)
        if ok.any():
            out[positions[ok]] = parsed[ok].to_numpy().astype("datetime64[us]")
            todo[positions[ok]] = False
    if todo.any():
        positions = np.flatnonzero(todo)
        serial = pd.to_numeric(text.iloc[positions], errors="coerce")
        ok = serial.between(EXCEL_SERIAL_MIN, EXCEL_SERIAL_MAX).to_numpy(dtype=bool)
        if ok.any():
            stamps = EXCEL_EPOCH + pd.to_timedelta(serial[ok].astype("float64"), unit="D")
            out[positions[ok]] = stamps.dt.round("s").to_numpy().astype("datetime64[us]")
            todo[positions[ok]] = False
    return pd.Series(out, index=series.index), np.flatnonzero(todo), shifted
