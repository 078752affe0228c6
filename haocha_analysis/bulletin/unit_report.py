"""One unit's report: how a district or department did, where it ranks, what is wrong in its data.

``notebooks/unit_report.ipynb`` calls one function of this module per part of the report;
:mod:`haocha_analysis.pipeline.units` runs it once per unit. Every figure comes from the stage results
the bulletin already computed (:class:`UnitReportInputs`, built once per run), never from the records:

* the unit's row beside its level's (同级) and the city's figures, with its rank in the level;
* the last four periods (the earlier periods' per-unit counts, when the data folder holds them);
* its anomaly findings with their evidence, its data-quality problems, its 差评 and overdue ones.

A district's report covers the district as 附件1 does (its own units and every district department,
town and village of the district); a department's covers the department itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape
from typing import Any

import pandas as pd

from haocha_analysis.analysis.annexes import (
    DISTRICT_LEVELS,
    annex1_districts,
    to_display,
    unit_case_table,
    with_reference,
)
from haocha_analysis.bulletin import charts
from haocha_analysis.bulletin.render import StageResults, annex_table_html
from haocha_analysis.core import display
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, period_label
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.schemas import LEVEL_LABELS
from haocha_analysis.core.text import NOT_APPLICABLE, format_ratio

UNIT_LEVELS = ("district", "city_dept", "district_dept")
TREND_PERIODS = 4  # this period and the three before it
MAX_FINDINGS = 6  # a report stays within two pages: the rest are in anomalies.csv
MAX_QUALITY_ROWS = 6
MAX_PEER_ROWS = 15  # the whole level is listed when it is this small (districts)
EVIDENCE_IDS = 2  # example record ids shown per finding
TREND_CHART_HEIGHT_IN = 1.9  # lower than the bulletin's charts: the report keeps to two pages
NAME = "单位"
FIGURE_COLUMNS = ["办件数", "评价数", "评价率", "主动评价数", "主动评价率", "差评数", "整改满意率"]
QUALITY_COLUMNS = [
    "单位名称",
    "记录数",
    "不通过记录数",
    "办件及时率",
    "评价及时率",
    "重复记录数",
    "评价早于办结数",
    "孤立评价数",
    "单位不一致数",
]


@dataclass
class UnitReportInputs:
    """What every unit's report reads, computed once per run (pickled for the notebooks)."""

    city: str  # reference name or folder
    period: Period
    results: StageResults
    history_counts: dict[str, pd.DataFrame] = field(default_factory=dict)  # earlier label → unit counts


@dataclass
class UnitContext:
    """Everything one unit's report shows."""

    unit_id: str
    unit_name: str
    level: str
    district: str
    city_name: str
    period: Period
    figures: pd.DataFrame  # indicator rows: 本单位, 同级平均, 全市, 同级排名 (strings)
    peers: pd.DataFrame  # the level's units (display strings), the unit's row marked
    trend: pd.DataFrame  # one row per period (numeric), oldest first
    findings: pd.DataFrame
    findings_total: int
    quality: pd.DataFrame
    bad_reviews: dict[str, int]
    note: str
    extra: dict[str, Any] = field(default_factory=dict)


# --- figures --------------------------------------------------------------------------------------


def level_units(ref: CityReference, level: str) -> pd.DataFrame:
    """The units a report can be made for at ``level``, in official order."""
    if level not in UNIT_LEVELS:
        raise HaochaInputError(
            f"不支持的单位层级“{level}”",
            column="--level",
            fix="可选：" + "、".join(f"{lv}（{LEVEL_LABELS[lv]}）" for lv in UNIT_LEVELS),
        )
    return ref.level(level)


def peer_table(ref: CityReference, counts: pd.DataFrame, level: str) -> pd.DataFrame:
    """The level's units with 附件1's columns plus 主动评价率 (numeric), one row per unit, official order.

    Districts are the 附件1 rows themselves (the whole district); departments their own counts.
    """
    units = level_units(ref, level)
    if level == "district":
        table = annex1_districts(ref, counts).rename(columns={"区县": NAME})
    else:
        table = unit_case_table(ref, counts, units["unit_id"].tolist())
    table.insert(1, "unit_id", units["unit_id"].astype("str").to_numpy())
    evaluated = table["评价数"].astype("Float64")
    table["主动评价率"] = (table["主动评价数"].astype("Float64") / evaluated.where(evaluated != 0)).astype(
        "Float64"
    )
    return table


def _rank(values: pd.Series, position: int) -> str:
    """``第k名/共n个``: rank (1 = largest, ties share a rank) of row ``position`` among defined values."""
    known = pd.to_numeric(values, errors="coerce").astype("float64")
    mine = known.iloc[position]
    if pd.isna(mine):
        return NOT_APPLICABLE
    defined = known.dropna()
    return f"第{int((defined > mine).sum()) + 1}名/共{len(defined)}个"


def _count_text(value: Any) -> str:
    return display.format_count(value)


def _separated(table: pd.DataFrame) -> pd.DataFrame:
    """A text table (annex style) with its counts written with thousands separators (core/display)."""
    counts = [c for c in table.columns if c not in ("序号", "单位编码") and not str(c).endswith("编码")]
    return table.assign(
        **{
            str(c): table[c].map(lambda v: display.format_count(int(v)) if _WHOLE.fullmatch(str(v)) else v)
            for c in counts
        }
    )


_WHOLE = re.compile(r"\d{4,}")


def _figures(peers: pd.DataFrame, position: int, headline: dict) -> pd.DataFrame:
    """本单位 / 同级平均 / 全市 / 同级排名 for each indicator."""
    sums = peers[["办件数", "评价数", "主动评价数", "差评数"]].astype("Float64").sum()
    n = len(peers)
    city = {
        "办件数": headline.get("total_cases"),
        "评价数": headline.get("total_evaluations"),
        "评价率": headline.get("evaluation_rate", NOT_APPLICABLE),
        "主动评价数": headline.get("active_evaluations"),
        "主动评价率": headline.get("active_rate", NOT_APPLICABLE),
        "差评数": headline.get("valid_bad_reviews"),
        "整改满意率": headline.get("rectification_satisfaction_rate", NOT_APPLICABLE),
    }
    level_rates = {
        "评价率": format_ratio(sums["评价数"], sums["办件数"]),
        "主动评价率": format_ratio(sums["主动评价数"], sums["评价数"]),
        "整改满意率": NOT_APPLICABLE,
    }
    shown = to_display(peers.iloc[[position]][["序号", *FIGURE_COLUMNS]]).iloc[0]
    rows = []
    for col in FIGURE_COLUMNS:
        if col.endswith("率"):
            mine, level_value, city_value = shown[col], level_rates[col], str(city[col])
        else:
            mine = shown[col]
            level_value = _count_text(peers[col].astype("Float64").mean()) if n else NOT_APPLICABLE
            city_value = _count_text(city[col])
        rank = _rank(peers[col], position) if col != "整改满意率" else NOT_APPLICABLE
        rows.append(
            {"指标": col, "本单位": mine, "同级平均": level_value, "全市": city_value, "同级排名": rank}
        )
    return pd.DataFrame(rows, dtype="str")


def _scope(ref: CityReference, unit: pd.Series) -> list[str]:
    """The units a report covers: a district's every unit (as 附件1 counts it), else the unit itself."""
    if unit["level"] != "district":
        return [str(unit["unit_id"])]
    units = ref.units
    local = units[units["level"].isin(DISTRICT_LEVELS) & (units["district"].fillna("") == unit["unit_name"])]
    return local["unit_id"].astype("str").tolist()


def _bad_reviews(ref: CityReference, counts: pd.DataFrame, scope: list[str]) -> dict[str, int]:
    joined = with_reference(ref, counts)
    rows = joined[joined["unit_id"].astype("str").isin(scope)]
    sums = {
        key: int(rows[col].sum())
        for key, col in (
            ("raw", "case_bad_raw"),
            ("valid", "case_bad_valid"),
            ("invalid", "case_bad_invalid"),
            ("made_raw", "eval_bad_raw"),
            ("made_valid", "eval_bad_valid"),
            ("on_time", "eval_rectified_on_time"),
        )
    }
    sums["overdue"] = max(sums["made_valid"] - sums["on_time"], 0)
    return sums


def _findings(findings: pd.DataFrame, scope: list[str]) -> pd.DataFrame:
    mine = findings[findings["unit_id"].astype("str").isin(scope)]
    return mine.sort_values("severity", ascending=False, kind="stable")


def _quality(quality: Any, scope: list[str]) -> pd.DataFrame:
    by_unit = (getattr(quality, "tables", None) or {}).get("by_unit")
    if by_unit is None or by_unit.empty:
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    rows = by_unit[by_unit["单位编码"].astype("str").isin(scope)]
    rows = rows[rows["不通过记录数"].astype("int64") > 0]
    rows = rows.sort_values("不通过记录数", ascending=False, kind="stable")
    return rows[[c for c in QUALITY_COLUMNS if c in rows.columns]].head(MAX_QUALITY_ROWS).astype("str")


def build_unit_context(ref: CityReference, inputs: UnitReportInputs, unit_id: str) -> UnitContext:
    """Assemble one unit's report from the run's shared inputs."""
    units = ref.units.set_index(ref.units["unit_id"].astype("str"))
    if unit_id not in units.index:
        raise HaochaInputError(
            f"参考数据中没有单位“{unit_id}”",
            file=str(ref.path),
            column="unit_id",
            fix="用 units.csv 中的 unit_id（可用 --level 列出一个层级的全部单位）",
        )
    unit = units.loc[unit_id]
    level = str(unit["level"])
    results = inputs.results
    peers = peer_table(ref, results.tables.counts, level)
    position = peers.index[peers["unit_id"] == unit_id][0]
    figures = _figures(peers, int(position), results.tables.headline)
    trend_rows = []
    labels = list(inputs.history_counts)[-(TREND_PERIODS - 1) :]
    for label in labels:
        past = peer_table(ref, inputs.history_counts[label], level)
        trend_rows.append(past[past["unit_id"] == unit_id].assign(统计期=period_label(label)))
    trend_rows.append(peers[peers["unit_id"] == unit_id].assign(统计期=inputs.period.title_cn()))
    trend = pd.concat(trend_rows, ignore_index=True)[["统计期", *FIGURE_COLUMNS]]
    scope = _scope(ref, unit)
    findings = _findings(results.findings, scope)
    shown_peers = to_display(peers.drop(columns=["unit_id"]))
    return UnitContext(
        unit_id=unit_id,
        unit_name=str(unit["unit_name"]),
        level=level,
        district=str(unit.get("district") or ""),
        city_name=ref.city_name,
        period=inputs.period,
        figures=figures,
        peers=shown_peers,
        trend=trend,
        findings=findings.head(MAX_FINDINGS),
        findings_total=len(findings),
        quality=_quality(results.quality, scope),
        bad_reviews=_bad_reviews(ref, results.tables.counts, scope),
        note=results.tables.notes.get("annex1_districts", ""),
        extra={"peer_position": int(position)},
    )


# --- HTML fragments -------------------------------------------------------------------------------


def _section(title: str, body: str) -> str:
    return f'<section class="unit-part"><h2 class="unit-heading">{escape(title)}</h2>{body}</section>'


def title(uctx: UnitContext) -> str:
    """The report's title (page title and heading)."""
    return f"{uctx.unit_name}{uctx.period.title_cn()}政务服务“好差评”情况"


def header_html(uctx: UnitContext) -> str:
    """Title and the line naming the unit's level, district and the period's range."""
    where = f"{LEVEL_LABELS.get(uctx.level, uctx.level)}"
    if uctx.level == "district_dept" and uctx.district:
        where += f"，{uctx.district}"
    scope = "含本区县各部门、镇（街道）、村（社区）" if uctx.level == "district" else "本单位"
    return (
        f'<h1 class="bulletin-title unit-title">{escape(title(uctx))}</h1>'
        f'<p class="unit-meta">{escape(uctx.city_name)} · {escape(where)} · 单位编码 {escape(uctx.unit_id)}'
        f" · 统计范围 {escape(uctx.period.range_cn())}（{escape(scope)}）</p>"
    )


def figures_html(uctx: UnitContext) -> str:
    """The unit's figures beside its level's average and the city's, with its rank in the level."""
    table = annex_table_html(_separated(uctx.figures), "unit_figures", "", "", "")
    note = "同级平均：计数为同级单位的平均数，比率为同级单位合计计算；排名按数值从高到低。"
    return _section("一、主要指标与同级排名", table + f'<p class="annex-note">{escape(note)}</p>')


def trend_html(uctx: UnitContext) -> str:
    """The last four periods: 评价数 bars with the 主动评价率 line, and their table."""
    trend = uctx.trend
    fig = charts.evaluations_by_district(trend["统计期"], trend["评价数"], trend["主动评价数"])
    fig.set_size_inches(charts.CHART_WIDTH_IN, TREND_CHART_HEIGHT_IN)
    chart = charts.figure_html(fig, f"{uctx.unit_name}近{len(trend)}个统计期评价数与主动评价占比")
    shown = to_display(trend.assign(序号=range(1, len(trend) + 1))[["序号", "统计期", *FIGURE_COLUMNS]])
    table = annex_table_html(_separated(shown.drop(columns=["序号"])), "unit_trend", "", "", "")
    if len(trend) == 1:
        table += '<p class="annex-note">数据目录中没有此前统计期的数据，仅列本期。</p>'
    return _section("二、近期走势", chart + table)


def findings_html(uctx: UnitContext) -> str:
    """The unit's anomaly findings, most severe first, each with its evidence (example record ids)."""
    if uctx.findings.empty:
        return _section("三、异常发现（按严重程度）", '<p class="body-text">本期未发现异常。</p>')
    rows = pd.DataFrame(
        {
            NAME: uctx.findings["unit_name"].astype("str").to_numpy(),
            "异常类型": uctx.findings["kind_cn"].astype("str").to_numpy(),
            "说明": uctx.findings["description"].astype("str").to_numpy(),
            "示例记录": [_evidence(v) for v in uctx.findings["evidence"]],
        }
    )
    body = annex_table_html(rows, "unit_findings", "", "", "")
    if uctx.findings_total > len(uctx.findings):
        more = uctx.findings_total - len(uctx.findings)
        body += f'<p class="annex-note">另有 {more} 条，见本期 anomalies/anomalies.csv。</p>'
    return _section("三、异常发现（按严重程度）", body)


def _evidence(value: Any) -> str:
    if value is None or (not isinstance(value, list | tuple) and pd.isna(value)):
        return ""
    ids = list(value) if isinstance(value, list | tuple) else str(value).replace("；", ";").split(";")
    ids = [str(i).strip() for i in ids if str(i).strip()]
    return "、".join(ids[:EVIDENCE_IDS]) + ("等" if len(ids) > EVIDENCE_IDS else "")


def quality_html(uctx: UnitContext) -> str:
    """The units (of the report's scope) whose records failed data-quality checks, worst first."""
    if uctx.quality.empty:
        return _section("四、数据质量", '<p class="body-text">本期记录全部通过数据质检。</p>')
    body = annex_table_html(_separated(uctx.quality), "unit_quality", "", "", "")
    return _section("四、数据质量：未通过质检的记录", body)


def bad_reviews_html(uctx: UnitContext) -> str:
    """差评 and their rectification: counts, and the overdue ones when any."""
    b = uctx.bad_reviews
    if b["raw"] == 0 and b["made_raw"] == 0:
        return _section("五、差评与整改", '<p class="body-text">本期无差评。</p>')
    text = (
        f"本期办结办件收到差评 {b['raw']} 件，其中有效差评 {b['valid']} 件、无效差评 {b['invalid']} 件；"
        f"本期作出的评价中有效差评 {b['made_valid']} 件，按期整改 {b['on_time']} 件"
    )
    text += f"，超期未整改 {b['overdue']} 件，请尽快整改。" if b["overdue"] else "，无超期未整改。"
    return _section("五、差评与整改", f'<p class="body-text">{escape(text)}</p>')


def peers_html(uctx: UnitContext) -> str:
    """The whole level's table (when small enough), the unit's row highlighted."""
    if len(uctx.peers) > MAX_PEER_ROWS:
        return ""
    label = LEVEL_LABELS.get(uctx.level, uctx.level)
    html = annex_table_html(_separated(uctx.peers), "unit_peers", "", "", uctx.note)
    return _section(f"六、同级单位（{label}）一览", mark_row(html, uctx.extra["peer_position"]))


def mark_row(table_html: str, position: int, cls: str = "self") -> str:
    """Give body row ``position`` (0-based) of a table fragment a class (the unit's own row)."""
    head, sep, body = table_html.partition("<tbody>")
    rows = body.split("<tr>")  # rows[0] is empty: the body starts with its first row
    if not sep or not 0 <= position < len(rows) - 1:
        return table_html
    marked = rows[0]
    for i, row in enumerate(rows[1:]):
        marked += (f'<tr class="{cls}">' if i == position else "<tr>") + row
    return head + sep + marked
