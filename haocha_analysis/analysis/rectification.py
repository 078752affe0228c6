"""The 差评 closed loop (核实 → 整改 → 回访): deadlines, stages and the ledger (差评整改台账).

Every rule of the loop lives here; :mod:`haocha_analysis.analysis.metrics` (附件1 整改满意率, 附件4
按时整改数量) and the ledger both call :func:`closed_loop`. The rules (docs/rectification.md):

* **差评**: a non-duplicate evaluation (first or follow-up, :mod:`haocha_analysis.core.linkage`) with
  satisfaction 1–2. The ledger lists the 差评 made in the period up to the as-of date; its unit is the
  linked case's unit (the case wins).
* **Deadlines** are dates, counted in working days by :mod:`haocha_analysis.core.calendar` (holidays
  and 调休 working weekends from chinese-calendar); the day of the event itself never counts, so a
  差评 made on a holiday starts counting on the next working day. Limits come from city.yml
  (:class:`~haocha_analysis.core.reference.ClosedLoopLimits`): 核实 = evaluation date + verify days;
  整改 = the row's own ``deadline`` when given (moved to the next working day when it falls on a
  holiday or weekend), else evaluation date + rectify days; 回访 = rectification date + revisit days.
  A step done on its deadline's day is on time.
* **A verdict counts from** its approval (invalid: ``approved_at``, else ``verified_at``) or its
  ``verified_at`` (valid); without a time it counts whatever the as-of date. A 差评 without a verdict
  in effect is 待核实.
* **Stages**: 待核实 → 核实为无效 | 整改中 → 已整改待回访 → 已回访 (回访 = ``revisited_at``, or a
  ``follow_up`` recorded without a time).
* **As of a date**: an event stamped after the end of the as-of day has not happened yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from haocha_analysis.core import atomic
from haocha_analysis.core.calendar import add_working_days_series, working_days_between
from haocha_analysis.core.config import BAD_SATISFACTION
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.linkage import link
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference, ClosedLoopLimits
from haocha_analysis.core.schemas import (
    FOLLOW_UP_LEVELS,
    FOLLOW_UP_SATISFIED,
    LEVELS,
    SATISFACTION_LABELS,
)
from haocha_analysis.core.text import NOT_APPLICABLE, format_ratio
from haocha_analysis.ingest.storage import ORIGIN_COLUMNS, load_window

STAGES = ("待核实", "核实为无效", "整改中", "已整改待回访", "已回访")
PENDING, INVALID, RECTIFYING, AWAITING_REVISIT, REVISITED = STAGES
OPEN_STAGES = (PENDING, RECTIFYING, AWAITING_REVISIT)

RECTIFICATION_COLUMNS = [
    "eval_id",
    "verdict",
    "invalid_reason",
    "verified_at",
    "approved_at",
    "deadline",
    "rectified_at",
    "revisited_at",
    "follow_up",
]
NEEDED_COLUMNS = {
    "cases": ["case_id", "unit_id", "finished_at", "matter_code", "matter_name"],
    "evaluations": ["eval_id", "case_id", "unit_id", "satisfaction", "evaluated_at", "attempt"],
    "rectifications": RECTIFICATION_COLUMNS,
}
CITY_DEPARTMENTS = "市直部门"  # the per-district figures' row for units that belong to no district
UNKNOWN_DISTRICT = "（参考数据中无此单位）"
TOTAL = "合计"
AUDIT_NO_REASON = "无效差评缺少无效原因"
AUDIT_NO_APPROVAL = "无效差评缺少审核通过时间"

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
FIGURE_COLUMNS = ["bad", "valid", "invalid", "verified", "rectified", "due", "on_time", "revisited"]
FIGURE_COLUMNS += ["followup", "satisfied", "overdue"]

LEDGER_CSV = "rectification_ledger.csv"
UNITS_CSV = "rectification_units.csv"
DISTRICTS_CSV = "rectification_districts.csv"
OVERDUE_CSV = "rectification_overdue.csv"
XLSX_NAME = "rectification.xlsx"
SHEET_UNITS, SHEET_DISTRICTS, SHEET_OVERDUE = "按单位汇总", "按区县汇总", "超期清单"
_SHEET_FORBIDDEN = str.maketrans({c: "_" for c in "[]:*?/\\"})


# --- the rules, shared with the metrics ---------------------------------------------------------------


def rectify_deadlines(
    evaluated_at: pd.Series, given: pd.Series | None, limits: ClosedLoopLimits
) -> pd.Series:
    """整改期限 per 差评: the row's own deadline (moved off a holiday) wins, else the city's limit.

    Args:
        evaluated_at: the 差评's evaluation time.
        given: the row's ``deadline`` (aligned; missing = none given), or None.
        limits: the city's limits (``rectify_days`` working days after the evaluation's date).

    Returns:
        Deadline dates (midnight timestamps): a rectification on that day or before is on time.
    """
    computed = add_working_days_series(evaluated_at, limits.rectify_days)
    if given is None:
        return computed
    given = pd.to_datetime(given)
    if not given.notna().any():
        return computed
    own = add_working_days_series(given, 0)  # a deadline on a non-working day moves to the next one
    return own.where(given.notna(), computed).astype("datetime64[us]")


def closed_loop(
    evaluated_at: pd.Series,
    rect: pd.DataFrame,
    limits: ClosedLoopLimits,
    as_of: date | None = None,
) -> pd.DataFrame:
    """Where each 差评 stands in the closed loop: the one definition behind the tables and the ledger.

    Args:
        evaluated_at: the 差评's evaluation times.
        rect: its rectification row, aligned with ``evaluated_at`` (same index; all-missing where the
            差评 has none); any of RECTIFICATION_COLUMNS may be absent.
        limits: the city's working-day limits.
        as_of: events after the end of this day have not happened; None: every event in the data counts.

    Returns:
        Same index; ``verify_deadline``, ``rectify_deadline``, ``revisit_deadline`` (dates); boolean
        ``verified`` (a verdict in effect), ``invalid``, ``valid``, ``rectified``, ``revisited``,
        ``followup`` (rectified with a follow-up satisfaction), ``satisfied`` (满意 or 基本满意),
        ``on_time`` (rectified on or before the 整改期限: 按时整改); ``verified_time``,
        ``revisited_time`` (when known; for ages and lateness).
    """
    idx = evaluated_at.index
    col = {c: (rect[c] if c in rect else pd.Series(pd.NA, index=idx)) for c in RECTIFICATION_COLUMNS}
    cutoff = pd.Timestamp(as_of) + timedelta(days=1) if as_of is not None else None

    def happened(ts: pd.Series) -> pd.Series:
        ts = pd.to_datetime(ts)
        return ts.notna() & (ts < cutoff) if cutoff is not None else ts.notna()

    def by_cutoff(ts: pd.Series) -> pd.Series:
        """Known and not after the cutoff; unknown (missing) counts as in effect."""
        ts = pd.to_datetime(ts)
        return ts.isna() | (ts < cutoff) if cutoff is not None else pd.Series(True, index=idx)

    verdict = col["verdict"].astype("str")
    has_verdict = verdict.isin(["valid", "invalid"]).fillna(False).astype(bool)
    approved, verified_at = pd.to_datetime(col["approved_at"]), pd.to_datetime(col["verified_at"])
    verdict_time = approved.where((verdict == "invalid").fillna(False) & approved.notna(), verified_at)
    verified = has_verdict & by_cutoff(verdict_time)
    invalid = verified & (verdict == "invalid").fillna(False).astype(bool)
    valid = verified & ~invalid
    rectified_at = pd.to_datetime(col["rectified_at"])
    rectified = valid & happened(rectified_at)
    follow = col["follow_up"].astype("str")
    follow_given = follow.isin(FOLLOW_UP_LEVELS).fillna(False).astype(bool)
    revisited_at = pd.to_datetime(col["revisited_at"])
    revisited = rectified & (happened(revisited_at) | (revisited_at.isna() & follow_given))
    rectify_deadline = rectify_deadlines(evaluated_at, col["deadline"], limits)
    on_time = rectified & (rectified_at.dt.normalize() <= rectify_deadline).fillna(False).astype(bool)
    revisit_deadline = add_working_days_series(rectified_at.where(rectified), limits.revisit_days)
    return pd.DataFrame(
        {
            "verify_deadline": add_working_days_series(evaluated_at, limits.verify_days),
            "rectify_deadline": rectify_deadline,
            "revisit_deadline": revisit_deadline,
            "verified": verified,
            "invalid": invalid,
            "valid": valid,
            "rectified": rectified,
            "revisited": revisited,
            "followup": revisited & follow_given,
            "satisfied": revisited & follow.isin(FOLLOW_UP_SATISFIED).fillna(False).astype(bool),
            "on_time": on_time,
            "verified_time": verdict_time.where(verified),
            "revisited_time": revisited_at.where(revisited),
        },
        index=idx,
    )


def match_rectifications(bad_ids: pd.Series, rectifications: pd.DataFrame | None) -> pd.DataFrame:
    """The rectification row of each 差评 (``bad_ids``' index; all-missing where there is none).

    Raises:
        HaochaInputError: an eval_id has more than one rectification row.
    """
    if rectifications is None or not len(rectifications):
        return pd.DataFrame(index=bad_ids.index, columns=["eval_id"])
    keys = rectifications["eval_id"].astype("str").str.strip()
    repeated = keys.duplicated(keep=False).to_numpy()
    if repeated.any():
        file, rows = _where(rectifications, repeated)
        raise HaochaInputError(
            "差评核实整改表中同一评价编号出现多次",
            file=file,
            column="eval_id",
            rows=rows,
            fix="每条差评只保留一条核实整改记录（保留最终结论）后重新导入",
        )
    pos = pd.Index(keys).get_indexer(bad_ids.astype("str").str.strip())
    matched = rectifications.iloc[np.where(pos >= 0, pos, 0)].set_axis(bad_ids.index)
    found = pd.Series(pos >= 0, index=bad_ids.index)
    return matched.where(found, axis=0)


# --- bad input ---------------------------------------------------------------------------------------

# (column, the step it may not precede, problem) — checked where both times are given.
ORDER_RULES = (
    ("verified_at", "evaluated_at", "核实时间早于评价时间"),
    ("approved_at", "evaluated_at", "审核通过时间早于评价时间"),
    ("approved_at", "verified_at", "审核通过时间早于核实时间"),
    ("rectified_at", "evaluated_at", "整改完成时间早于评价时间"),
    ("rectified_at", "verified_at", "整改完成时间早于核实时间"),
    ("revisited_at", "evaluated_at", "回访时间早于评价时间"),
    ("revisited_at", "rectified_at", "回访时间早于整改完成时间"),
)


def check_rectifications(evaluations: pd.DataFrame, rectifications: pd.DataFrame | None) -> None:
    """Refuse rectification rows that cannot be right; name the file, the column and the rows.

    A rectification must name a loaded evaluation (the period and the one before it) that is a 差评,
    and its steps must not precede the ones they follow (ORDER_RULES). Verdict and reason codes are
    checked when the table is read (:func:`haocha_analysis.ingest.storage.check_values`).

    Raises:
        HaochaInputError: the first rule broken, with its rows (at most 10 listed).
    """
    if rectifications is None or not len(rectifications):
        return
    keys = rectifications["eval_id"].astype("str").str.strip()
    eval_keys = pd.Index(evaluations["eval_id"].astype("str").str.strip())
    pos = eval_keys.get_indexer(keys)
    unknown = pos < 0
    if unknown.any():
        file, rows = _where(rectifications, unknown)
        raise HaochaInputError(
            f"差评核实整改记录所指的评价不存在（共 {int(unknown.sum())} 行）",
            file=file,
            column="eval_id",
            rows=rows,
            fix="核对评价编号；该评价须在本统计期或上一统计期的评价表中（一并导入其所在统计期的数据）",
        )
    satisfaction = evaluations["satisfaction"].to_numpy()[pos]
    not_bad = ~np.isin(satisfaction, BAD_SATISFACTION)
    if not_bad.any():
        file, rows = _where(rectifications, not_bad)
        raise HaochaInputError(
            f"差评核实整改记录所指的评价不是差评（满意度不是不满意或非常不满意，共 {int(not_bad.sum())} 行）",
            file=file,
            column="eval_id",
            rows=rows,
            fix="核实整改表只收差评（满意度 1–2）；核对评价编号",
        )
    times = {
        c: pd.to_datetime(rectifications[c]).to_numpy()
        for c in RECTIFICATION_COLUMNS
        if c.endswith("_at") and c in rectifications
    }
    times["evaluated_at"] = pd.to_datetime(evaluations["evaluated_at"]).to_numpy()[pos]
    for column, before, problem in ORDER_RULES:
        if column not in times or before not in times:
            continue
        early = (times[column] < times[before]) & ~np.isnat(times[column]) & ~np.isnat(times[before])
        if early.any():
            file, rows = _where(rectifications, early)
            raise HaochaInputError(
                f"{problem}（共 {int(early.sum())} 行）",
                file=file,
                column=column,
                rows=rows,
                fix="核对时间：核实、审核、整改、回访依次发生，均不早于评价时间",
            )


def _where(rect: pd.DataFrame, mask: np.ndarray) -> tuple[str, list[int]]:
    """The file(s) and row numbers of the masked rectification rows (where they were read, if known)."""
    if all(c in rect for c in ORIGIN_COLUMNS):
        picked = rect.loc[mask, list(ORIGIN_COLUMNS)]
        files = list(dict.fromkeys(picked["_file"].astype("str")))
        return "、".join(files[:3]), picked["_row"].astype(int).tolist()
    return "rectifications", (np.flatnonzero(mask) + 1).tolist()


# --- the ledger --------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """The 差评 ledger of a period as of a date, with its per-unit and per-district figures."""

    city: str
    period: Period
    as_of: date
    limits: ClosedLoopLimits
    rows: pd.DataFrame  # one row per 差评 (LEDGER_HEADERS columns and the flags behind them)
    by_unit: pd.DataFrame  # FIGURE_COLUMNS per unit (official order), unit_name, district
    by_district: pd.DataFrame  # FIGURE_COLUMNS per district (official order), 市直部门, 合计

    @property
    def overdue(self) -> pd.DataFrame:
        """The 差评 late at some step as of the date (open ones first, then by unit and time)."""
        late = self.rows[self.rows["overdue"]].copy()
        late["_closed"] = ~late["stage"].isin(OPEN_STAGES)
        late = late.sort_values(["_closed", "unit_order", "evaluated_at", "eval_id"], kind="stable")
        return late.drop(columns="_closed")

    @property
    def has_valid(self) -> bool:
        """Whether any 差评 of the ledger is valid (the bulletin then reports on the loop)."""
        return bool(self.rows["valid"].any())


def ledger_for(
    ref: CityReference, data: dict[str, pd.DataFrame], data_dir: Path, period: Period, as_of: date
) -> Ledger:
    """:func:`build_ledger` on tables already loaded; a refusal is re-raised naming the file and rows.

    Tables loaded without their rows' origin (the pipeline's) can only give positions; on bad input
    the ledger's columns are read again with their origin, which raises the same error precisely.
    """
    try:
        return build_ledger(ref, data, period, as_of)
    except HaochaInputError:
        build_ledger(ref, load_ledger_data(data_dir, period), period, as_of)
        raise


def load_ledger_data(data_dir: Path, period: Period) -> dict[str, pd.DataFrame]:
    """The columns the ledger needs, through the one loading window, rows' origin kept for errors."""
    return load_window(Path(data_dir), period, columns=NEEDED_COLUMNS, origin=True)


def build_ledger(ref: CityReference, data: dict[str, pd.DataFrame], period: Period, as_of: date) -> Ledger:
    """One row per 差评 made in the period up to ``as_of``, with its stage, deadlines and overdue flags.

    Args:
        ref: the city (units in official order, the closed-loop limits).
        data: canonical frames {"cases", "evaluations", "rectifications" (optional)}.
        period: the statistical period.
        as_of: the date the ledger describes (events after it have not happened).

    Raises:
        HaochaInputError: a rectification row that cannot be right (:func:`check_rectifications`).
    """
    cases, evaluations = data["cases"], data["evaluations"]
    rectifications = data.get("rectifications")
    check_rectifications(evaluations, rectifications)
    links = link(cases, evaluations)
    cutoff = pd.Timestamp(as_of) + timedelta(days=1)
    at = pd.to_datetime(evaluations["evaluated_at"])
    satisfaction = evaluations["satisfaction"].to_numpy()
    is_bad = (
        np.isin(satisfaction, BAD_SATISFACTION)
        & ~links.duplicate
        & period.contains(at).to_numpy(dtype=bool)
        & (at < cutoff).to_numpy(dtype=bool)
    )
    bad = evaluations[is_bad].reset_index(drop=True)
    case_pos = links.case_pos[is_bad]
    linked = case_pos >= 0
    safe = np.where(linked, case_pos, 0)

    def from_case(column: str) -> pd.Series:
        if column not in cases or not len(cases):
            return pd.Series(pd.NA, index=bad.index, dtype="str")
        values = cases[column].astype("str").to_numpy()[safe]
        return pd.Series(values, index=bad.index, dtype="str").where(linked)

    unit_id = from_case("unit_id").where(linked, bad["unit_id"].astype("str"))
    rect = match_rectifications(bad["eval_id"], rectifications)
    loop = closed_loop(bad["evaluated_at"], rect, ref.limits, as_of)
    rows = pd.DataFrame(
        {
            "eval_id": bad["eval_id"].astype("str"),
            "case_id": from_case("case_id"),
            "unit_id": unit_id,
            "matter_code": from_case("matter_code"),
            "matter_name": from_case("matter_name"),
            "satisfaction": bad["satisfaction"].astype("int64"),
            "attempt": bad["attempt"].fillna(1).astype("int64") if "attempt" in bad else 1,
            "evaluated_at": pd.to_datetime(bad["evaluated_at"]),
        }
    )
    for column in ("verdict", "invalid_reason", "follow_up"):
        given = rect[column] if column in rect else pd.Series(pd.NA, index=rows.index)
        rows[column] = given.astype("str")
    for column in ("verified_at", "approved_at", "rectified_at", "revisited_at"):
        given = rect[column] if column in rect else pd.Series(pd.NaT, index=rows.index)
        rows[column] = pd.to_datetime(given).astype("datetime64[us]")
    # What has not happened by the as-of date is not shown (the ledger as it stood that day).
    rows.loc[~loop["verified"], ["verdict", "invalid_reason", "verified_at", "approved_at"]] = pd.NA
    rows.loc[~loop["rectified"], "rectified_at"] = pd.NaT
    rows.loc[~loop["revisited"], ["revisited_at", "follow_up"]] = pd.NA
    rows = pd.concat([rows, loop.drop(columns=["verified_time", "revisited_time"])], axis=1)
    rows = pd.concat([rows, _status(rows, loop, as_of)], axis=1)
    rows["audit"] = _audit(rows)
    rows = _with_units(ref, rows)
    rows = rows.sort_values(["unit_order", "evaluated_at", "eval_id"], kind="stable").reset_index(drop=True)
    return Ledger(
        city=ref.city_name,
        period=period,
        as_of=as_of,
        limits=ref.limits,
        rows=rows,
        by_unit=unit_figures(rows),
        by_district=district_figures(ref, rows),
    )


def _status(rows: pd.DataFrame, loop: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Stage, per-step overdue flags (NA: the step's time is unknown) and working-day ages as of a date."""
    day = pd.Timestamp(as_of)
    stage = np.select(
        [~loop["verified"], loop["invalid"], ~loop["rectified"], ~loop["revisited"]],
        [PENDING, INVALID, RECTIFYING, AWAITING_REVISIT],
        REVISITED,
    )

    def late(done: pd.Series, when: pd.Series, deadline: pd.Series, applies: pd.Series) -> pd.Series:
        """Done: done after the deadline's day (NA when its time is unknown); not done: past the day."""
        when_day = pd.to_datetime(when).dt.normalize()
        out = pd.Series(pd.NA, index=rows.index, dtype="boolean")
        finished = done & when_day.notna()
        out[finished] = (when_day > deadline)[finished]
        out[~done] = (day > deadline)[~done]
        return out.where(applies, False)

    every = pd.Series(True, index=rows.index)
    verify = late(loop["verified"], loop["verified_time"], loop["verify_deadline"], every)
    rectify = late(loop["rectified"], rows["rectified_at"], loop["rectify_deadline"], loop["valid"])
    revisit = late(loop["revisited"], loop["revisited_time"], loop["revisit_deadline"], loop["rectified"])
    nat = pd.Series(pd.NaT, index=rows.index, dtype="datetime64[us]")
    current = (
        loop["verify_deadline"]
        .where(stage == PENDING, nat)
        .where(stage != RECTIFYING, loop["rectify_deadline"])
        .where(stage != AWAITING_REVISIT, loop["revisit_deadline"])
    )
    # Age: to the day the loop closed (when known), else to the as-of date.
    closed_at = loop["verified_time"].where(
        stage == INVALID, loop["revisited_time"].where(stage == REVISITED)
    )
    end = pd.to_datetime(closed_at).fillna(day)
    as_of_series = pd.Series(day, index=rows.index)
    return pd.DataFrame(
        {
            "stage": pd.Series(stage, index=rows.index, dtype="str"),
            "verify_overdue": verify,
            "rectify_overdue": rectify,
            "revisit_overdue": revisit,
            "overdue": (verify.fillna(False) | rectify.fillna(False) | revisit.fillna(False)).astype(bool),
            "current_deadline": current,
            "days_used": working_days_between(rows["evaluated_at"], end),
            "days_left": working_days_between(as_of_series, current).where(current.notna()),
        }
    )


def _audit(rows: pd.DataFrame) -> pd.Series:
    """审核问题 of invalid verdicts: a missing reason, a missing approval time."""
    invalid = rows["invalid"]
    no_reason = invalid & rows["invalid_reason"].isna()
    no_approval = invalid & rows["approved_at"].isna()
    text = pd.Series("", index=rows.index, dtype="str")
    text[no_reason] = AUDIT_NO_REASON
    text[no_approval] = (text[no_approval] + "；" + AUDIT_NO_APPROVAL).str.lstrip("；")
    return text


def _with_units(ref: CityReference, rows: pd.DataFrame) -> pd.DataFrame:
    """Unit name, district (市直部门 for units of no district), level and official order."""
    units = ref.units.set_index("unit_id")
    level_rank = {level: i for i, level in enumerate(LEVELS)}
    known = rows["unit_id"].isin(units.index)
    name = rows["unit_id"].map(units["unit_name"]).where(known, rows["unit_id"])
    district = rows["unit_id"].map(units["district"]).fillna("").replace("", CITY_DEPARTMENTS)
    district = district.where(known, UNKNOWN_DISTRICT)
    rank = rows["unit_id"].map(units["level"].map(level_rank)).fillna(len(LEVELS)).astype(int)
    order = rows["unit_id"].map(units["order"]).fillna(10**6).astype(int)
    rows = rows.copy()
    rows["unit_name"] = name.astype("str")
    rows["district"] = district.astype("str")
    rows["level"] = rows["unit_id"].map(units["level"]).astype("str")
    rows["unit_order"] = rank * 10**7 + order
    return rows


# --- figures -----------------------------------------------------------------------------------------


def _indicators(rows: pd.DataFrame) -> pd.DataFrame:
    # 按时整改率's denominator: valid 差评 rectified, or past their 整改期限 without it.
    past = (rows["stage"] == RECTIFYING) & rows["rectify_overdue"].fillna(False).astype(bool)
    due = rows["valid"] & (rows["rectified"] | past)
    return pd.DataFrame(
        {
            "bad": True,
            "valid": rows["valid"],
            "invalid": rows["invalid"],
            "verified": rows["verified"],
            "rectified": rows["rectified"],
            "due": due,
            "on_time": rows["on_time"],
            "revisited": rows["revisited"],
            "followup": rows["followup"],
            "satisfied": rows["satisfied"],
            "overdue": rows["overdue"],
        },
        index=rows.index,
    ).astype("int64")


def unit_figures(rows: pd.DataFrame) -> pd.DataFrame:
    """FIGURE_COLUMNS per responsible unit, in official order (units with a 差评 only)."""
    counts = _indicators(rows)
    counts[["unit_id", "unit_name", "district", "unit_order"]] = rows[
        ["unit_id", "unit_name", "district", "unit_order"]
    ]
    out = counts.groupby(["unit_order", "unit_id", "unit_name", "district"], sort=True)[FIGURE_COLUMNS].sum()
    return out.reset_index().drop(columns="unit_order")


def district_figures(ref: CityReference, rows: pd.DataFrame) -> pd.DataFrame:
    """FIGURE_COLUMNS per district in the bulletin's order, then 市直部门 and the 合计 row."""
    counts = _indicators(rows)
    counts["district"] = rows["district"]
    names = [*ref.districts, CITY_DEPARTMENTS]
    extra = sorted(set(counts["district"]) - set(names))
    out = counts.groupby("district")[FIGURE_COLUMNS].sum().reindex(names + extra, fill_value=0)
    out.loc[TOTAL] = out.sum()
    return out.rename_axis("district").reset_index()


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
    unit_sheets = []
    names = list(dict.fromkeys(ledger.rows["unit_name"]))
    for sheet, name in zip(sheet_names(names), names, strict=True):
        unit_sheets.append((sheet, ledger_frame[(ledger.rows["unit_name"] == name).to_numpy()]))
    sheets = [(SHEET_UNITS, units), (SHEET_DISTRICTS, districts), (SHEET_OVERDUE, overdue), *unit_sheets]

    def csv_writer(frame: pd.DataFrame):
        return lambda path: frame.to_csv(path, index=False, encoding="utf-8-sig")

    return atomic.publish_files(
        Path(out_dir),
        {
            LEDGER_CSV: csv_writer(ledger_frame),
            UNITS_CSV: csv_writer(units),
            DISTRICTS_CSV: csv_writer(districts),
            OVERDUE_CSV: csv_writer(overdue),
            XLSX_NAME: lambda path: write_workbook(path, sheets, note),
        },
    )


def write_workbook(path: Path, sheets: list[tuple[str, pd.DataFrame]], note: str) -> None:
    """The XLSX: one sheet per frame, bold header, frozen first row, the 备注 line under each table."""
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets:
            frame.to_excel(writer, sheet_name=name, index=False)
            sheet = writer.sheets[name]
            for cell in sheet[1]:
                cell.font = Font(bold=True)
            sheet.freeze_panes = "A2"
            for i, column in enumerate(frame.columns, start=1):
                width = max([len(str(column)), *(len(str(v)) for v in frame[column])]) * 2 + 2
                sheet.column_dimensions[get_column_letter(i)].width = min(max(width, 8), 40)
            sheet.cell(row=len(frame) + 3, column=1, value=note)
