"""The bulletin's annex tables, headline figures and cross-annex checks.

Everything here is built from the per-unit counts of :func:`haocha_analysis.analysis.metrics.unit_counts`
joined with the city's reference data; no function below reads a record. Each annex exists twice:
a numeric frame (``NA`` where a value is undefined, rates as fractions; for charts) and a display
frame of strings laid out exactly like the published bulletin ("/" where undefined).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from haocha_analysis.analysis.metrics import COUNT_COLUMNS, NEEDED_COLUMNS, source_system_counts, unit_counts
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, period_label
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.spreadsheet import (
    CHANGE_FORMAT,
    PERCENT_FORMAT,
    PLAIN_INTEGER_FORMAT,
    WHOLE_PERCENT_FORMAT,
    SheetSpec,
    groups_by_prefix,
    neutralise_frame,
    truncate_fraction,
)
from haocha_analysis.core.spreadsheet import write_workbook as write_sheets
from haocha_analysis.core.text import NOT_APPLICABLE, format_change, format_rate
from haocha_analysis.ingest.storage import load_window

ANNEXES = (
    "annex1_districts",
    "annex2_city_departments",
    "annex3_district_departments",
    "annex4_towns_villages",
    "annex5_public_services",
)
# Two-row headers: 附件4 groups its columns under 镇 级 / 村 级 as the reference does.
HEADER_GROUPS = {"annex4_towns_villages": {"镇级": "镇 级", "村级": "村 级"}}
SHEET_NAMES = {
    "annex1_districts": "附件1 各区县",
    "annex2_city_departments": "附件2 市直部门",
    "annex3_district_departments": "附件3 区直部门",
    "annex4_towns_villages": "附件4 镇村",
    "annex5_public_services": "附件5 公共服务",
}
# Annex titles as the bulletin prints them; {short} is Period.short_cn() (第二季度, 4月, 上半年 ...).
TITLES = {
    "annex1_districts": "各区县{short}“好差评”数据通报表",
    "annex2_city_departments": "市直部门{short}“好差评”数据通报表",
    "annex3_district_departments": "区直部门{short}“好差评”评价数据通报表",
    "annex4_towns_villages": "各区县镇村{short}“好差评”数据通报表",
    "annex5_public_services": "各区县公共服务领域{short}“好差评”数据通报表",
}
XLSX_NAME = "annexes.xlsx"
HEADLINE_NAME = "headline.json"
RECONCILIATION_NAME = "reconciliation.csv"

REFERENCE_COLUMNS = ["unit_name", "level", "district", "category", "public_service", "order"]
# Levels whose units roll up to their district in 附件1 (everything but the city departments).
DISTRICT_LEVELS = ("district", "district_dept", "town", "village")
SLASH = NOT_APPLICABLE
SUMMARY_ROW_ANNEX3 = "汇总"
SUMMARY_ROW_ANNEX5 = "总数"
# 环比 / 同比: the shifted period (Period.shifted kind) and the column suffix.
COMPARISONS = {"previous": "环比", "year": "同比"}
# Columns that get 环比/同比 columns when compare=True (附件3 gets a 合计 column first).
COMPARED_COLUMNS = {
    "annex1_districts": ["评价数"],
    "annex2_city_departments": ["评价数"],
    "annex3_district_departments": ["合计"],
    "annex4_towns_villages": ["镇级评价总数", "村级评价总数"],
    "annex5_public_services": ["评价数"],
}
ROW_KEYS = {
    "annex1_districts": "区县",
    "annex2_city_departments": "部门",
    "annex3_district_departments": "部门",
    "annex4_towns_villages": "区县",
    "annex5_public_services": "区县",
}
RECONCILIATION_HEADERS = {
    "check": "检查项",
    "scope": "范围",
    "expected": "应为",
    "actual": "实际",
    "difference": "差额",
    "result": "结论",
    "explanation": "说明",
}
# Tiny float slack when turning an exact fraction back into truncated digits (see format_rate).
_EPS = 1e-9


@dataclass
class TablesResult:
    """Everything ``haocha tables`` produces for one city and period."""

    city: str
    period: Period
    extracted_on: date
    counts: pd.DataFrame
    numeric: dict[str, pd.DataFrame]
    annexes: dict[str, pd.DataFrame]
    headline: dict
    reconciliation: pd.DataFrame
    notes: dict[str, str]
    titles: dict[str, str] = field(default_factory=dict)


# --- formatting ---------------------------------------------------------------------------------


def percent_half_up(part: int, total: int) -> int | None:
    """Integer percent of a total, rounded half up (0.5 → 1); None when the total is 0."""
    if total <= 0:
        return None
    return (200 * int(part) + int(total)) // (2 * int(total))


def to_display(numeric: pd.DataFrame) -> pd.DataFrame:
    """Turn a numeric annex into the bulletin's strings.

    序号 prints blank on the summary rows (汇总, 总数); counts print as integers; columns ending in 率
    as rates; 总量占比 as an integer percent; 环比/同比 columns as signed changes; anything undefined
    as "/" — except on summary rows, where an undefined cell is blank (the bulletin's `,总数,162342,`).
    """
    summary = numeric["序号"].isna() if "序号" in numeric else pd.Series(False, index=numeric.index)
    out = {}
    for col in numeric.columns:
        values = numeric[col]
        if col == "序号":
            cells = ["" if pd.isna(v) else str(int(v)) for v in values]
        elif values.dtype == "str" or values.dtype == object:
            cells = ["" if pd.isna(v) else str(v) for v in values]
        elif col.endswith(tuple(COMPARISONS.values())):
            cells = [format_change(v) for v in values]
        elif col.endswith("率"):
            cells = [format_rate(v) for v in values]
        elif col == "总量占比":
            cells = [SLASH if pd.isna(v) else f"{int(v)}%" for v in values]
        else:
            cells = [SLASH if pd.isna(v) else str(int(v)) for v in values]
        out[col] = [
            ("" if is_summary and cell == SLASH else cell)
            for cell, is_summary in zip(cells, summary, strict=True)
        ]
    return pd.DataFrame(out, index=range(len(numeric)), dtype="str")


# --- the reference join -------------------------------------------------------------------------


def check_units_known(ref: CityReference, counts: pd.DataFrame) -> None:
    """Refuse data whose units the reference lacks (a clear error, not a 其他 row).

    A table that silently drops or lumps records of an unknown unit would publish wrong totals;
    the fix is almost always an alias missing from units.csv or a wrong code in the export.
    """
    known = set(ref.units["unit_id"])
    unknown = counts[~counts["unit_id"].isin(known)]
    if unknown.empty:
        return
    listed = "；".join(
        f"{row.unit_id}（办件 {row.case_records} 行，评价 {row.eval_records} 行）"
        for row in unknown.head(20).itertuples(index=False)
    )
    more = f" 等共 {len(unknown)} 个" if len(unknown) > 20 else ""
    raise HaochaInputError(
        f"数据中有 {len(unknown)} 个单位不在{ref.city_name}的参考数据中：{listed}{more}",
        file=str(Path(ref.path) / "units.csv"),
        column="unit_id",
        fix="在 units.csv 中补充这些单位（unit_id、unit_name、level、district、category、order，"
        "导出中的其他写法写入 aliases），或更正导出数据中的单位编码/名称后重新运行 haocha ingest",
    )


def with_reference(ref: CityReference, counts: pd.DataFrame) -> pd.DataFrame:
    """Every reference unit with its counts (zeros where it has no record), in reference order.

    ``counts`` needs ``unit_id`` and any of ``metrics.COUNT_COLUMNS`` (absent ones are 0); the
    reference columns (unit_name, level, district, category, public_service, order) come from ``ref``.
    """
    if set(REFERENCE_COLUMNS + COUNT_COLUMNS) <= set(counts.columns) and counts["unit_id"].equals(
        ref.units["unit_id"]
    ):
        return counts  # already joined (build_tables joins once, then builds every annex from it)
    units = ref.units[["unit_id", *REFERENCE_COLUMNS]].copy()
    numbers = counts[["unit_id", *[c for c in COUNT_COLUMNS if c in counts.columns]]]
    joined = units.merge(numbers, on="unit_id", how="left", validate="one_to_one")
    for col in COUNT_COLUMNS:
        joined[col] = joined[col].fillna(0).astype("int64") if col in joined else 0
    for col in ("district", "category"):
        joined[col] = joined[col].fillna("").astype("str")
    joined["public_service"] = joined["public_service"].astype(bool)
    return joined.reset_index(drop=True)


def _sum_by(frame: pd.DataFrame, key: str, columns: list[str], index: list[str]) -> pd.DataFrame:
    return frame.groupby(key)[columns].sum().reindex(index, fill_value=0).astype("int64")


def _fraction(num: pd.Series, den: pd.Series) -> pd.Series:
    """Divide as nullable floats: NA where the denominator is 0."""
    num = num.astype("Float64")
    den = den.astype("Float64")
    return (num / den.where(den != 0)).astype("Float64")


def _na_where(values: pd.Series, undefined: pd.Series) -> pd.Series:
    return values.astype("Int64").mask(undefined.to_numpy(dtype=bool))


def _serial(n: int) -> pd.Series:
    return pd.Series(range(1, n + 1), dtype="Int64")


# --- the five annexes (numeric) -----------------------------------------------------------------


def _case_table(rows: pd.DataFrame, name_col: str, names: list[str], with_satisfaction: bool) -> pd.DataFrame:
    """附件1 / 附件2 layout from per-row summed counts (index aligned with ``names``)."""
    evaluated = rows["cases_evaluated"]
    no_evaluation = evaluated == 0
    all_unknown = rows["cases_active_unknown"] == evaluated
    frame = pd.DataFrame(
        {
            "序号": _serial(len(names)),
            name_col: pd.Series(names, dtype="str"),
            "办件数": rows["cases"].astype("Int64").to_numpy(),
            "评价数": evaluated.astype("Int64").to_numpy(),
            "评价率": _fraction(evaluated, rows["cases"]).to_numpy(),
            "主动评价数": _na_where(rows["cases_active"], no_evaluation | all_unknown).to_numpy(),
            "差评数": _na_where(rows["case_bad_valid"], no_evaluation).to_numpy(),
        }
    )
    if with_satisfaction:
        frame["整改满意率"] = _fraction(
            rows["case_rectified_satisfied"], rows["case_rectified_followup"]
        ).to_numpy()
    return frame


_CASE_SUMS = [
    "cases",
    "cases_evaluated",
    "cases_active",
    "cases_active_unknown",
    "case_bad_valid",
    "case_rectified_followup",
    "case_rectified_satisfied",
]


def annex1_districts(ref: CityReference, counts: pd.DataFrame) -> pd.DataFrame:
    """附件1 各区县: per district, every unit of the district (district, district_dept, town, village).

    Includes district departments outside the 附件3 categories (e.g. 综合受理窗口). Columns 序号, 区县,
    办件数, 评价数, 评价率, 主动评价数, 差评数, 整改满意率; rates as fractions, NA where undefined.
    """
    units = with_reference(ref, counts)
    local = units[units["level"].isin(DISTRICT_LEVELS)]
    rows = _sum_by(local, "district", _CASE_SUMS, ref.districts)
    return _case_table(rows, "区县", ref.districts, with_satisfaction=True)


def annex2_city_departments(ref: CityReference, counts: pd.DataFrame) -> pd.DataFrame:
    """附件2 市直部门: one row per city_dept unit in official order (departments and companies)."""
    units = with_reference(ref, counts)
    order = ref.level("city_dept")["unit_id"].tolist()
    rows = units.set_index("unit_id").loc[order, _CASE_SUMS].astype("int64")
    names = ref.level("city_dept")["unit_name"].tolist()
    return _case_table(rows, "部门", names, with_satisfaction=False)


def unit_case_table(ref: CityReference, counts: pd.DataFrame, unit_ids: list[str]) -> pd.DataFrame:
    """附件1's columns for any units, one row each in the order given (the unit reports' peers, trends).

    Columns 序号, 单位, 办件数, 评价数, 评价率, 主动评价数, 差评数, 整改满意率 (numeric, NA where undefined).
    """
    units = with_reference(ref, counts).set_index("unit_id")
    rows = units.loc[list(unit_ids), _CASE_SUMS].astype("int64")
    names = units.loc[list(unit_ids), "unit_name"].astype("str").tolist()
    return _case_table(rows, "单位", names, with_satisfaction=True)


def annex3_district_departments(ref: CityReference, counts: pd.DataFrame) -> pd.DataFrame:
    """附件3 区直部门: evaluation counts (eval_first) of categorized district departments.

    Rows are the categories in official order, columns the districts in order, then a 汇总 row
    (blank 序号) with the column sums.
    """
    units = with_reference(ref, counts)
    depts = units[(units["level"] == "district_dept") & (units["category"] != "")]
    categories, districts = ref.categories, ref.districts
    grid = (
        depts.pivot_table(
            index="category", columns="district", values="eval_first", aggfunc="sum", fill_value=0
        )
        .reindex(index=categories, columns=districts, fill_value=0)
        .astype("int64")
    )
    frame = pd.DataFrame({"序号": _serial(len(categories)), "部门": pd.Series(categories, dtype="str")})
    for district in districts:
        frame[district] = grid[district].astype("Int64").to_numpy()
    total = {"序号": pd.NA, "部门": SUMMARY_ROW_ANNEX3, **{d: int(grid[d].sum()) for d in districts}}
    frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    return frame.astype({"序号": "Int64", "部门": "str", **dict.fromkeys(districts, "Int64")})


def annex4_towns_villages(ref: CityReference, counts: pd.DataFrame) -> pd.DataFrame:
    """附件4 镇村: per district, town (镇级) and village (村级) 评价总数, 差评数量 (valid), 按时整改数量."""
    units = with_reference(ref, counts)
    districts = ref.districts
    frame = pd.DataFrame({"序号": _serial(len(districts)), "区县": pd.Series(districts, dtype="str")})
    sums = ["eval_first", "eval_bad_valid", "eval_rectified_on_time"]
    for level, prefix in (("town", "镇级"), ("village", "村级")):
        rows = _sum_by(units[units["level"] == level], "district", sums, districts)
        frame[f"{prefix}评价总数"] = rows["eval_first"].astype("Int64").to_numpy()
        frame[f"{prefix}差评数量"] = rows["eval_bad_valid"].astype("Int64").to_numpy()
        frame[f"{prefix}按时整改数量"] = rows["eval_rectified_on_time"].astype("Int64").to_numpy()
    return frame


def annex5_public_services(ref: CityReference, counts: pd.DataFrame) -> pd.DataFrame:
    """附件5 公共服务: per district, evaluations of public-service units (not city_dept), 总量占比.

    总量占比 is the integer percent of the 总数 rounded half up; a last row 总数 carries the sum
    (blank 序号 and 占比).
    """
    units = with_reference(ref, counts)
    public = units[units["public_service"] & (units["level"] != "city_dept")]
    districts = ref.districts
    rows = _sum_by(public, "district", ["eval_first"], districts)["eval_first"]
    total = int(rows.sum())
    share = [percent_half_up(v, total) for v in rows]
    frame = pd.DataFrame(
        {
            "序号": _serial(len(districts)),
            "区县": pd.Series(districts, dtype="str"),
            "评价数": rows.astype("Int64").to_numpy(),
            "总量占比": pd.array([pd.NA if s is None else s for s in share], dtype="Int64"),
        }
    )
    last = pd.DataFrame([{"序号": pd.NA, "区县": SUMMARY_ROW_ANNEX5, "评价数": total, "总量占比": pd.NA}])
    frame = pd.concat([frame, last], ignore_index=True)
    return frame.astype({"序号": "Int64", "区县": "str", "评价数": "Int64", "总量占比": "Int64"})


ANNEX_BUILDERS = {
    "annex1_districts": annex1_districts,
    "annex2_city_departments": annex2_city_departments,
    "annex3_district_departments": annex3_district_departments,
    "annex4_towns_villages": annex4_towns_villages,
    "annex5_public_services": annex5_public_services,
}


# --- headline, notes, reconciliation -------------------------------------------------------------


def matters_catalogued(ref: CityReference) -> str | None:
    """The catalogue size as the bulletin words it: 15234 → "1.5万余件" (万, one decimal, truncated)."""
    if ref.matters is None:
        return None
    n = len(ref.matters)
    if n >= 10000:
        tenths = n // 1000
        return f"{tenths // 10}.{tenths % 10}万余件" if tenths % 10 else f"{tenths // 10}万余件"
    return f"{n}件"


def note_line(ref: CityReference, period: Period, extracted_on: date) -> str:
    """The 备注 line printed under each annex."""
    when = f"{extracted_on.year}年{extracted_on.month}月{extracted_on.day}日"
    return f"备注：数据来源{ref.system_name}，数据统计范围{period.range_cn()}，数据提取时间：{when}。"


def headline_figures(
    ref: CityReference,
    period: Period,
    counts: pd.DataFrame,
    numeric: dict[str, pd.DataFrame],
    systems: pd.Series,
    extracted_on: date,
) -> dict:
    """The figures of the bulletin's paragraphs (headline.json), plus the ones behind them.

    Keys of the published headline: city, period, period_start, period_end, extracted_on,
    total_evaluations (附件1 评价数 + 附件2 评价数), evaluation_rate, valid_bad_reviews,
    district_cases (Σ附件1 办件数), city_department_cases (Σ附件2 办件数),
    business_systems_connected (source systems of the period's cases, largest first),
    matters_catalogued. The data-quality sentence (quality_rates) comes from haocha quality.
    """
    a1, a2 = numeric["annex1_districts"], numeric["annex2_city_departments"]
    district_cases, city_cases = int(a1["办件数"].sum()), int(a2["办件数"].sum())
    district_evals, city_evals = int(a1["评价数"].sum()), int(a2["评价数"].sum())
    total_cases, total_evals = district_cases + city_cases, district_evals + city_evals
    scope = counts[counts["level"].isin([*DISTRICT_LEVELS, "city_dept"])]
    s = {col: int(scope[col].sum()) for col in COUNT_COLUMNS}
    # valid 差评 of the case tables (those cases' evaluations, any attempt, minus invalid ones)
    return {
        "city": ref.city_name,
        "period": period.label,
        "period_label": period.title_cn(),
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
        "extracted_on": extracted_on.isoformat(),
        "total_evaluations": total_evals,
        "evaluation_rate": format_rate(total_evals / total_cases if total_cases else None),
        "valid_bad_reviews": s["case_bad_valid"],
        "district_cases": district_cases,
        "city_department_cases": city_cases,
        "business_systems_connected": systems.index.tolist(),
        "matters_catalogued": matters_catalogued(ref),
        # --- beyond the published paragraph ---
        "total_cases": total_cases,
        "district_evaluations": district_evals,
        "city_department_evaluations": city_evals,
        "business_system_cases": {name: int(n) for name, n in systems.items()},
        "active_evaluations": s["cases_active"],
        "default_evaluations": s["cases_default"],
        "active_unknown_evaluations": s["cases_active_unknown"],
        "active_rate": format_rate(
            s["cases_active"] / (s["cases_active"] + s["cases_default"])
            if s["cases_active"] + s["cases_default"]
            else None
        ),
        "raw_bad_reviews": s["case_bad_raw"],
        "invalid_bad_reviews": s["case_bad_invalid"],
        "rectification_satisfaction_rate": format_rate(
            s["case_rectified_satisfied"] / s["case_rectified_followup"]
            if s["case_rectified_followup"]
            else None
        ),
        "evaluations_made_in_period": s["eval_first"],
        "linked_first_evaluations": s["eval_linked_first"],
        "unlinked_evaluations": s["eval_unlinked_first"],
        "followup_evaluations": s["eval_followups"],
        "duplicate_evaluations": s["eval_duplicates"],
        "onsite_evaluations": s["eval_onsite"],
        "onsite_rate": format_rate(s["eval_onsite"] / s["eval_first"] if s["eval_first"] else None),
        "bad_reviews_made_in_period": {
            "raw": s["eval_bad_raw"],
            "valid": s["eval_bad_valid"],
            "invalid": s["eval_bad_invalid"],
            "rectified_on_time": s["eval_rectified_on_time"],
        },
    }


def _check(
    check: str, scope: str, expected: int, actual: int, explanation: str = "", always_explain: bool = False
) -> dict:
    """One reconciliation row; the explanation shows when there is a gap (or always, if asked)."""
    diff = int(actual) - int(expected)
    return {
        "check": check,
        "scope": scope,
        "expected": int(expected),
        "actual": int(actual),
        "difference": diff,
        "result": "一致" if diff == 0 else "有差额",
        "explanation": explanation if (diff or always_explain) else "一致",
    }


def reconcile(
    ref: CityReference, counts: pd.DataFrame, numeric: dict[str, pd.DataFrame], headline: dict
) -> pd.DataFrame:
    """Cross-annex checks , reported, never fatal.

    Columns: check, scope, expected, actual, difference (= actual − expected), result (一致 / 有差额),
    explanation (in Chinese; for the 附件1 vs 附件3+附件4 gap, the counts that make it up).
    """
    a1, a2 = numeric["annex1_districts"], numeric["annex2_city_departments"]
    a3, a4 = numeric["annex3_district_departments"], numeric["annex4_towns_villages"]
    a5 = numeric["annex5_public_services"]
    districts = ref.districts
    rows = []
    local = counts[counts["level"].isin(DISTRICT_LEVELS)]
    city = counts[counts["level"] == "city_dept"]

    # Annex totals vs headline, and vs the per-unit counts they come from.
    rows.append(
        _check(
            "附件1评价数 + 附件2评价数 = 通报总评价数",
            "全市",
            headline["total_evaluations"],
            int(a1["评价数"].sum() + a2["评价数"].sum()),
        )
    )
    rows.append(
        _check(
            "附件1办件数合计 = 通报各区县办件数", "全市", headline["district_cases"], int(a1["办件数"].sum())
        )
    )
    rows.append(
        _check(
            "附件2办件数合计 = 通报市级部门办件数",
            "全市",
            headline["city_department_cases"],
            int(a2["办件数"].sum()),
        )
    )
    rows.append(
        _check(
            "附件1 + 附件2办件数 = 全部单位本期办结办件数",
            "全市",
            int(local["cases"].sum() + city["cases"].sum()),
            int(a1["办件数"].sum() + a2["办件数"].sum()),
            "参考数据中不属于任何附件的单位的办件",
        )
    )
    rows.append(
        _check(
            "附件1 + 附件2差评数 = 通报有效差评数",
            "全市",
            headline["valid_bad_reviews"],
            int(a1["差评数"].fillna(0).sum() + a2["差评数"].fillna(0).sum()),
            "评价数为0的单位差评数显示为“/”，其办件的追评差评未计入表内",
        )
    )

    # 附件3: 汇总 row vs its columns.
    body, total_row = a3[a3["序号"].notna()], a3[a3["序号"].isna()].iloc[0]
    for district in districts:
        rows.append(
            _check(
                "附件3汇总行 = 该列各部门之和", district, int(body[district].sum()), int(total_row[district])
            )
        )

    # 附件5 vs 附件3's public-service row(s), and its 总数 row.
    public_depts = counts[
        (counts["level"] == "district_dept") & counts["public_service"] & (counts["category"] != "")
    ]
    public_categories = list(dict.fromkeys(public_depts["category"]))
    a5_body = a5[a5["序号"].notna()].set_index("区县")
    a3_rows = body.set_index("部门")
    for district in districts:
        in_district = counts[counts["district"] == district]
        expected = int(sum(a3_rows.loc[c, district] for c in public_categories if c in a3_rows.index))
        actual = int(a5_body.loc[district, "评价数"])
        ps_elsewhere = in_district[
            in_district["public_service"]
            & (in_district["level"] != "city_dept")
            & ~((in_district["level"] == "district_dept") & in_district["category"].isin(public_categories))
        ]["eval_first"].sum()
        others_in_category = in_district[
            (in_district["level"] == "district_dept")
            & in_district["category"].isin(public_categories)
            & ~in_district["public_service"]
        ]["eval_first"].sum()
        why = (
            f"公共服务单位中不在附件3公共服务类别内的评价 {int(ps_elsewhere)} 件只计入附件5；"
            f"附件3公共服务类别中非公共服务单位的评价 {int(others_in_category)} 件只计入附件3"
        )
        label = "、".join(public_categories) or "（无公共服务类别）"
        rows.append(_check(f"附件5评价数 = 附件3“{label}”行", district, expected, actual, why))
    a5_total = int(a5.loc[a5["序号"].isna(), "评价数"].iloc[0])
    rows.append(_check("附件5总数 = 各区县评价数之和", "全市", int(a5_body["评价数"].sum()), a5_total))

    # Per district: 附件1 评价数 vs 附件3 column + 附件4 (镇级 + 村级), the gap explained by counts.
    a4i = a4.set_index("区县")
    for district in districts:
        d = counts[counts["district"] == district]
        in_tables = ((d["level"] == "district_dept") & (d["category"] != "")) | d["level"].isin(
            ["town", "village"]
        )
        outside = d[d["level"].isin(DISTRICT_LEVELS) & ~in_tables]
        inside = d[in_tables]
        expected = int(a1.set_index("区县").loc[district, "评价数"])
        actual = int(
            total_row[district] + a4i.loc[district, "镇级评价总数"] + a4i.loc[district, "村级评价总数"]
        )
        unlinked = int(inside["eval_unlinked_first"].sum())
        outside_cases = int(outside["cases_evaluated"].sum())
        timing = int((inside["cases_evaluated"] - inside["eval_linked_first"]).sum())
        explained = unlinked - outside_cases - timing == actual - expected
        why = (
            f"附件3、附件4按本期作出的首次评价统计，附件1按本期办结的已评价办件统计："
            f"未关联办件的评价 {unlinked} 件只计入附件3/附件4；"
            f"附件3类别之外的单位（区县本级、综合受理窗口等）的已评价办件 {outside_cases} 件只计入附件1；"
            f"附件3/附件4单位中办结与首次评价不在同一统计期造成的差 {timing} 件"
            f"（本期办结的已评价办件数 − 本期作出的关联首次评价数）。"
            + ("差额已由以上各项完全解释。" if explained else "以上各项不能完全解释差额，请核查。")
        )
        rows.append(
            _check("附件1评价数 与 附件3 + 附件4评价数", district, expected, actual, why, always_explain=True)
        )
    return pd.DataFrame(rows, columns=list(RECONCILIATION_HEADERS))


# --- 环比 / 同比 -----------------------------------------------------------------------------------


def _has_records(data: dict[str, pd.DataFrame], period: Period) -> bool:
    cases, evaluations = data.get("cases"), data.get("evaluations")
    n = 0
    if cases is not None and len(cases):
        n += int(period.contains(cases["finished_at"]).sum())
    if evaluations is not None and len(evaluations):
        n += int(period.contains(evaluations["evaluated_at"]).sum())
    return n > 0


def add_comparisons(
    numeric: dict[str, pd.DataFrame], bases: dict[str, dict[str, pd.DataFrame]]
) -> dict[str, pd.DataFrame]:
    """Add 环比 / 同比 columns (relative change, NA when the base is 0 or missing).

    Args:
        numeric: this period's numeric annexes.
        bases: suffix (环比 or 同比) → that base period's numeric annexes.
    """
    out = {}
    for name, frame in numeric.items():
        frame = frame.copy()
        key = ROW_KEYS[name]
        if name == "annex3_district_departments":
            frame["合计"] = _annex3_total(frame)
        for suffix, base_tables in bases.items():
            base = base_tables[name].copy()
            if name == "annex3_district_departments":
                base["合计"] = _annex3_total(base)
            base = base.set_index(key)
            for col in COMPARED_COLUMNS[name]:
                previous = frame[key].map(base[col]).astype("Float64")
                current = frame[col].astype("Float64")
                frame[f"{col}{suffix}"] = ((current - previous) / previous.where(previous != 0)).astype(
                    "Float64"
                )
        out[name] = frame
    return out


# Headline figures compared with a base period: (key, what the sentence calls it).
COMPARED_FIGURES = (
    ("total_cases", "汇聚办件数据"),
    ("total_evaluations", "评价数据"),
    ("valid_bad_reviews", "有效差评"),
)
COMPARISON_NAMES = {"环比": "上期", "同比": "上年同期"}


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def compare_headlines(current: dict, base: dict) -> dict:
    """This period's headline figures against a base period's: counts, changes, rate difference."""
    out: dict = {"period": base["period"], "period_label": period_label(base["period"])}
    for key, _ in COMPARED_FIGURES:
        now, then = int(current[key]), int(base[key])
        out[key] = then
        out[f"{key}_change"] = format_change((now - then) / then if then else None)
    now = _rate(current["total_evaluations"], current["total_cases"])
    then = _rate(base["total_evaluations"], base["total_cases"])
    out["evaluation_rate"] = base["evaluation_rate"]
    out["evaluation_rate_points"] = None if now is None or then is None else round((now - then) * 100, 2)
    return out


def _change_words(change: str) -> str:
    if change == NOT_APPLICABLE:
        return "无可比基数"
    if change == "0%":
        return "持平"
    return ("增长" if change.startswith("+") else "下降") + change.lstrip("+-")


def comparison_sentence(headline: dict) -> str:
    """The bulletin's 环比/同比 sentence from ``headline["comparisons"]`` ("" when none)."""
    parts = []
    for suffix, c in (headline.get("comparisons") or {}).items():
        words = [f"{what}{_change_words(c[f'{key}_change'])}" for key, what in COMPARED_FIGURES]
        points = c.get("evaluation_rate_points")
        if points is not None:
            words.append(
                "评价率持平"
                if points == 0
                else f"评价率{'提高' if points > 0 else '降低'}{abs(points):g}个百分点"
            )
        when = period_label(c["period"])
        parts.append(f"与{COMPARISON_NAMES.get(suffix, suffix)}（{when}）相比，{'，'.join(words)}")
    return "；".join(parts) + "。" if parts else ""


def _annex3_total(frame: pd.DataFrame) -> pd.Series:
    districts = [
        c for c in frame.columns if c not in ("序号", "部门", "合计") and not c.endswith(("环比", "同比"))
    ]
    return frame[districts].sum(axis=1).astype("Int64")


# --- the whole set --------------------------------------------------------------------------------


def build_tables(
    ref: CityReference,
    data: dict[str, pd.DataFrame],
    period: Period,
    extracted_on: date | None = None,
    compare: bool = False,
    history: dict[str, dict[str, pd.DataFrame]] | None = None,
) -> TablesResult:
    """Compute every annex, the headline figures and the cross-annex checks for one period.

    Args:
        ref: the city's reference data.
        data: canonical frames {"cases", "evaluations", "rectifications"} (rectifications optional).
        period: the statistical period.
        extracted_on: the data extraction date printed in the 备注 lines (default: today).
        compare: add 环比 (previous period) and 同比 (a year earlier) columns when their data exist.
        history: period label → canonical frames of that period. Without an entry, ``data`` itself
            is used when it holds records of the shifted period.

    Raises:
        HaochaInputError: a unit in the data is missing from the reference (named, with row counts).
    """
    extracted_on = extracted_on or date.today()
    raw = unit_counts(data["cases"], data["evaluations"], data.get("rectifications"), period, ref.limits)
    systems = source_system_counts(data["cases"], period)

    def base(shifted: Period) -> TablesResult | None:
        base_data = (history or {}).get(shifted.label)
        if base_data is None and _has_records(data, shifted):
            base_data = data
        if base_data is None or not _has_records(base_data, shifted):
            return None
        return build_tables(ref, base_data, shifted, extracted_on=extracted_on)

    bases = comparison_bases(period, base) if compare else None
    return tables_from_counts(ref, raw, systems, period, extracted_on, bases)


def comparison_bases(
    period: Period, build: Callable[[Period], TablesResult | None]
) -> dict[str, TablesResult]:
    """环比 / 同比 suffix → the tables of the period compared with, for those ``build`` gives.

    ``build`` makes the tables of a shifted period (the previous one, a year earlier), or None when
    the data hold no record of it; whichever engine counts, the comparisons are chosen here.
    """
    bases = {}
    for kind, suffix in COMPARISONS.items():
        shifted = period.shifted(kind)
        if shifted is not None and (result := build(shifted)) is not None:
            bases[suffix] = result
    return bases


def tables_from_counts(
    ref: CityReference,
    raw: pd.DataFrame,
    systems: pd.Series,
    period: Period,
    extracted_on: date | None = None,
    bases: dict[str, TablesResult] | None = None,
) -> TablesResult:
    """Every annex, the headline figures and the cross-annex checks from the per-unit counts.

    The half of :func:`build_tables` after the records are reduced: whichever engine reduced them
    (:mod:`haocha_analysis.engine`), the tables are built here, the same way.

    Args:
        ref: the city's reference data.
        raw: per-unit counts as :func:`~haocha_analysis.analysis.metrics.unit_counts` returns them.
        systems: cases per source system (:func:`~haocha_analysis.analysis.metrics.source_system_counts`).
        period: the statistical period.
        extracted_on: the data extraction date printed in the 备注 lines (default: today).
        bases: 环比 / 同比 suffix → that base period's result (adds comparison columns when given).

    Raises:
        HaochaInputError: a unit in the data is missing from the reference (named, with row counts).
    """
    extracted_on = extracted_on or date.today()
    check_units_known(ref, raw)
    counts = with_reference(ref, raw)
    numeric = {name: build(ref, counts) for name, build in ANNEX_BUILDERS.items()}
    headline = headline_figures(ref, period, counts, numeric, systems, extracted_on)
    reconciliation = reconcile(ref, counts, numeric, headline)
    if bases is not None:
        numeric = add_comparisons(numeric, {suffix: base.numeric for suffix, base in bases.items()})
        headline["comparisons"] = {
            suffix: compare_headlines(headline, base.headline) for suffix, base in bases.items()
        }

    annexes = {name: to_display(frame) for name, frame in numeric.items()}
    note = note_line(ref, period, extracted_on)
    return TablesResult(
        city=ref.city_name,
        period=period,
        extracted_on=extracted_on,
        counts=counts,
        numeric=numeric,
        annexes=annexes,
        headline=headline,
        reconciliation=reconciliation,
        notes=dict.fromkeys(ANNEXES, note),
        titles={name: TITLES[name].format(short=period.short_cn()) for name in ANNEXES},
    )


# --- output ---------------------------------------------------------------------------------------


def write_outputs(result: TablesResult, out_dir: Path) -> list[Path]:
    """Write the five annex CSVs (UTF-8 with BOM), annexes.xlsx, headline.json, reconciliation.csv.

    Every file is written to a temporary name in ``out_dir`` first and renamed into place only when
    all of them are complete, so a failed run leaves no half-written set.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name in ANNEXES:
            target = out_dir / f"{name}.csv"
            tmp = _temp_path(out_dir, target)
            numeric = result.numeric[name]
            names = [c for c in numeric.columns if numeric[c].dtype == "str" or numeric[c].dtype == object]
            # Unit and district names come from the data: quote any a spreadsheet would run as a
            # formula. The number cells ("-3.33%", "+50%") are the library's own and stay as printed.
            neutralise_frame(result.annexes[name], names).to_csv(tmp, index=False, encoding="utf-8-sig")
            staged.append((tmp, target))
        target = out_dir / XLSX_NAME
        tmp = _temp_path(out_dir, target)
        write_workbook(result, tmp)
        staged.append((tmp, target))
        target = out_dir / HEADLINE_NAME
        tmp = _temp_path(out_dir, target)
        tmp.write_text(json.dumps(result.headline, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        staged.append((tmp, target))
        target = out_dir / RECONCILIATION_NAME
        tmp = _temp_path(out_dir, target)
        neutralise_frame(result.reconciliation.rename(columns=RECONCILIATION_HEADERS)).to_csv(
            tmp, index=False, encoding="utf-8-sig"
        )
        staged.append((tmp, target))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, target in staged:
        tmp.chmod(0o644)  # mkstemp creates 0600; published annexes are for every reader
        os.replace(tmp, target)
    return [target for _, target in staged]


def _temp_path(out_dir: Path, target: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=target.suffix, dir=out_dir)
    os.close(fd)
    return Path(name)


def write_workbook(result: TablesResult, path: Path) -> None:
    """One XLSX sheet per annex: title row, typed numbers, the bulletin's header, the 备注 line.

    Counts are integers, rates fractions shown as ``0.00%`` (truncated like the printed table, so a
    sheet shows the CSV's figure), "/" where a value is undefined (blank on 汇总/总数 rows); 附件4 has
    the bulletin's two-row 镇 级 / 村 级 header. Layout and print setup: :mod:`haocha_analysis.spreadsheet`.
    """
    write_sheets(path, [annex_sheet(result, name) for name in ANNEXES])


def annex_sheet(result: TablesResult, name: str) -> SheetSpec:
    """The spreadsheet description of one annex, built from its numeric frame."""
    numeric = result.numeric[name].reset_index(drop=True)
    cells, formats = {}, {}
    for col in numeric.columns:
        values = numeric[col]
        if col == "序号":
            cells[col], formats[col] = values, PLAIN_INTEGER_FORMAT
        elif values.dtype == "str" or values.dtype == object:
            cells[col] = values
        elif col.endswith(tuple(COMPARISONS.values())):
            cells[col], formats[col] = values.map(truncate_fraction).astype("Float64"), CHANGE_FORMAT
        elif col.endswith("率"):
            cells[col], formats[col] = values.map(truncate_fraction).astype("Float64"), PERCENT_FORMAT
        elif col == "总量占比":  # an integer percent (rounded half up, as printed)
            cells[col], formats[col] = values.astype("Float64") / 100, WHOLE_PERCENT_FORMAT
        else:
            cells[col], formats[col] = values, PLAIN_INTEGER_FORMAT  # printed without separators
    frame = pd.DataFrame(cells)
    label = f"附件{ANNEXES.index(name) + 1}"
    title = result.titles.get(name) or TITLES[name].format(short=result.period.short_cn())
    groups = HEADER_GROUPS.get(name)
    summary = numeric["序号"].isna() if "序号" in numeric else pd.Series(False, index=numeric.index)
    return SheetSpec(
        name=SHEET_NAMES[name],
        frame=frame,
        title=f"{label}\u3000{title}",
        notes=[result.notes[name]] if result.notes.get(name) else [],
        header_groups=groups_by_prefix(list(frame.columns), groups) if groups else None,
        number_formats=formats,
        slash_columns=[c for c in formats if c != "序号"],
        total_rows=[int(i) for i in summary.to_numpy().nonzero()[0]],
    )


# --- CLI ------------------------------------------------------------------------------------------


def load_period_data(data_dir: Path, period: Period) -> dict[str, pd.DataFrame]:
    """The columns the tables need, through the one loading window (the period and the one before)."""
    columns = {table: list(cols) for table, cols in NEEDED_COLUMNS.items()}
    columns["cases"] = [*columns["cases"], "source_system"]
    return load_window(Path(data_dir), period, columns=columns)


def load_comparison_data(data_dir: Path, period: Period) -> dict[str, dict[str, pd.DataFrame]]:
    """The data of the periods 环比 and 同比 compare with (previous, a year earlier), those that exist.

    Keyed by period label, as :func:`build_tables` takes them in ``history``.
    """
    out = {}
    for kind in COMPARISONS:
        shifted = period.shifted(kind)
        if shifted is not None and _has_records(base := load_period_data(data_dir, shifted), shifted):
            out[shifted.label] = base
    return out


__all__ = [
    "ANNEXES",
    "TablesResult",
    "add_comparisons",
    "annex1_districts",
    "annex2_city_departments",
    "annex3_district_departments",
    "annex4_towns_villages",
    "annex5_public_services",
    "build_tables",
    "check_units_known",
    "comparison_bases",
    "format_change",
    "format_rate",
    "headline_figures",
    "load_comparison_data",
    "load_period_data",
    "percent_half_up",
    "reconcile",
    "tables_from_counts",
    "to_display",
    "with_reference",
    "write_outputs",
]
