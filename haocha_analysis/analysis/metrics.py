"""Per-unit counts: the one step that touches every record.

Every annex table, headline figure and reconciliation check is built from the frame that
:func:`unit_counts` returns, one row per unit. The step is written as SQL would express it, so a later
issue can port it to a distributed engine:

1. ``evaluations LEFT JOIN cases ON case_id`` (a linked evaluation takes its case's unit: the case wins);
2. ``ROW_NUMBER() OVER (PARTITION BY case_id ORDER BY evaluated_at, eval_id)`` over linked attempt-1
   evaluations (row 1 = the case's first evaluation, later rows = duplicates);
3. ``bad evaluations LEFT JOIN rectifications ON eval_id``, judged by the closed loop's one definition
   (:func:`haocha_analysis.analysis.rectification.closed_loop`, the city's working-day limits);
4. one 0/1 indicator column per count, then ``GROUP BY unit_id`` with ``SUM``; the case side
   (``cases`` per unit) is a second ``GROUP BY``; both are outer-joined on ``unit_id``.

The metric definitions are those of docs/metrics.md (data contract §4).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from haocha_analysis.analysis.rectification import RECTIFICATION_COLUMNS, closed_loop, match_rectifications
from haocha_analysis.core.config import BAD_SATISFACTION
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.linkage import link
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import ClosedLoopLimits
from haocha_analysis.core.schemas import CHANNEL_CODES, ONSITE_CHANNELS

# Columns the step reads (load only these: memory).
CASE_COLUMNS = ["case_id", "unit_id", "finished_at"]
EVALUATION_COLUMNS = [
    "eval_id",
    "case_id",
    "unit_id",
    "channel",
    "satisfaction",
    "evaluated_at",
    "attempt",
    "active",
]
NEEDED_COLUMNS = {
    "cases": CASE_COLUMNS,
    "evaluations": EVALUATION_COLUMNS,
    "rectifications": RECTIFICATION_COLUMNS,
}
# Columns that must be present; the others default (attempt 1, active unknown, no deadline ...).
_REQUIRED = {
    "cases": ("case_id", "unit_id", "finished_at"),
    "evaluations": ("eval_id", "unit_id", "channel", "satisfaction", "evaluated_at"),
    "rectifications": ("eval_id", "verdict"),
}

# Case-table counts (附件1, 附件2): cases finished in the period, by the case's unit.
CASE_COUNT_COLUMNS = [
    "cases",
    "cases_evaluated",
    "cases_active",
    "cases_default",
    "cases_active_unknown",
    "case_bad_raw",
    "case_bad_valid",
    "case_bad_invalid",
    "case_rectified_followup",
    "case_rectified_satisfied",
]
# Evaluation-table counts (附件3, 附件4, 附件5): evaluations made in the period.
EVAL_COUNT_COLUMNS = [
    "eval_first",
    "eval_linked_first",
    "eval_unlinked_first",
    "eval_followups",
    "eval_duplicates",
    "eval_bad_raw",
    "eval_bad_valid",
    "eval_bad_invalid",
    "eval_rectified_on_time",
    "eval_active",
    "eval_default",
    "eval_active_unknown",
    "eval_onsite",
]
CHANNEL_COUNT_COLUMNS = [f"ch_{code}" for code in CHANNEL_CODES]
SATISFACTION_COUNT_COLUMNS = [f"sat_{level}" for level in range(1, 6)]
# All records of the unit in the frames given, whatever their dates (for error messages).
RECORD_COLUMNS = ["case_records", "eval_records"]
COUNT_COLUMNS = (
    CASE_COUNT_COLUMNS
    + EVAL_COUNT_COLUMNS
    + CHANNEL_COUNT_COLUMNS
    + SATISFACTION_COUNT_COLUMNS
    + RECORD_COLUMNS
)


class CountsInvariantError(AssertionError):
    """A relation that must hold between the per-unit counts does not (a bug, not bad input)."""


def unit_counts(
    cases: pd.DataFrame,
    evaluations: pd.DataFrame,
    rectifications: pd.DataFrame | None,
    period: Period,
    limits: ClosedLoopLimits | None = None,
) -> pd.DataFrame:
    """Reduce the canonical records to per-unit counts for one period.

    Args:
        cases: canonical cases (at least ``CASE_COLUMNS``). Cases outside the period are used to
            link evaluations; only cases finished in the period are counted.
        evaluations: canonical evaluations (at least eval_id, unit_id, channel, satisfaction,
            evaluated_at; case_id, attempt and active default to empty, 1 and unknown).
        rectifications: canonical rectifications, or None when there are none.
        period: the statistical period P.
        limits: the city's closed-loop limits (整改 working days when a row gives no deadline);
            default: the national rule (:class:`~haocha_analysis.core.reference.ClosedLoopLimits`).

    Returns:
        One row per unit_id that has any record (column ``unit_id``, sorted), integer columns
        ``COUNT_COLUMNS``:

        * case side, per case unit, cases finished in P: ``cases``; ``cases_evaluated`` (has a first
          evaluation, made whenever); ``cases_active`` / ``cases_default`` / ``cases_active_unknown``
          (its first evaluation's active True / False / NA); ``case_bad_raw`` / ``case_bad_valid`` /
          ``case_bad_invalid`` (差评 among all non-duplicate evaluations of those cases, invalid =
          verdict 'invalid'); ``case_rectified_followup`` / ``case_rectified_satisfied`` (valid 差评
          rectified with a follow_up / with follow_up 满意 or 基本满意);
        * evaluation side, evaluations made in P, by the case's unit when linked else their own:
          ``eval_first`` = ``eval_linked_first`` (first evaluations of cases) + ``eval_unlinked_first``
          (attempt-1 evaluations not linked to a case); ``eval_followups`` (attempt ≥ 2);
          ``eval_duplicates`` (later attempt-1 evaluations of a case, never counted elsewhere);
          ``eval_bad_raw`` / ``eval_bad_valid`` / ``eval_bad_invalid``; ``eval_rectified_on_time``;
          ``eval_active`` / ``eval_default`` / ``eval_active_unknown``, ``eval_onsite``, ``ch_<code>``
          and ``sat_1`` .. ``sat_5`` over the first evaluations (``eval_first``);
        * ``case_records`` / ``eval_records``: every row of the unit in the frames, any date.

    Raises:
        HaochaInputError: a required column is missing, or a rectification eval_id repeats.
        CountsInvariantError: the counts break a relation that must hold (a bug).
    """
    rectifications = (
        rectifications if rectifications is not None else pd.DataFrame(columns=RECTIFICATION_COLUMNS)
    )
    for table, frame in (("cases", cases), ("evaluations", evaluations), ("rectifications", rectifications)):
        _require(frame, table)

    # Unit ids of both tables on one categorical axis, so every group-by key is a small integer.
    case_unit = _as_str_category(cases["unit_id"])
    eval_unit = _as_str_category(evaluations["unit_id"])
    units = case_unit.cat.categories.union(eval_unit.cat.categories)
    case_unit_code = pd.Categorical(case_unit, categories=units).codes.astype(np.int32)
    eval_unit_code = pd.Categorical(eval_unit, categories=units).codes.astype(np.int32)
    for table, codes in (("cases", case_unit_code), ("evaluations", eval_unit_code)):
        if (codes < 0).any():
            raise HaochaInputError(
                f"{table} 表的单位编码为空",
                file=table,
                column="unit_id",
                rows=(np.flatnonzero(codes < 0) + 2).tolist(),
                fix="补全单位编码（或单位名称，由 haocha ingest 按参考数据解析为 unit_id）后重新导入",
            )

    # 1. evaluations LEFT JOIN cases ON case_id; first evaluations and duplicates (the one rule).
    links = link(cases, evaluations)
    pos = links.case_pos
    linked = links.linked
    safe_pos = np.where(linked, pos, 0)
    unit_code = np.where(linked, case_unit_code[safe_pos] if len(cases) else -1, eval_unit_code)

    # A repeated case row is not a case: counted by quality, never here.
    case_in_p = period.contains(cases["finished_at"]).to_numpy(dtype=bool) & ~links.repeated_case
    eval_case_in_p = linked & (case_in_p[safe_pos] if len(cases) else False)
    made_in_p = period.contains(evaluations["evaluated_at"]).to_numpy(dtype=bool)
    attempt = (
        evaluations["attempt"].fillna(1).to_numpy(dtype=np.int64)
        if "attempt" in evaluations
        else np.ones(len(evaluations), dtype=np.int64)
    )
    is_first = links.linked_first
    is_duplicate = links.duplicate
    is_unlinked_first = links.unlinked_first

    # 3. bad evaluations LEFT JOIN rectifications ON eval_id (duplicates are counted nowhere).
    satisfaction = evaluations["satisfaction"].fillna(0).to_numpy(dtype=np.int64)
    is_bad = np.isin(satisfaction, BAD_SATISFACTION) & ~is_duplicate
    invalid, rectified, followup, satisfied, on_time = _rectification_flags(
        evaluations, rectifications, is_bad, limits or ClosedLoopLimits()
    )
    valid = is_bad & ~invalid

    # Active flag of the evaluation: True / False / NA (unknown).
    if "active" in evaluations:
        active = evaluations["active"].astype("boolean")
        active_known = active.notna().to_numpy(dtype=bool)
        active_true = active.fillna(False).to_numpy(dtype=bool)
    else:
        active_known = np.zeros(len(evaluations), dtype=bool)
        active_true = active_known
    channel = _as_str_category(evaluations["channel"])
    channel_code = channel.cat.codes.to_numpy()
    channel_index = {name: i for i, name in enumerate(channel.cat.categories)}
    onsite_codes = [channel_index[c] for c in ONSITE_CHANNELS if c in channel_index]

    # 4. indicator columns per evaluation, then GROUP BY unit SUM.
    first_in_p = (is_first | is_unlinked_first) & made_in_p
    case_first = is_first & eval_case_in_p
    case_bad = is_bad & eval_case_in_p
    eval_bad = is_bad & made_in_p
    case_valid_rectified = valid & eval_case_in_p & rectified & followup
    indicators = {
        "cases_evaluated": case_first,
        "cases_active": case_first & active_known & active_true,
        "cases_default": case_first & active_known & ~active_true,
        "cases_active_unknown": case_first & ~active_known,
        "case_bad_raw": case_bad,
        "case_bad_valid": case_bad & ~invalid,
        "case_bad_invalid": case_bad & invalid,
        "case_rectified_followup": case_valid_rectified,
        "case_rectified_satisfied": case_valid_rectified & satisfied,
        "eval_first": first_in_p,
        "eval_linked_first": is_first & made_in_p,
        "eval_unlinked_first": is_unlinked_first & made_in_p,
        "eval_followups": (attempt >= 2) & ~links.repeated_eval & made_in_p,
        "eval_duplicates": is_duplicate & made_in_p,
        "eval_bad_raw": eval_bad,
        "eval_bad_valid": eval_bad & ~invalid,
        "eval_bad_invalid": eval_bad & invalid,
        "eval_rectified_on_time": eval_bad & ~invalid & on_time,
        "eval_active": first_in_p & active_known & active_true,
        "eval_default": first_in_p & active_known & ~active_true,
        "eval_active_unknown": first_in_p & ~active_known,
        "eval_onsite": first_in_p & np.isin(channel_code, onsite_codes),
    }
    for code in CHANNEL_CODES:
        indicators[f"ch_{code}"] = first_in_p & (channel_code == channel_index.get(code, -2))
    for level in range(1, 6):
        indicators[f"sat_{level}"] = first_in_p & (satisfaction == level)
    indicators["eval_records"] = np.ones(len(evaluations), dtype=bool)
    eval_side = _group_sum(unit_code, indicators, len(units))

    case_side = _group_sum(
        case_unit_code,
        {"cases": case_in_p, "case_records": np.ones(len(cases), dtype=bool)},
        len(units),
    )

    # Outer join of the two sides on unit; keep the units that have any record.
    counts = pd.concat([case_side, eval_side], axis=1)[COUNT_COLUMNS]
    counts.insert(0, "unit_id", pd.array(units, dtype="str"))
    counts = counts[(counts["case_records"] + counts["eval_records"]) > 0]
    counts = counts.sort_values("unit_id", kind="stable").reset_index(drop=True)
    check_counts(counts)
    return counts


def check_counts(counts: pd.DataFrame) -> None:
    """Raise CountsInvariantError unless the relations between per-unit counts hold."""
    c = counts
    relations = {
        "counts >= 0": (c[COUNT_COLUMNS] >= 0).all(axis=None),
        "cases_evaluated <= cases": (c["cases_evaluated"] <= c["cases"]).all(),
        "active + default + unknown = cases_evaluated": (
            c["cases_active"] + c["cases_default"] + c["cases_active_unknown"] == c["cases_evaluated"]
        ).all(),
        "case_bad_valid + case_bad_invalid = case_bad_raw": (
            c["case_bad_valid"] + c["case_bad_invalid"] == c["case_bad_raw"]
        ).all(),
        "case_rectified_satisfied <= case_rectified_followup <= case_bad_valid": (
            (c["case_rectified_satisfied"] <= c["case_rectified_followup"])
            & (c["case_rectified_followup"] <= c["case_bad_valid"])
        ).all(),
        "eval_linked_first + eval_unlinked_first = eval_first": (
            c["eval_linked_first"] + c["eval_unlinked_first"] == c["eval_first"]
        ).all(),
        "eval_bad_valid + eval_bad_invalid = eval_bad_raw": (
            c["eval_bad_valid"] + c["eval_bad_invalid"] == c["eval_bad_raw"]
        ).all(),
        "eval_rectified_on_time <= eval_bad_valid": (
            c["eval_rectified_on_time"] <= c["eval_bad_valid"]
        ).all(),
        "eval_active + eval_default + eval_active_unknown = eval_first": (
            c["eval_active"] + c["eval_default"] + c["eval_active_unknown"] == c["eval_first"]
        ).all(),
        "eval_onsite <= eval_first": (c["eval_onsite"] <= c["eval_first"]).all(),
        "sum(ch_*) = eval_first": (c[CHANNEL_COUNT_COLUMNS].sum(axis=1) == c["eval_first"]).all(),
        "sum(sat_*) = eval_first": (c[SATISFACTION_COUNT_COLUMNS].sum(axis=1) == c["eval_first"]).all(),
        "cases <= case_records": (c["cases"] <= c["case_records"]).all(),
        "eval_first + followups + duplicates <= eval_records": (
            c["eval_first"] + c["eval_followups"] + c["eval_duplicates"] <= c["eval_records"]
        ).all(),
    }
    broken = [name for name, holds in relations.items() if not bool(holds)]
    if broken:
        raise CountsInvariantError("per-unit counts break: " + "; ".join(broken))


def source_system_counts(cases: pd.DataFrame, period: Period) -> pd.Series:
    """Cases finished in the period per source system, largest first (ties by name).

    A second, tiny GROUP BY (source_system) for the headline's "business systems connected".
    Returns an empty Series when the cases carry no source_system.
    """
    if "source_system" not in cases:
        return pd.Series(dtype="int64", name="cases")
    in_p = period.contains(cases["finished_at"])
    # value_counts on the (categorical) column counts per category without copying the strings
    counts = cases.loc[in_p, "source_system"].value_counts(dropna=True)
    counts.index = counts.index.astype("str")
    return rank_source_systems(counts)


def rank_source_systems(counts: pd.Series) -> pd.Series:
    """Per-system case counts in the headline's order: largest first, ties by name; empty dropped.

    Counts are additive: the sum of :func:`source_system_counts` over disjoint parts of the cases,
    ranked again here, is the count of the whole.
    """
    counts = counts.groupby(level=0, sort=False).sum() if len(counts) else counts
    counts = counts[(counts > 0) & (counts.index != "")]
    frame = counts.rename_axis("source_system").reset_index(name="cases")
    frame = frame.sort_values(["cases", "source_system"], ascending=[False, True], kind="stable")
    return frame.set_index("source_system")["cases"].astype("int64")


def _rectification_flags(
    evaluations: pd.DataFrame,
    rectifications: pd.DataFrame,
    is_bad: np.ndarray,
    limits: ClosedLoopLimits,
) -> tuple[np.ndarray, ...]:
    """Invalid / rectified / follow-up / satisfied / on-time flags of the bad evaluations.

    The closed loop's one definition (:func:`haocha_analysis.analysis.rectification.closed_loop`),
    over every event in the data (no as-of date).
    """
    n = len(evaluations)
    invalid, rectified, followup, satisfied, on_time = (np.zeros(n, dtype=bool) for _ in range(5))
    bad_rows = np.flatnonzero(is_bad)
    if not len(bad_rows) or not len(rectifications):
        return invalid, rectified, followup, satisfied, on_time
    bad = evaluations.iloc[bad_rows].reset_index(drop=True)
    loop = closed_loop(bad["evaluated_at"], match_rectifications(bad["eval_id"], rectifications), limits)
    for flags, column in (
        (invalid, "invalid"),
        (rectified, "rectified"),
        (followup, "followup"),
        (satisfied, "satisfied"),
        (on_time, "on_time"),
    ):
        flags[bad_rows] = loop[column].to_numpy(dtype=bool)
    return invalid, rectified, followup, satisfied, on_time


def _group_sum(keys: np.ndarray, indicators: dict[str, np.ndarray], n_groups: int) -> pd.DataFrame:
    """``SELECT key, SUM(indicator) ... GROUP BY key`` for every 0/1 indicator column.

    Computed as ``COUNT(*) FILTER (WHERE indicator)`` per key with ``np.bincount`` over the small
    integer keys: the same group-by, without materialising a wide integer frame (memory).
    """
    return pd.DataFrame(
        {
            name: np.bincount(keys[np.asarray(flag, dtype=bool)], minlength=n_groups).astype(np.int64)
            for name, flag in indicators.items()
        }
    )


def _as_str_category(units: pd.Series) -> pd.Series:
    if isinstance(units.dtype, pd.CategoricalDtype) and units.cat.categories.dtype == "str":
        return units
    return units.astype("str").astype("category")


def _require(frame: pd.DataFrame, table: str) -> None:
    missing = [c for c in _REQUIRED[table] if c not in frame.columns]
    if missing:
        raise HaochaInputError(
            f"{table} 表缺少必需的列：{'、'.join(missing)}",
            file=table,
            column="、".join(missing),
            fix="按数据契约映射列名（docs/data-contract.md），或用 haocha ingest 生成规范表",
        )
