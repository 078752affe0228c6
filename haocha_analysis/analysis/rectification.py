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

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from haocha_analysis.core.calendar import add_working_days_series, working_days_between
from haocha_analysis.core.config import BAD_SATISFACTION
from haocha_analysis.core.coverage import Coverage, coverage, require_records
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.linkage import key_positions, link_some
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference, ClosedLoopLimits, load_city
from haocha_analysis.core.schemas import (
    FOLLOW_UP_LEVELS,
    FOLLOW_UP_SATISFIED,
    INVALID_REASONS,
    LEVELS,
)
from haocha_analysis.ingest.storage import (
    ORIGIN_COLUMNS,
    available_periods,
    extraction_date,
    load_window,
    resolve_period_in,
)

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
AUDIT_REASON_NOT_CODED = "无效原因不在代码表中（误评、恶意差评、与本办件无关、重复评价、其他）"

FIGURE_COLUMNS = ["bad", "valid", "invalid", "verified", "rectified", "due", "on_time", "revisited"]
FIGURE_COLUMNS += ["followup", "satisfied", "overdue"]

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
    _refuse_rows(
        rectifications,
        keys.duplicated(keep=False).to_numpy(),
        "差评核实整改表中同一评价编号出现多次",
        "eval_id",
        "每条差评只保留一条核实整改记录（保留最终结论）后重新导入",
    )
    pos = key_positions(bad_ids, rectifications["eval_id"])
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
    pos = key_positions(rectifications["eval_id"], evaluations["eval_id"])
    _refuse_rows(
        rectifications,
        pos < 0,
        "差评核实整改记录所指的评价不存在",
        "eval_id",
        "核对评价编号；该评价须在本统计期或上一统计期的评价表中（一并导入其所在统计期的数据）",
    )
    _refuse_rows(
        rectifications,
        ~np.isin(evaluations["satisfaction"].to_numpy()[pos], BAD_SATISFACTION),
        "差评核实整改记录所指的评价不是差评（满意度不是不满意或非常不满意）",
        "eval_id",
        "核实整改表只收差评（满意度 1–2）；核对评价编号",
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
        _refuse_rows(
            rectifications,
            early,
            problem,
            column,
            "核对时间：核实、审核、整改、回访依次发生，均不早于评价时间",
        )


def _refuse_rows(rect: pd.DataFrame, mask: np.ndarray, problem: str, column: str, fix: str) -> None:
    """Raise a HaochaInputError for the masked rectification rows, if any, naming where they were read.

    The file and row numbers come from the rows' origin (``_file``/``_row``) when the table was
    loaded with it, else they are positions in the table given.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    if all(c in rect for c in ORIGIN_COLUMNS):
        picked = rect.loc[mask, list(ORIGIN_COLUMNS)]
        file = "、".join(list(dict.fromkeys(picked["_file"].astype("str")))[:3])
        rows = picked["_row"].astype(int).tolist()
    else:
        file, rows = "rectifications", (np.flatnonzero(mask) + 1).tolist()
    raise HaochaInputError(
        f"{problem}（共 {int(mask.sum())} 行）", file=file, column=column, rows=rows, fix=fix
    )


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
    coverage: Coverage | None = None  # the period's dates the data cover (set by open_ledger)

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


def open_ledger(
    city: str | Path,
    period: str,
    data_dir: str | Path,
    as_of: date | str | None = None,
    records: Callable[[Period], tuple[dict[str, pd.DataFrame], Coverage]] | None = None,
) -> Ledger:
    """The ledger of a city's period from a data folder (the command's and the notebook's one call).

    Args:
        city: name under ``data/reference/`` or path to a reference folder.
        period: statistical period label (``latest`` allowed).
        data_dir: canonical tables.
        as_of: the ledger's date (a date or YYYY-MM-DD); empty: the data's recorded extraction date,
            else today.
        records: the period → the records the ledger reads and the period's coverage, when another
            engine reads them (``haocha_analysis.engine.api.ledger_records``); default: loaded here.

    Raises:
        HaochaInputError: the data hold no case or evaluation in the period (exit 2, as every verb).
    """
    ref = load_city(city)
    p = resolve_period_in(period, data_dir or None)
    if isinstance(as_of, str) and as_of:
        try:
            as_of = date.fromisoformat(as_of)
        except ValueError as err:
            raise HaochaInputError(
                f"台账日期“{as_of}”无法识别", column="as_of", fix="写成 YYYY-MM-DD，或留空"
            ) from err
    day = as_of or extraction_date(data_dir, p) or date.today()  # a folder or a URL
    if records is None:
        data = load_ledger_data(Path(data_dir), p)
        covered = coverage(data, p)
    else:
        data, covered = records(p)
    # A period without records would give an all-zero ledger that looks like "no 差评": refuse it.
    require_records(covered, data_dir, available_periods(Path(data_dir)))
    return replace(build_ledger(ref, data, p, day), coverage=covered)


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
    cutoff = pd.Timestamp(as_of) + timedelta(days=1)
    at = pd.to_datetime(evaluations["evaluated_at"])
    candidates = np.flatnonzero(
        np.isin(evaluations["satisfaction"].to_numpy(), BAD_SATISFACTION)
        & period.contains(at).to_numpy(dtype=bool)
        & (at < cutoff).to_numpy(dtype=bool)
    )
    # The one linkage rule, read for the 差评 only: a duplicate is no 差评; a case's unit wins.
    case_pos, duplicate = link_some(cases, evaluations, candidates)
    bad = evaluations.iloc[candidates[~duplicate]].reset_index(drop=True)
    case_pos = case_pos[~duplicate]
    linked = case_pos >= 0
    safe = np.where(linked, case_pos, 0)

    def from_case(column: str) -> pd.Series:
        if column not in cases or not len(cases):
            return pd.Series(pd.NA, index=bad.index, dtype="str")
        values = cases[column].iloc[safe].astype("str").to_numpy()
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
    """审核问题 of invalid verdicts: a missing reason, a reason outside the code list, no approval time."""
    invalid = rows["invalid"]
    no_reason = invalid & rows["invalid_reason"].isna()
    not_coded = invalid & rows["invalid_reason"].notna() & ~rows["invalid_reason"].isin(INVALID_REASONS)
    no_approval = invalid & rows["approved_at"].isna()
    text = pd.Series("", index=rows.index, dtype="str")
    text[no_reason] = AUDIT_NO_REASON
    text[not_coded] = AUDIT_REASON_NOT_CODED
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
