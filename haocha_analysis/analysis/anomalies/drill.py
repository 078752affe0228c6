"""Drill-down for one unit and overview charts of the findings (used by notebooks/anomalies.ipynb).

Frames returned here carry Chinese headers: they are shown to analysts as they are.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from haocha_analysis.analysis.anomalies.detectors import burst_runs, first_evaluation_lags
from haocha_analysis.analysis.anomalies.features import Context, prepare
from haocha_analysis.analysis.anomalies.settings import KINDS, Settings
from haocha_analysis.core import display
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.fonts import use_cjk_font
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.schemas import CHANNELS, LEVEL_LABELS, ONSITE_CHANNELS

# What each kind's measured value is, and so how the notebook writes it (core/display).
MEASURE_UNITS = {
    "zero_data": display.COUNT,
    "low_volume": display.DECIMAL,  # evaluations per case, or per working day
    "low_onsite": display.SHARE,
    "low_active": display.SHARE,
    "backfill": display.SHARE,
    "late_aggregation": display.SHARE,
    "late_reporting": display.SHARE,
    "duplicates": display.COUNT,
    "staff_reentry": display.COUNT,
    "agent": display.COUNT,
    "eval_before_case": display.COUNT,
    "too_perfect": display.P_VALUE,
    "high_invalid_bad": display.SHARE,
}


def measure_text(findings: pd.DataFrame, column: str = "measure") -> pd.Series:
    """A findings column (measure, threshold, expected) written as its kind's measure reads.

    Shares as percentages, probabilities as p-values, counts with separators; an expected count
    may be fractional, so it keeps its decimals.
    """
    units = findings["kind"].map(MEASURE_UNITS).fillna(display.DECIMAL)
    if column != "measure":
        units = units.replace(display.COUNT, display.DECIMAL)
    return pd.Series(
        [display.format_value(v, u) for v, u in zip(findings[column], units, strict=True)],
        index=findings.index,
        dtype=object,
    )


def findings_overview(findings: pd.DataFrame) -> pd.DataFrame:
    """Counts of findings by kind (rows, KINDS order) and level (columns), with a 合计 column."""
    if findings.empty:
        return pd.DataFrame({"异常类型": list(KINDS.values()), "合计": 0})
    levels = findings["level"].map(LEVEL_LABELS).fillna("其他")
    table = pd.crosstab(findings["kind"], levels)
    table = table.reindex([k for k in KINDS if k in table.index])
    table["合计"] = table.sum(axis=1)
    table.index = [KINDS[k] for k in table.index]
    table.index.name = "异常类型"
    return table.reset_index()


def ranked_findings(findings: pd.DataFrame, unit_id: str = "", top: int = 50) -> pd.DataFrame:
    """The most severe findings (all units, or one unit) with Chinese headers for display.

    测量值 and 期望值 are text written as each kind's measure reads (:func:`measure_text`); 严重程度
    with three decimals.
    """
    rows = findings if not unit_id else findings[findings["unit_id"] == unit_id]
    rows = rows.head(top)
    show = rows[
        [
            "unit_name",
            "level",
            "district",
            "kind_cn",
            "measure_cn",
            "measure",
            "expected",
            "baseline",
            "severity",
            "description",
            "evidence",
        ]
    ].copy()
    show["measure"] = measure_text(rows)
    show["expected"] = measure_text(rows, "expected")
    show["severity"] = rows["severity"].map(display.format_score)
    show["level"] = show["level"].map(LEVEL_LABELS).fillna(show["level"])
    show.insert(0, "序号", range(1, len(show) + 1))
    return show.rename(
        columns={
            "unit_name": "单位",
            "level": "层级",
            "district": "区县",
            "kind_cn": "异常类型",
            "measure_cn": "测量指标",
            "measure": "测量值",
            "expected": "期望值",
            "baseline": "比较基线",
            "severity": "严重程度",
            "description": "说明",
            "evidence": "示例记录编号",
        }
    )


def plot_findings_overview(findings: pd.DataFrame) -> Figure:
    """Horizontal bars: units flagged per kind, stacked by level."""
    use_cjk_font()
    table = findings_overview(findings).set_index("异常类型").drop(columns="合计")
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(table), 3) + 1))
    if table.empty or table.to_numpy().sum() == 0:
        ax.text(0.5, 0.5, "本期未发现异常", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    table.iloc[::-1].plot.barh(stacked=True, ax=ax, width=0.7)
    ax.set_xlabel("单位数")
    ax.set_ylabel("")
    display.count_axis(ax, axis="x")
    ax.set_title("各类异常涉及的单位数")
    ax.legend(title="层级", fontsize=8)
    fig.tight_layout()
    return fig


def pick_unit(findings: pd.DataFrame, unit_id: str = "", ref: CityReference | None = None) -> str:
    """The unit to drill into: the one asked for, else the unit of the most severe finding.

    The unit asked for may be a code, or (when ``ref`` is given) any spelling of its name.
    """
    if unit_id:
        return ref.find_unit(unit_id) if ref is not None else unit_id
    if findings.empty:
        raise HaochaInputError(
            "本期没有异常发现，无法自动选择下钻单位", fix="在 parameters 单元格中填写 unit_id"
        )
    return str(findings["unit_id"].iloc[0])


def unit_drilldown(
    ref: CityReference,
    data: dict[str, pd.DataFrame],
    period: Period | str,
    unit_id: str,
    settings: Settings | None = None,
    ctx: Context | None = None,
) -> dict:
    """Everything about one unit's period: daily volume, lags, bursts and channel mix.

    Returns:
        {"unit": {...}, "daily": frame by day, "lags": first evaluations with working-day lag,
        "bursts": burst runs, "channels": channel mix beside its peers'}.
    """
    ctx = ctx or prepare(ref, data, period, settings=settings)
    s = ctx.settings
    if unit_id not in ctx.units.index:
        raise HaochaInputError(
            f"单位编码“{unit_id}”不在参考数据中",
            column="unit_id",
            fix="unit_id 取 units.csv 中的编码，或留空以查看最严重的单位",
        )
    info = ctx.units.loc[unit_id]
    unit = {
        "unit_id": unit_id,
        "unit_name": info["unit_name"],
        "level": LEVEL_LABELS.get(info["level"], ""),
        "district": info["district"],
        **ctx.stats.loc[unit_id].to_dict(),
    }

    cases = ctx.cases_in[ctx.cases_in["unit_id"].astype("str") == unit_id]
    first = ctx.first_in[ctx.first_in["unit_id"].astype("str") == unit_id]
    days = pd.date_range(ctx.period.start, ctx.period.end, freq="D")
    daily = pd.DataFrame(
        {
            "办结办件数": cases["finished_at"].dt.normalize().value_counts().reindex(days, fill_value=0),
            "首次评价数": first["evaluated_at"].dt.normalize().value_counts().reindex(days, fill_value=0),
        },
        index=days,
    )
    daily.index.name = "日期"
    daily = daily.reset_index()

    lags = first_evaluation_lags(ctx)
    lags = lags[lags["unit_id"].astype("str") == unit_id]
    lag_table = pd.DataFrame(
        {
            "评价编号": lags["eval_id"],
            "办件编号": lags["case_id"],
            "办结时间": lags["finished_at"],
            "评价时间": lags["evaluated_at"],
            "滞后工作日": lags["lag_workdays"],
            "滞后小时": lags["lag_hours"].round(2),
            "超期": lags["lag_workdays"].fillna(0) > s.supplementary_working_days,
            "经办人": lags["operator"],
        }
    ).reset_index(drop=True)

    runs = burst_runs(first, s, ctx.period)
    if runs.empty:
        bursts = pd.DataFrame(columns=["批次", "开始", "结束", "条数", "工作时间外占比", "主要经办人"])
    else:
        runs = runs.assign(ah=runs["after_hours"])
        bursts = (
            runs.groupby("run")
            .agg(
                开始=("evaluated_at", "min"),
                结束=("evaluated_at", "max"),
                条数=("eval_id", "size"),
                工作时间外占比=("ah", "mean"),
                主要经办人=("operator", lambda x: x.mode().iloc[0] if x.notna().any() else ""),
            )
            .reset_index(drop=True)
        )
        bursts.insert(0, "批次", range(1, len(bursts) + 1))

    labels = {c: lab for c, (lab, _) in CHANNELS.items()}
    mine = first["channel"].astype("str").value_counts()
    group = ctx.units.loc[unit_id, "peer_group"]
    peer_ids = ctx.units.index[(ctx.units["peer_group"] == group)]
    peers = (
        ctx.first_in[ctx.first_in["unit_id"].astype("str").isin(peer_ids)]["channel"]
        .astype("str")
        .value_counts()
    )
    channels = pd.DataFrame({"条数": mine, "同类单位条数": peers}).fillna(0).astype("int64")
    channels["占比"] = channels["条数"] / max(channels["条数"].sum(), 1)
    channels["同类单位占比"] = channels["同类单位条数"] / max(channels["同类单位条数"].sum(), 1)
    channels["现场评价"] = channels.index.isin(ONSITE_CHANNELS)
    channels = channels[channels["条数"] > 0].sort_values("条数", ascending=False)
    channels.insert(0, "渠道", [labels.get(c, c) for c in channels.index])
    channels = channels.reset_index(drop=True)
    return {"unit": unit, "daily": daily, "lags": lag_table, "bursts": bursts, "channels": channels}


def drilldown_figures(drill: dict) -> list[Figure]:
    """Four charts for one unit: daily volume, lag histogram, burst timestamps, channel mix."""
    use_cjk_font()
    name = drill["unit"]["unit_name"]
    figs = []

    fig, ax = plt.subplots(figsize=(9, 3))
    daily = drill["daily"]
    ax.plot(daily["日期"], daily["办结办件数"], label="办结办件数", lw=1)
    ax.plot(daily["日期"], daily["首次评价数"], label="首次评价数", lw=1)
    ax.set_title(f"{name}：每日办件与评价量")
    ax.set_ylabel("件数")
    display.count_axis(ax)
    display.date_axis(ax)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    figs.append(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    lags = drill["lags"]["滞后工作日"].dropna().astype(int)
    if len(lags):
        bins = range(int(min(lags.min(), 0)), int(max(lags.max(), 6)) + 2)
        ax.hist(lags, bins=list(bins), color="#4a7ab5")
    ax.axvline(5.5, color="#c0392b", ls="--", label="补充评价期限（5个工作日）")
    ax.set_xlabel("办结后第几个工作日评价")
    ax.set_ylabel("首次评价数")
    display.count_axis(ax)
    ax.set_title(f"{name}：评价滞后分布")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figs.append(fig)

    fig, ax = plt.subplots(figsize=(9, 3))
    bursts = drill["bursts"]
    if len(bursts):
        ax.scatter(
            bursts["开始"],
            display.hour_of_day(bursts["开始"]),
            s=bursts["条数"] * 3,
            alpha=0.6,
            color="#c0392b",
        )
        ax.set_ylabel("开始时刻（时:分）")
        display.hour_axis(ax)
        display.date_axis(ax)
        fig.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "未发现成批录入", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(f"{name}：成批录入（点的大小为条数）")
    fig.tight_layout()
    figs.append(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    ch = drill["channels"]
    if len(ch):
        pos = range(len(ch))
        ax.barh([p + 0.2 for p in pos], ch["占比"], height=0.4, label="本单位")
        ax.barh([p - 0.2 for p in pos], ch["同类单位占比"], height=0.4, label="同类单位")
        ax.set_yticks(list(pos), ch["渠道"])
        ax.invert_yaxis()
        ax.legend(fontsize=8)
    ax.set_xlabel("首次评价占比")
    display.share_axis(ax, axis="x")
    ax.set_title(f"{name}：评价渠道构成")
    fig.tight_layout()
    figs.append(fig)
    return figs
