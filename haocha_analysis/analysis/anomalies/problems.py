"""The bulletin's problems paragraph, written from the findings."""

from __future__ import annotations

import pandas as pd

from haocha_analysis.core.periods import Period, parse_period
from haocha_analysis.core.reference import CityReference

# --- the bulletin's problems paragraph ---------------------------------------------------------

# Order and wording follow the reference bulletin's problems paragraph. Agents (代办, kind "agent") are
# lawful and listed in the findings for verification only: not a problem the bulletin names.
PARAGRAPH_PHRASES: dict[str, str] = {
    "low_volume": "评价数据量过低",
    "zero_data": "本期无任何办件和评价数据（零数据）",
    "late_aggregation": "办件归集不及时",
    "late_reporting": "评价数据上报不及时（评价设备未实时上传）",
    "low_onsite": "“现场评价”量较少",
    "low_active": "主动评价率偏低、多为系统默认评价",
    "backfill": "办件归集、评价过程存在事后补录现象",
    "duplicates": "存在重复评价数据",
    "staff_reentry": "存在工作人员代替办事群众评价（二次录入）现象",
    "eval_before_case": "存在评价时间早于办结时间的数据",
    "too_perfect": "评价率100%且无一差评，评价结果真实性存疑",
    "high_invalid_bad": "“无效差评”仍然存在且明显偏多",
}
LEVEL_PHRASES = {
    "district": "区县",
    "city_dept": "市直部门（单位）",
    "district_dept": "区县部门窗口",
    "town": "镇街便民服务中心",
    "village": "村（社区）便民服务站",
}


def _period_short(period: Period) -> str:
    if period.kind == "quarter":
        return period.short_cn().removeprefix("第")  # 二季度, as the reference writes it
    return period.short_cn() if period.kind != "range" else "本统计期"


def problems_paragraph(
    findings: pd.DataFrame, ref: CityReference, period: Period | str, max_names: int = 3
) -> str:
    """The bulletin's problems paragraph, written from the findings.

    Each kind found becomes one clause naming its most severe units (up to ``max_names``), the number
    of units and their types, in the order and register of the reference bulletin
    (通过对二季度评价数据综合分析，…).
    """
    period = parse_period(period) if isinstance(period, str) else period
    lead = f"通过对{_period_short(period)}评价数据综合分析，"
    if findings is not None and len(findings):
        findings = findings[findings["kind"].isin(list(PARAGRAPH_PHRASES))]
    if findings is None or findings.empty:
        return lead + "未发现评价数据量过低、归集不及时、事后补录等明显异常。"
    clauses = []
    for kind, phrase in PARAGRAPH_PHRASES.items():
        rows = findings[findings["kind"] == kind].sort_values("severity", ascending=False, kind="stable")
        if rows.empty:
            continue
        names = rows["unit_name"].head(max_names).tolist()
        n = len(rows)
        levels = rows["level"].map(LEVEL_PHRASES).fillna("其他单位").value_counts()
        types = "、".join(f"{lv}{c}个" for lv, c in levels.items())
        who = "、".join(names) + (f"等{n}个单位" if n > len(names) else "")
        records = int(rows["records"].sum())
        count_note = {
            "backfill": f"，涉及可疑评价{records}条",
            "late_aggregation": f"，超时归集办件{records}件",
            "late_reporting": f"，超时上报评价{records}条",
            "duplicates": f"，重复评价{records}条",
            "staff_reentry": f"，涉及评价{records}条",
            "eval_before_case": f"，共{records}条",
            "high_invalid_bad": f"，无效差评{records}件",
        }.get(kind, "")
        scope = f"（{types}）" if n > 1 else ""
        clauses.append(f"{who}{scope}{phrase}{count_note}")
    total = findings["unit_id"].nunique()
    return lead + f"共发现{total}个单位存在{findings['kind'].nunique()}类问题：" + "；".join(clauses) + "。"
