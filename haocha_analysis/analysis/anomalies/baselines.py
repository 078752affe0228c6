"""What a unit is compared with: its own history and its peers, and the sentence that says so.

Every finding states its baseline in Chinese (the ``baseline`` column), e.g. "本单位前4期中位数 58.0%；
同类中位数 45.0%". The unit's own level (:func:`own_baseline`) is the median of its usable earlier
periods, except that a drop already confirmed in the previous period is accepted as the new normal
(the previous period's level is the baseline), and, for volumes, the same period a year earlier
counts too (season). :func:`change_sigma` measures how much units naturally move between periods,
so that "far below its own past" is judged against real drift, not against a guess.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from haocha_analysis.analysis.anomalies.features import Context
from haocha_analysis.core.periods import parse_period


def fmt_pct(x: float) -> str:
    """A share as Chinese text reads it (one decimal), '/' when undefined."""
    return "/" if x is None or not np.isfinite(x) else f"{x:.1%}"


def fmt_num(x: float) -> str:
    """A count or rate with thousands separators (one decimal below 100)."""
    if x is None or not np.isfinite(x):
        return "/"
    return f"{x:,.1f}" if abs(x) < 100 and not float(x).is_integer() else f"{x:,.0f}"


def history_frame(ctx: Context, value: Callable[[pd.DataFrame], pd.Series]) -> pd.DataFrame:
    """One column per history period (oldest first) of ``value(per-unit counts)``."""
    labels = sorted(ctx.history, key=lambda label: parse_period(label).start)
    if not labels:
        return pd.DataFrame(index=ctx.stats.index)
    return pd.concat({label: value(ctx.history[label]) for label in labels}, axis=1)


def own_baseline(
    ctx: Context,
    values: pd.DataFrame,
    usable: pd.DataFrame,
    season: bool = False,
    log_var: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The unit's own level from earlier periods (one row per unit).

    * ``median``: the median of the usable history values;
    * a confirmed level shift: when the previous period is below ``history_shift_factor`` × the
      median of the older usable periods, the previous period's level is the new normal;
    * with ``season``, the same period a year earlier also counts: it is taken when it is lower
      beyond its own sampling noise (``log_var``, the variance of the log of each period's value:
      z < −``history_new_drop_z``), so a unit with its own seasonal low is not flagged for it and a
      year-earlier value that is merely noisy does not lower the bar.

    Columns: base (NaN when fewer than ``history_min_periods`` usable periods), periods (usable count),
    median, previous, older, year, shifted (bool), seasonal (bool: the year-earlier value was taken).
    """
    s = ctx.settings
    v = values.where(usable) if len(values.columns) else values
    n = v.count(axis=1) if len(v.columns) else pd.Series(0, index=values.index)
    median = v.median(axis=1) if len(v.columns) else pd.Series(np.nan, index=values.index)
    prev_label = ctx.previous_label
    nan = pd.Series(np.nan, index=values.index)
    previous = v[prev_label] if prev_label in v else nan
    older_cols = [c for c in v.columns if c != prev_label]
    older = v[older_cols].median(axis=1) if older_cols else nan
    shifted = (previous < s.history_shift_factor * older).fillna(False)
    base = median.where(~shifted, previous)
    year = v[ctx.year_label] if season and ctx.year_label in v else nan
    seasonal = year < base
    if log_var is not None and ctx.year_label in log_var:
        z = (np.log(year.where(year > 0)) - np.log(base.where(base > 0))) / np.sqrt(log_var[ctx.year_label])
        seasonal &= z < -ctx.settings.history_new_drop_z
    seasonal = seasonal.fillna(False)
    base = base.where(~seasonal, year)
    enough = n >= s.history_min_periods
    return pd.DataFrame(
        {
            "base": base.where(enough),
            "periods": n,
            "median": median,
            "previous": previous,
            "older": older,
            "year": year,
            "shifted": shifted & enough,
            "seasonal": seasonal & enough,
            "pooled": False,
        }
    )


def with_pooled(
    ctx: Context, own: pd.DataFrame, k: pd.DataFrame, n: pd.DataFrame, min_n: float
) -> pd.DataFrame:
    """A small unit's own level from its pooled past, where no single period was large enough.

    Where ``own`` has no base, the ratio Σk/Σn over the earlier periods with any record counts, when
    there are at least ``history_min_periods`` of them and Σn ≥ ``min_n`` (a village's four quarters of
    25 evaluations are its history too). Column ``pooled`` marks those units.
    """
    if not len(k.columns):
        return own
    active = n > 0
    periods = active.sum(axis=1)
    total_n = n.where(active).sum(axis=1)
    pooled = k.where(active).sum(axis=1) / total_n.where(total_n > 0)
    use = own["base"].isna() & (periods >= ctx.settings.history_min_periods) & (total_n >= min_n)
    out = own.copy()
    out.loc[use, "base"] = pooled[use]
    out.loc[use, "median"] = pooled[use]
    out.loc[use, "periods"] = periods[use]
    out["pooled"] = use
    return out


def own_ratio_baseline(ctx: Context, k_col: str, n_col: str, min_n: float) -> pd.DataFrame:
    """:func:`own_baseline` of the ratio k/n of two history counts (periods with n ≥ ``min_n``).

    With a small unit's pooled past where no period was large enough (:func:`with_pooled`).
    """
    k = history_frame(ctx, lambda h: h[k_col])
    n = history_frame(ctx, lambda h: h[n_col])
    own = own_baseline(ctx, k / n.where(n > 0), n >= min_n)
    return with_pooled(ctx, own, k, n, min_n)


def change_sigma(ctx: Context, log_ratio: pd.Series, eligible: pd.Series) -> float:
    """How much units naturally move between periods: 1.4826·MAD of log(now / own baseline).

    Over the eligible units of the whole city (robust: the few anomalous units do not move it),
    floored at ``log_share_sigma_floor``. Used as "far below its own past" = a log drop beyond
    ``robust_z`` of these.
    """
    x = log_ratio[eligible.fillna(False)].replace([np.inf, -np.inf], np.nan).dropna()
    floor = ctx.settings.log_share_sigma_floor
    if len(x) < ctx.settings.peer_min_units:
        return floor
    return max(floor, float(1.4826 * (x - x.median()).abs().median()))


# The variance of a median of a few periods is about π/2 times that of their mean.
MEDIAN_VARIANCE_FACTOR = np.pi / 2


def base_variance(support: pd.Series, p: pd.Series | None = None) -> pd.Series:
    """Sampling variance of an own baseline from ``support`` earlier records (its median, or pooled).

    For the log of counts: π/2 / Σcounts; for the logit of a share at level ``p``: π/2 / (Σn·p·(1 − p)).
    Small units' pasts are uncertain too, not only their present. NaN where there is no support.
    """
    scale = 1.0 if p is None else p * (1 - p)
    return MEDIAN_VARIANCE_FACTOR / (support * scale).where(support > 0)


def drop_z(
    now: pd.Series,
    base: pd.Series,
    sampling_var: pd.Series,
    sigma: float,
    settings,
    base_var: pd.Series | float = 0.0,
) -> tuple[pd.Series, pd.Series]:
    """How far below its own level a unit is, on a scale where units drift alike (log or logit).

    The spread is the natural drift between periods (``sigma``, :func:`change_sigma`, on the same
    scale), the sampling noise of the current value (``sampling_var``: 1/k for the log of a count,
    1/(n·p·(1 − p)) for the logit of a share) and that of the baseline (``base_var``,
    :func:`base_variance`), combined: sqrt(σ² + var + var_base). Returns z = (now − base) / spread and
    the value z = −robust_z stands for (the threshold, on the same scale).
    """
    spread = np.sqrt(sigma**2 + sampling_var + base_var)
    return (now - base) / spread, base - settings.robust_z * spread


def new_drop(
    ctx: Context,
    now: pd.Series,
    previous: pd.Series,
    var_now: pd.Series,
    var_previous: pd.Series,
    sigma: float,
) -> pd.Series:
    """True where the drop is new: the value is also clearly below the previous period's own.

    A unit already as low in the previous period changed then: the level is accepted as its new
    normal (even when the previous period's noise hid the shift from :func:`own_baseline`'s rule).
    z = (now − previous) / sqrt(σ² + both sampling variances) must be below −``history_new_drop_z``;
    True where the previous period is unknown.
    """
    z = (now - previous) / np.sqrt(sigma**2 + var_now + var_previous)
    return (z < -ctx.settings.history_new_drop_z) | previous.isna() | var_previous.isna()


def logit(p: pd.Series | np.ndarray) -> pd.Series | np.ndarray:
    """log(p / (1 − p)): the scale on which on-site shares of different sizes drift alike."""
    return np.log(p / (1 - p))


def expit(x: pd.Series | np.ndarray) -> pd.Series | np.ndarray:
    """The inverse of :func:`logit`."""
    return 1 / (1 + np.exp(-x))


def own_text(own: pd.DataFrame, fmt: Callable[[float], str], what: str = "") -> pd.Series:
    """Per unit, the Chinese sentence of its own baseline (empty where there is none)."""
    out = []
    for uid in own.index:
        row = own.loc[uid]
        if not np.isfinite(row["base"]):
            out.append("")
            continue
        if row["pooled"]:
            text = f"本单位前{int(row['periods'])}期合计 {fmt(row['base'])}（单位较小，各期合并计算）"
        elif row["shifted"]:
            text = (
                f"本单位上期 {fmt(row['previous'])}（上期已确认的水平变化，视为新常态；"
                f"更早各期中位数 {fmt(row['older'])}）"
            )
        elif row["seasonal"]:
            text = (
                f"本单位去年同期 {fmt(row['year'])}（前{int(row['periods'])}期中位数 {fmt(row['median'])}）"
            )
        else:
            text = f"本单位前{int(row['periods'])}期中位数 {fmt(row['median'])}"
        out.append(what + text)
    return pd.Series(out, index=own.index, dtype="object")


def join_texts(*parts: pd.Series | str, index: pd.Index) -> pd.Series:
    """Join per-unit texts (or constants) with '；', skipping empty ones."""
    cols = [p if isinstance(p, pd.Series) else pd.Series(p, index=index) for p in parts]
    frame = pd.concat([c.reindex(index).fillna("").astype("str") for c in cols], axis=1)
    return frame.apply(lambda r: "；".join(x for x in r if x), axis=1) if len(frame) else pd.Series(dtype=str)
