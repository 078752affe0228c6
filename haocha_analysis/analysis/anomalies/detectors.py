"""The detectors: one function per anomaly kind, each returning findings with evidence and baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from haocha_analysis.analysis.anomalies.baselines import (
    base_variance,
    change_sigma,
    drop_z,
    expit,
    fmt_num,
    fmt_pct,
    history_frame,
    join_texts,
    logit,
    new_drop,
    own_baseline,
    own_ratio_baseline,
    own_text,
)
from haocha_analysis.analysis.anomalies.features import Context, _count
from haocha_analysis.analysis.anomalies.settings import FINDING_COLUMNS, KINDS, Settings
from haocha_analysis.core import config
from haocha_analysis.core.arrays import isin
from haocha_analysis.core.calendar import after_hours, workday_calendar, working_days_between
from haocha_analysis.core.periods import Period
from haocha_analysis.core.rules import LATE, made_before_case, timeliness_status
from haocha_analysis.core.schemas import ONSITE_CHANNELS
from haocha_analysis.core.stats import binomial_lower_tail, binomial_tail_bound

# --- findings ----------------------------------------------------------------------------------

_fmt_pct = fmt_pct  # kept for callers of the earlier name


def _evidence_by_unit(
    frame: pd.DataFrame, id_col: str, n: int, sort: str | None = None, ascending: bool = False
):
    """unit_id -> 'id1;id2;…' (the first n ids per unit, optionally by a sort column)."""
    if frame.empty:
        return {}
    f = frame.sort_values(sort, ascending=ascending, kind="stable") if sort else frame
    head = f.groupby(f["unit_id"].astype("str"), observed=True, sort=False).head(n)
    return (
        head.groupby(head["unit_id"].astype("str"), observed=True)[id_col]
        .agg(lambda s: ";".join(s.astype("str")))
        .to_dict()
    )


_INT_KEYS = (
    "records",
    "k",
    "n",
    "n_cases",
    "named",
    "late",
    "burst",
    "keys",
    "bad",
    "long",
    "ops",
    "days",
    "skew",
)


def _plain_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values, counts kept as int (for the Chinese descriptions)."""
    rows = frame.to_dict("records")
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and value.is_integer() and key in _INT_KEYS:
                row[key] = int(value)
    return rows


def _rows(
    ctx: Context,
    kind: str,
    flagged: pd.DataFrame,
    measure_cn: str,
    describe,
    evidence: dict | None = None,
) -> pd.DataFrame:
    """Finding rows from a per-unit frame (measure, threshold, expected, baseline, severity, records)."""
    if flagged.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    u = ctx.units.loc[flagged.index]
    baseline = flagged["baseline"] if "baseline" in flagged else pd.Series("", index=flagged.index)
    out = pd.DataFrame(
        {
            "unit_id": flagged.index.astype("str"),
            "unit_name": u["unit_name"].to_numpy(),
            "level": u["level"].to_numpy(),
            "district": u["district"].fillna("").to_numpy(),
            "kind": kind,
            "kind_cn": KINDS[kind],
            "measure": flagged["measure"].astype(float).to_numpy(),
            "threshold": flagged["threshold"].astype(float).to_numpy(),
            "expected": flagged["expected"].astype(float).to_numpy(),
            "baseline": baseline.fillna("").astype("str").to_numpy(),
            "severity": flagged["severity"].astype(float).clip(0, 1).round(3).to_numpy(),
            "evidence": [(evidence or {}).get(uid, "") for uid in flagged.index.astype("str")],
            "description": [
                f"{name}：{describe(row)}"
                for name, row in zip(u["unit_name"], _plain_rows(flagged), strict=True)
            ],
            "measure_cn": measure_cn,
            "records": flagged["records"].astype("int64").to_numpy(),
        }
    )
    return out


def _peer_stats(ctx: Context, share: pd.Series, eligible: pd.Series) -> pd.DataFrame:
    """Per unit: the median and scaled MAD of the share over eligible units of its peer group."""
    groups = ctx.units["peer_group"]
    frame = pd.DataFrame({"share": share.where(eligible), "group": groups})
    med = frame.groupby("group")["share"].median()
    mad = frame.assign(dev=(frame["share"] - frame["group"].map(med)).abs()).groupby("group")["dev"].median()
    return pd.DataFrame({"median": groups.map(med), "sigma": 1.4826 * groups.map(mad)}, index=share.index)


def _low_share(ctx: Context, k: pd.Series, n: pd.Series, peer_min: float) -> pd.DataFrame:
    """Units whose share k/n is far below their peers'.

    Shares vary multiplicatively between units, so the comparison is on the log scale: the robust z
    of log((k + ½)/(n + 1)) against the peer group's median and scaled MAD must be below −robust_z;
    the share must also be below ``low_share_factor`` × the peer median and pass a Chernoff bound.
    Returns every unit (column ``flag``).
    """
    s = ctx.settings
    eligible = n >= s.min_first_evaluations
    share = (k / n.where(n > 0)).astype(float)
    log_share = np.log((k + 0.5) / (n + 1)).where(eligible)
    peers = _peer_stats(ctx, share, eligible)
    log_peers = _peer_stats(ctx, log_share, eligible)
    med = peers["median"]
    sigma = log_peers["sigma"].clip(lower=s.log_share_sigma_floor)
    z = (log_share - log_peers["median"]) / sigma
    threshold = np.minimum(med * s.low_share_factor, np.exp(log_peers["median"] - s.robust_z * sigma))
    p = binomial_tail_bound(k, n, med.fillna(0).clip(0, 1), lower=True)
    flag = (
        eligible & (med >= peer_min) & (share < med * s.low_share_factor) & (z < -s.robust_z) & (p < s.alpha)
    )
    return pd.DataFrame(
        {
            "flag": flag.fillna(False),
            "measure": share,
            "threshold": threshold,
            "expected": med,
            "severity": 1 - share / med.where(med > 0),
            "records": n,
            "k": k,
            "p": p,
        }
    )


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=FINDING_COLUMNS)


# --- zero data and volume ----------------------------------------------------------------------


def detect_zero_data(ctx: Context) -> pd.DataFrame:
    """零数据: reference units with no case finished and no evaluation made in the period.

    With history: reported when the unit had records in an earlier period (a unit that never had
    any is dormant, not a change) and none now is improbable: e^(−μ) < ``zero_data_alpha``, μ the
    mean cases and walk-in evaluations of its active earlier periods. Without history: reported when
    at least
    ``zero_data_peer_coverage`` of the unit's level has records (a level that never carries records,
    such as aggregate district rows, is not a finding). Severity 0.9 when it had records in
    history, else 0.6.
    """
    s = ctx.settings
    st = ctx.stats
    records = st["n_cases"] + st["n_evals"]
    units = ctx.units
    has = records > 0
    coverage = has.groupby(units["level"]).mean()
    level_cov = units["level"].map(coverage)
    hist = history_frame(ctx, lambda h: h["n_records"])
    hist_records = hist.sum(axis=1) if len(hist.columns) else pd.Series(0, index=st.index)
    had = hist_records > 0
    events = history_frame(ctx, lambda h: h["n_events"].where(h["n_records"] > 0))
    mu = events.mean(axis=1) if len(events.columns) else pd.Series(0.0, index=st.index)
    if ctx.history:
        flag = (~has) & had & (np.exp(-mu.fillna(0)) < s.zero_data_alpha)
    else:
        flag = (~has) & (level_cov >= s.zero_data_peer_coverage) & (units["level"] != "")
    per_period = hist_records / max(len(ctx.history), 1)
    f = pd.DataFrame(
        {
            "measure": 0.0,
            "threshold": 0.0,
            "expected": np.where(had, per_period, level_cov),
            "severity": np.where(had, 0.9, 0.6),
            "records": 0,
            "had": had,
            "cov": level_cov,
        },
        index=st.index,
    )[flag]
    f["baseline"] = np.where(
        f["had"],
        [f"本单位历史各期平均 {x:,.0f} 条记录" for x in f["expected"]],
        [f"同层级 {c:.0%} 的单位本期有记录；{ctx.history_note}" for c in f["cov"]],
    )

    def describe(r):
        if r["had"]:
            return f"本期无任何办件和评价记录，历史各期平均有 {r['expected']:,.0f} 条记录"
        return f"本期无任何办件和评价记录（同层级 {r['cov']:.0%} 的单位有记录）"

    return _rows(ctx, "zero_data", f, "本期记录数", describe)


def _per_day(own: pd.DataFrame, workdays: int) -> pd.DataFrame:
    """An own_baseline frame of period counts as counts per working day."""
    out = own.copy()
    for col in ("base", "median", "previous", "older", "year"):
        out[col] = out[col] / workdays
    return out


def detect_low_volume(ctx: Context) -> pd.DataFrame:
    """评价数据量过低: judged per case and per working day, against the unit's own history first.

    Three signals, each with a Poisson/binomial Chernoff bound below ``alpha``:

    * evaluations per case (first evaluations made / cases finished): with the unit's own history
      (``history_min_periods`` periods with ≥ ``low_volume_min_cases`` cases), below
      ``low_volume_own_ratio_factor`` × its own level and beyond the city's natural period-to-period
      drift (:func:`change_sigma`); without it, below min(``low_volume_ratio_factor`` × peer median,
      median − robust_z·σ);
    * cases, and first evaluations, per working day against the unit's own history scaled by the
      city's change between the periods (season, holidays and 调休, growth cancel out): below
      ``low_volume_history_factor`` × the own level, the lower of the (shift-accepted) median and the
      same period a year earlier.

    A level shift confirmed in the previous period is the new normal (a service moved elsewhere is
    not reported twice). Raw volume is never compared with peers: units differ in size. Units with
    no record at all are zero_data. Severity = 1 − measure/expected.
    """
    s = ctx.settings
    st = ctx.stats
    n_first, n_cases = st["n_first"], st["n_cases"]
    n_named = st["n_named_first"]  # evaluations per case count those naming a case (评价率)
    workdays = max(int(st["workdays"].iat[0]), 1) if len(st) else 1

    # (a) evaluations per case: own history, else peers
    elig_ratio = n_cases >= s.low_volume_min_cases
    ratio = (n_named / n_cases.where(n_cases > 0)).astype(float)
    own_r = own_ratio_baseline(ctx, "n_named", "n_cases", s.low_volume_min_cases)
    has_own_r = own_r["base"].notna()
    log_r = np.log(ratio.where(ratio > 0) / own_r["base"])
    sig_r = change_sigma(ctx, log_r, elig_ratio & has_own_r & (n_named >= 100))
    base_r = np.log(own_r["base"].where(own_r["base"] > 0))
    log_now = np.log((n_named + 0.5) / (n_cases + 0.5))
    support_r = history_frame(ctx, lambda h: h["n_named"].where(h["n_cases"] >= s.low_volume_min_cases))
    support_r = support_r.sum(axis=1) if len(support_r.columns) else pd.Series(0.0, index=st.index)
    support_r = support_r.where(~own_r["pooled"], history_frame(ctx, lambda h: h["n_named"]).sum(axis=1))
    var_r = base_variance(support_r)
    z_r, floor_r = drop_z(log_now, base_r, 1 / (n_named + 0.5), sig_r, s, var_r.fillna(np.inf))
    thr_own = own_r["base"] * np.minimum(s.low_volume_own_ratio_factor, np.exp(floor_r - base_r))
    prev = ctx.previous_label
    prev_e = ctx.history[prev]["n_named"] if prev in ctx.history else pd.Series(np.nan, index=st.index)
    fresh_r = new_drop(
        ctx,
        log_now,
        np.log(own_r["previous"].where(own_r["previous"] > 0)),
        1 / (n_named + 0.5),
        1 / (prev_e + 0.5),
        sig_r,
    )
    flag_own_r = elig_ratio & has_own_r & (ratio < thr_own) & (z_r < -s.robust_z) & fresh_r
    peers = _peer_stats(ctx, ratio, elig_ratio)
    thr_peer = np.minimum(
        peers["median"] * s.low_volume_ratio_factor, peers["median"] - s.robust_z * peers["sigma"]
    )
    p_peer = binomial_tail_bound(
        np.minimum(n_named, n_cases), n_cases, peers["median"].fillna(0).clip(0, 1), True
    )
    flag_peer_r = elig_ratio & ~has_own_r & (ratio < thr_peer) & (p_peer < s.alpha)
    flag_a = (flag_own_r | flag_peer_r).fillna(False)

    # (b) cases and first evaluations per working day, own history scaled by the city's change
    def scaled(column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        now_total = float(st[column].sum())
        values = history_frame(ctx, lambda h: h[column] * now_total / max(float(h[column].sum()), 1.0))
        usable = history_frame(ctx, lambda h: h["n_records"] > 0)
        log_var = history_frame(ctx, lambda h: 1 / (h[column] + 0.5))  # Poisson noise of each period
        return own_baseline(ctx, values, usable, season=True, log_var=log_var), values

    signals = {}
    for name, column, current in (("cases", "n_cases", n_cases), ("evals", "n_first", n_first)):
        own, _ = scaled(column)
        expected = own["base"]
        log_v = np.log((current + 0.5) / expected)
        elig = expected >= s.low_volume_min_expected
        sig_v = change_sigma(ctx, log_v, elig & (current >= 100))
        base_v = np.log(expected.where(expected > 0))
        support = history_frame(ctx, lambda h, c=column: h[c].where(h["n_records"] > 0))
        support = support.sum(axis=1) if len(support.columns) else pd.Series(0.0, index=st.index)
        var_v = base_variance(support).fillna(np.inf)
        z_v, floor_v = drop_z(np.log(current + 0.5), base_v, 1 / (current + 0.5), sig_v, s, var_v)
        thr = expected * np.minimum(s.low_volume_history_factor, np.exp(floor_v - base_v))
        raw_prev = ctx.history[prev][column] if prev in ctx.history else pd.Series(np.nan, index=st.index)
        fresh = new_drop(
            ctx,
            np.log(current + 0.5),
            np.log(own["previous"] + 0.5),
            1 / (current + 0.5),
            1 / (raw_prev + 0.5),
            sig_v,
        )
        flag = (elig & (current < thr) & (z_v < -s.robust_z) & fresh).fillna(False)
        signals[name] = (flag, own, thr)

    has_records = (n_first + n_cases + st["n_evals"]) > 0
    flag_c, own_c, thr_c = signals["cases"]
    flag_e, own_e, thr_e = signals["evals"]
    flag = (flag_a | flag_c | flag_e) & has_records
    # The measure shown is the first signal that fired: per case, else cases, else evaluations per day.
    measure = np.where(flag_a, ratio, np.where(flag_c, n_cases / workdays, n_first / workdays))
    threshold = np.where(
        flag_a,
        np.where(has_own_r, thr_own, thr_peer),
        np.where(flag_c, thr_c / workdays, thr_e / workdays),
    )
    expected = np.where(
        flag_a,
        np.where(has_own_r, own_r["base"], peers["median"]),
        np.where(flag_c, own_c["base"] / workdays, own_e["base"] / workdays),
    )
    f = pd.DataFrame(
        {
            "measure": measure,
            "threshold": threshold,
            "expected": expected,
            "severity": 1
            - pd.Series(measure, index=st.index) / pd.Series(expected, index=st.index).replace(0, np.nan),
            "records": n_first,
            "a": flag_a,
            "own_r": has_own_r,
            "c": flag_c,
            "e": flag_e,
            "ratio": ratio,
            "named": n_named,
            "ratio_base": np.where(has_own_r, own_r["base"], peers["median"]),
            "ratio_med": peers["median"],
            "n_cases": n_cases,
            "cases_day": n_cases / workdays,
            "cases_exp": own_c["base"] / workdays,
            "evals_day": n_first / workdays,
            "evals_exp": own_e["base"] / workdays,
        },
        index=st.index,
    )[flag]
    if f.empty:
        return _empty()
    idx = f.index
    ratio_text = own_text(own_r.loc[idx], lambda x: f"{x:.2f}", "评价/办件比：")
    cases_text = own_text(_per_day(own_c.loc[idx], workdays), fmt_num, "工作日日均办件（按全市变化调整）：")
    evals_text = own_text(
        _per_day(own_e.loc[idx], workdays), fmt_num, "工作日日均首次评价（按全市变化调整）："
    )
    peer_text = pd.Series([f"同类单位评价/办件比中位数 {x:.2f}" for x in f["ratio_med"]], index=idx)
    f["baseline"] = join_texts(
        ratio_text.where(f["a"] & f["own_r"], ""),
        cases_text.where(f["c"], ""),
        evals_text.where(f["e"], ""),
        peer_text.where(f["ratio_med"].notna(), ""),
        index=idx,
    )
    f["baseline"] = f["baseline"].where(f["own_r"] | f["c"] | f["e"], f["baseline"] + "；" + ctx.history_note)

    def describe(r):
        parts = []
        if r["a"]:
            whose = "本单位以往" if r["own_r"] else "同类单位中位数"
            parts.append(
                f"办件 {r['n_cases']:,} 件仅有 {r['named']:,} 件得到评价（每件 {r['ratio']:.2f}，"
                f"{whose} {r['ratio_base']:.2f}）"
            )
        if r["c"]:
            parts.append(
                f"工作日日均办结办件 {fmt_num(r['cases_day'])} 件，"
                f"按本单位历史应约 {fmt_num(r['cases_exp'])} 件"
            )
        if r["e"]:
            parts.append(
                f"工作日日均首次评价 {fmt_num(r['evals_day'])} 件，"
                f"按本单位历史应约 {fmt_num(r['evals_exp'])} 件"
            )
        return "；".join(parts) + "，评价数据量过低"

    # Evidence: cases finished in the period that have no first evaluation.
    missing = ctx.cases_in[~ctx.cases_in["has_first"] & ctx.cases_in["unit_id"].isin(f.index)]
    ev = _evidence_by_unit(missing, "case_id", s.evidence_max)
    return _rows(ctx, "low_volume", f, "评价/办件比或工作日日均量", describe, ev)


# --- shares ------------------------------------------------------------------------------------


def detect_low_onsite(ctx: Context) -> pd.DataFrame:
    """现场评价量较少: share of citizens' first evaluations of cases made on site (ONSITE_CHANNELS).

    With the unit's own history (``history_min_periods`` periods with ≥ ``min_first_evaluations``
    such evaluations naming a case), the unit is compared with itself: the share must be below
    ``low_onsite_own_factor`` × its own level (a drop already confirmed in the previous period is
    the new normal), beyond the city's natural drift (:func:`change_sigma`) and pass a binomial
    drop's z below −robust_z (:func:`drop_z`). A unit that always evaluates online is not a
    finding. Without own history: its peers, as :func:`_low_share` (only where peers evaluate on
    site, median ≥ ``low_onsite_peer_min``). Severity = 1 − share/expected.
    """
    s = ctx.settings
    st = ctx.stats
    k, n = st["n_onsite"], st["n_citizen_linked"]
    peer = _low_share(ctx, k, n, s.low_onsite_peer_min)
    own = own_ratio_baseline(ctx, "n_onsite_named", "n_citizen_named", s.min_first_evaluations)
    has_own = own["base"].notna()  # a unit that never evaluates on site has a history too: 0%
    share = peer["measure"]
    eligible = n >= s.min_first_evaluations
    # On the logit scale: a share's drift between periods is alike for units at 5% and at 60%.
    # Sampling variance of the logit under the level compared with (a score test: a drop to 0 of
    # 120 from 12% is as clear as it looks).
    p_hat = (k + 0.5) / (n + 1)
    b = own["base"].clip(1e-3, 1 - 1e-3)
    base_t = logit(b)
    sigma = change_sigma(ctx, logit(p_hat) - base_t, eligible & has_own & (n >= 100))
    support = history_frame(
        ctx, lambda h: h["n_citizen_named"].where(h["n_citizen_named"] >= s.min_first_evaluations)
    )
    support = support.sum(axis=1) if len(support.columns) else pd.Series(0.0, index=st.index)
    support = support.where(~own["pooled"], history_frame(ctx, lambda h: h["n_citizen_named"]).sum(axis=1))
    var_b = base_variance(support, b).fillna(np.inf)
    z_own, floor_t = drop_z(logit(p_hat), base_t, 1 / ((n + 1) * b * (1 - b)), sigma, s, var_b)
    thr_own = np.minimum(own["base"] * s.low_onsite_own_factor, expit(floor_t))
    prev = ctx.previous_label
    n_prev = (
        ctx.history[prev]["n_citizen_named"] if prev in ctx.history else pd.Series(np.nan, index=st.index)
    )
    p_prev = own["previous"].clip(1e-3, 1 - 1e-3)
    fresh = new_drop(
        ctx,
        logit(p_hat),
        logit(p_prev),
        1 / ((n + 1) * p_prev * (1 - p_prev)),
        1 / ((n_prev + 1) * p_prev * (1 - p_prev)),
        sigma,
    )
    flag_own = eligible & has_own & (share < thr_own) & (z_own < -s.robust_z) & fresh
    flag = np.where(has_own, flag_own.fillna(False), peer["flag"])
    f = pd.DataFrame(
        {
            "measure": share,
            "threshold": np.where(has_own, thr_own, peer["threshold"]),
            "expected": np.where(has_own, own["base"], peer["expected"]),
            "records": n,
            "k": k,
            "own": has_own,
            "peer_med": peer["expected"],
        },
        index=st.index,
    )[flag]
    if f.empty:
        return _empty()
    f["severity"] = 1 - f["measure"] / f["expected"].where(f["expected"] > 0)
    idx = f.index
    own_t = own_text(own.loc[idx], fmt_pct)
    peer_t = pd.Series([f"同类中位数 {fmt_pct(x)}" for x in f["peer_med"]], index=idx)
    f["baseline"] = join_texts(own_t, peer_t, index=idx)
    f["baseline"] = f["baseline"].where(f["own"], f["baseline"] + "；" + ctx.history_note)
    first = ctx.first_in
    off = first[~isin(first["channel"], ONSITE_CHANNELS) & isin(first["unit_id"], f.index)]
    ev = _evidence_by_unit(off, "eval_id", s.evidence_max)

    def describe(r):
        whose = "低于本单位以往水平" if r["own"] else "远低于同类单位"
        return (
            f"群众作出的办件首次评价 {r['records']:,} 件中现场评价 {r['k']:,} 件"
            f"（{fmt_pct(r['measure'])}），{whose} {fmt_pct(r['expected'])}，“现场评价”量较少"
        )

    return _rows(ctx, "low_onsite", f, "现场评价占比", describe, ev)


def detect_low_active(ctx: Context) -> pd.DataFrame:
    """主动评价率偏低: share of cases' first evaluations made by the citizen, not system defaults.

    An absolute rule, not a peer comparison: active shares differ between districts by policy (the
    reference bulletin's 附件1 ranges from 0.05% to 88%), so peers would flag whole districts. A
    unit is flagged when its share is below ``low_active_max_share`` with at least
    ``min_first_evaluations`` first evaluations whose active flag is known, and the share is
    confidently below the limit (exact P(X ≤ k | n, limit) below ``low_active_alpha``);
    units whose flag is unknown for every evaluation are skipped (shown as "/" in tables).
    Severity = 1 − share/limit.
    """
    s = ctx.settings
    st = ctx.stats
    k, n = st["n_active"], st["n_active_known"]
    share = (k / n.where(n > 0)).astype(float)
    # Exact P(X ≤ k | n, limit) where the share is below the limit (the Chernoff bound is up to ~3×
    # too high at these sizes); only those units can be flagged.
    p = pd.Series(1.0, index=st.index)
    below = (n >= s.min_first_evaluations) & (share < s.low_active_max_share)
    p[below] = binomial_lower_tail(k[below], n[below], np.full(int(below.sum()), s.low_active_max_share))
    flag = (n >= s.min_first_evaluations) & (share < s.low_active_max_share) & (p < s.low_active_alpha)
    f = pd.DataFrame(
        {
            "measure": share,
            "threshold": s.low_active_max_share,
            "expected": s.low_active_max_share,
            "baseline": f"绝对阈值 {fmt_pct(s.low_active_max_share)}"
            "（各区县主动评价率本就相差悬殊，不与同类比较）",
            "severity": 1 - share / s.low_active_max_share,
            "records": n,
            "k": k,
        },
        index=st.index,
    )[flag.fillna(False)]
    first = ctx.first_in
    passive = first[(first["active"] == False) & isin(first["unit_id"], f.index)]  # noqa: E712
    ev = _evidence_by_unit(passive, "eval_id", s.evidence_max)

    def describe(r):
        return (
            f"办件首次评价 {r['records']:,} 件中主动评价仅 {r['k']:,} 件（{fmt_pct(r['measure'])}，"
            f"低于 {fmt_pct(r['threshold'])}），评价基本为系统默认评价"
        )

    return _rows(ctx, "low_active", f, "主动评价率", describe, ev)


# --- lags and bursts ---------------------------------------------------------------------------


def _lags(ctx: Context) -> pd.DataFrame:
    """Linked first evaluations of the period (index as ``first_in``): unit, channel, lags. Numeric only."""
    if "lags" not in ctx.cache:
        first = ctx.first_in
        linked = first.loc[
            first["linked"].to_numpy(), ["unit_id", "channel", "evaluated_at", "case_finished"]
        ]
        linked = linked.rename(columns={"case_finished": "finished_at"})
        linked["lag_workdays"] = working_days_between(linked["finished_at"], linked["evaluated_at"])
        linked["lag_hours"] = (linked["evaluated_at"] - linked["finished_at"]).dt.total_seconds() / 3600
        ctx.cache["lags"] = linked
    return ctx.cache["lags"]


def first_evaluation_lags(ctx: Context) -> pd.DataFrame:
    """First evaluations made in the period, joined to their case: working-day lag after finishing."""
    lags = _lags(ctx)
    ids = ctx.first_in.loc[lags.index, ["eval_id", "case_id", "operator"]]
    out = pd.concat([ids, lags], axis=1)
    cols = ["eval_id", "case_id", "unit_id", "channel", "evaluated_at", "operator", "finished_at"]
    return out[[*cols, "lag_workdays", "lag_hours"]]


def burst_runs(
    evaluations: pd.DataFrame,
    settings: Settings,
    period: Period,
    by_operator: bool = False,
    operator_codes: np.ndarray | None = None,
) -> pd.DataFrame:
    """Evaluations that belong to a burst of near-identical timestamps within their unit.

    A run is a maximal sequence of a unit's evaluations (system defaults excluded: the system makes
    them, not people), all inside or all outside working hours, whose consecutive gaps are at most
    ``burst_gap_seconds``. With ``by_operator``, runs are taken per unit and operator (one person at
    one device; rows without an operator stay together per unit; ``operator_codes`` may give the
    operators' integer codes, aligned with the rows). A run is a burst when it has at
    least ``m`` records: the larger of a floor (``burst_min_size`` in working hours,
    ``burst_min_size_after_hours`` outside them, when halls are closed) and the size for which a
    Poisson process expects fewer than ``burst_false_alarm`` such runs. The Poisson rate is the
    group's own rate in the run's clock hour on that kind of day (working day or not), times
    ``burst_peak_factor``: busy units, busy operators and busy hours need longer runs.

    Returns:
        The evaluations in bursts: eval_id, unit_id, evaluated_at, operator, after_hours, run, run_size.
    """
    cols = ["eval_id", "unit_id", "evaluated_at", "operator"]
    keep = ((evaluations["channel"] != "system_default") & evaluations["evaluated_at"].notna()).to_numpy()
    if not keep.any():
        return evaluations.loc[keep, cols].assign(
            after_hours=pd.Series(dtype=bool), run=pd.Series(dtype="int64"), run_size=pd.Series(dtype="int64")
        )
    units = evaluations["unit_id"][keep]
    if isinstance(units.dtype, pd.CategoricalDtype):
        unit_key = units.cat.codes.to_numpy().astype(np.int64)
    else:
        unit_key = pd.factorize(units.astype("str"))[0].astype(np.int64)
    if by_operator:  # -1 for a missing operator (codes aligned with the rows, when given)
        if operator_codes is None:
            operator_codes = pd.factorize(evaluations["operator"])[0]
        op_codes = np.asarray(operator_codes, dtype=np.int64)[keep]
        unit_key = unit_key * (int(op_codes.max()) + 2) + (op_codes + 1)
    stamp = evaluations["evaluated_at"][keep].to_numpy("datetime64[s]")
    order = np.lexsort((stamp, unit_key))
    labels = evaluations.index[keep][order]
    u, t_s = unit_key[order], stamp[order]
    day = t_s.astype("datetime64[D]")
    first_day = min(day.min().astype(object), period.start)
    cal = workday_calendar(first_day, max(day.max().astype(object), period.end))
    workday = cal.to_numpy()[(day - np.datetime64(first_day, "D")).astype(np.int64)]
    secs = (t_s - day).astype(np.int64)
    hour = secs // 3600
    frac = secs / 3600
    ah = ~workday | (frac < config.WORKDAY_START_HOUR) | (frac >= config.WORKDAY_END_HOUR)
    t = t_s.astype(np.int64).astype(float)
    gap = np.diff(t, prepend=np.nan)
    same = np.r_[False, (u[1:] == u[:-1]) & (ah[1:] == ah[:-1])]
    run = np.cumsum(~(same & (gap <= settings.burst_gap_seconds)))
    run_size = np.bincount(run)[run]
    # The group's rate in each (kind of day, clock hour): evaluations / hours of that kind in the period.
    in_period = cal[(cal.index >= period.start_ts) & (cal.index < period.end_ts)]
    n_work, n_off = max(int(in_period.sum()), 1), max(int((~in_period).sum()), 1)
    bucket = u * 48 + workday.astype(np.int64) * 24 + hour
    _, inverse, counts = np.unique(bucket, return_inverse=True, return_counts=True)
    n_bucket = counts[inverse].astype(float)
    hours = np.where(workday, n_work, n_off) * 3600.0
    lam = n_bucket / hours * settings.burst_peak_factor
    q = np.clip(1 - np.exp(-lam * settings.burst_gap_seconds), 1e-12, 1 - 1e-9)
    m = 1 + np.log(settings.burst_false_alarm / n_bucket) / np.log(q)
    floor = np.where(ah, settings.burst_min_size_after_hours, settings.burst_min_size)
    m = np.maximum(floor, np.ceil(m))
    m_run = np.zeros(run.max() + 1)
    np.maximum.at(m_run, run, m)
    hit = run_size >= m_run[run]
    out = evaluations.loc[labels[hit], cols]
    return out.assign(after_hours=ah[hit], run=run[hit], run_size=run_size[hit])


def classified_bursts(ctx: Context) -> pd.DataFrame:
    """Bursts of first evaluations per unit and operator, each run classified by its lags.

    A run is ``backfill`` when most of its evaluations (of known cases) came more than
    ``supplementary_working_days`` after their case finished, when its median lag is more than
    ``reentry_burst_max_workdays`` working days (keyed in days later), or when none of them names a
    known case; otherwise it is ``reentry`` when the median lag from the cases' finish is at least
    ``reentry_burst_min_lag_minutes`` (citizens evaluate at the window within minutes; staff keying
    in the day's evaluations do so hours later), else ``natural`` (a queue at a terminal).
    """
    if "bursts" in ctx.cache:
        return ctx.cache["bursts"]
    s = ctx.settings
    first = ctx.first_in
    runs = burst_runs(
        first[["eval_id", "unit_id", "evaluated_at", "operator", "channel"]], s, ctx.period, True
    )
    runs = runs.join(_lags(ctx)[["lag_workdays", "lag_hours"]], how="left")
    runs["late"] = runs["lag_workdays"].astype("Float64").fillna(-1).to_numpy(dtype=float) > (
        s.supplementary_working_days
    )
    runs["known"] = runs["lag_hours"].notna()
    runs["lag_days"] = runs["lag_workdays"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    per_run = runs.groupby("run").agg(
        late=("late", "sum"),
        known=("known", "sum"),
        lag=("lag_hours", "median"),
        days=("lag_days", "median"),
    )
    backfill = (
        (per_run["known"] == 0)
        | (per_run["late"] >= 0.5 * per_run["known"])
        | (per_run["days"] > s.reentry_burst_max_workdays)
    )
    reentry = ~backfill & (per_run["lag"] * 60 >= s.reentry_burst_min_lag_minutes)
    kind = np.where(backfill, "backfill", np.where(reentry, "reentry", "natural"))
    runs["kind"] = runs["run"].map(pd.Series(kind, index=per_run.index))
    ctx.cache["bursts"] = runs
    return runs


def detect_backfill(ctx: Context) -> pd.DataFrame:
    """事后补录: first evaluations long after the case finished, or bursts entered days later.

    A first evaluation is late when it comes more than ``supplementary_working_days`` working days
    (chinese_calendar, 调休 included) after its case finished. The expected number of late ones is
    channel-adjusted: Σ over channels of the unit's evaluations × the late rate in that channel of
    the level's other units (citizens' own late evaluations by SMS or the website form a tail
    everywhere; on-site channels have almost none). A unit is flagged when its suspicious evaluations
    (late ∪ backfill bursts, :func:`classified_bursts`; system defaults excluded) number at least
    ``backfill_min_records`` and either the late ones reach ``backfill_min_share`` of its linked first
    evaluations and ``backfill_baseline_factor`` × the expected share with a Chernoff bound below
    ``alpha``, or the burst ones reach ``backfill_min_records``.

    Severity = 0.5 + 0.3·min(1, share/backfill_full_share) + 0.1·after-hours share + 0.1·top operator share.
    """
    s = ctx.settings
    idx = ctx.stats.index
    lags = _lags(ctx)
    lags = lags[(lags["channel"] != "system_default").to_numpy()]
    is_late = lags["lag_workdays"].fillna(0).to_numpy() > s.supplementary_working_days
    late = lags[is_late]
    linked_n = _count(lags["unit_id"], idx)
    late_n = _count(late["unit_id"], idx)
    # Channel-adjusted expectation: the late rate per channel of the level's other units (a unit's
    # own excess is not its baseline).
    unit_code = lags["unit_id"].cat.codes.to_numpy()
    level_code = pd.factorize(ctx.units["level"].reindex(lags["unit_id"].cat.categories))[0][unit_code]
    frame = pd.DataFrame(
        {
            "level": level_code,
            "channel": lags["channel"].cat.codes.to_numpy(),
            "unit": unit_code,
            "late": is_late,
        }
    )
    cell = frame.groupby(["level", "channel", "unit"])["late"].agg(["sum", "size"])
    pooled = cell.groupby(level=["level", "channel"]).transform("sum")
    others = (pooled["sum"] - cell["sum"]) / (pooled["size"] - cell["size"]).replace(0, np.nan)
    per_code = (others.fillna(0) * cell["size"]).groupby(level="unit").sum()
    per_code.index = lags["unit_id"].cat.categories[per_code.index].astype("str")
    expected = per_code.reindex(idx).fillna(0)
    p_unit = (expected / linked_n.where(linked_n > 0)).fillna(0)
    late_share = (late_n / linked_n.where(linked_n > 0)).fillna(0)
    p_late = binomial_tail_bound(late_n, linked_n, p_unit.clip(lower=1e-6), lower=False)
    late_ok = (
        (late_n >= s.backfill_min_records)
        & (late_share >= np.maximum(s.backfill_min_share, s.backfill_baseline_factor * p_unit))
        & (p_late < s.alpha)
    )
    late = late.assign(
        eval_id=ctx.first_in.loc[late.index, "eval_id"], operator=ctx.first_in.loc[late.index, "operator"]
    )
    runs = classified_bursts(ctx)
    bursts = runs[runs["kind"] == "backfill"]
    burst_n = _count(bursts["unit_id"], idx)

    sus = pd.concat(
        [
            bursts[["eval_id", "unit_id", "evaluated_at", "operator"]].assign(src=0),
            late[["eval_id", "unit_id", "evaluated_at", "operator"]].assign(src=1),
        ]
    ).drop_duplicates("eval_id")
    sus["unit"] = sus["unit_id"].astype("str")
    sus_n = _count(sus["unit"], idx)
    flag = (sus_n >= s.backfill_min_records) & (late_ok | (burst_n >= s.backfill_min_records))
    if not flag.any():
        return _empty()
    sus = sus[sus["unit"].isin(flag[flag].index)]
    sus["after_hours"] = after_hours(sus["evaluated_at"])
    ah = sus.groupby("unit")["after_hours"].mean()
    op_counts = sus.dropna(subset=["operator"]).groupby(["unit", "operator"], observed=True).size()
    if len(op_counts):
        top = op_counts.groupby(level=0).max() / sus.groupby("unit").size()
        top_name = op_counts.groupby(level=0).idxmax().map(lambda t: t[1])
    else:
        top, top_name = pd.Series(dtype=float), pd.Series(dtype=str)
    base = ctx.stats["n_first"].where(ctx.stats["n_first"] > 0)
    share = (sus_n / base).fillna(0)
    flagged = flag[flag].index
    f = pd.DataFrame(
        {
            "measure": share[flagged],
            "threshold": s.backfill_min_share,
            "expected": p_unit[flagged],
            "records": sus_n[flagged],
            "late": late_n[flagged],
            "burst": burst_n[flagged],
            "ah": ah.reindex(flagged).fillna(0),
            "top": top.reindex(flagged).fillna(0),
            "top_name": top_name.reindex(flagged).fillna(""),
        },
        index=flagged,
    )
    f["severity"] = (
        0.5 + 0.3 * np.minimum(1, f["measure"] / s.backfill_full_share) + 0.1 * f["ah"] + 0.1 * f["top"]
    )
    f["baseline"] = [
        f"按各渠道同层级超期率推算，本单位超期评价应占 {fmt_pct(p)}（约 {e:,.1f} 条）；批量录入正常应为 0"
        for p, e in zip(f["expected"], expected.reindex(flagged), strict=True)
    ]

    def describe(r):
        parts = []
        if r["late"]:
            parts.append(f"{r['late']:,} 条首次评价晚于办结 {s.supplementary_working_days} 个工作日以上")
        if r["burst"]:
            parts.append(f"{r['burst']:,} 条评价成批出现、时间戳几乎相同")
        extra = f"，其中 {r['ah']:.0%} 在工作时间以外"
        if r["top"] >= 0.5 and r["top_name"]:
            extra += f"，{r['top']:.0%} 由同一经办人（{r['top_name']}）录入"
        return "；".join(parts) + extra + "，存在事后补录嫌疑"

    sus = sus.sort_values(["src", "evaluated_at"], kind="stable")
    ev = _evidence_by_unit(sus, "eval_id", s.evidence_max)
    return _rows(ctx, "backfill", f, "可疑评价占比", describe, ev)


# --- reporting ---------------------------------------------------------------------------------


def _late_share_rows(
    ctx: Context, unit_ids: pd.Series, late_mask: np.ndarray, delay_h: pd.Series, event_at: pd.Series
) -> pd.DataFrame:
    """Per unit: records, late ones, share, the city baseline and the flag (late_min_* rules).

    The late records of the unit's worst day are set aside before the rule is applied: one day's
    outage, its records uploaded the next morning, is an incident, not a practice (the share, the
    count and the Chernoff bound are taken on the rest).
    """
    s = ctx.settings
    idx = ctx.stats.index
    n = _count(unit_ids, idx)
    k = _count(unit_ids[late_mask], idx)
    long_k = _count(unit_ids[late_mask & (delay_h > 24).to_numpy()], idx)
    late_units = unit_ids[late_mask].astype("str").to_numpy()
    late_days = event_at[late_mask].dt.normalize().to_numpy()
    if len(late_units):
        per_day = (
            pd.Series(1, index=pd.MultiIndex.from_arrays([late_units, late_days])).groupby(level=[0, 1]).sum()
        )
        worst = per_day.groupby(level=0).max().reindex(idx).fillna(0).astype("int64")
    else:
        worst = pd.Series(0, index=idx)
    rest = k - worst
    baseline = float(k.sum() / n.sum()) if n.sum() else 0.0
    share = (k / n.where(n > 0)).fillna(0)
    rest_share = (rest / n.where(n > 0)).fillna(0)
    p = binomial_tail_bound(rest, n, np.full(len(n), max(baseline, 1e-6)), lower=False)
    threshold = max(s.late_min_share, s.late_baseline_factor * baseline)
    flag = (rest >= s.late_min_cases) & (rest_share >= threshold) & (p < s.alpha)
    med = (
        pd.Series(delay_h[late_mask].to_numpy())
        .groupby(unit_ids[late_mask].astype("str").to_numpy())
        .median()
    )
    f = pd.DataFrame(
        {
            "measure": share,
            "threshold": threshold,
            "expected": baseline,
            "records": k,
            "n": n,
            "long": long_k,
            "med": med.reindex(idx),
        },
        index=idx,
    )[flag]
    f["severity"] = 0.8 * np.minimum(1, f["measure"] / 0.5) + 0.2 * (
        f["long"] / f["records"].where(f["records"] > 0)
    ).fillna(0)
    f["baseline"] = (
        f"全市超时占比 {fmt_pct(baseline)}；门槛 {fmt_pct(threshold)}"
        f"（至少 {s.late_min_cases} 条，最集中的一天不计：一次故障不算）"
    )
    return f


def _late(
    ctx: Context, frame: pd.DataFrame, event: str, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, pd.Series, pd.DataFrame]:
    """Records late under quality's 5-minute rule (``settings.timing``), their delays, units flagged."""
    t = ctx.settings.timing
    status = timeliness_status(
        frame[event], frame["reported_at"], t.report_delay_limit, t.clock_skew_tolerance
    )
    late_mask = status.to_numpy() == LATE
    if exclude is not None:
        late_mask &= ~exclude
    delay_h = (frame["reported_at"] - frame[event]).dt.total_seconds() / 3600
    return late_mask, delay_h, _late_share_rows(ctx, frame["unit_id"], late_mask, delay_h, frame[event])


def detect_late_aggregation(ctx: Context) -> pd.DataFrame:
    """办件归集不及时: cases finished in the period reported later than the 5-minute rule allows.

    The rule is the quality checks' own (core.rules.timeliness_status with ``settings.timing``).
    Flagged when a unit has at least ``late_min_cases`` late cases, a late share of at least
    ``late_min_share`` and ``late_baseline_factor`` × the city-wide share, with a Chernoff bound
    below ``alpha``. Severity = min(1, late share / 0.5)·0.8 + 0.2·(share of late cases over a day).
    """
    s = ctx.settings
    c = ctx.cases_in[ctx.cases_in["reported_at"].notna()]
    late_mask, delay_h, f = _late(ctx, c, "finished_at")
    limit = s.timing.limit_minutes

    def describe(r):
        return (
            f"办结 {r['n']:,} 件中 {r['records']:,} 件超过 {limit:g} 分钟才归集"
            f"（{fmt_pct(r['measure'])}，全市 {fmt_pct(r['expected'])}），"
            f"超时办件归集延迟中位数 {r['med']:.1f} 小时，办件归集不及时"
        )

    late = c[late_mask].assign(delay_h=delay_h[late_mask])
    ev = _evidence_by_unit(late[isin(late["unit_id"], f.index)], "case_id", s.evidence_max, "delay_h")
    return _rows(ctx, "late_aggregation", f, "超时归集办件占比", describe, ev)


def detect_late_reporting(ctx: Context) -> pd.DataFrame:
    """评价数据上报不及时: evaluations made in the period reported later than the 5-minute rule allows.

    The same rule and settings as quality's 及时性 (core.rules.timeliness_status, ``settings.timing``).
    An evaluation that reached the system with its late case (reported at or after the case, whose
    own report was late) is the case's lateness, reported as late_aggregation, not counted twice.
    Flagged like late_aggregation: ≥ ``late_min_cases`` late, share ≥ max(``late_min_share``,
    ``late_baseline_factor`` × the city's share), Chernoff bound below ``alpha``.
    """
    s = ctx.settings
    t = s.timing
    cols = ["unit_id", "evaluated_at", "reported_at", "case_reported", "case_finished"]
    e = ctx.evals_in.loc[ctx.evals_in["reported_at"].notna().to_numpy(), cols]
    case_late = ((e["case_reported"] - e["case_finished"]) > pd.Timedelta(t.report_delay_limit)).to_numpy()
    with_case = case_late & (e["reported_at"] >= e["case_reported"]).to_numpy()
    late_mask, delay_h, f = _late(ctx, e, "evaluated_at", exclude=with_case)
    limit = t.limit_minutes

    def describe(r):
        return (
            f"本期评价 {r['n']:,} 条中 {r['records']:,} 条超过 {limit:g} 分钟才上报"
            f"（{fmt_pct(r['measure'])}，全市 {fmt_pct(r['expected'])}），"
            f"超时评价上报延迟中位数 {r['med']:.1f} 小时，评价数据上报不及时（评价设备未实时上传）"
        )

    late = e[late_mask].assign(delay_h=delay_h[late_mask])
    late = late[isin(late["unit_id"], f.index)]
    late = late.assign(eval_id=ctx.evals_in.loc[late.index, "eval_id"])
    ev = _evidence_by_unit(late, "eval_id", s.evidence_max, "delay_h")
    return _rows(ctx, "late_reporting", f, "超时上报评价占比", describe, ev)


# --- duplicates --------------------------------------------------------------------------------


def duplicate_evaluations(ctx: Context) -> pd.DataFrame:
    """Evaluations that repeat another one.

    A later attempt-1 evaluation of the same case, or an unlinked evaluation with the same
    evaluator, unit, channel, satisfaction, comment and minute as another.
    """
    first = ctx.first_in
    # Later attempt-1 evaluations of a case and repeated rows (the one linkage rule), made in P.
    dup_linked = ctx.evals_in[ctx.evals_in["duplicate"]]
    unlinked = first[first["case_id"].isna() & first["evaluator_key"].notna()]
    key = ["unit_id", "evaluator_key", "channel", "satisfaction", "comment", "minute"]
    unlinked = unlinked.assign(minute=unlinked["evaluated_at"].dt.floor("min"))
    dup_unlinked = unlinked[unlinked.duplicated(key, keep="first")]
    return pd.concat([dup_linked, dup_unlinked.drop(columns="minute")])


def detect_duplicates(ctx: Context) -> pd.DataFrame:
    """重复评价: at least ``duplicates_min`` duplicate evaluations in a unit (see duplicate_evaluations).

    Severity = min(1, 0.5 + duplicates / 100).
    """
    s = ctx.settings
    dups = duplicate_evaluations(ctx)
    k = _count(dups["unit_id"], ctx.stats.index)
    flag = k >= s.duplicates_min
    f = pd.DataFrame(
        {
            "measure": k,
            "threshold": s.duplicates_min,
            "expected": 0.0,
            "baseline": f"正常应为 0（1–{s.duplicates_min - 1} 起多为传输重发，不报）",
            "records": k,
            "severity": np.minimum(1, 0.5 + k / 100),
            "n": ctx.stats["n_first"],
        },
        index=ctx.stats.index,
    )[flag]

    def describe(r):
        return f"首次评价 {r['n']:,} 件中有 {r['records']:,} 条重复评价（同一办件多次首评或内容完全相同）"

    ev = _evidence_by_unit(dups, "eval_id", s.evidence_max)
    return _rows(ctx, "duplicates", f, "重复评价条数", describe, ev)


# --- one evaluator key over many cases; bursts of other people's evaluations ------------------


def _op_codes(ctx: Context) -> np.ndarray:
    """Integer codes of the operators of ``first_in`` (-1 where none), computed once."""
    if "op_codes" not in ctx.cache:
        ctx.cache["op_codes"] = pd.factorize(ctx.first_in["operator"])[0].astype(np.int64)
    return ctx.cache["op_codes"]


def _operators_per_unit(ctx: Context) -> pd.Series:
    """Distinct operators recording first evaluations in the period, per unit (string index)."""
    codes = _op_codes(ctx)
    has = codes >= 0
    if not has.any():
        return pd.Series(dtype="int64")
    units = ctx.first_in["unit_id"]
    frame = pd.DataFrame({"u": units.cat.codes.to_numpy()[has], "o": codes[has]}).drop_duplicates()
    counts = frame.groupby("u").size()
    counts.index = units.cat.categories[counts.index].astype("str")
    return counts


def key_groups(ctx: Context) -> pd.DataFrame:
    """Per unit and evaluator key seen on several of the unit's cases: the cases, operators and span.

    Columns: unit, evaluator_key, cases, ops, op_rows, first, last, staff (one operator behind every
    case while the chance of that, n_ops^(1−k), is below ``reentry_alpha``), agent (``agent_min_cases``
    or more cases, not staff). Keys seen fewer than ``reentry_min_cases_one_operator`` times are left
    out before the detailed grouping (most keys appear once).
    """
    if "keys" in ctx.cache:
        return ctx.cache["keys"]
    s = ctx.settings
    first = ctx.first_in
    # Citizens' evaluations of cases (a system default is made by no one: neither staff nor agent).
    keep = (
        first["evaluator_key"].notna().to_numpy()
        & (first["cid"].to_numpy() >= 0)
        & (first["channel"] != "system_default").to_numpy()
    )
    key_codes = pd.factorize(first["evaluator_key"][keep])[0].astype(np.int64)
    unit_codes = first["unit_id"].cat.codes.to_numpy()[keep].astype(np.int64)
    pair = unit_codes * (int(key_codes.max()) + 1 if len(key_codes) else 1) + key_codes
    _, inverse, pair_counts = np.unique(pair, return_inverse=True, return_counts=True)
    many = np.zeros(len(first), dtype=bool)
    many[np.flatnonzero(keep)[pair_counts[inverse] >= s.reentry_min_cases_one_operator]] = True
    cols = ["eval_id", "unit_id", "evaluator_key", "cid", "operator", "evaluated_at"]
    rows = first.loc[many, cols]
    rows = rows.assign(unit=rows["unit_id"].astype("str"))
    if rows.empty:
        out = pd.DataFrame(
            columns=["unit", "evaluator_key", "cases", "ops", "op_rows", "first", "last", "staff", "agent"]
        )
        ctx.cache["keys"] = (out, rows)
        return ctx.cache["keys"]
    per_key = (
        rows.groupby(["unit", "evaluator_key"], observed=True)
        .agg(
            cases=("cid", "nunique"),
            ops=("operator", "nunique"),
            op_rows=("operator", "count"),
            first=("evaluated_at", "min"),
            last=("evaluated_at", "max"),
        )
        .reset_index()
    )
    n_ops = _operators_per_unit(ctx)
    k_ops = per_key["unit"].map(n_ops).fillna(1).clip(lower=1).astype(float)
    chance = np.exp((1 - per_key["cases"]) * np.log(k_ops))
    one_op = (per_key["ops"] == 1) & (per_key["op_rows"] >= per_key["cases"])
    per_key["staff"] = (
        (per_key["cases"] >= s.reentry_min_cases_one_operator) & one_op & (chance < s.reentry_alpha)
    )
    per_key["agent"] = (per_key["cases"] >= s.agent_min_cases) & ~per_key["staff"]
    ctx.cache["keys"] = (per_key, rows)
    return ctx.cache["keys"]


def detect_staff_reentry(ctx: Context) -> pd.DataFrame:
    """工作人员代评（二次录入）: staff evaluating in the citizens' place.

    Two patterns over the period's first evaluations of cases:

    * one evaluator key behind at least ``reentry_min_cases_one_operator`` of the unit's cases, all
      recorded by one operator, while the chance that that many cases fall to a single operator by
      luck, n_ops^(1−k), is below ``reentry_alpha`` (a member of staff evaluating as the citizen);
    * bursts of distinct citizens' evaluations keyed in by one operator within minutes, hours after
      their cases finished but within the supplementary window (:func:`classified_bursts`, kind
      ``reentry``), at least ``reentry_burst_min_records`` in the unit.

    One key over many cases spread over operators and weeks is an agent (代办): :func:`detect_agent`.
    Severity = 0.5 + 0.5·min(1, flagged evaluations / the unit's first evaluations).
    """
    s = ctx.settings
    per_key, rows = key_groups(ctx)
    hot = per_key[per_key["staff"]] if len(per_key) else per_key
    runs = classified_bursts(ctx)
    re_runs = runs[runs["kind"] == "reentry"]
    burst_n = _count(re_runs["unit_id"], ctx.stats.index)
    burst_units = burst_n[burst_n >= s.reentry_burst_min_records].index
    key_units = pd.Index(hot["unit"].unique()) if len(hot) else pd.Index([])
    idx = key_units.union(burst_units)
    if not len(idx):
        return _empty()
    key_rows = (
        rows.merge(hot[["unit", "evaluator_key"]], on=["unit", "evaluator_key"])
        if len(hot)
        else rows.iloc[0:0]
    )
    burst_rows = re_runs[re_runs["unit_id"].astype("str").isin(burst_units)].assign(
        unit=lambda x: x["unit_id"].astype("str")
    )
    sus = pd.concat(
        [
            key_rows[["eval_id", "unit", "operator", "evaluated_at"]],
            burst_rows[["eval_id", "unit", "operator", "evaluated_at"]],
        ]
    ).drop_duplicates("eval_id")
    per_unit = (
        hot.groupby("unit").agg(keys=("evaluator_key", "size"), top=("cases", "max"))
        if len(hot)
        else pd.DataFrame(columns=["keys", "top"])
    )
    ops = sus.dropna(subset=["operator"]).groupby(["unit", "operator"]).size()
    top_op = ops.groupby(level=0).idxmax().map(lambda t: t[1]) if len(ops) else pd.Series(dtype=str)
    top_share = (
        ops.groupby(level=0).max() / sus.groupby("unit").size() if len(ops) else pd.Series(dtype=float)
    )
    records = sus.groupby("unit").size().reindex(idx).fillna(0)
    n_first = ctx.stats["n_first"].reindex(idx)
    n_bursts = burst_rows.groupby("unit")["run"].nunique().reindex(idx).fillna(0)
    f = pd.DataFrame(
        {
            "measure": per_unit["top"].reindex(idx).fillna(0).astype(float),
            "threshold": float(s.reentry_min_cases_one_operator),
            "expected": 1.0,
            "records": records,
            "keys": per_unit["keys"].reindex(idx).fillna(0),
            "burst": burst_n.reindex(idx).fillna(0),
            "runs": n_bursts,
            "op": top_op.reindex(idx).fillna(""),
            "op_share": top_share.reindex(idx).fillna(0),
            "n": n_first,
            "baseline": "群众各自评价：同一评价人标识一般只评价本人的 1–2 件办件，"
            "同一经办人的相邻评价间隔为办件所需的数分钟",
        },
        index=idx,
    )
    f["measure"] = f["measure"].where(f["keys"] > 0, f["burst"])
    f["severity"] = 0.5 + 0.5 * np.minimum(1, f["records"] / f["n"].where(f["n"] > 0)).fillna(0)

    def describe(r):
        parts = []
        if r["keys"]:
            parts.append(
                f"{r['keys']:,} 个评价人标识各自评价了本单位多件不同办件且都由同一经办人录入"
                f"（最多 {r['measure']:,.0f} 件）"
            )
        if r["burst"]:
            parts.append(
                f"{r['burst']:,} 条不同群众的评价分 {int(r['runs'])} 批在几分钟内集中录入，"
                f"距各自办件办结已数小时"
            )
        text = "；".join(parts)
        if r["op"] and r["op_share"] >= 0.5:
            text += f"，{r['op_share']:.0%} 由经办人 {r['op']} 录入"
        return text + "，疑似工作人员代替群众评价"

    ev = _evidence_by_unit(
        sus.rename(columns={"unit": "unit_id"}).sort_values("evaluated_at"), "eval_id", s.evidence_max
    )
    return _rows(ctx, "staff_reentry", f, "代评涉及评价数", describe, ev)


def detect_agent(ctx: Context) -> pd.DataFrame:
    """代办人集中评价: one evaluator key over ``agent_min_cases`` or more of a unit's cases, not staff.

    An agent (代办人, a company's clerk) brings many cases and evaluates each, at whatever window
    and day; lawful, so a low-severity kind of its own, listed for verification: whether the agent
    evaluated as the applicant agreed. Severity = 0.5 + 0.5·min(1, the agent's cases / 100).
    """
    s = ctx.settings
    per_key, rows = key_groups(ctx)
    agents = per_key[per_key["agent"]] if len(per_key) else per_key
    if agents.empty:
        return _empty()
    per_unit = agents.groupby("unit").agg(
        keys=("evaluator_key", "size"),
        top=("cases", "max"),
        cases=("cases", "sum"),
        ops=("ops", "max"),
        first=("first", "min"),
        last=("last", "max"),
    )
    f = pd.DataFrame(
        {
            "measure": per_unit["top"].astype(float),
            "threshold": float(s.agent_min_cases),
            "expected": 1.0,
            "baseline": f"群众本人一般只评价 1–2 件办件；{s.agent_min_cases} 件以上多为代办人",
            "records": per_unit["cases"],
            "keys": per_unit["keys"],
            "ops": per_unit["ops"],
            "days": (per_unit["last"] - per_unit["first"]).dt.days + 1,
            "severity": 0.5 + 0.5 * np.minimum(1, per_unit["top"] / 100),
        },
        index=per_unit.index,
    )

    def describe(r):
        return (
            f"{r['keys']:,} 个评价人标识在本单位评价了 {r['records']:,} 件不同办件"
            f"（最多 {r['measure']:,.0f} 件），"
            f"分布在 {r['days']:,} 天内、{r['ops']:,} 名经办人，疑为代办人代为评价，请核实是否经申请人同意"
        )

    agent_rows = rows.merge(agents[["unit", "evaluator_key"]], on=["unit", "evaluator_key"])
    ev = _evidence_by_unit(
        agent_rows.drop(columns="unit_id").rename(columns={"unit": "unit_id"}).sort_values("evaluated_at"),
        "eval_id",
        s.evidence_max,
    )
    return _rows(ctx, "agent", f, "单一评价人评价办件数", describe, ev)


# --- order of events ---------------------------------------------------------------------------


def detect_eval_before_case(ctx: Context) -> pd.DataFrame:
    """评价早于办结: evaluations made in the period before their case finished.

    The quality checks' rule (core.rules.made_before_case with ``settings.timing``: earlier than the
    finish by more than the one clock-skew tolerance), at least ``before_case_min`` per unit. The
    description says how many are within a minute (a device clock running behind looks like that).
    Severity = min(1, 0.6 + count / 100), halved when every one is within a minute.
    """
    s = ctx.settings
    ev = ctx.evals_in
    before = ev["linked"].to_numpy() & made_before_case(ev["evaluated_at"], ev["case_finished"], s.timing)
    early = ev.loc[before, ["eval_id", "unit_id", "evaluated_at", "case_finished"]]
    idx = ctx.stats.index
    k = _count(early["unit_id"], idx)
    gap = (early["case_finished"] - early["evaluated_at"]).dt.total_seconds()
    skew = _count(early.loc[(gap <= 60).to_numpy(), "unit_id"], idx)
    flag = k >= s.before_case_min
    tol = s.timing.clock_skew_tolerance.total_seconds()
    f = pd.DataFrame(
        {
            "measure": k,
            "threshold": s.before_case_min,
            "expected": 0.0,
            "baseline": f"正常应为 0（容许的时钟误差 {tol:g} 秒，与数据质检相同）",
            "records": k,
            "skew": skew,
            "severity": np.minimum(1, 0.6 + k / 100) * np.where(skew == k, 0.5, 1.0),
        },
        index=idx,
    )[flag]

    def describe(r):
        text = f"{r['records']:,} 条评价的评价时间早于所评办件的办结时间"
        if r["skew"] == r["records"]:
            text += "，且都只早 1 分钟以内，可能是评价设备时钟偏慢，请校准"
        elif r["skew"]:
            text += f"（其中 {r['skew']:,} 条只早 1 分钟以内）"
        return text

    evid = _evidence_by_unit(early, "eval_id", s.evidence_max)
    return _rows(ctx, "eval_before_case", f, "评价早于办结条数", describe, evid)


# --- too perfect -------------------------------------------------------------------------------


def _lower_quartile_rate(ctx: Context, k: pd.Series, n: pd.Series, min_n: pd.Series) -> pd.Series:
    """Per unit: the lower quartile of k/n over its level's units with n ≥ min_n (city's as fallback)."""
    s = ctx.settings
    level = ctx.units["level"]
    rates = (k / n.where(n > 0)).where(n >= min_n)
    quartile = rates.groupby(level).quantile(s.too_perfect_baseline_quantile)
    enough = rates.groupby(level).count() >= s.peer_min_units
    if rates.count() >= s.peer_min_units:
        city_wide = float(rates.quantile(s.too_perfect_baseline_quantile))
    else:
        city_wide = float(k.sum() / n.sum()) if n.sum() else 0.0
    return level.map(quartile.where(enough, city_wide)).fillna(city_wide).astype(float)


def detect_too_perfect(ctx: Context) -> pd.DataFrame:
    """评价结果过于完美: judged from the whole picture, over citizens' first evaluations.

    Two routes, system defaults excluded throughout:

    * no 差评 at all although some are expected (100% 评价率 too): baseline p = the lower quartile
      (``too_perfect_baseline_quantile``) of the 差评 rates of the level's units large enough to show
      some; P(0 | n, p) = (1 − p)^n below ``too_perfect_alpha``;
    * the grade distribution too good against peers AND a concentration no citizen crowd produces:
      the share of grades other than 非常满意 so low that P(X ≤ k | n, q) (exact binomial, q = the
      lower quartile of the level's shares) is below ``too_perfect_picture_alpha``, with at least
      ``too_perfect_min_evaluations`` evaluations, and either ``too_perfect_fast_share`` of the
      evaluations of cases made within ``too_perfect_fast_seconds`` of the finish (lag concentration)
      or ``too_perfect_channel_share`` from one on-site channel (channel concentration).

    Severity = min(1, −log10 P / 10).
    """
    s = ctx.settings
    st = ctx.stats
    idx = st.index
    bad, n_all = st["n_bad_citizen_first"], st["n_citizen_first"]
    level = ctx.units["level"]
    pooled = level.map(bad.groupby(level).sum() / n_all.groupby(level).sum().replace(0, np.nan)).fillna(0)
    p = _lower_quartile_rate(ctx, bad, n_all, s.too_perfect_min_expected / pooled.replace(0, np.nan))
    full_rate = (st["n_cases"] == 0) | (st["n_cases_evaluated"] >= st["n_cases"])
    n = n_all.astype(float)
    with np.errstate(divide="ignore"):
        log_p0 = n * np.log1p(-p.clip(upper=1 - 1e-12))
    p0 = np.exp(log_p0)
    route_zero = (bad == 0) & full_rate & (n > 0) & (p > 0) & (p0 < s.too_perfect_alpha)

    # The whole picture, over citizens' first evaluations of cases (a fake is made at a case's close):
    # grades against the level, lags from the finish and the devices used.
    first = ctx.first_in
    linked = first.loc[
        (first["channel"] != "system_default").to_numpy() & first["linked"].to_numpy(),
        ["unit_id", "channel", "satisfaction", "evaluated_at", "case_finished"],
    ]
    n_l = _count(linked["unit_id"], idx)
    non5 = _count(linked.loc[(linked["satisfaction"] < 5).to_numpy(), "unit_id"], idx)
    q = _lower_quartile_rate(ctx, non5, n_l, pd.Series(float(s.too_perfect_min_evaluations), index=idx))
    lag_s = (linked["evaluated_at"] - linked["case_finished"]).dt.total_seconds().to_numpy()
    fast = (lag_s >= 0) & (lag_s <= s.too_perfect_fast_seconds)
    fast_share = (_count(linked.loc[fast, "unit_id"], idx) / n_l.replace(0, np.nan)).fillna(0)
    onsite = linked[isin(linked["channel"], ONSITE_CHANNELS)]
    top_channel = (
        onsite.groupby([onsite["unit_id"].astype("str"), onsite["channel"].astype("str")])
        .size()
        .groupby(level=0)
        .max()
        if len(onsite)
        else pd.Series(dtype=float)
    )
    channel_share = (top_channel.reindex(idx).fillna(0) / n_l.replace(0, np.nan)).fillna(0)
    concentrated = (fast_share >= s.too_perfect_fast_share) | (channel_share >= s.too_perfect_channel_share)
    # The grade test, exact, where a concentration already stands out (two independent signs).
    candidates = (n_l >= s.too_perfect_min_evaluations) & concentrated
    p_grade = pd.Series(1.0, index=idx)
    p_grade[candidates] = binomial_lower_tail(
        non5[candidates], n_l[candidates], q[candidates].clip(lower=1e-9)
    )
    route_picture = candidates & (p_grade < s.too_perfect_picture_alpha)
    flag = (route_zero | route_picture).fillna(False)
    measure = np.where(route_zero, p0, p_grade)
    f = pd.DataFrame(
        {
            "measure": measure,
            "threshold": s.too_perfect_alpha,
            "expected": np.where(route_zero, n * p, n_l * q),
            "records": np.where(route_zero, n_all, n_l),
            "severity": np.minimum(1, -np.log10(np.clip(measure, 1e-300, 1)) / 10),
            "zero": route_zero,
            "p": p,
            "q": q,
            "share5": 1 - non5 / n_l.replace(0, np.nan),
            "fast": fast_share,
            "chan": channel_share,
        },
        index=idx,
    )[flag]
    f["baseline"] = [
        f"同层级常见差评率（下四分位数）{pp:.2%}、非“非常满意”占比（下四分位数）{fmt_pct(qq)}"
        for pp, qq in zip(f["p"], f["q"], strict=True)
    ]

    def describe(r):
        parts = []
        if r["zero"]:
            parts.append(
                f"评价率 100%，群众作出的 {r['records']:,} 件首次评价无一差评；"
                f"按同层级常见差评率 {r['p']:.2%} 应有约 {r['records'] * r['p']:,.1f} 件，"
                f"全无差评的概率为 {r['measure']:.1e}"
            )
        else:
            parts.append(
                f"群众作出的 {r['records']:,} 件办件首次评价中“非常满意”占 {fmt_pct(r['share5'])}，"
                f"同层级常见水平下如此之高的概率为 {r['measure']:.1e}"
            )
        if r["fast"] >= s.too_perfect_fast_share:
            parts.append(f"{fmt_pct(r['fast'])} 在办结后 {s.too_perfect_fast_seconds:g} 秒内作出")
        if r["chan"] >= s.too_perfect_channel_share:
            parts.append(f"{fmt_pct(r['chan'])} 来自同一种现场评价设备")
        return "，".join(parts) + "，评价结果过于完美"

    return _rows(ctx, "too_perfect", f, "概率（无差评或等级过于集中）", describe)


# --- invalid bad reviews -----------------------------------------------------------------------


def detect_high_invalid_bad(ctx: Context) -> pd.DataFrame:
    """无效差评偏多: invalid 差评 per evaluation far above the level's rate.

    The rate is invalid 差评 / evaluations the citizens made in the period (system defaults
    excluded); the baseline is the pooled rate of the unit's level without the unit itself (its own
    excess is not its baseline), or the city's pooled rate (also without it) when one other unit
    makes more than ``invalid_peer_max_unit_share`` of those evaluations (the level's rate would then
    be mostly that unit's own). Flagged with at least ``invalid_min`` invalid 差评, a rate of at least
    ``invalid_factor`` × baseline, and a Chernoff bound below ``alpha``. The rule is repeated with
    the baselines also leaving out the units already flagged, until no more are, so that two units
    with many invalid 差评 in one small level do not hide each other.
    Severity = 1 − baseline/rate.
    """
    s = ctx.settings
    st = ctx.stats
    level = ctx.units["level"]
    n, k = st["n_citizen"], st["n_invalid_bad"]
    rate = (k / n.where(n > 0)).fillna(0)

    def baseline(excluded: pd.Series) -> pd.Series:
        """Per unit: the level's (or the city's) pooled rate without the unit and the excluded ones."""
        nn, kk = n.where(~excluded, 0), k.where(~excluded, 0)
        level_n, level_k = level.map(nn.groupby(level).sum()), level.map(kk.groupby(level).sum())
        others_n, others_k = level_n - nn, level_k - kk
        top = nn.groupby(level).nlargest(2).groupby(level=0).agg(list)
        first, second = level.map(top.str[0]).fillna(0), level.map(top.str[1]).fillna(0)
        largest_other = np.where(nn >= first, second, first)  # the unit itself may be the largest
        dominated = largest_other > s.invalid_peer_max_unit_share * others_n
        city = (kk.sum() - kk) / (nn.sum() - nn).replace(0, np.nan)
        own_level = others_k / others_n.replace(0, np.nan)
        return pd.Series(np.where(dominated, city, own_level), index=st.index).fillna(0).astype(float)

    def rule(p: pd.Series) -> pd.Series:
        bound = binomial_tail_bound(k, n, p.clip(lower=1e-9), lower=False)
        return (k >= s.invalid_min) & (rate >= s.invalid_factor * p) & (bound < s.alpha)

    flag = pd.Series(False, index=st.index)
    for _ in range(5):  # until the set of flagged units stops changing (it only grows)
        p = baseline(flag)
        again = rule(p) | flag
        if again.equals(flag):
            break
        flag = again
    f = pd.DataFrame(
        {
            "measure": rate,
            "threshold": s.invalid_factor * p,
            "expected": p,
            "records": k,
            "severity": 1 - p / rate.where(rate > 0),
            "bad": st["n_bad"],
            "n": n,
        },
        index=st.index,
    )[flag]
    f["baseline"] = [f"同层级（或全市）每万件评价无效差评 {x * 1e4:.1f} 件" for x in f["expected"]]

    def describe(r):
        return (
            f"{r['n']:,} 件评价中无效差评 {r['records']:,} 件（差评共 {r['bad']:,} 件），每万件 "
            f"{r['measure'] * 1e4:.1f} 件，同层级 {r['expected'] * 1e4:.1f} 件，无效差评偏多"
        )

    invalid = ctx.evals_in[ctx.evals_in["invalid_bad"]]
    ev = _evidence_by_unit(invalid, "eval_id", s.evidence_max)
    return _rows(ctx, "high_invalid_bad", f, "无效差评率", describe, ev)


DETECTORS = {
    "zero_data": detect_zero_data,
    "low_volume": detect_low_volume,
    "low_onsite": detect_low_onsite,
    "low_active": detect_low_active,
    "backfill": detect_backfill,
    "late_aggregation": detect_late_aggregation,
    "late_reporting": detect_late_reporting,
    "duplicates": detect_duplicates,
    "staff_reentry": detect_staff_reentry,
    "agent": detect_agent,
    "eval_before_case": detect_eval_before_case,
    "too_perfect": detect_too_perfect,
    "high_invalid_bad": detect_high_invalid_bad,
}
