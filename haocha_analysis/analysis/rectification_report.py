"""The 差评 ledger for readers: Chinese tables, the bulletin's paragraph, files, notebook views.

Everything here presents :class:`haocha_analysis.analysis.rectification.Ledger` (the rules and the
numbers live there): the ledger, per-unit and per-district figures and the overdue list with
Chinese headers and values; the 差评整改 paragraph of the bulletin; the CSV (UTF-8 with BOM) and XLSX
files of ``haocha rectification``; and the tables and charts of notebooks/rectification.ipynb.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from haocha_analysis.analysis.rectification import (
    AWAITING_REVISIT,
    OPEN_STAGES,
    RECTIFYING,
    TOTAL,
    Ledger,
)
from haocha_analysis.core import atomic, display
from haocha_analysis.core.calendar import working_days_between
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.schemas import SATISFACTION_LABELS
from haocha_analysis.core.spreadsheet import (
    SheetSpec,
    neutralise_frame,
    printed_rates_as_fractions,
    write_workbook,
)
from haocha_analysis.core.text import NOT_APPLICABLE, format_ratio

# Ledger columns (internal name → the header a reader sees).
LEDGER_HEADERS = {
    "eval_id": "评价编号",
    "case_id": "办件编号",
    "unit_name": "责任单位",
    "district": "区县",
    "matter_code": "事项编码",
    "matter_name": "事项名称",
    "satisfaction": "满意度",
    "attempt": "评价次数",
    "evaluated_at": "评价时间",
    "verdict": "核实结论",
    "invalid_reason": "无效原因",
    "verified_at": "核实时间",
    "approved_at": "审核通过时间",
    "verify_deadline": "核实期限",
    "rectify_deadline": "整改期限",
    "rectified_at": "整改完成时间",
    "revisit_deadline": "回访期限",
    "revisited_at": "回访时间",
    "follow_up": "回访满意度",
    "stage": "当前阶段",
    "days_used": "已用工作日",
    "days_left": "剩余工作日",
    "verify_overdue": "核实超期",
    "rectify_overdue": "整改超期",
    "revisit_overdue": "回访超期",
    "on_time": "按时整改",
    "audit": "审核问题",
}
OVERDUE_HEADERS = {
    "unit_name": "责任单位",
    "district": "区县",
    "eval_id": "评价编号",
    "evaluated_at": "评价时间",
    "stage": "当前阶段",
    "overdue_steps": "超期环节",
    "current_deadline": "当前期限",
    "days_used": "已用工作日",
}
# Per-unit / per-district figures: counts, then rates (numerator, denominator) printed as percentages.
FIGURE_COUNTS = {
    "bad": "差评数",
    "valid": "有效差评数",
    "invalid": "无效差评数",
    "verified": "已核实数",
    "rectified": "已整改数",
    "on_time": "按时整改数",
    "revisited": "已回访数",
    "overdue": "超期件数",
}
FIGURE_RATES = {
    "核实率": ("verified", "bad"),
    "整改率": ("rectified", "valid"),
    "按时整改率": ("on_time", "due"),
    "回访率": ("revisited", "rectified"),
    "整改满意率": ("satisfied", "followup"),
    "无效差评占比": ("invalid", "verified"),
}

LEDGER_CSV = "rectification_ledger.csv"
UNITS_CSV = "rectification_units.csv"
DISTRICTS_CSV = "rectification_districts.csv"
OVERDUE_CSV = "rectification_overdue.csv"
XLSX_NAME = "rectification.xlsx"
SHEET_UNITS, SHEET_DISTRICTS, SHEET_OVERDUE = "按单位汇总", "按区县汇总", "超期清单"
_SHEET_FORBIDDEN = str.maketrans({c: "_" for c in "[]:*?/\\"})


def figures_display(frame: pd.DataFrame, name_column: str, name_header: str) -> pd.DataFrame:
    """Figures as a reader sees them: 序号, the name, counts, rates ("/" where the denominator is 0)."""
    total = frame[name_column] == TOTAL
    out = pd.DataFrame(
        {"序号": pd.array([pd.NA if t else i for i, t in enumerate(total, start=1)], dtype="Int64")}
    )
    out[name_header] = frame[name_column].to_numpy()
    if name_column == "unit_name":
        out["区县"] = frame["district"].to_numpy()
    for key in ("bad", "valid", "invalid"):
        out[FIGURE_COUNTS[key]] = frame[key].to_numpy()
    for label, (num, den) in FIGURE_RATES.items():
        out[label] = [format_ratio(n, d) for n, d in zip(frame[num], frame[den], strict=True)]
    for key in ("rectified", "on_time", "overdue"):
        out[FIGURE_COUNTS[key]] = frame[key].to_numpy()
    return out


def _day(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts).dt.strftime("%Y-%m-%d").fillna("")


def _moment(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts).dt.strftime("%Y-%m-%d %H:%M:%S").fillna("")


def _yes_no(flags: pd.Series) -> pd.Series:
    return flags.astype("boolean").map({True: "是", False: "否"}).astype("object").fillna(NOT_APPLICABLE)


def ledger_display(rows: pd.DataFrame) -> pd.DataFrame:
    """The ledger with Chinese headers and values (the CSV and the unit sheets)."""
    out = pd.DataFrame(index=rows.index)
    for column, header in LEDGER_HEADERS.items():
        values = rows[column]
        if column in ("verify_deadline", "rectify_deadline", "revisit_deadline"):
            values = _day(values)
        elif column in ("evaluated_at", "verified_at", "approved_at", "rectified_at", "revisited_at"):
            values = _moment(values)
        elif column == "satisfaction":
            values = values.map(SATISFACTION_LABELS)
        elif column == "verdict":
            values = values.map({"valid": "有效", "invalid": "无效"}).fillna("")
        elif column in ("verify_overdue", "rectify_overdue", "revisit_overdue", "on_time"):
            values = _yes_no(values)
        elif column in ("days_used", "days_left"):
            values = values.astype("Int64").astype("object").where(values.notna(), "")
        else:
            values = values.astype("object").where(values.notna(), "")
        out[header] = values.to_numpy()
    return out.reset_index(drop=True)


STEP_LABELS = {"verify_overdue": "核实", "rectify_overdue": "整改", "revisit_overdue": "回访"}


def overdue_display(ledger: Ledger) -> pd.DataFrame:
    """The overdue list (超期清单) with Chinese headers: the late steps named, open ones first."""
    late = ledger.overdue
    flags = {
        label: late[column].fillna(False).astype(bool).to_numpy() for column, label in STEP_LABELS.items()
    }
    steps = ["、".join(label for label, hit in flags.items() if hit[i]) for i in range(len(late))]
    out = pd.DataFrame({"序号": range(1, len(late) + 1)})
    values = {
        "unit_name": late["unit_name"],
        "district": late["district"],
        "eval_id": late["eval_id"],
        "evaluated_at": _moment(late["evaluated_at"]),
        "stage": late["stage"],
        "overdue_steps": steps,
        "current_deadline": _day(late["current_deadline"]),
        "days_used": late["days_used"].astype("Int64"),
    }
    for column, header in OVERDUE_HEADERS.items():
        out[header] = pd.Series(values[column]).to_numpy()
    return out


# --- the bulletin's paragraph ------------------------------------------------------------------------


def paragraph(ledger: Ledger) -> str:
    """The bulletin's 差评整改 paragraph: counts, rates, units with overdue 差评 named ("" if none valid)."""
    if not ledger.has_valid:
        return ""
    total = ledger.by_district[ledger.by_district["district"] == TOTAL].iloc[0]
    when = f"{ledger.as_of.year}年{ledger.as_of.month}月{ledger.as_of.day}日"
    stages = ledger.rows["stage"].value_counts()
    text = (
        f"截至{when}，本期差评{int(total['bad'])}件，经核实有效差评{int(total['valid'])}件、"
        f"无效差评{int(total['invalid'])}件，待核实{int(total['bad'] - total['verified'])}件；"
        f"有效差评已整改{int(total['rectified'])}件，其中按时整改{int(total['on_time'])}件，"
        f"整改率{format_ratio(total['rectified'], total['valid'])}，"
        f"回访率{format_ratio(total['revisited'], total['rectified'])}，"
        f"整改满意率{format_ratio(total['satisfied'], total['followup'])}；"
        f"整改中{int(stages.get(RECTIFYING, 0))}件，已整改待回访{int(stages.get(AWAITING_REVISIT, 0))}件。"
    )
    late = ledger.by_unit[ledger.by_unit["overdue"] > 0]
    if len(late):
        named = "、".join(
            f"{n}（{int(k)}件）" for n, k in zip(late["unit_name"], late["overdue"], strict=True)
        )
        text += (
            f"核实、整改或回访超出时限的差评{int(total['overdue'])}件，涉及{named}，详见差评整改超期清单。"
        )
    else:
        text += "各环节均在时限内完成。"
    return text


# --- output ------------------------------------------------------------------------------------------


def sheet_names(names: list[str]) -> list[str]:
    """Excel sheet names for units: forbidden characters replaced, at most 31 characters, unique."""
    out: list[str] = []
    taken = {SHEET_UNITS, SHEET_DISTRICTS, SHEET_OVERDUE}
    for name in names:
        base = str(name).translate(_SHEET_FORBIDDEN)[:31] or "单位"
        candidate, k = base, 2
        while candidate in taken:
            suffix = f"({k})"
            candidate, k = base[: 31 - len(suffix)] + suffix, k + 1
        taken.add(candidate)
        out.append(candidate)
    return out


def note_line(ledger: Ledger) -> str:
    """The 备注 line under the ledger's tables: scope, as-of date, the limits applied."""
    day = ledger.as_of
    return (
        f"备注：统计期{ledger.period.range_cn()}内作出的差评，状态截至{day.year}年{day.month}月{day.day}日；"
        f"时限按工作日计：核实{ledger.limits.verify_days}日、整改{ledger.limits.rectify_days}日"
        f"（数据中逐条的整改期限优先）、回访{ledger.limits.revisit_days}日。"
    )


def write_outputs(ledger: Ledger, out_dir: Path) -> list[Path]:
    """Write the ledger CSV (UTF-8 with BOM), the figures and overdue CSVs, and the XLSX, as one set.

    The XLSX has the per-unit and per-district figures, the overdue list, and one sheet per
    responsible unit (its 差评, the list the centre sends to that unit).
    """
    ledger_frame = ledger_display(ledger.rows)
    units = figures_display(ledger.by_unit, "unit_name", "单位")
    districts = figures_display(ledger.by_district, "district", "区县")
    overdue = overdue_display(ledger)
    note = note_line(ledger)

    def sheet(name: str, frame: pd.DataFrame, title: str) -> SheetSpec:
        typed, rates = printed_rates_as_fractions(frame.reset_index(drop=True), ("率", "占比"))
        return SheetSpec(
            name=name, frame=typed, title=title, notes=[note], percent_columns=rates, slash_columns=rates
        )

    sheets = [
        sheet(name, frame, title)
        for name, frame, title in (
            (SHEET_UNITS, units, f"{ledger.city}差评核实整改情况（按单位）"),
            (SHEET_DISTRICTS, districts, f"{ledger.city}差评核实整改情况（按区县）"),
            (SHEET_OVERDUE, overdue, f"{ledger.city}差评整改超期清单"),
        )
    ]
    by_unit = ledger.rows.groupby("unit_name", sort=False).indices  # in the ledger's (official) order
    for sheet_name, positions in zip(sheet_names(list(by_unit)), by_unit.values(), strict=True):
        rows = ledger_frame.iloc[positions].reset_index(drop=True)
        sheets.append(SheetSpec(name=sheet_name, frame=rows, title=f"{sheet_name}：差评台账", notes=[note]))

    def csv_writer(frame: pd.DataFrame):
        return lambda path: neutralise_frame(frame).to_csv(path, index=False, encoding="utf-8-sig")

    return atomic.publish_files(
        Path(out_dir),
        {
            LEDGER_CSV: csv_writer(ledger_frame),
            UNITS_CSV: csv_writer(units),
            DISTRICTS_CSV: csv_writer(districts),
            OVERDUE_CSV: csv_writer(overdue),
            XLSX_NAME: lambda path: write_workbook(path, sheets),
        },
    )


# --- the analysts' notebook (notebooks/rectification.ipynb) --------------------------------------------

# Ages of open 差评 in working days since the evaluation (the national 整改 limit is 15).
AGE_BINS = ((0, 3, "0–3"), (4, 5, "4–5"), (6, 10, "6–10"), (11, 15, "11–15"), (16, 30, "16–30"))
AGE_OVER = "31及以上"


def open_by_unit(ledger: Ledger, unit_id: str = "") -> pd.DataFrame:
    """Open 差评 per responsible unit: per open stage, total, overdue, the oldest (working days)."""
    rows = ledger.rows[ledger.rows["stage"].isin(OPEN_STAGES)]
    if unit_id:
        rows = rows[rows["unit_id"] == unit_id]
    keys = ["unit_order", "unit_name", "district"]
    table = rows.pivot_table(index=keys, columns="stage", values="eval_id", aggfunc="count", fill_value=0)
    table = table.reindex(columns=list(OPEN_STAGES), fill_value=0)
    table["合计"] = table.sum(axis=1)
    grouped = rows.groupby(keys)
    table["其中超期"] = grouped["overdue"].sum().reindex(table.index).astype(int)
    table["最长已用工作日"] = grouped["days_used"].max().reindex(table.index).astype("Int64")
    table = table.reset_index().sort_values(
        ["其中超期", "合计", "unit_order"], ascending=[False, False, True]
    )
    table = table.drop(columns="unit_order").rename(columns={"unit_name": "单位", "district": "区县"})
    table.columns.name = None
    return table.reset_index(drop=True)


def ageing(ledger: Ledger) -> pd.DataFrame:
    """Open 差评 by age (working days since the evaluation) and stage."""
    rows = ledger.rows[ledger.rows["stage"].isin(OPEN_STAGES)]
    labels = [label for _, _, label in AGE_BINS] + [AGE_OVER]
    edges = [low - 0.5 for low, _, _ in AGE_BINS] + [AGE_BINS[-1][1] + 0.5, float("inf")]
    age = pd.cut(rows["days_used"].astype(float), bins=edges, labels=labels)
    table = pd.crosstab(age, rows["stage"]).reindex(index=labels, columns=list(OPEN_STAGES), fill_value=0)
    table.index.name, table.columns.name = "已用工作日", None
    return table


def plot_ageing(ledger: Ledger):  # -> matplotlib Figure (imported lazily)
    """Stacked bars: open 差评 by age and stage, the 整改 limit marked."""
    import matplotlib.pyplot as plt

    from haocha_analysis.core.fonts import use_cjk_font

    use_cjk_font()
    table = ageing(ledger)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bottom = pd.Series(0, index=table.index)
    for stage in table.columns:
        ax.bar(table.index, table[stage], bottom=bottom, label=stage)
        bottom = bottom + table[stage]
    display.count_axis(ax)
    limit = ledger.limits.rectify_days
    at = next((i + 0.5 for i, (low, high, _) in enumerate(AGE_BINS) if high == limit), None)
    if at is not None:
        ax.axvline(at, color="#c00000", linestyle="--", linewidth=1)
        ax.text(at, ax.get_ylim()[1] * 0.95, f" 整改时限 {limit} 个工作日", color="#c00000", va="top")
    ax.set_xlabel("自评价起已用工作日")
    ax.set_ylabel("未办结差评（件）")
    ax.set_title(f"{ledger.city} 未办结差评账龄（截至 {ledger.as_of.isoformat()}）")
    ax.legend()
    fig.tight_layout()
    return fig


def pick_bad_review(ledger: Ledger, eval_id: str = "") -> str:
    """The 差评 to drill into: the one named, else the first of the overdue list, else the first row."""
    if eval_id:
        if eval_id not in set(ledger.rows["eval_id"]):
            raise HaochaInputError(
                f"台账中没有评价编号 {eval_id}",
                column="eval_id",
                fix="eval_id 取台账中的评价编号（本统计期内、截至台账日期作出的差评），或留空",
            )
        return eval_id
    if len(ledger.overdue):
        return str(ledger.overdue["eval_id"].iloc[0])
    return str(ledger.rows["eval_id"].iloc[0]) if len(ledger.rows) else ""


def _state(done: bool, late: object) -> str:
    if pd.isna(late):
        return "已完成（时间未知）" if done else "未完成"
    if done:
        return "超期完成" if late else "按时完成"
    return "未完成，已超期" if late else "未完成"


def summary_line(ledger: Ledger, eval_id: str) -> str:
    """One 差评 in a sentence: unit, matter, case, when it was made, where it stands."""
    if not eval_id:
        return "台账中没有差评。"
    row = ledger.rows.set_index("eval_id").loc[eval_id]
    matter = row["matter_name"] if isinstance(row["matter_name"], str) else "（未关联事项）"
    case = row["case_id"] if isinstance(row["case_id"], str) else "（未关联办件）"
    return (
        f"{row['unit_name']}（{row['district']}），事项 {matter}，办件 {case}；"
        f"{row['evaluated_at']:%Y-%m-%d %H:%M} 评价，当前阶段：{row['stage']}，"
        f"已用 {int(row['days_used'])} 个工作日。"
    )


TIMELINE_COLUMNS = ["环节", "期限", "完成时间", "距评价工作日", "情况"]


def timeline(ledger: Ledger, eval_id: str) -> pd.DataFrame:
    """One 差评's steps: deadline, when done, working days since the evaluation, on time or late."""
    if not eval_id:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    row = ledger.rows.set_index("eval_id").loc[eval_id]
    steps = [("评价", None, row["evaluated_at"], SATISFACTION_LABELS.get(int(row["satisfaction"]), ""))]
    verdict_done = bool(row["verified"])
    verdict = {"valid": "有效", "invalid": "无效"}.get(row["verdict"], "")
    steps.append(
        (
            "核实",
            row["verify_deadline"],
            row["verified_at"],
            f"{_state(verdict_done, row['verify_overdue'])} {verdict}".strip(),
        )
    )
    if row["verdict"] == "invalid":
        reason = row["invalid_reason"] if isinstance(row["invalid_reason"], str) else "（无原因）"
        steps.append(("无效审核通过", None, row["approved_at"], f"{reason} {row['audit']}".strip()))
    if row["valid"]:
        steps.append(
            (
                "整改",
                row["rectify_deadline"],
                row["rectified_at"],
                _state(bool(row["rectified"]), row["rectify_overdue"]),
            )
        )
    if row["rectified"]:
        follow = row["follow_up"] if isinstance(row["follow_up"], str) else ""
        state = _state(bool(row["revisited"]), row["revisit_overdue"])
        steps.append(("回访", row["revisit_deadline"], row["revisited_at"], f"{state} {follow}".strip()))
    frame = pd.DataFrame(steps, columns=["环节", "期限", "完成时间", "情况"])
    start = pd.Series(row["evaluated_at"], index=frame.index)
    done = pd.to_datetime(frame["完成时间"])
    frame["距评价工作日"] = working_days_between(start, done)
    frame["期限"] = pd.to_datetime(frame["期限"]).dt.strftime("%Y-%m-%d").fillna("")
    frame["完成时间"] = done.dt.strftime("%Y-%m-%d %H:%M").fillna("")
    return frame[TIMELINE_COLUMNS]
