"""The detectors: one function per anomaly kind, each returning findings with evidence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from haocha_analysis.analysis.anomalies.features import Context, _count
from haocha_analysis.analysis.anomalies.settings import FINDING_COLUMNS, KINDS, Settings
from haocha_analysis.core import config
from haocha_analysis.core.arrays import isin
from haocha_analysis.core.calendar import after_hours, workday_calendar, working_days_between
from haocha_analysis.core.periods import Period
from haocha_analysis.core.schemas import ONSITE_CHANNELS
from haocha_analysis.core.stats import binomial_tail_bound, poisson_lower_bound

# --- findings ----------------------------------------------------------------------------------


def _fmt_pct(x: float) -> str:
    return "/" if x is None or not np.isfinite(x) else f"{x:.1%}"


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


def _plain_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values, counts kept as int (for the Chinese descriptions)."""
    rows = frame.to_dict("records")
    for row in rows:
        for key, value in row.items():
            if (
                isinstance(value, float)
                and value.is_integer()
                and key in ("records", "k", "n", "n_cases", "late", "burst", "keys", "bad", "long")
            ):
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
    """Finding rows from a per-unit frame (columns measure, threshold, expected, severity, records)."""
    if flagged.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    u = ctx.units.loc[flagged.index]
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
    out = pd.DataFrame(
        {
            "measure": share,
            "threshold": threshold,
            "expected": med,
            "severity": 1 - share / med.where(med > 0),
            "records": n,
            "k": k,
            "p": p,
        }
    )
    return out[flag.fillna(False)]


def detect_zero_data(ctx: Context) -> pd.DataFrame:
    """零数据: reference units with no case finished and no evaluation made in the period.

    With history: reported when the unit had records in an earlier period (a unit that never had
    any is dormant, not a change). Without history: reported when at least
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
    hist_records = sum((h["n_records"] for h in ctx.history.values()), pd.Series(0, index=st.index))
    had = hist_records > 0
    if ctx.history:
        # With history, a unit that never had records is dormant, not a change: only units that had
        # records in an earlier period and have none now are reported.
        flag = (~has) & had
    else:
        flag = (~has) & (level_cov >= s.zero_data_peer_coverage) & (units["level"] != "")
    f = pd.DataFrame(
        {
            "measure": 0.0,
            "threshold": 0.0,
            "expected": np.where(had, hist_records / max(len(ctx.history), 1), level_cov),
            "severity": np.where(had, 0.9, 0.6),
            "records": 0,
            "had": had,
            "cov": level_cov,
        },
        index=st.index,
    )[flag]

    def describe(r):
        if r["had"]:
            return f"本期无任何办件和评价记录，历史各期平均有 {r['expected']:,.0f} 条记录"
        return f"本期无任何办件和评价记录（同层级 {r['cov']:.0%} 的单位有记录）"

    return _rows(ctx, "zero_data", f, "本期记录数", describe)


def detect_low_volume(ctx: Context) -> pd.DataFrame:
    """评价数据量过低: against the unit's own history and against peers of the same level.

    Three signals, robust statistics throughout (median, scaled MAD):
    * evaluations per case (first evaluations made / cases finished) below
      ``low_volume_ratio_factor`` × the peer median and below median − robust_z·σ;
    * evaluation volume far below peers: log10 volume's robust z below −robust_z and volume below
      ``low_volume_peer_factor`` × the peer median (peers with a median of at least
      ``low_volume_peer_min_median``);
    * daily volume below ``low_volume_history_factor`` × the median of the unit's earlier periods.
    Each also needs a Chernoff tail bound below ``alpha``. The peer-volume signal applies only when
    no usable history is given (peers differ in size; the unit's past is the better expectation);
    units with no record at all are zero_data. Severity = 1 − measure/expected.
    """
    s = ctx.settings
    st = ctx.stats
    n_first, n_cases = st["n_first"], st["n_cases"]
    groups = ctx.units["peer_group"]

    # (a) evaluations per case
    elig_ratio = n_cases >= s.low_volume_min_cases
    ratio = (n_first / n_cases.where(n_cases > 0)).astype(float)
    peers = _peer_stats(ctx, ratio, elig_ratio)
    thr_a = np.minimum(
        peers["median"] * s.low_volume_ratio_factor, peers["median"] - s.robust_z * peers["sigma"]
    )
    p_a = binomial_tail_bound(
        np.minimum(n_first, n_cases), n_cases, peers["median"].fillna(0).clip(0, 1), True
    )
    flag_a = (elig_ratio & (ratio < thr_a) & (p_a < s.alpha)).fillna(False)

    # (b) volume against peers (log scale); units with any record in the period only
    active_units = (n_first + n_cases) > 0
    logv = np.log10(n_first.astype(float) + 1).where(active_units)
    frame = pd.DataFrame({"v": logv, "g": groups, "n": n_first.where(active_units)})
    med_log = frame.groupby("g")["v"].median()
    mad_log = frame.assign(d=(frame["v"] - frame["g"].map(med_log)).abs()).groupby("g")["d"].median()
    med_n = frame.groupby("g")["n"].median()
    size = frame.groupby("g")["v"].count()
    z = (logv - groups.map(med_log)) / (1.4826 * groups.map(mad_log)).replace(0, np.nan)
    peer_med_n = groups.map(med_n)
    p_b = poisson_lower_bound(n_first, peer_med_n.fillna(0))
    flag_b = (
        active_units
        & (groups.map(size) >= s.peer_min_units)
        & (peer_med_n >= s.low_volume_peer_min_median)
        & (z < -s.robust_z)
        & (n_first < s.low_volume_peer_factor * peer_med_n)
        & (p_b < s.alpha)
    ).fillna(False)

    # (c) against the unit's own history (daily rate, so months and quarters compare)
    if len(ctx.history) >= s.low_volume_history_min_periods:
        rates = pd.concat({k: h["n_first"] / h["days"] for k, h in ctx.history.items()}, axis=1)
        hist_rate = rates.median(axis=1)
        expected_c = hist_rate * ctx.period.days
        p_c = poisson_lower_bound(n_first, expected_c.fillna(0))
        flag_c = (
            (expected_c >= s.low_volume_history_min_expected)
            & (n_first < s.low_volume_history_factor * expected_c)
            & (p_c < s.alpha)
        ).fillna(False)
    else:
        expected_c = pd.Series(np.nan, index=st.index)
        flag_c = pd.Series(False, index=st.index)

    # A unit with no record at all is reported as zero_data. With a usable history, each unit's past
    # is its expectation: peers differ in size (a small development zone's town centre serves fewer
    # people, quarter after quarter), so the peer-volume signal applies only without history.
    has_records = (n_first + n_cases + st["n_evals"]) > 0
    if len(ctx.history) >= s.low_volume_history_min_periods:
        flag_b = flag_b & False
    flag = (flag_a | flag_b | flag_c) & has_records
    measure = np.where(flag_c, n_first, np.where(flag_a, ratio, n_first))
    threshold = np.where(
        flag_c,
        s.low_volume_history_factor * expected_c,
        np.where(flag_a, thr_a, s.low_volume_peer_factor * peer_med_n),
    )
    expected = np.where(flag_c, expected_c, np.where(flag_a, peers["median"], peer_med_n))
    f = pd.DataFrame(
        {
            "measure": measure,
            "threshold": threshold,
            "expected": expected,
            "severity": 1
            - pd.Series(measure, index=st.index) / pd.Series(expected, index=st.index).replace(0, np.nan),
            "records": n_first,
            "a": flag_a,
            "b": flag_b,
            "c": flag_c,
            "ratio": ratio,
            "ratio_med": peers["median"],
            "n_cases": n_cases,
            "peer_n": peer_med_n,
            "hist": expected_c,
        },
        index=st.index,
    )[flag]

    def describe(r):
        parts = []
        if r["c"]:
            parts.append(f"本期首次评价 {r['records']:,} 件，按本单位历史应有约 {r['hist']:,.0f} 件")
        if r["a"]:
            parts.append(
                f"办件 {r['n_cases']:,} 件仅有评价 {r['records']:,} 件（每件 {r['ratio']:.2f}，"
                f"同类单位中位数 {r['ratio_med']:.2f}）"
            )
        if r["b"]:
            parts.append(f"评价量 {r['records']:,} 件，同类单位中位数 {r['peer_n']:,.0f} 件")
        return "；".join(parts) + "，评价数据量过低"

    # Evidence: cases finished in the period that have no first evaluation.
    missing = ctx.cases_in[~ctx.cases_in["has_first"] & ctx.cases_in["unit_id"].isin(f.index)]
    ev = _evidence_by_unit(missing, "case_id", s.evidence_max)
    return _rows(ctx, "low_volume", f, "首次评价数或评价/办件比", describe, ev)


def detect_low_onsite(ctx: Context) -> pd.DataFrame:
    """现场评价量较少: share of first evaluations via on-site channels (schemas.ONSITE_CHANNELS).

    Only for units whose peers evaluate on site (peer median ≥ ``low_onsite_peer_min``); flagged when
    the share is below both ``low_share_factor`` × median and median − robust_z·σ, with a Chernoff
    bound below ``alpha``. Severity = 1 − share/median.
    """
    s = ctx.settings
    st = ctx.stats
    f = _low_share(ctx, st["n_onsite"], st["n_citizen_linked"], s.low_onsite_peer_min)
    first = ctx.first_in
    off = first[~isin(first["channel"], ONSITE_CHANNELS) & isin(first["unit_id"], f.index)]
    ev = _evidence_by_unit(off, "eval_id", s.evidence_max)

    def describe(r):
        return (
            f"群众作出的办件首次评价 {r['records']:,} 件中现场评价 {r['k']:,} 件"
            f"（{_fmt_pct(r['measure'])}），"
            f"同类单位中位数 {_fmt_pct(r['expected'])}，“现场评价”量较少"
        )

    return _rows(ctx, "low_onsite", f, "现场评价占比", describe, ev)


def detect_low_active(ctx: Context) -> pd.DataFrame:
    """主动评价率偏低: share of cases' first evaluations made by the citizen, not system defaults.

    An absolute rule, not a peer comparison: active shares differ between districts by policy (the
    reference bulletin's 附件1 ranges from 0.05% to 88%), so peers would flag whole districts. A
    unit is flagged when its share is below ``low_active_max_share`` with at least
    ``min_first_evaluations`` first evaluations whose active flag is known, and the share is
    confidently below the limit (Chernoff bound of P(X ≤ k | n, limit) below ``low_active_alpha``);
    units whose flag is
    unknown for every evaluation are skipped (shown as "/" in tables). Severity = 1 − share/limit.
    """
    s = ctx.settings
    st = ctx.stats
    k, n = st["n_active"], st["n_active_known"]
    share = (k / n.where(n > 0)).astype(float)
    # Confident, not merely observed: P(X ≤ k | n, limit) below low_active_alpha (Chernoff bound), so
    # a village with 1 active of 38 is not called low on its own.
    p = binomial_tail_bound(k, n, np.full(len(n), s.low_active_max_share), lower=True)
    flag = (n >= s.min_first_evaluations) & (share < s.low_active_max_share) & (p < s.low_active_alpha)
    f = pd.DataFrame(
        {
            "measure": share,
            "threshold": s.low_active_max_share,
            "expected": s.low_active_max_share,
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
            f"办件首次评价 {r['records']:,} 件中主动评价仅 {r['k']:,} 件（{_fmt_pct(r['measure'])}，"
            f"低于 {_fmt_pct(r['threshold'])}），评价基本为系统默认评价"
        )

    return _rows(ctx, "low_active", f, "主动评价率", describe, ev)


def first_evaluation_lags(ctx: Context) -> pd.DataFrame:
    """First evaluations made in the period, joined to their case: working-day lag after finishing."""
    cols = ["eval_id", "case_id", "unit_id", "channel", "evaluated_at", "operator", "case_finished"]
    linked = ctx.first_in.loc[ctx.first_in["linked"], cols].rename(columns={"case_finished": "finished_at"})
    linked["lag_workdays"] = working_days_between(linked["finished_at"], linked["evaluated_at"])
    linked["lag_hours"] = (linked["evaluated_at"] - linked["finished_at"]).dt.total_seconds() / 3600
    return linked


def burst_runs(evaluations: pd.DataFrame, settings: Settings, period: Period) -> pd.DataFrame:
    """Evaluations that belong to a burst of near-identical timestamps within their unit.

    A run is a maximal sequence of a unit's evaluations (system defaults excluded: the system makes
    them, not people), all inside or all outside working hours, whose consecutive gaps are at most
    ``burst_gap_seconds``. A run is a burst when it has at least ``m`` records: the larger of a floor
    (``burst_min_size`` in working hours, ``burst_min_size_after_hours`` outside them, when halls are
    closed) and the size for which a Poisson process expects fewer than ``burst_false_alarm`` such
    runs. The Poisson rate is the unit's own rate in the run's clock hour on that kind of day
    (working day or not), times ``burst_peak_factor``: busy units and busy hours need longer runs.

    Returns:
        The evaluations in bursts: eval_id, unit_id, evaluated_at, operator, after_hours, run, run_size.
    """
    cols = ["eval_id", "unit_id", "evaluated_at", "operator"]
    ev = evaluations.loc[
        (evaluations["channel"] != "system_default") & evaluations["evaluated_at"].notna(), cols
    ]
    empty = ev.assign(after_hours=pd.Series(dtype=bool), run=pd.Series(dtype="int64"),
                      run_size=pd.Series(dtype="int64"))  # fmt: skip
    if ev.empty:
        return empty
    ucode = ev["unit_id"].cat.codes if isinstance(ev["unit_id"].dtype, pd.CategoricalDtype) else None
    unit_key = ucode if ucode is not None else ev["unit_id"].astype("str")
    ev = ev.assign(unit=unit_key.to_numpy()).sort_values(["unit", "evaluated_at"], kind="stable")
    t_ = ev["evaluated_at"]
    days = t_.dt.normalize()
    cal = workday_calendar(min(days.min().date(), period.start), max(days.max().date(), period.end))
    workday = days.map(cal).fillna(True).astype(bool).to_numpy()
    hour = t_.dt.hour.to_numpy()
    frac = hour + t_.dt.minute.to_numpy() / 60
    ah = ~workday | (frac < config.WORKDAY_START_HOUR) | (frac >= config.WORKDAY_END_HOUR)
    ev["after_hours"] = ah
    t = t_.to_numpy("datetime64[ms]").astype(np.int64) / 1000.0
    u = ev["unit"].to_numpy()
    gap = np.diff(t, prepend=np.nan)
    same = np.r_[False, (u[1:] == u[:-1]) & (ah[1:] == ah[:-1])]
    run = np.cumsum(~(same & (gap <= settings.burst_gap_seconds)))
    ev["run"] = run
    ev["run_size"] = ev.groupby("run")["run"].transform("size")
    # The unit's rate in each (kind of day, clock hour): evaluations / hours of that kind in the period.
    in_period = cal[(cal.index >= period.start_ts) & (cal.index < period.end_ts)]
    n_work, n_off = max(int(in_period.sum()), 1), max(int((~in_period).sum()), 1)
    bucket = workday.astype(np.int64) * 24 + hour
    n_bucket = ev.assign(b=bucket).groupby(["unit", "b"])["eval_id"].transform("size").to_numpy(dtype=float)
    hours = np.where(workday, n_work, n_off) * 3600.0
    lam = n_bucket / hours * settings.burst_peak_factor
    q = np.clip(1 - np.exp(-lam * settings.burst_gap_seconds), 1e-12, 1 - 1e-9)
    m = 1 + np.log(settings.burst_false_alarm / n_bucket) / np.log(q)
    floor = np.where(ah, settings.burst_min_size_after_hours, settings.burst_min_size)
    ev["m"] = np.maximum(floor, np.ceil(m))
    m_run = ev.groupby("run")["m"].transform("max").to_numpy()
    out = ev[ev["run_size"].to_numpy() >= m_run]
    return out.drop(columns=["unit", "m"])


def detect_backfill(ctx: Context) -> pd.DataFrame:
    """事后补录: first evaluations long after the case finished, or bursts of near-identical timestamps.

    A first evaluation is late when it comes more than ``supplementary_working_days`` working days
    (chinese_calendar, 调休 included) after its case finished. A unit is flagged when its suspicious
    evaluations (late ∪ in a burst, system defaults excluded) number at least
    ``backfill_min_records`` and either the late ones reach ``backfill_min_share`` of its linked first
    evaluations or the burst ones reach ``backfill_min_records``. The description gives the after-hours
    share and the leading operator's share of the suspicious records.

    Severity = 0.5 + 0.3·min(1, share/backfill_full_share) + 0.1·after-hours share + 0.1·top operator share.
    """
    s = ctx.settings
    lags = first_evaluation_lags(ctx)
    lags = lags[lags["channel"] != "system_default"]
    late = lags[lags["lag_workdays"].fillna(0) > s.supplementary_working_days]
    linked_n = _count(lags["unit_id"], ctx.stats.index)
    late_n = _count(late["unit_id"], ctx.stats.index)
    bursts = burst_runs(ctx.first_in, s, ctx.period)
    burst_n = _count(bursts["unit_id"], ctx.stats.index)

    sus = pd.concat(
        [
            bursts[["eval_id", "unit_id", "evaluated_at", "operator"]].assign(src=0),
            late[["eval_id", "unit_id", "evaluated_at", "operator"]].assign(src=1),
        ]
    ).drop_duplicates("eval_id")
    sus["unit"] = sus["unit_id"].astype("str")
    sus_n = _count(sus["unit"], ctx.stats.index)
    late_share = (late_n / linked_n.where(linked_n > 0)).fillna(0)
    # Citizens' own late evaluations (SMS links, the website) form a small tail everywhere: a unit's
    # late share must stand out from its level's pooled share (Chernoff bound), not only exceed a floor.
    level = ctx.units["level"]
    base = (late_n.groupby(level).sum() / linked_n.groupby(level).sum().replace(0, np.nan)).fillna(0)
    baseline = level.map(base).fillna(0).astype(float)
    p_late = binomial_tail_bound(late_n, linked_n, baseline.clip(lower=1e-6), lower=False)
    late_ok = (
        (late_n >= s.backfill_min_records)
        & (late_share >= np.maximum(s.backfill_min_share, s.backfill_baseline_factor * baseline))
        & (p_late < s.alpha)
    )
    flag = (sus_n >= s.backfill_min_records) & (late_ok | (burst_n >= s.backfill_min_records))
    if not flag.any():
        return pd.DataFrame(columns=FINDING_COLUMNS)
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
    idx = flag[flag].index
    f = pd.DataFrame(
        {
            "measure": share[idx],
            "threshold": s.backfill_min_share,
            "expected": 0.0,
            "records": sus_n[idx],
            "late": late_n[idx],
            "burst": burst_n[idx],
            "ah": ah.reindex(idx).fillna(0),
            "top": top.reindex(idx).fillna(0),
            "top_name": top_name.reindex(idx).fillna(""),
        },
        index=idx,
    )
    f["severity"] = (
        0.5 + 0.3 * np.minimum(1, f["measure"] / s.backfill_full_share) + 0.1 * f["ah"] + 0.1 * f["top"]
    )

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


def detect_late_aggregation(ctx: Context) -> pd.DataFrame:
    """办件归集不及时: cases finished in the period reported more than ``late_report_limit`` later.

    Flagged when a unit has at least ``late_min_cases`` late cases, a late share of at least
    ``late_min_share`` and ``late_baseline_factor`` × the city-wide share, with a Chernoff bound
    below ``alpha``. Severity = min(1, late share / 0.5)·0.8 + 0.2·(share of late cases over a day).
    """
    s = ctx.settings
    c = ctx.cases_in[ctx.cases_in["reported_at"].notna()]
    delay = c["reported_at"] - c["finished_at"]
    late_mask = delay > s.late_report_limit
    late = c[late_mask].assign(delay_h=delay[late_mask].dt.total_seconds() / 3600)
    idx = ctx.stats.index
    n = _count(c["unit_id"], idx)
    k = _count(late["unit_id"], idx)
    long_k = _count(late.loc[late["delay_h"] > 24, "unit_id"], idx)
    baseline = float(k.sum() / n.sum()) if n.sum() else 0.0
    share = (k / n.where(n > 0)).fillna(0)
    p = binomial_tail_bound(k, n, np.full(len(n), max(baseline, 1e-6)), lower=False)
    flag = (
        (k >= s.late_min_cases)
        & (share >= max(s.late_min_share, s.late_baseline_factor * baseline))
        & (p < s.alpha)
    )
    med_delay = late.groupby(late["unit_id"].astype("str"))["delay_h"].median()
    f = pd.DataFrame(
        {
            "measure": share,
            "threshold": max(s.late_min_share, s.late_baseline_factor * baseline),
            "expected": baseline,
            "records": k,
            "n": n,
            "long": long_k,
            "med": med_delay.reindex(idx),
        },
        index=idx,
    )[flag]
    f["severity"] = 0.8 * np.minimum(1, f["measure"] / 0.5) + 0.2 * (
        f["long"] / f["records"].where(f["records"] > 0)
    ).fillna(0)
    limit_min = s.late_report_limit.total_seconds() / 60

    def describe(r):
        return (
            f"办结 {r['n']:,} 件中 {r['records']:,} 件超过 {limit_min:g} 分钟才归集"
            f"（{_fmt_pct(r['measure'])}，"
            f"全市 {_fmt_pct(r['expected'])}），超时办件归集延迟中位数 {r['med']:.1f} 小时，办件归集不及时"
        )

    ev = _evidence_by_unit(late[isin(late["unit_id"], f.index)], "case_id", s.evidence_max, "delay_h")
    return _rows(ctx, "late_aggregation", f, "超时归集办件占比", describe, ev)


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


def _operators_per_unit(ctx: Context) -> pd.Series:
    """Distinct operators recording first evaluations in the period, per unit (string index)."""
    f = ctx.first_in.loc[ctx.first_in["operator"].notna(), ["unit_id", "operator"]]
    if f.empty:
        return pd.Series(dtype="int64")
    op_codes, _ = pd.factorize(f["operator"])
    frame = pd.DataFrame({"u": f["unit_id"].cat.codes.to_numpy(), "o": op_codes}).drop_duplicates()
    counts = frame.groupby("u").size()
    counts.index = f["unit_id"].cat.categories[counts.index].astype("str")
    return counts


def detect_staff_reentry(ctx: Context) -> pd.DataFrame:
    """工作人员代评（二次录入）: one evaluator key behind many of a unit's cases.

    Per unit and evaluator key, over first evaluations of cases made in the period: the key is
    flagged when it evaluated at least ``reentry_min_cases`` distinct cases, or at least
    ``reentry_min_cases_one_operator`` cases all recorded by one operator while the chance that
    that many of the unit's cases fall to a single operator by luck, n_ops^(1−k), is below
    ``reentry_alpha`` (n_ops = the unit's operators in the period). Citizens who return (agents,
    companies) spread over windows; a member of staff evaluating as the citizen does not.
    Severity = 0.5 + 0.5·min(1, flagged evaluations / the unit's first evaluations).
    """
    s = ctx.settings
    first = ctx.first_in[ctx.first_in["evaluator_key"].notna() & (ctx.first_in["cid"] >= 0)]
    # Only keys seen at least reentry_min_cases_one_operator times can be flagged: filter before the
    # detailed group-by (most keys appear once).
    key_codes, _ = pd.factorize(first["evaluator_key"])
    pair = first["unit_id"].cat.codes.to_numpy().astype(np.int64) * (
        int(key_codes.max()) + 1 if len(key_codes) else 1
    )
    pair = pair + key_codes
    _, inverse, pair_counts = np.unique(pair, return_inverse=True, return_counts=True)
    first = first[pair_counts[inverse] >= s.reentry_min_cases_one_operator]
    first = first.assign(unit=first["unit_id"].astype("str"))
    per_key = first.groupby(["unit", "evaluator_key"], observed=True).agg(
        cases=("cid", "nunique"), ops=("operator", "nunique"), op_rows=("operator", "count")
    )
    per_key = per_key.reset_index()
    n_ops = _operators_per_unit(ctx)
    k_ops = per_key["unit"].map(n_ops).fillna(1).clip(lower=1).astype(float)
    chance = np.exp((1 - per_key["cases"]) * np.log(k_ops))
    one_op = (per_key["ops"] == 1) & (per_key["op_rows"] >= per_key["cases"])
    hot_mask = (per_key["cases"] >= s.reentry_min_cases) | (
        (per_key["cases"] >= s.reentry_min_cases_one_operator) & one_op & (chance < s.reentry_alpha)
    )
    hot = per_key[hot_mask]
    if hot.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    per_unit = hot.groupby("unit").agg(
        keys=("evaluator_key", "size"), cases=("cases", "sum"), top=("cases", "max")
    )
    rows = first.merge(hot[["unit", "evaluator_key"]], on=["unit", "evaluator_key"])
    ops = rows.dropna(subset=["operator"]).groupby(["unit", "operator"]).size()
    top_op = ops.groupby(level=0).idxmax().map(lambda t: t[1]) if len(ops) else pd.Series(dtype=str)
    top_share = (
        ops.groupby(level=0).max() / rows.groupby("unit").size() if len(ops) else pd.Series(dtype=float)
    )
    idx = per_unit.index
    n_first = ctx.stats["n_first"].reindex(idx)
    f = pd.DataFrame(
        {
            "measure": per_unit["top"],
            "threshold": s.reentry_min_cases,
            "expected": 1.0,
            "records": per_unit["cases"],
            "keys": per_unit["keys"],
            "op": top_op.reindex(idx).fillna(""),
            "op_share": top_share.reindex(idx).fillna(0),
            "n": n_first,
        },
        index=idx,
    )
    f["severity"] = 0.5 + 0.5 * np.minimum(1, f["records"] / f["n"].where(f["n"] > 0)).fillna(0)

    def describe(r):
        text = (
            f"{r['keys']:,} 个评价人标识在本单位评价了多件不同办件（最多 {r['measure']:,.0f} 件，"
            f"合计 {r['records']:,} 件）"
        )
        if r["op"] and r["op_share"] >= 0.5:
            text += f"，{r['op_share']:.0%} 由经办人 {r['op']} 录入"
        return text + "，疑似工作人员代替群众评价"

    ev = _evidence_by_unit(rows.sort_values("evaluated_at"), "eval_id", s.evidence_max)
    return _rows(ctx, "staff_reentry", f, "单一评价人评价办件数", describe, ev)


def detect_eval_before_case(ctx: Context) -> pd.DataFrame:
    """评价早于办结: evaluations made in the period before their case finished (beyond a tolerance).

    At least ``before_case_min`` per unit. Severity = min(1, 0.6 + count / 100).
    """
    s = ctx.settings
    ev = ctx.evals_in[ctx.evals_in["linked"]]
    early = ev[ev["evaluated_at"] < ev["case_finished"] - s.before_case_tolerance]
    k = _count(early["unit_id"], ctx.stats.index)
    flag = k >= s.before_case_min
    f = pd.DataFrame(
        {
            "measure": k,
            "threshold": s.before_case_min,
            "expected": 0.0,
            "records": k,
            "severity": np.minimum(1, 0.6 + k / 100),
        },
        index=ctx.stats.index,
    )[flag]

    def describe(r):
        return f"{r['records']:,} 条评价的评价时间早于所评办件的办结时间"

    evid = _evidence_by_unit(early, "eval_id", s.evidence_max)
    return _rows(ctx, "eval_before_case", f, "评价早于办结条数", describe, evid)


def detect_too_perfect(ctx: Context) -> pd.DataFrame:
    """评价结果过于完美: 100% 评价率 and no raw 差评 although some are expected.

    Counted over first evaluations the citizen made (system defaults are never 差评; 追评 follow a
    different process). Baseline p = the lower quartile (``too_perfect_baseline_quantile``) of the
    raw 差评 rates of the level's units that are large enough to show some (the whole city's when
    the level has fewer than ``peer_min_units`` such units, and the city's pooled rate when the whole
    city has fewer), so natural differences between units do not make a merely good unit look
    impossible. The
    chance of no 差评 among n is P(0 | n, p) = (1 − p)^n; flagged below ``too_perfect_alpha``. A unit
    with no cases is judged on its evaluations alone. Severity = min(1, −log10 P / 10).
    """
    s = ctx.settings
    st = ctx.stats
    level = ctx.units["level"]
    bad, n_all = st["n_bad_citizen_first"], st["n_citizen_first"]
    pooled = level.map(bad.groupby(level).sum() / n_all.groupby(level).sum().replace(0, np.nan)).fillna(0)
    # Units differ in their 差评 rates; the baseline is a low but typical rate: the lower quartile of
    # the rates of units large enough to show some (expected ≥ too_perfect_min_expected at the pooled rate).
    rates = (bad / n_all.where(n_all > 0)).where(n_all * pooled >= s.too_perfect_min_expected)
    quartile = rates.groupby(level).quantile(s.too_perfect_baseline_quantile)
    enough = rates.groupby(level).count() >= s.peer_min_units
    # A level with too few such units (e.g. city departments at a small scale) uses the whole city's.
    if rates.count() >= s.peer_min_units:
        city_wide = float(rates.quantile(s.too_perfect_baseline_quantile))
    else:  # no unit is large enough to estimate a spread of rates: the city's pooled rate
        city_wide = float(bad.sum() / n_all.sum()) if n_all.sum() else 0.0
    p = level.map(quartile.where(enough, city_wide)).fillna(city_wide).astype(float)
    full_rate = (st["n_cases"] == 0) | (st["n_cases_evaluated"] >= st["n_cases"])
    n = n_all.astype(float)
    with np.errstate(divide="ignore"):
        log_p0 = n * np.log1p(-p.clip(upper=1 - 1e-12))
    p0 = np.exp(log_p0)
    flag = (bad == 0) & full_rate & (n > 0) & (p > 0) & (p0 < s.too_perfect_alpha)
    f = pd.DataFrame(
        {
            "measure": p0,
            "threshold": s.too_perfect_alpha,
            "expected": n * p,
            "records": n_all,
            "severity": np.minimum(1, -log_p0 / np.log(10) / 10),
            "p": p,
        },
        index=st.index,
    )[flag]

    def describe(r):
        return (
            f"评价率 100%，群众作出的 {r['records']:,} 件首次评价无一差评；"
            f"按同层级常见差评率 {r['p']:.2%} 应有约 "
            f"{r['expected']:,.1f} 件，全无差评的概率为 {r['measure']:.1e}，评价结果过于完美"
        )

    return _rows(ctx, "too_perfect", f, "无差评概率 P(0|n,p)", describe)


def detect_high_invalid_bad(ctx: Context) -> pd.DataFrame:
    """无效差评偏多: invalid 差评 per evaluation far above the level's rate.

    The rate is invalid 差评 / evaluations the citizens made in the period (system defaults
    excluded); the baseline is the pooled rate of the unit's level, or the city's pooled rate when
    one unit makes more than ``invalid_peer_max_unit_share`` of its level's evaluations (the level's
    rate would then be mostly that unit's own). Flagged with at least ``invalid_min`` invalid 差评,
    a rate of at least ``invalid_factor`` × baseline, and a Chernoff bound below ``alpha``.
    Severity = 1 − baseline/rate.
    """
    s = ctx.settings
    st = ctx.stats
    level = ctx.units["level"]
    by_level = st.groupby(level)["n_citizen"]
    base = st.groupby(level)["n_invalid_bad"].sum() / by_level.sum().replace(0, np.nan)
    dominated = by_level.max() > s.invalid_peer_max_unit_share * by_level.sum()
    city_rate = st["n_invalid_bad"].sum() / st["n_citizen"].sum() if st["n_citizen"].sum() else np.nan
    base = base.where(~dominated, city_rate)
    p = level.map(base).fillna(0).astype(float)
    n, k = st["n_citizen"], st["n_invalid_bad"]
    rate = (k / n.where(n > 0)).fillna(0)
    bound = binomial_tail_bound(k, n, p.clip(lower=1e-9), lower=False)
    flag = (k >= s.invalid_min) & (rate >= s.invalid_factor * p) & (bound < s.alpha)
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
    "duplicates": detect_duplicates,
    "staff_reentry": detect_staff_reentry,
    "eval_before_case": detect_eval_before_case,
    "too_perfect": detect_too_perfect,
    "high_invalid_bad": detect_high_invalid_bad,
}
