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


def _examples(values: Iterable[Any], n: int = 5) -> str:
    seen = list(dict.fromkeys(str(v) for v in values))
    more = "…" if len(seen) > n else ""
    return "、".join(f"“{v}”" for v in seen[:n]) + more


def parse_timestamps(series: pd.Series, formats: Sequence[str]) -> tuple[pd.Series, np.ndarray]:
    """Parse local timestamps: the given formats in order, then Excel serial dates.

    Typed timestamps (Parquet) are kept; time-zone-aware ones are converted to Asia/Shanghai local
    time. Returns the parsed column (``datetime64[us]``) and the positions of non-empty values that no
    format parses.
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None).astype("datetime64[us]"), np.array(
            [], int
        )
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series.astype("datetime64[us]"), np.array([], dtype=int)
    out = np.full(len(series), np.datetime64("NaT"), dtype="datetime64[us]")
    if pd.api.types.is_numeric_dtype(series.dtype):
        text = series.astype("Float64").astype("str")
    else:
        text = _text(series)
    todo = text.notna().to_numpy(dtype=bool).copy()
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
    return pd.Series(out, index=series.index), np.flatnonzero(todo)
