"""The data-quality centre (数据质检): linkage, the 5-minute rule, completeness, duplicates, by system.

Every check of the data contract §5 (docs/quality.md) is computed record by record on the canonical
tables, then counted by source system (来源系统), by unit (单位) and by day (日期):

* 及时性 (timeliness, the provincial 5-minute rule): ``reported_at − finished_at`` (case) or
  ``reported_at − evaluated_at`` (evaluation) at most :data:`config.REPORT_DELAY_LIMIT` passes; a
  missing ``reported_at`` is "unknown", never a pass; a report before the event is a time inversion.
* 关联度 (linkage): an evaluation links to an existing case; a case links to a matter of the city's
  catalogue (``ref.matters``), when the city has one.
* completeness per column, duplicates (same ``eval_id``/``case_id``; the same case evaluated twice as
  attempt 1), evaluations before their case finished, orphan evaluations (``case_id`` given, no such
  case), unit conflicts (an evaluation's unit differs from its case's).

The figures the bulletin quotes (数据生产、提交、质检、关联度入库率) are defined in
:func:`record_stages` and turned into a sentence by :func:`bulletin_sentence`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np
import pandas as pd

from . import config
from .cli import city_option, data_option, out_option, period_option, user_errors
from .errors import HaochaInputError
from .periods import Period, parse_period, resolve_period
from .reference import CityReference, load_city
from .schemas import DTYPES, LEVEL_LABELS, REQUIRED
from .spreadsheet import PLAIN_INTEGER_FORMAT, SheetSpec, neutralise_frame, write_workbook

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# --- settings ----------------------------------------------------------------------------------

# Check names. Blocking checks decide 质检通过; linkage checks decide 关联度入库 (see record_stages).
CHECK_REQUIRED = "required"  # 必填项完整: the contract's required columns are present (data contract §1)
CHECK_DUPLICATE = "duplicate"  # 不重复: same id, or the same case evaluated twice as attempt 1 (§4, §5)
CHECK_TIMELINESS = "timeliness"  # 及时性: the provincial 5-minute rule (§5)
CHECK_SEQUENCE = "sequence"  # 时序: an evaluation is not made before its case finished (§5)
CHECK_ORPHAN = "orphan"  # 评价关联办件: a given case_id exists in cases (§5 关联度, orphans)
CHECK_MATTER = "matter"  # 办件关联事项: matter_code is in the city's catalogue (§5 关联度)
BLOCKING_CHECKS = (CHECK_REQUIRED, CHECK_DUPLICATE, CHECK_TIMELINESS, CHECK_SEQUENCE)
LINKAGE_CHECKS = (CHECK_ORPHAN, CHECK_MATTER)
ALL_CHECKS = BLOCKING_CHECKS + LINKAGE_CHECKS


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds and choices of the quality checks, each with the rule it comes from.

    Attributes:
        report_delay_limit: 及时性. The provincial 5-minute rule (省级“5分钟”数据质检规则): a record
            passes when it reached the 好差评 system at most this long after its event (case
            finished / evaluation made). Exactly the limit passes; one second more fails.
        clock_skew_tolerance: 及时性. A report earlier than its event by more than this is a time
            inversion (时间倒置) and fails timeliness: the event time or the report time is wrong.
        sequence_tolerance: 时序. An evaluation made more than this before its case finished fails
            (data contract §5 "evaluations before their case finished"; 评价应在办结后).
        blocking_checks: checks a submitted record must pass to count as 质检通过. Default: required
            fields, duplicates, the 5-minute rule and the evaluation/case order. Remove
            ``"timeliness"`` to treat late records as stored-but-late (the rule then only reports).
        linkage_checks: checks a 质检通过 record must pass to count as 关联度入库: evaluations that
            name a case must find it (orphans fail); cases must name a catalogued matter when the
            city has a catalogue (``matters.csv``).
        lookback: when some evaluations of the period name cases the period lacks, look for those
            cases (and their earlier evaluations) in the previous period's partitions, so that an
            evaluation made in the period for a case finished earlier still finds its case, and a
            duplicate first evaluation across the boundary is still seen.
        worst_units_top: how many units the 问题单位 table lists.
        worst_units_min_records: a unit needs at least this many records in the period to be ranked
            among the worst (a unit with 3 records and 1 late one is noise, not a finding).
        max_issue_rows: cap on the record-level problem list written out (the counts are never capped).
    """

    report_delay_limit: timedelta = config.REPORT_DELAY_LIMIT
    clock_skew_tolerance: timedelta = timedelta(0)
    sequence_tolerance: timedelta = timedelta(0)
    blocking_checks: tuple[str, ...] = BLOCKING_CHECKS
    linkage_checks: tuple[str, ...] = LINKAGE_CHECKS
    lookback: bool = True
    worst_units_top: int = 10
    worst_units_min_records: int = 30
    max_issue_rows: int = 100_000

    def __post_init__(self) -> None:
        """Reject unknown check names and nonsensical limits."""
        unknown = [c for c in (*self.blocking_checks, *self.linkage_checks) if c not in ALL_CHECKS]
        if unknown:
            raise HaochaInputError(
                f"未知的质检项：{'、'.join(unknown)}",
                fix=f"可选：{'、'.join(ALL_CHECKS)}",
            )
        if self.report_delay_limit < timedelta(0):
            raise HaochaInputError("及时性时限不能为负", fix="report_delay_limit 取非负时长，如 5 分钟")

    def as_dict(self) -> dict:
        """JSON-friendly view (durations in seconds)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, timedelta):
                out[key] = value.total_seconds()
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out


# --- labels ------------------------------------------------------------------------------------

CHECK_LABELS = {
    CHECK_REQUIRED: "必填项完整",
    CHECK_DUPLICATE: "记录不重复",
    CHECK_TIMELINESS: "5分钟及时上报",
    CHECK_SEQUENCE: "评价不早于办结",
    CHECK_ORPHAN: "评价关联办件",
    CHECK_MATTER: "办件关联事项目录",
}
TABLE_LABELS = {"cases": "办件", "evaluations": "评价"}
COLUMN_LABELS = {
    "case_id": "办件编号",
    "unit_id": "单位编码",
    "matter_code": "事项编码",
    "matter_name": "事项名称",
    "region_code": "行政区划代码",
    "accepted_at": "受理时间",
    "finished_at": "办结时间",
    "reported_at": "上报时间",
    "source_system": "来源系统",
    "eval_id": "评价编号",
    "channel": "评价渠道",
    "satisfaction": "满意度",
    "evaluated_at": "评价时间",
    "attempt": "评价次数",
    "active": "主动评价",
    "evaluator_key": "评价人标识（哈希）",
    "operator": "经办人",
    "comment": "文字评价",
}
NO_SYSTEM = "（未标明来源系统）"
UNLINKED_SYSTEM = "（未关联办件的评价）"
UNKNOWN_UNIT = "（参考数据中无此单位）"

# Timeliness status codes (int8 in the record frames).
TIMELY, LATE, UNKNOWN, INVERTED = 0, 1, 2, 3
TIMELINESS_LABELS = {TIMELY: "及时", LATE: "超时", UNKNOWN: "未知（无上报时间）", INVERTED: "时间倒置"}

# Figures the bulletin quotes, in the order of its sentence.
STAGES = ("produced", "submitted", "passed", "stored")
STAGE_LABELS = {"produced": "生产", "submitted": "提交", "passed": "质检通过", "stored": "关联入库"}
RATE_LABELS = {
    "production_rate": "数据生产率",
    "submission_rate": "提交率",
    "quality_rate": "质检通过率",
    "storage_rate": "关联度入库率",
}
BULLETIN_ALL_100 = "数据生产、提交、质检关联度入库率均达100%"


def format_rate(numerator: float, denominator: float) -> str:
    """A rate as the bulletin prints it: "100%", "99.6%", "99.91%"; "/" when the denominator is 0.

    At most two decimals, truncated (never rounded up to 100% unless exactly 100%), trailing zeros
    dropped.
    """
    numerator, denominator = int(numerator), int(denominator)
    if denominator == 0:
        return "/"
    hundredths = numerator * 10_000 // denominator
    whole, frac = divmod(hundredths, 100)
    return f"{whole}%" if frac == 0 else f"{whole}.{frac:02d}".rstrip("0") + "%"


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """Numeric ratio, NaN where the denominator is 0 (shown as "/")."""
    den = denominator.astype("float64")
    return (numerator.astype("float64") / den).where(den > 0)


def _rate_column(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return pd.Series(
        [format_rate(n, d) for n, d in zip(numerator, denominator, strict=True)],
        index=numerator.index,
        dtype="str",
    )


# --- record-level checks -----------------------------------------------------------------------


def timeliness_status(
    event_at: pd.Series,
    reported_at: pd.Series,
    limit: timedelta = config.REPORT_DELAY_LIMIT,
    skew_tolerance: timedelta = timedelta(0),
) -> pd.Series:
    """及时性 of each record under the 5-minute rule.

    Args:
        event_at: when the event happened (``finished_at`` for cases, ``evaluated_at`` for evaluations).
        reported_at: when the record reached the 好差评 system.
        limit: the largest delay that passes (``delay <= limit``: exactly 5:00 passes, 5:01 fails).
        skew_tolerance: a report earlier than the event by more than this is a time inversion.

    Returns:
        int8 codes: ``TIMELY`` (0), ``LATE`` (1), ``UNKNOWN`` (2: a timestamp is missing, never a
        pass), ``INVERTED`` (3: reported before the event).
    """
    delay = reported_at - event_at
    status = np.full(len(delay), TIMELY, dtype="int8")
    status[(delay > pd.Timedelta(limit)).to_numpy(dtype=bool, na_value=False)] = LATE
    status[(delay < -pd.Timedelta(skew_tolerance)).to_numpy(dtype=bool, na_value=False)] = INVERTED
    status[delay.isna().to_numpy()] = UNKNOWN
    return pd.Series(status, index=event_at.index, name="timeliness")


def _blank(series: pd.Series) -> pd.Series:
    """Missing values, including empty or whitespace-only strings."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = series.cat.categories
        blank_categories = pd.Index(categories.astype("str").str.strip() == "")
        codes = series.cat.codes.to_numpy()
        blank = np.where(codes < 0, True, np.asarray(blank_categories, dtype=bool)[np.maximum(codes, 0)])
        return pd.Series(blank if len(categories) else codes < 0, index=series.index)
    missing = series.isna()
    if series.dtype == "str" or series.dtype == object:
        missing = missing | series.astype("str").str.strip().eq("").fillna(True)
    return missing.astype(bool)


def duplicate_extra_rows(keys: pd.Series) -> pd.Series:
    """Rows whose key already appeared on an earlier row: each extra row flagged once.

    Three rows with one ``eval_id`` give two extra rows. Missing keys are never duplicates.
    """
    return keys.duplicated(keep="first") & ~_blank(keys)


def _case_codes(case_ids: pd.Series, *others: pd.Series) -> list[np.ndarray]:
    """One integer code per distinct case_id across several columns (-1 for missing or blank)."""
    joined = pd.concat([case_ids, *others], ignore_index=True)
    codes, uniques = pd.factorize(joined, use_na_sentinel=True)
    blank_unique = np.append(_blank(pd.Series(uniques)).to_numpy(), True)  # index -1 → blank
    codes = np.where(blank_unique[codes], -1, codes)
    out, start = [], 0
    for series in (case_ids, *others):
        out.append(codes[start : start + len(series)])
        start += len(series)
    return out


def repeated_first_attempts(
    evaluations: pd.DataFrame, case_codes: np.ndarray | None = None, repeated_ids: np.ndarray | None = None
) -> pd.Series:
    """Attempt-1 evaluations of a case that already had an earlier attempt-1 evaluation.

    A case's first evaluation is its earliest attempt-1 evaluation (by ``evaluated_at``, then
    ``eval_id``: data contract §4); every later attempt-1 evaluation of the same case is a duplicate,
    counted once. Rows repeating an ``eval_id`` are left to :func:`duplicate_extra_rows` so that no
    row is counted twice; evaluations without a case are never duplicates here.

    Args:
        evaluations: canonical evaluations.
        case_codes: integer codes of ``evaluations.case_id`` (-1 = none), when already computed.
        repeated_ids: :func:`duplicate_extra_rows` of ``eval_id``, when already computed.
    """
    if case_codes is None:
        (case_codes,) = _case_codes(evaluations["case_id"])
    attempt = evaluations["attempt"].fillna(1).to_numpy() if "attempt" in evaluations else 1
    if repeated_ids is None:
        repeated_ids = duplicate_extra_rows(evaluations["eval_id"]).to_numpy()
    candidate = (attempt == 1) & (case_codes >= 0) & ~repeated_ids
    rows = np.flatnonzero(candidate)
    times = evaluations["evaluated_at"].to_numpy(dtype="datetime64[us]").view("i8")[rows]
    times = np.where(times == np.iinfo("i8").min, np.iinfo("i8").max, times)  # NaT sorts last
    codes = case_codes[rows]
    order = np.lexsort((times, codes))
    codes, times, rows = codes[order], times[order], rows[order]
    new_case = np.ones(len(rows), dtype=bool)
    new_case[1:] = codes[1:] != codes[:-1]
    group_start = np.maximum.accumulate(np.where(new_case, np.arange(len(rows)), 0))
    repeated = ~new_case
    # Ties on the earliest time of a case: the smallest eval_id is the first evaluation.
    tied = (times == times[group_start]) & np.isin(codes, codes[~new_case & (times == times[group_start])])
    if tied.any():
        ties = pd.DataFrame(
            {
                "code": codes[tied],
                "eval_id": evaluations["eval_id"].iloc[rows[tied]].to_numpy(),
                "pos": np.flatnonzero(tied),
            }
        ).sort_values(["code", "eval_id"], kind="stable")
        winners = ties.drop_duplicates("code")["pos"].to_numpy()
        repeated[ties["pos"].to_numpy()] = True
        repeated[winners] = False
    out = np.zeros(len(evaluations), dtype=bool)
    out[rows[repeated]] = True
    return pd.Series(out, index=evaluations.index)


def _isin(values: pd.Series, allowed: pd.Series | pd.Index) -> np.ndarray:
    """Vectorized membership test of strings (pandas' str.isin iterates in Python over ``allowed``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(values) == 0 or len(allowed) == 0:
        return np.zeros(len(values), dtype=bool)
    left = pa.array(pd.Series(values).astype("str"), type=pa.large_string(), from_pandas=True)
    right = pa.array(pd.Series(allowed).astype("str"), type=pa.large_string(), from_pandas=True)
    return pc.is_in(left, value_set=right).fill_null(False).to_numpy(zero_copy_only=False)


def _as_category(series: pd.Series) -> pd.Series:
    return (
        series if isinstance(series.dtype, pd.CategoricalDtype) else series.astype("str").astype("category")
    )


def _unit_attributes(ref: CityReference) -> pd.DataFrame:
    units = ref.units.set_index("unit_id")
    return pd.DataFrame(
        {
            "unit_name": units["unit_name"],
            "level": units["level"].map(LEVEL_LABELS).fillna(units["level"]),
            "district": units["district"].fillna(""),
            "level_rank": units["level"].map({lv: i for i, lv in enumerate(LEVEL_LABELS)}),
            "order": units["order"],
        }
    )


def _catalogue(ref: CityReference) -> pd.Index | None:
    matters = ref.matters
    if matters is None or "matter_code" not in matters or matters.empty:
        return None
    codes = matters["matter_code"].astype("str").str.strip()
    return pd.Index(codes[codes != ""].unique())


def _system_column(series: pd.Series | None, length: int) -> pd.Categorical:
    """Source systems as a categorical with the two placeholder labels; blanks → NO_SYSTEM."""
    if series is None:
        return pd.Categorical.from_codes(np.zeros(length, dtype="int32"), [NO_SYSTEM, UNLINKED_SYSTEM])
    cat = _as_category(series)
    names = [str(c).strip() for c in cat.cat.categories]
    labels = [n for n in dict.fromkeys(names) if n and n not in (NO_SYSTEM, UNLINKED_SYSTEM)]
    labels += [NO_SYSTEM, UNLINKED_SYSTEM]
    lookup = {label: i for i, label in enumerate(labels)}
    remap = np.array(
        [lookup.get(n, lookup[NO_SYSTEM]) if n else lookup[NO_SYSTEM] for n in names] + [0], "int32"
    )
    codes = cat.cat.codes.to_numpy()
    return pd.Categorical.from_codes(np.where(codes < 0, lookup[NO_SYSTEM], remap[codes]), labels)


def _missing_required(frame: pd.DataFrame, table: str) -> np.ndarray:
    missing = np.zeros(len(frame), dtype=bool)
    for col in REQUIRED[table]:
        missing |= _blank(frame[col]).to_numpy() if col in frame else True
    return missing


def _timeliness_columns(
    out: pd.DataFrame, event_at: pd.Series, reported_at: pd.Series | None, settings: QualitySettings
) -> None:
    if reported_at is None:
        reported_at = pd.Series(pd.NaT, index=event_at.index, dtype="datetime64[us]")
    out["delay_s"] = (reported_at - event_at).dt.total_seconds()
    out["timeliness"] = timeliness_status(
        event_at, reported_at, settings.report_delay_limit, settings.clock_skew_tolerance
    )
    out["submitted"] = reported_at.notna().to_numpy()
    out["fail_timeliness"] = out["timeliness"].to_numpy() != TIMELY


def _period_rows(frame: pd.DataFrame, mask: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The columns the checks read, for the rows of the period (no copy when every row is in it)."""
    columns = [c for c in dict.fromkeys(columns) if c in frame]
    return frame[columns] if mask.all() else frame.loc[mask, columns]


def _repeated_codes(codes: np.ndarray) -> np.ndarray:
    """Rows whose (non-negative) code appeared on an earlier row."""
    return pd.Series(codes).duplicated(keep="first").to_numpy() & (codes >= 0)


def check_cases(
    cases: pd.DataFrame,
    period: Period,
    ref: CityReference,
    settings: QualitySettings = QualitySettings(),
    case_codes: np.ndarray | None = None,
) -> pd.DataFrame:
    """Record-level quality of the cases produced in the period (finished_at in the period).

    Returns:
        One row per case of the period, indexed like ``cases``, with ``record_id``, ``unit_id``,
        ``system``, ``day``, ``delay_s``, ``timeliness`` (codes of :func:`timeliness_status`) and
        booleans ``submitted``, ``fail_<check>`` for every check, ``matter_checked``, ``passed``,
        ``stored``.
    """
    # Duplicates are judged on every loaded case (a repeat may straddle the boundary), counted in P.
    if case_codes is None:
        (case_codes,) = _case_codes(cases["case_id"])
    dup = _repeated_codes(case_codes)
    in_period = period.contains(cases["finished_at"]).to_numpy(dtype=bool)
    wanted = [
        *REQUIRED["cases"],
        "case_id",
        "unit_id",
        "source_system",
        "finished_at",
        "reported_at",
        "matter_code",
    ]
    frame = _period_rows(cases, in_period, wanted)
    out = pd.DataFrame(index=frame.index)
    out["record_id"] = frame["case_id"]
    out["unit_id"] = _as_category(frame["unit_id"])
    out["system"] = _system_column(frame["source_system"] if "source_system" in frame else None, len(frame))
    out["day"] = frame["finished_at"].dt.normalize()
    _timeliness_columns(out, frame["finished_at"], frame.get("reported_at"), settings)
    out["fail_required"] = _missing_required(frame, "cases")
    out["fail_duplicate"] = dup[in_period]
    out["fail_sequence"] = False
    out["fail_orphan"] = False
    catalogue = _catalogue(ref)
    out["matter_checked"] = catalogue is not None
    if catalogue is not None and "matter_code" in frame:
        codes = frame["matter_code"].astype("str").str.strip()
        out["fail_matter"] = ~_isin(codes, catalogue)
    else:
        out["fail_matter"] = False
    return _stages(out, settings)


def check_evaluations(
    evaluations: pd.DataFrame,
    cases: pd.DataFrame,
    period: Period,
    settings: QualitySettings = QualitySettings(),
    codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Record-level quality of the evaluations produced in the period (evaluated_at in the period).

    Args:
        evaluations: canonical evaluations (the period's, plus earlier ones for the first-evaluation
            rule; only rows made in the period are returned).
        cases: canonical cases to link against (the period's and, with lookback, earlier ones).
        period: the statistical period.
        settings: thresholds.
        codes: integer codes of ``cases.case_id`` and ``evaluations.case_id`` (:func:`_case_codes`),
            when already computed.

    Returns:
        One row per evaluation of the period with ``record_id``, ``unit_id`` (the linked case's unit
        wins, data contract §1), ``own_unit_id``, ``system`` (the linked case's source system),
        ``day``, ``delay_s``, ``timeliness``, ``has_case_id``, ``linked``, ``unit_conflict`` and the
        booleans of :func:`check_cases`. Duplicates are flagged in ``dup_id`` (same eval_id) and
        ``dup_attempt`` (same case evaluated twice as attempt 1); ``fail_duplicate`` is their union.
    """
    case_codes, eval_codes = (
        codes if codes is not None else _case_codes(cases["case_id"], evaluations["case_id"])
    )
    dup_id = duplicate_extra_rows(evaluations["eval_id"]).to_numpy()
    dup_attempt = repeated_first_attempts(evaluations, eval_codes, dup_id).to_numpy()
    in_period = period.contains(evaluations["evaluated_at"]).to_numpy(dtype=bool)
    wanted = [*REQUIRED["evaluations"], "eval_id", "unit_id", "evaluated_at", "reported_at"]
    frame = _period_rows(evaluations, in_period, wanted)
    eval_codes = eval_codes[in_period]

    # Link to cases: the first row of each case_id is the case (repeats are flagged on the cases side).
    first_row = np.full(
        int(max(case_codes.max(initial=-1), eval_codes.max(initial=-1))) + 2, -1, dtype="int64"
    )
    valid = case_codes >= 0
    first_row[case_codes[valid][::-1]] = np.flatnonzero(valid)[::-1]
    position = np.where(eval_codes >= 0, first_row[eval_codes], -1)
    linked = position >= 0
    safe = np.where(linked, position, 0)
    has_case_id = eval_codes >= 0

    # Units: case and evaluation unit codes on one set of categories.
    case_units, own_units = _as_category(cases["unit_id"]), _as_category(frame["unit_id"])
    categories = case_units.cat.categories.union(own_units.cat.categories)
    case_unit_codes = np.append(categories.get_indexer(case_units.cat.categories), -1)[
        case_units.cat.codes.to_numpy()
    ]
    own_codes = np.append(categories.get_indexer(own_units.cat.categories), -1)[
        own_units.cat.codes.to_numpy()
    ]
    linked_unit = case_unit_codes[safe] if len(cases) else np.full(len(frame), -1)

    out = pd.DataFrame(index=frame.index)
    out["record_id"] = frame["eval_id"]
    out["own_unit_id"] = pd.Categorical.from_codes(own_codes, categories)
    out["unit_id"] = pd.Categorical.from_codes(np.where(linked, linked_unit, own_codes), categories)
    case_system = _system_column(cases["source_system"] if "source_system" in cases else None, len(cases))
    unlinked_code = case_system.categories.get_loc(UNLINKED_SYSTEM)
    system_codes = case_system.codes[safe] if len(cases) else np.full(len(frame), unlinked_code)
    out["system"] = pd.Categorical.from_codes(
        np.where(linked, system_codes, unlinked_code), case_system.categories
    )
    out["day"] = frame["evaluated_at"].dt.normalize()
    _timeliness_columns(out, frame["evaluated_at"], frame.get("reported_at"), settings)
    out["has_case_id"] = has_case_id
    out["linked"] = linked
    out["fail_required"] = _missing_required(frame, "evaluations")
    out["dup_id"] = dup_id[in_period]
    out["dup_attempt"] = dup_attempt[in_period]
    out["fail_duplicate"] = out["dup_id"].to_numpy() | out["dup_attempt"].to_numpy()
    finished = cases["finished_at"].to_numpy(dtype="datetime64[us]")[safe] if len(cases) else None
    if finished is None:
        before = np.zeros(len(frame), dtype=bool)
    else:
        limit = frame["evaluated_at"].to_numpy(dtype="datetime64[us]") + np.timedelta64(
            int(settings.sequence_tolerance.total_seconds() * 1_000_000), "us"
        )
        before = limit < finished  # NaT compares False
    out["fail_sequence"] = before & linked
    out["fail_orphan"] = has_case_id & ~linked
    out["fail_matter"] = False
    out["matter_checked"] = False
    out["unit_conflict"] = linked & (linked_unit != own_codes)
    return _stages(out, settings)


def _stages(out: pd.DataFrame, settings: QualitySettings) -> pd.DataFrame:
    """Add ``passed`` and ``stored`` (see :func:`record_stages`)."""
    blocking = np.zeros(len(out), dtype=bool)
    for check in settings.blocking_checks:
        blocking |= out[f"fail_{check}"].to_numpy(dtype=bool)
    linkage = np.zeros(len(out), dtype=bool)
    for check in settings.linkage_checks:
        linkage |= out[f"fail_{check}"].to_numpy(dtype=bool)
    out["passed"] = out["submitted"].to_numpy(dtype=bool) & ~blocking
    out["stored"] = out["passed"].to_numpy(dtype=bool) & ~linkage
    out["failed_any"] = blocking | linkage
    return out


def record_stages() -> dict[str, str]:
    """The definitions of 生产 / 提交 / 质检 / 关联度入库 (also written to docs/quality.md).

    Per source system and data type (办件, 评价):

    * 生产 (produced): records of the period: cases finished in it, evaluations made in it.
    * 提交 (submitted): produced records with a ``reported_at`` (they reached the 好差评 system).
    * 质检通过 (passed): submitted records passing every blocking check (settings.blocking_checks).
    * 关联入库 (stored): passed records passing every linkage check (settings.linkage_checks).

    Rates: 数据生产率 = produced records with every required field / produced; 提交率 = submitted /
    produced; 质检通过率 = passed / submitted; 关联度入库率 = stored / passed.
    """
    return {
        "produced": "生产：统计期内的记录（办件按办结时间、评价按评价时间落在统计期内）",
        "submitted": "提交：生产记录中有上报时间（已汇聚到好差评系统）的记录",
        "passed": "质检通过：提交记录中通过全部阻断性质检项（必填项、重复、5分钟及时、评价不早于办结）的记录",
        "stored": "关联入库：质检通过记录中通过关联检查（评价关联到存在的办件；办件事项在事项目录中）的记录",
        "production_rate": "数据生产率 = 必填项完整的生产记录 / 生产记录",
        "submission_rate": "提交率 = 提交记录 / 生产记录",
        "quality_rate": "质检通过率 = 质检通过记录 / 提交记录",
        "storage_rate": "关联度入库率 = 关联入库记录 / 质检通过记录",
    }


# --- aggregation -------------------------------------------------------------------------------


def _counts(records: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Numeric counts per group (vectorized: one groupby of summed booleans)."""
    timeliness = records["timeliness"].to_numpy()
    flags = {
        "produced": np.ones(len(records), dtype=bool),
        "complete": ~records["fail_required"].to_numpy(dtype=bool),
        "submitted": records["submitted"].to_numpy(dtype=bool),
        "passed": records["passed"].to_numpy(dtype=bool),
        "stored": records["stored"].to_numpy(dtype=bool),
        "timely": timeliness == TIMELY,
        "late": timeliness == LATE,
        "unknown": timeliness == UNKNOWN,
        "inverted": timeliness == INVERTED,
    }
    for check in ALL_CHECKS:
        flags[f"fail_{check}"] = records[f"fail_{check}"].to_numpy(dtype=bool)
    for col in (
        "failed_any",
        "dup_id",
        "dup_attempt",
        "unit_conflict",
        "linked",
        "has_case_id",
        "matter_checked",
    ):
        flags[col] = (
            records[col].to_numpy(dtype=bool) if col in records else np.zeros(len(records), dtype=bool)
        )
    if not keys:
        return pd.DataFrame({name: [int(values.sum())] for name, values in flags.items()})
    # One factorization of the group key, then a bincount per flag (much faster than groupby.sum
    # on millions of booleans).
    (key,) = keys
    column = records[key]
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes, labels = column.cat.codes.to_numpy(), pd.Index(column.cat.categories.astype("str"))
    else:
        codes, labels = pd.factorize(column, sort=True)
    present = codes >= 0
    size = len(labels)
    # bincount of the codes where a flag holds: cheap for the many sparse failure flags.
    counts = pd.DataFrame(
        {name: np.bincount(codes[present & values], minlength=size) for name, values in flags.items()},
        dtype="int64",
    )
    counts.insert(0, key, labels)
    return counts.loc[counts["produced"] > 0].reset_index(drop=True)


def _rates(counts: pd.DataFrame) -> pd.DataFrame:
    """Numeric rates beside the counts (NaN where the denominator is 0)."""
    out = counts.copy()
    out["production_rate"] = _ratio(out["complete"], out["produced"])
    out["submission_rate"] = _ratio(out["submitted"], out["produced"])
    out["quality_rate"] = _ratio(out["passed"], out["submitted"])
    out["storage_rate"] = _ratio(out["stored"], out["passed"])
    out["timely_rate"] = _ratio(out["timely"], out["produced"])
    return out


# --- the report --------------------------------------------------------------------------------


@dataclass
class QualityReport:
    """Result of :func:`run_quality`.

    Attributes:
        figures: the figures the bulletin quotes and the check totals (JSON-friendly).
        tables: presentation tables with Chinese headers (overview, by_system, by_unit, by_day,
            worst_units, checks, completeness, issues).
        series: numeric frames behind the charts (by_day, by_system).
    """

    city: str
    period: str
    figures: dict
    tables: dict[str, pd.DataFrame]
    series: dict[str, pd.DataFrame] = field(default_factory=dict)


def completeness(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Completeness per canonical column of one table's records: non-missing / records.

    Empty or whitespace-only strings count as missing. Columns absent from the frame are reported
    with 0 filled records (the source does not give them).
    """
    rows = []
    for col in DTYPES[table]:
        filled = int((~_blank(frame[col])).sum()) if col in frame else 0
        rows.append(
            {
                "数据类型": TABLE_LABELS[table],
                "字段": col,
                "字段名称": COLUMN_LABELS.get(col, col),
                "是否必填": "是" if col in REQUIRED[table] else "否",
                "记录数": len(frame),
                "非空数": filled,
                "缺失数": len(frame) - filled,
                "完整率": format_rate(filled, len(frame)),
            }
        )
    return pd.DataFrame(rows)


def _failed_check_summary(row: pd.Series) -> str:
    parts = [
        f"{CHECK_LABELS[c]}不通过{int(row[f'fail_{c}'])}条" for c in ALL_CHECKS if int(row[f"fail_{c}"]) > 0
    ]
    if int(row.get("unit_conflict", 0)) > 0:
        parts.append(f"单位不一致{int(row['unit_conflict'])}条")
    return "；".join(parts) if parts else "无"


def _present_stages(counts: pd.DataFrame, lead: dict[str, str]) -> pd.DataFrame:
    """Chinese presentation of stage counts and rates; ``lead`` maps key columns to headers."""
    out = pd.DataFrame({header: counts[key].astype("str") for key, header in lead.items()})
    out["生产数"] = counts["produced"].to_numpy()
    out["提交数"] = counts["submitted"].to_numpy()
    out["质检通过数"] = counts["passed"].to_numpy()
    out["关联入库数"] = counts["stored"].to_numpy()
    out["数据生产率"] = _rate_column(counts["complete"], counts["produced"]).to_numpy()
    out["提交率"] = _rate_column(counts["submitted"], counts["produced"]).to_numpy()
    out["质检通过率"] = _rate_column(counts["passed"], counts["submitted"]).to_numpy()
    out["关联度入库率"] = _rate_column(counts["stored"], counts["passed"]).to_numpy()
    out["超时上报数"] = counts["late"].to_numpy()
    out["无上报时间数"] = counts["unknown"].to_numpy()
    out["时间倒置数"] = counts["inverted"].to_numpy()
    out["及时率"] = _rate_column(counts["timely"], counts["produced"]).to_numpy()
    return out.reset_index(drop=True)


def _by_kind(case_records: pd.DataFrame, eval_records: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    parts = []
    for table, records in (("cases", case_records), ("evaluations", eval_records)):
        counts = _counts(records, keys)
        counts.insert(0, "table", TABLE_LABELS[table])
        parts.append(counts)
    return pd.concat(parts, ignore_index=True)


def _bulletin_figures(total: pd.Series) -> dict:
    return {
        "production_rate": format_rate(total["complete"], total["produced"]),
        "submission_rate": format_rate(total["submitted"], total["produced"]),
        "quality_rate": format_rate(total["passed"], total["submitted"]),
        "storage_rate": format_rate(total["stored"], total["passed"]),
    }


def bulletin_sentence(figures: dict) -> str:
    """The bulletin's quality phrase, computed from the figures.

    When every rate is exactly 100% it is the reference wording
    "数据生产、提交、质检关联度入库率均达100%"; otherwise it states each rate and the counts of the
    failures behind them, so it never claims 100% that the data do not show.
    """
    produced = figures["produced"]["total"]
    if produced == 0:
        return "统计期内无生产数据，数据生产、提交、质检关联度入库率无法计算"
    rates = figures["rates"]
    caveat = "" if figures["matter_catalogue"] else "（未提供事项目录，办件与事项的关联未核验）"
    if all(rates[key] == "100%" for key in RATE_LABELS):
        return BULLETIN_ALL_100 + caveat
    text = "、".join(f"{RATE_LABELS[key]}{rates[key]}" for key in RATE_LABELS)
    problems = []
    late = figures["late_reports"]
    if late["cases"]:
        problems.append(f"办件超{_limit_cn(figures)}上报{late['cases']}件")
    if late["evaluations"]:
        problems.append(f"评价超{_limit_cn(figures)}上报{late['evaluations']}件")
    unknown = figures["missing_reported_at"]
    if unknown["cases"] or unknown["evaluations"]:
        problems.append(f"无上报时间{unknown['cases'] + unknown['evaluations']}件")
    inverted = figures["inverted_reports"]
    if inverted["cases"] or inverted["evaluations"]:
        problems.append(f"上报时间早于业务时间{inverted['cases'] + inverted['evaluations']}件")
    for key, label in (
        ("missing_required", "必填项缺失"),
        ("duplicate_cases", "重复办件"),
        ("duplicate_eval_ids", "重复评价编号"),
        ("duplicate_evaluations", "重复评价"),
        ("evals_before_case", "评价早于办结"),
        ("orphan_evaluations", "评价关联不到办件"),
        ("cases_without_matter", "办件未关联事项目录"),
    ):
        value = figures[key]
        value = value["cases"] + value["evaluations"] if isinstance(value, dict) else value
        if value:
            problems.append(f"{label}{value}件")
    return text + ("，其中" + "、".join(problems) if problems else "") + caveat


def _limit_cn(figures: dict) -> str:
    seconds = figures["settings"]["report_delay_limit"]
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}分钟" if rest == 0 else f"{seconds:g}秒"


def run_quality(
    ref: CityReference,
    data: dict[str, pd.DataFrame],
    period: Period,
    settings: QualitySettings = QualitySettings(),
) -> QualityReport:
    """Run every quality check on canonical tables and build the quality report.

    Args:
        ref: the city's reference data (units; ``matters`` for the case-matter linkage).
        data: canonical ``cases`` and ``evaluations`` (extra earlier rows allowed: only records of
            the period are counted, earlier ones serve for linking and the first-evaluation rule).
        period: the statistical period.
        settings: thresholds (:class:`QualitySettings`).

    Returns:
        The :class:`QualityReport`.
    """
    for table in ("cases", "evaluations"):
        if table not in data:
            raise HaochaInputError(f"质检需要 {table} 表", fix="传入规范表 cases 与 evaluations")
        for col in REQUIRED[table]:
            if col not in data[table]:
                raise HaochaInputError(
                    f"{table} 表缺少质检所需的列 {col}",
                    column=col,
                    fix="按数据契约（docs/data-contract.md）提供该列，或先用 haocha ingest 导入原始导出",
                )
    cases, evaluations = data["cases"], data["evaluations"]
    if "case_id" not in evaluations:  # optional in the contract: no evaluation names a case
        evaluations = evaluations.assign(case_id=pd.Series(pd.NA, index=evaluations.index, dtype="str"))
    case_codes, eval_codes = _case_codes(cases["case_id"], evaluations["case_id"])
    case_records = check_cases(cases, period, ref, settings, case_codes)
    eval_records = check_evaluations(evaluations, cases, period, settings, (case_codes, eval_codes))
    units = _unit_attributes(ref)

    totals = {t: _counts(r, []).iloc[0] for t, r in (("cases", case_records), ("evaluations", eval_records))}
    total = totals["cases"] + totals["evaluations"]
    for table, t in totals.items():
        # The stages are a funnel: each is a subset of the one before.
        assert t["produced"] >= t["submitted"] >= t["passed"] >= t["stored"] >= 0, (table, dict(t))
        assert t["timely"] + t["late"] + t["unknown"] + t["inverted"] == t["produced"], table

    def pair(key: str) -> dict:
        return {"cases": int(totals["cases"][key]), "evaluations": int(totals["evaluations"][key])}

    catalogue = _catalogue(ref)
    figures: dict = {
        "city": ref.city_name,
        "period": period.label,
        "period_start": str(period.start),
        "period_end": str(period.end),
        "produced": {**pair("produced"), "total": int(total["produced"])},
        "submitted": {**pair("submitted"), "total": int(total["submitted"])},
        "passed": {**pair("passed"), "total": int(total["passed"])},
        "stored": {**pair("stored"), "total": int(total["stored"])},
        "rates": _bulletin_figures(total),
        "rates_by_table": {t: _bulletin_figures(totals[t]) for t in totals},
        "timely": pair("timely"),
        "timeliness_rate": {t: format_rate(totals[t]["timely"], totals[t]["produced"]) for t in totals},
        "late_reports": pair("late"),
        "missing_reported_at": pair("unknown"),
        "inverted_reports": pair("inverted"),
        "missing_required": pair("fail_required"),
        "duplicate_cases": int(totals["cases"]["fail_duplicate"]),
        "duplicate_eval_ids": int(totals["evaluations"]["dup_id"]),
        "duplicate_evaluations": int(totals["evaluations"]["dup_attempt"]),
        "evals_before_case": int(totals["evaluations"]["fail_sequence"]),
        "orphan_evaluations": int(totals["evaluations"]["fail_orphan"]),
        "unlinked_evaluations": int(totals["evaluations"]["produced"] - totals["evaluations"]["has_case_id"]),
        "unit_conflicts": int(totals["evaluations"]["unit_conflict"]),
        "cases_without_matter": int(totals["cases"]["fail_matter"]) if catalogue is not None else 0,
        "matter_catalogue": catalogue is not None,
        "matters_catalogued": len(catalogue) if catalogue is not None else 0,
        # 关联度 (data contract §5): evaluations linked to an existing case / evaluations; cases whose
        # matter is in the catalogue / cases ("/" without a catalogue).
        "evaluation_linkage_rate": format_rate(
            totals["evaluations"]["linked"], totals["evaluations"]["produced"]
        ),
        "case_matter_linkage_rate": (
            format_rate(
                totals["cases"]["produced"] - totals["cases"]["fail_matter"], totals["cases"]["produced"]
            )
            if catalogue is not None
            else "/"
        ),
        "systems": sorted(s for s in case_records["system"].unique() if s != NO_SYSTEM),
        "definitions": record_stages(),
        "settings": settings.as_dict(),
    }
    figures["sentence"] = bulletin_sentence(figures)

    tables, series = _build_tables(case_records, eval_records, units, figures, settings)
    tables["completeness"] = pd.concat(
        [
            completeness(cases.loc[period.contains(cases["finished_at"])], "cases"),
            completeness(evaluations.loc[period.contains(evaluations["evaluated_at"])], "evaluations"),
        ],
        ignore_index=True,
    )
    tables["issues"] = _issues(case_records, eval_records, units, settings)
    return QualityReport(
        city=ref.city_name, period=period.label, figures=figures, tables=tables, series=series
    )


def _build_tables(
    case_records: pd.DataFrame,
    eval_records: pd.DataFrame,
    units: pd.DataFrame,
    figures: dict,
    settings: QualitySettings,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    tables: dict[str, pd.DataFrame] = {}
    series: dict[str, pd.DataFrame] = {}

    # overview: one row per data type and a total row.
    overview = _by_kind(case_records, eval_records, [])
    total = overview.drop(columns="table").sum().to_frame().T
    total.insert(0, "table", "合计")
    overview = pd.concat([overview, total], ignore_index=True)
    tables["overview"] = _present_stages(overview, {"table": "数据类型"})
    tables["overview"]["评价关联办件率"] = [
        "/",
        figures["evaluation_linkage_rate"],
        "/",
    ]
    tables["overview"]["办件关联事项率"] = [figures["case_matter_linkage_rate"], "/", "/"]

    # by source system (evaluations take their linked case's system), largest systems first.
    by_system = _by_kind(case_records, eval_records, ["system"])
    evaluations_produced = by_system.loc[by_system["table"] == "评价"].set_index("system")["produced"]
    system_totals = by_system.drop(columns="table").groupby("system", sort=True).sum().reset_index()
    system_totals.insert(0, "table", "合计")
    by_system = pd.concat([by_system, system_totals], ignore_index=True)
    by_system["_order"] = by_system["table"].map({"办件": 0, "评价": 1, "合计": 2})
    by_system["_last"] = by_system["system"].isin([NO_SYSTEM, UNLINKED_SYSTEM])
    by_system["_volume"] = by_system["system"].map(system_totals.set_index("system")["produced"])
    by_system = by_system.sort_values(
        ["_last", "_volume", "system", "_order"], ascending=[True, False, True, True], kind="stable"
    ).reset_index(drop=True)
    presented = _present_stages(by_system, {"system": "来源系统", "table": "数据类型"})
    # 评价关联办件率: evaluations linked to an existing case / evaluations (also on the 合计 row).
    eval_denominator = by_system["system"].map(evaluations_produced).fillna(0).astype("int64")
    presented["评价关联办件率"] = np.where(
        by_system["table"] == "办件", "/", _rate_column(by_system["linked"], eval_denominator)
    )
    presented["重复记录数"] = by_system["fail_duplicate"].to_numpy()
    presented["评价早于办结数"] = by_system["fail_sequence"].to_numpy()
    presented["孤立评价数"] = by_system["fail_orphan"].to_numpy()
    presented["事项未关联数"] = by_system["fail_matter"].to_numpy()
    tables["by_system"] = presented
    series["by_system"] = _rates(by_system.drop(columns=["_order", "_last", "_volume"]))

    # by unit: cases and evaluations side by side.
    unit_counts = _by_unit_counts(case_records, eval_records)
    tables["by_unit"], unit_numeric = _present_units(unit_counts, units)
    tables["worst_units"] = _worst_units(unit_numeric, settings)

    # by day.
    day = _by_kind(case_records, eval_records, ["day"])
    series["by_day"] = _rates(day)
    tables["by_day"] = _present_days(day)

    tables["checks"] = _checks_table(figures, case_records, eval_records, settings)
    return tables, series


def _by_unit_counts(case_records: pd.DataFrame, eval_records: pd.DataFrame) -> pd.DataFrame:
    cases = _counts(case_records, ["unit_id"]).set_index("unit_id").add_prefix("c_")
    evals = _counts(eval_records, ["unit_id"]).set_index("unit_id").add_prefix("e_")
    both = cases.join(evals, how="outer").fillna(0).astype("int64")
    for key in ("produced", "submitted", "passed", "stored", "failed_any", "late", "unknown", "timely"):
        both[key] = both[f"c_{key}"] + both[f"e_{key}"]
    for check in ALL_CHECKS:
        both[f"fail_{check}"] = both[f"c_fail_{check}"] + both[f"e_fail_{check}"]
    both["unit_conflict"] = both["e_unit_conflict"]
    return both


def _present_units(counts: pd.DataFrame, units: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    attrs = units.reindex(counts.index)
    numeric = counts.copy()
    numeric["unit_name"] = attrs["unit_name"].fillna(UNKNOWN_UNIT)
    numeric["level"] = attrs["level"].fillna("")
    numeric["district"] = attrs["district"].fillna("")
    numeric["_rank"] = attrs["level_rank"].fillna(99)
    numeric["_order"] = attrs["order"].fillna(10**9)
    numeric = numeric.sort_values(["_rank", "_order"], kind="stable")
    numeric["storage_share"] = _ratio(numeric["stored"], numeric["produced"])
    out = pd.DataFrame(
        {
            "单位编码": numeric.index.astype("str"),
            "单位名称": numeric["unit_name"].to_numpy(),
            "层级": numeric["level"].to_numpy(),
            "所属区县": numeric["district"].to_numpy(),
            "办件生产数": numeric["c_produced"].to_numpy(),
            "办件超时数": numeric["c_late"].to_numpy(),
            "办件无上报时间数": numeric["c_unknown"].to_numpy(),
            "办件及时率": _rate_column(numeric["c_timely"], numeric["c_produced"]).to_numpy(),
            "办件事项未关联数": numeric["c_fail_matter"].to_numpy(),
            "评价生产数": numeric["e_produced"].to_numpy(),
            "评价超时数": numeric["e_late"].to_numpy(),
            "评价无上报时间数": numeric["e_unknown"].to_numpy(),
            "评价及时率": _rate_column(numeric["e_timely"], numeric["e_produced"]).to_numpy(),
            "重复记录数": numeric["fail_duplicate"].to_numpy(),
            "评价早于办结数": numeric["e_fail_sequence"].to_numpy(),
            "孤立评价数": numeric["e_fail_orphan"].to_numpy(),
            "单位不一致数": numeric["unit_conflict"].to_numpy(),
            "记录数": numeric["produced"].to_numpy(),
            "不通过记录数": numeric["failed_any"].to_numpy(),
            "质检通过率": _rate_column(numeric["passed"], numeric["submitted"]).to_numpy(),
            "关联度入库率": _rate_column(numeric["stored"], numeric["passed"]).to_numpy(),
            "入库占生产比": _rate_column(numeric["stored"], numeric["produced"]).to_numpy(),
        }
    )
    return out, numeric


def _worst_units(numeric: pd.DataFrame, settings: QualitySettings) -> pd.DataFrame:
    """Units with the lowest share of produced records stored, among units with enough records."""
    eligible = numeric[
        (numeric["produced"] >= settings.worst_units_min_records) & (numeric["failed_any"] > 0)
    ]
    eligible = eligible.assign(_fail_share=1 - eligible["storage_share"].fillna(0))
    worst = eligible.sort_values(["_fail_share", "failed_any"], ascending=[False, False], kind="stable")
    worst = worst.head(settings.worst_units_top)
    return pd.DataFrame(
        {
            "排名": np.arange(1, len(worst) + 1),
            "单位编码": worst.index.astype("str"),
            "单位名称": worst["unit_name"].to_numpy(),
            "层级": worst["level"].to_numpy(),
            "所属区县": worst["district"].to_numpy(),
            "记录数": worst["produced"].to_numpy(),
            "不通过记录数": worst["failed_any"].to_numpy(),
            "入库占生产比": _rate_column(worst["stored"], worst["produced"]).to_numpy(),
            "主要问题": [_failed_check_summary(row) for _, row in worst.iterrows()],
        }
    )


def _present_days(day: pd.DataFrame) -> pd.DataFrame:
    cases = day[day["table"] == "办件"].set_index("day").add_prefix("c_")
    evals = day[day["table"] == "评价"].set_index("day").add_prefix("e_")
    both = cases.join(evals, how="outer").sort_index()
    numeric_cols = [c for c in both.columns if not c.endswith("table")]
    both[numeric_cols] = both[numeric_cols].fillna(0).astype("int64")
    return pd.DataFrame(
        {
            "日期": pd.DatetimeIndex(both.index).strftime("%Y-%m-%d"),
            "办件生产数": both["c_produced"].to_numpy(),
            "办件超时数": both["c_late"].to_numpy(),
            "办件无上报时间数": both["c_unknown"].to_numpy(),
            "办件及时率": _rate_column(both["c_timely"], both["c_produced"]).to_numpy(),
            "评价生产数": both["e_produced"].to_numpy(),
            "评价超时数": both["e_late"].to_numpy(),
            "评价无上报时间数": both["e_unknown"].to_numpy(),
            "评价及时率": _rate_column(both["e_timely"], both["e_produced"]).to_numpy(),
            "重复记录数": (both["c_fail_duplicate"] + both["e_fail_duplicate"]).to_numpy(),
            "评价早于办结数": both["e_fail_sequence"].to_numpy(),
        }
    )


def _checks_table(
    figures: dict, case_records: pd.DataFrame, eval_records: pd.DataFrame, settings: QualitySettings
) -> pd.DataFrame:
    limit = _limit_cn(figures)
    catalogue = figures["matter_catalogue"]
    rules = [
        ("cases", CHECK_REQUIRED, "办件编号、单位、办结时间均非空", "—"),
        ("evaluations", CHECK_REQUIRED, "评价编号、单位、渠道、满意度、评价时间均非空", "—"),
        ("cases", CHECK_DUPLICATE, "同一办件编号重复出现，多出的记录各计一次", "—"),
        (
            "evaluations",
            CHECK_DUPLICATE,
            "同一评价编号重复出现，或同一办件有多条首次（attempt=1）评价，多出的记录各计一次",
            "—",
        ),
        ("cases", CHECK_TIMELINESS, "上报时间 − 办结时间 ≤ 时限为及时；无上报时间为未知（不计通过）", limit),
        (
            "evaluations",
            CHECK_TIMELINESS,
            "上报时间 − 评价时间 ≤ 时限为及时；无上报时间为未知（不计通过）",
            limit,
        ),
        ("evaluations", CHECK_SEQUENCE, "评价时间不早于所评办件的办结时间", "—"),
        ("evaluations", CHECK_ORPHAN, "填写了办件编号的评价，办件表中须有该办件（否则为孤立评价）", "—"),
        (
            "cases",
            CHECK_MATTER,
            "办件事项编码在事项目录中" if catalogue else "办件事项编码在事项目录中（未提供事项目录，未检查）",
            "—",
        ),
    ]
    records = {"cases": case_records, "evaluations": eval_records}
    rows = []
    for table, check, rule, threshold in rules:
        frame = records[table]
        failed = int(frame[f"fail_{check}"].sum())
        unknown = int((frame["timeliness"] == UNKNOWN).sum()) if check == CHECK_TIMELINESS else 0
        checked = len(frame) if not (check == CHECK_MATTER and not catalogue) else 0
        if check == CHECK_ORPHAN:
            checked = int(frame["has_case_id"].sum())
        if check == CHECK_SEQUENCE:
            checked = int(frame["linked"].sum())
        kind = (
            "阻断（质检）"
            if check in settings.blocking_checks
            else "关联（入库）"
            if check in settings.linkage_checks
            else "仅提示"
        )
        rows.append(
            {
                "数据类型": TABLE_LABELS[table],
                "检查项": CHECK_LABELS[check],
                "规则": rule,
                "阈值": threshold,
                "类别": kind,
                "检查记录数": checked,
                "不通过数": failed - unknown,
                "未知数": unknown,
                "通过率": format_rate(checked - failed, checked),
            }
        )
    conflicts = int(eval_records["unit_conflict"].sum())
    linked = int(eval_records["linked"].sum())
    rows.append(
        {
            "数据类型": "评价",
            "检查项": "评价单位与办件单位一致",
            "规则": "已关联办件的评价，其单位与办件单位一致；不一致时以办件单位为准并记录",
            "阈值": "—",
            "类别": "仅提示",
            "检查记录数": linked,
            "不通过数": conflicts,
            "未知数": 0,
            "通过率": format_rate(linked - conflicts, linked),
        }
    )
    return pd.DataFrame(rows)


def _issues(
    case_records: pd.DataFrame, eval_records: pd.DataFrame, units: pd.DataFrame, settings: QualitySettings
) -> pd.DataFrame:
    """Record-level problem list (one row per record and failed check), capped."""
    parts, room = [], settings.max_issue_rows
    for table, records in (("cases", case_records), ("evaluations", eval_records)):
        checks = [*ALL_CHECKS, "unit_conflict"] if table == "evaluations" else list(ALL_CHECKS)
        for check in checks:
            column = check if check == "unit_conflict" else f"fail_{check}"
            hit = records.loc[records[column].to_numpy(dtype=bool)]
            if check == CHECK_TIMELINESS:
                hit = hit[hit["timeliness"] != UNKNOWN]  # not submitted: counted, not listed
            hit = hit.iloc[: max(room, 0)]
            room -= len(hit)
            if hit.empty:
                continue
            detail = pd.Series("", index=hit.index, dtype="str")
            if check == CHECK_TIMELINESS:
                minutes = (hit["delay_s"] / 60).round(1)
                detail = "延迟" + minutes.astype("str") + "分钟"
            elif check == CHECK_DUPLICATE and table == "evaluations":
                detail = np.where(hit["dup_id"], "评价编号重复", "同一办件重复首次评价")
            elif check == "unit_conflict":
                detail = (
                    "评价单位 "
                    + hit["own_unit_id"].astype("str")
                    + " ≠ 办件单位 "
                    + hit["unit_id"].astype("str")
                )
            parts.append(
                pd.DataFrame(
                    {
                        "数据类型": TABLE_LABELS[table],
                        "记录编号": hit["record_id"].to_numpy(),
                        "单位编码": hit["unit_id"].astype("str").to_numpy(),
                        "单位名称": units["unit_name"]
                        .reindex(hit["unit_id"].astype("str"))
                        .fillna(UNKNOWN_UNIT)
                        .to_numpy(),
                        "来源系统": hit["system"].astype("str").to_numpy(),
                        "日期": hit["day"].dt.strftime("%Y-%m-%d").to_numpy(),
                        "检查项": "评价单位与办件单位一致"
                        if check == "unit_conflict"
                        else CHECK_LABELS[check],
                        "说明": np.asarray(detail),
                    }
                )
            )
    if not parts:
        return pd.DataFrame(
            columns=["数据类型", "记录编号", "单位编码", "单位名称", "来源系统", "日期", "检查项", "说明"]
        )
    return pd.concat(parts, ignore_index=True).head(settings.max_issue_rows)


# --- outputs -----------------------------------------------------------------------------------

OUTPUT_NAMES = {
    "overview": ("quality_overview.csv", "总体"),
    "by_system": ("quality_by_system.csv", "按来源系统"),
    "by_unit": ("quality_by_unit.csv", "按单位"),
    "by_day": ("quality_by_day.csv", "按日"),
    "worst_units": ("quality_worst_units.csv", "问题单位"),
    "checks": ("quality_checks.csv", "质检项"),
    "completeness": ("quality_completeness.csv", "字段完整性"),
    "issues": ("quality_issues.csv", "问题记录"),
}
XLSX_NAME = "quality.xlsx"
FIGURES_NAME = "quality_figures.json"
# A presentation table's rate column holds format_rate strings ("99.91%", "/"); in the XLSX they are
# fractions again (the printed, truncated figure) with a percent format.
_RATE_TEXT = r"\d+(?:\.\d+)?%"
XLSX_NOTE = "备注：比率按截断保留两位小数（不四舍五入）；“/”表示分母为0，不适用。"


def quality_sheet(report: QualityReport, key: str) -> SheetSpec:
    """The XLSX sheet of one presentation table: counts as integers, rates as percentages, dates as dates."""
    table = report.tables[key].reset_index(drop=True)
    frame, rates = table.copy(), []
    for col in table.columns:
        values = table[col]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        text = values.astype("str")
        if str(col).endswith(("率", "比")) and text.str.fullmatch(f"{_RATE_TEXT}|/").all() and len(text):
            percent = pd.to_numeric(text.str.removesuffix("%"), errors="coerce")  # "/" → NaN
            frame[col] = (percent / 100).where(text.str.fullmatch(_RATE_TEXT))
            rates.append(str(col))
        elif col == "日期" and len(text):
            frame[col] = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    sheet = OUTPUT_NAMES[key][1]
    try:
        when = parse_period(report.period).title_cn()
    except HaochaInputError:
        when = report.period
    return SheetSpec(
        name=sheet,
        frame=frame,
        title=f"{report.city}{when}数据质检：{sheet}",
        notes=[XLSX_NOTE] if rates else [],
        percent_columns=rates,
        number_formats={"排名": PLAIN_INTEGER_FORMAT} if "排名" in frame else {},
        slash_columns=rates,
    )


def write_outputs(report: QualityReport, out_dir: Path) -> list[Path]:
    """Write the quality tables (CSV, UTF-8 with BOM), one XLSX with a sheet per table, and the figures JSON.

    Files are written into a temporary folder beside the target, then moved into place, so a failure
    leaves no half-written file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".quality-", dir=out_dir))
    try:
        names = []
        for key, (name, _) in OUTPUT_NAMES.items():
            neutralise_frame(report.tables[key]).to_csv(staging / name, index=False, encoding="utf-8-sig")
            names.append(name)
        write_workbook(staging / XLSX_NAME, [quality_sheet(report, key) for key in OUTPUT_NAMES])
        names.append(XLSX_NAME)
        (staging / FIGURES_NAME).write_text(
            json.dumps(report.figures, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        names.append(FIGURES_NAME)
        written = []
        for name in names:
            os.replace(staging / name, out_dir / name)
            written.append(out_dir / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- loading -----------------------------------------------------------------------------------

CASE_COLUMNS = list(DTYPES["cases"])
EVALUATION_COLUMNS = list(DTYPES["evaluations"])
LOOKBACK_CASE_COLUMNS = ["case_id", "unit_id", "finished_at", "source_system"]
LOOKBACK_EVALUATION_COLUMNS = ["eval_id", "case_id", "attempt", "evaluated_at"]


def _present_columns(data_dir: Path, table: str, wanted: list[str]) -> list[str]:
    """The wanted columns that the stored table actually has (a source may lack optional ones)."""
    import pyarrow.parquet as pq

    from .storage import partitions

    parts = partitions(data_dir, table)
    files = [f for p in parts.values() for f in sorted(p.glob("*.parquet"))][:1]
    if not files and (data_dir / f"{table}.parquet").exists():
        files = [data_dir / f"{table}.parquet"]
    if files:
        have = set(pq.read_schema(files[0]).names)
    elif (data_dir / f"{table}.csv").exists():
        have = set(pd.read_csv(data_dir / f"{table}.csv", nrows=0, encoding="utf-8-sig").columns)
    else:
        return wanted  # load_tables raises the clear "table not found" error
    return [c for c in wanted if c in have]


def load_quality_data(data_dir: Path, period: Period) -> dict[str, pd.DataFrame]:
    """Load the canonical columns of the period's cases and evaluations.

    Full-table validation is skipped on purpose (only listed columns are read): duplicates and
    orphans are what quality looks for, and the schema would reject them before they are counted.
    """
    from .storage import load_tables

    data_dir = Path(data_dir)
    columns = {
        "cases": _present_columns(data_dir, "cases", CASE_COLUMNS),
        "evaluations": _present_columns(data_dir, "evaluations", EVALUATION_COLUMNS),
    }
    return load_tables(data_dir, period, tables=("cases", "evaluations"), columns=columns)


def add_lookback(
    data_dir: Path, period: Period, data: dict[str, pd.DataFrame]
) -> dict[str, pd.DataFrame] | None:
    """Add the previous period's cases that the period's evaluations name but the period lacks.

    Also adds those cases' earlier evaluations (for the first-evaluation rule). Returns ``None`` when
    the data folder has no earlier partition or none of the missing cases is found there.
    """
    from .storage import load_tables, partitions

    data_dir = Path(data_dir)
    previous = period.shifted("previous")
    if previous is None or not partitions(data_dir, "cases"):
        return None
    cases, evaluations = data["cases"], data["evaluations"]
    named = evaluations.loc[period.contains(evaluations["evaluated_at"]).to_numpy(dtype=bool), "case_id"]
    named = named[~_blank(named).to_numpy()]
    wanted = pd.Index(named[~_isin(named, cases["case_id"])].unique())
    if wanted.empty:
        return None
    extra_cols = {
        "cases": [c for c in LOOKBACK_CASE_COLUMNS if c in cases],
        "evaluations": [c for c in LOOKBACK_EVALUATION_COLUMNS if c in evaluations],
    }
    earlier = load_tables(data_dir, previous, tables=("cases", "evaluations"), columns=extra_cols)
    more_cases = earlier["cases"].loc[_isin(earlier["cases"]["case_id"], wanted)]
    more_cases = more_cases.loc[~_isin(more_cases["case_id"], cases["case_id"])]
    if more_cases.empty:
        return None
    more_evals = earlier["evaluations"].loc[_isin(earlier["evaluations"]["case_id"], more_cases["case_id"])]
    more_evals = more_evals.loc[~_isin(more_evals["eval_id"], evaluations["eval_id"])]
    # Earlier rows come first so that "first occurrence" means the earliest record.
    return {
        "cases": _stack(more_cases, cases, "cases"),
        "evaluations": _stack(more_evals, evaluations, "evaluations"),
    }


def _stack(earlier: pd.DataFrame, current: pd.DataFrame, table: str) -> pd.DataFrame:
    """Earlier rows (few columns) above the current ones, categoricals kept categorical."""
    if earlier.empty:
        return current
    earlier = earlier.copy()
    current = current.copy()
    for col, dtype in DTYPES[table].items():
        if dtype != "category" or col not in current:
            continue
        values = (
            earlier[col].astype("str")
            if col in earlier
            else pd.Series(pd.NA, index=earlier.index, dtype="str")
        )
        categories = _as_category(current[col]).cat.categories.union(pd.Index(values.dropna().unique()))
        current[col] = _as_category(current[col]).cat.set_categories(categories)
        earlier[col] = values.astype(pd.CategoricalDtype(categories))
    return pd.concat([earlier, current], ignore_index=True)


# --- charts (quality_charts) -------------------------------------------------------------------


def plot_timeliness_by_day(report: QualityReport, ax: Axes | None = None) -> Figure:
    """Line chart: share of records reported within the limit, per day, for cases and evaluations."""
    import matplotlib.pyplot as plt

    from .fonts import use_cjk_font

    use_cjk_font()
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.8))
    day = report.series["by_day"]
    for table, style in (("办件", "-"), ("评价", "--")):
        rows = day[day["table"] == table]
        ax.plot(rows["day"], rows["timely_rate"] * 100, style, label=f"{table}及时率", linewidth=1.4)
    ax.set_ylabel("及时率（%）")
    ax.set_title(f"{report.city}{report.period} 按日上报及时率（{_limit_cn(report.figures)}规则）")
    ax.set_ylim(
        bottom=max(0, min(90.0, float(np.nanmin(day["timely_rate"].to_numpy(dtype=float) * 100)) - 2))
        if len(day) and day["timely_rate"].notna().any()
        else 0,
        top=100.5,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.figure.autofmt_xdate()
    return ax.figure


def plot_linkage_by_system(report: QualityReport, ax: Axes | None = None) -> Figure:
    """Horizontal bars per source system: 质检通过率 and 关联度入库率 (all its records).

    The axis starts just below the lowest rate so that differences of a fraction of a percent show;
    each bar carries its rate as the tables print it.
    """
    import matplotlib.pyplot as plt

    from .fonts import use_cjk_font

    use_cjk_font()
    systems = report.series["by_system"]
    rows = systems[systems["table"] == "合计"].reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.7 * max(len(rows), 2) + 1.8))
    bars = (
        ("质检通过率", rows["passed"], rows["submitted"]),
        ("关联度入库率", rows["stored"], rows["passed"]),
    )
    values = [_ratio(num, den) * 100 for _, num, den in bars]
    lowest = float(np.nanmin([v.min() for v in values])) if len(rows) else 100.0
    floor = 0.0 if np.isnan(lowest) else max(0.0, np.floor(lowest) - 1)
    y = np.arange(len(rows))
    for k, ((label, num, den), share) in enumerate(zip(bars, values, strict=True)):
        offset = (k - 0.5) * 0.4
        ax.barh(y + offset, (share - floor).fillna(0), left=floor, height=0.38, label=label)
        for i in range(len(rows)):
            text = format_rate(num.iat[i], den.iat[i])
            ax.text(floor + (share.iat[i] - floor if pd.notna(share.iat[i]) else 0) + 0.02, y[i] + offset,
                    text, va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, rows["system"])
    ax.invert_yaxis()
    ax.set_xlim(floor, 100 + (100 - floor) * 0.12)
    ax.set_xlabel("%")
    ax.set_title(f"{report.city}{report.period} 各来源系统质检通过率与关联度入库率")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    ax.figure.tight_layout()
    return ax.figure


# --- command line ------------------------------------------------------------------------------


def default_paths(
    city: str, period: Period, data_dir: str | Path = "", out_dir: str | Path = ""
) -> tuple[Path, Path]:
    """Data and output folders, with the project defaults for empty values.

    An empty ``data_dir`` is the synthetic data folder of the city (``data/synthetic/<city>``); an
    empty ``out_dir`` is ``reports/<city>/<period>/quality``.
    """
    key = Path(str(city)).name
    data = Path(data_dir) if str(data_dir) else config.SYNTHETIC_DIR / key
    out = Path(out_dir) if str(out_dir) else config.REPORTS_DIR / key / period.label / "quality"
    return data, out


def run_from_folder(
    city: str,
    period: str,
    data_dir: str | Path = "",
    out_dir: str | Path = "",
    settings: QualitySettings = QualitySettings(),
) -> QualityReport:
    """Load a data folder, run every check and write the outputs (what ``haocha quality`` does).

    Args:
        city: a name under ``data/reference/`` or a reference folder.
        period: a period label (``2023Q2``, ``latest`` …).
        data_dir: canonical tables folder ("" = the city's synthetic data folder).
        out_dir: output folder ("" = ``reports/<city>/<period>/quality``).
        settings: thresholds.

    Returns:
        The report (its files are already written to ``out_dir``).
    """
    ref = load_city(city)
    stat_period = resolve_period(period)
    data_path, out_path = default_paths(city, stat_period, data_dir, out_dir)
    if not data_path.exists():
        raise HaochaInputError(
            "找不到数据目录",
            file=str(data_path),
            fix=f"先运行 haocha synth --city {city} --period {stat_period.label} --out {data_path}，"
            "或用 --data 指定规范表目录",
        )
    data = load_quality_data(data_path, stat_period)
    report = run_quality(ref, data, stat_period, settings)
    if settings.lookback and report.figures["orphan_evaluations"]:
        # Some evaluations name cases the period lacks: look for them in the previous period.
        widened = add_lookback(data_path, stat_period, data)
        if widened is not None:
            report = run_quality(ref, widened, stat_period, settings)
    write_outputs(report, out_path)
    return report


def overview_markdown(report: QualityReport) -> str:
    """The overview figures as a short Chinese paragraph (Markdown) for the notebook."""
    f = report.figures
    limit = _limit_cn(f)
    lines = [
        f"**{f['city']} {f['period']}（{f['period_start']} 至 {f['period_end']}）数据质检**",
        "",
        f"- 生产：办件 {f['produced']['cases']} 件、评价 {f['produced']['evaluations']} 条；"
        f"提交 {f['submitted']['total']}，质检通过 {f['passed']['total']}，关联入库 {f['stored']['total']}。",
        f"- 数据生产率 {f['rates']['production_rate']}，提交率 {f['rates']['submission_rate']}，"
        f"质检通过率 {f['rates']['quality_rate']}，关联度入库率 {f['rates']['storage_rate']}。",
        f"- {limit}及时率：办件 {f['timeliness_rate']['cases']}（超时 {f['late_reports']['cases']}），"
        f"评价 {f['timeliness_rate']['evaluations']}（超时 {f['late_reports']['evaluations']}）；"
        f"无上报时间 {f['missing_reported_at']['cases'] + f['missing_reported_at']['evaluations']}。",
        f"- 关联度：评价关联办件率 {f['evaluation_linkage_rate']}（孤立评价 {f['orphan_evaluations']}，"
        f"未填办件编号 {f['unlinked_evaluations']}），办件关联事项率 {f['case_matter_linkage_rate']}。",
        f"- 重复评价 {f['duplicate_evaluations']}，重复评价编号 {f['duplicate_eval_ids']}，"
        f"重复办件 {f['duplicate_cases']}，评价早于办结 {f['evals_before_case']}，"
        f"评价单位与办件单位不一致 {f['unit_conflicts']}。",
        "",
        f"通报用语：{f['sentence']}。",
    ]
    return "\n".join(lines)


def problem_units(report: QualityReport, limit: int = 50) -> pd.DataFrame:
    """Units with at least one failing record, most failures first (for the notebook)."""
    units = report.tables["by_unit"]
    failing = units[units["不通过记录数"] > 0]
    return (
        failing.sort_values("不通过记录数", ascending=False, kind="stable").head(limit).reset_index(drop=True)
    )


@click.command("quality")
@city_option
@period_option
@data_option
@out_option
@user_errors
def quality_command(city: str, period: str, data_dir: Path, out_dir: Path) -> None:
    """数据质检：关联度、5分钟及时性、完整性、重复与孤立记录，按来源系统、单位和日期输出。"""
    started = time.perf_counter()
    report = run_from_folder(city, period, data_dir, out_dir)
    figures = report.figures
    click.echo(
        f"{figures['city']} {figures['period']} 数据质检：生产 {figures['produced']['total']} 条，"
        f"提交 {figures['submitted']['total']}，质检通过 {figures['passed']['total']}，"
        f"关联入库 {figures['stored']['total']}。"
    )
    click.echo(figures["sentence"])
    click.echo(f"已写出质检表格到 {out_dir}（用时 {time.perf_counter() - started:.1f} 秒）")


COMMANDS = [quality_command]
