"""How numbers are written for readers: rates as the bulletin prints them, changes, Chinese counts."""

from __future__ import annotations

import math

import pandas as pd

NOT_APPLICABLE = "/"  # a rate with a 0 denominator, or a count the source cannot give
_EPS = 1e-9


def format_rate(value: float | None) -> str:
    """A rate (fraction) as the bulletin prints it: "100%", "99.6%", "0.05%"; "/" when undefined.

    At most two decimals, trailing zeros dropped, truncated (99.996% prints 99.99%, never 100%).
    """
    if value is None or pd.isna(value):
        return NOT_APPLICABLE
    hundredths = math.floor(float(value) * 10000 + _EPS)
    whole, frac = divmod(hundredths, 100)
    return f"{whole}.{frac:02d}".rstrip("0").rstrip(".") + "%"


def format_ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` as :func:`format_rate` prints it, in exact integer arithmetic."""
    numerator, denominator = int(numerator), int(denominator)
    if denominator == 0:
        return NOT_APPLICABLE
    hundredths = numerator * 10_000 // denominator
    whole, frac = divmod(hundredths, 100)
    return f"{whole}%" if frac == 0 else f"{whole}.{frac:02d}".rstrip("0") + "%"


def format_change(value: float | None) -> str:
    """A relative change (fraction) as "+12.5%", "-3.33%", "0%"; "/" when there is no base."""
    if value is None or pd.isna(value):
        return NOT_APPLICABLE
    v = float(value)
    sign = "-" if v < 0 else ("+" if v > 0 else "")
    text = format_rate(abs(v))
    return sign + text if text != "0%" else "0%"
