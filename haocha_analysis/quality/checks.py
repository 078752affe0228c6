"""Record-level quality checks: one row per case or evaluation of the period, a flag per check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from haocha_analysis.core.arrays import blank_strings, isin
from haocha_analysis.core.linkage import Linkage, link
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.rules import made_before_case, report_delay
from haocha_analysis.core.rules import timeliness_status as timeliness_status  # the one 5-minute rule
from haocha_analysis.core.schemas import LEVEL_LABELS, REQUIRED
from haocha_analysis.quality.settings import (
    NO_SYSTEM,
    TIMELY,
    UNLINKED_SYSTEM,
    QualitySettings,
)

# --- record-level checks -----------------------------------------------------------------------


def _blank(series: pd.Series) -> pd.Series:
    """Missing values, including empty or whitespace-only strings."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = series.cat.categories
        blank_categories = pd.Index(categories.astype("str").str.strip() == "")
        codes = series.cat.codes.to_numpy()
        if not len(categories):  # every value missing (indexing no category would fail)
            return pd.Series(codes < 0, index=series.index)
        blank = np.where(codes < 0, True, np.asarray(blank_categories, dtype=bool)[np.maximum(codes, 0)])
        return pd.Series(blank, index=series.index)
    if series.dtype == "str" or series.dtype == object:
        # On the strings as they are (no trimmed copy): empty, or whitespace only (Arrow's
        # utf8_is_space: every character Unicode whitespace, what strip() removes).
        text = pa.array(series.astype("str"), type=pa.large_string(), from_pandas=True)
        return pd.Series(blank_strings(text), index=series.index, dtype=bool)
    return series.isna().astype(bool)


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
    out["delay_s"] = report_delay(event_at, reported_at) / np.timedelta64(1, "s")  # NaN when missing
    out["timeliness"] = timeliness_status(
        event_at, reported_at, settings.report_delay_limit, settings.clock_skew_tolerance
    )
    out["submitted"] = reported_at.notna().to_numpy()
    out["fail_timeliness"] = out["timeliness"].to_numpy() != TIMELY


def _period_rows(frame: pd.DataFrame, mask: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The columns the checks read, for the rows of the period (no copy when every row is in it)."""
    columns = [c for c in dict.fromkeys(columns) if c in frame]
    return frame[columns] if mask.all() else frame.loc[mask, columns]


def check_cases(
    cases: pd.DataFrame,
    period: Period,
    ref: CityReference,
    settings: QualitySettings = QualitySettings(),
    links: Linkage | None = None,
) -> pd.DataFrame:
    """Record-level quality of the cases produced in the period (finished_at in the period).

    Returns:
        One row per case of the period, indexed like ``cases``, with ``record_id``, ``unit_id``,
        ``system``, ``day``, ``delay_s``, ``timeliness`` (codes of :func:`timeliness_status`) and
        booleans ``submitted``, ``fail_<check>`` for every check, ``matter_checked``, ``passed``,
        ``stored``.
    """
    # Duplicates are judged on every loaded case (a repeat may straddle the boundary), counted in P.
    if links is None:
        links = link(cases, cases.iloc[:0].assign(eval_id=pd.Series(dtype="str"), evaluated_at=pd.NaT))
    dup = links.repeated_case
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
        out["fail_matter"] = ~isin(codes, catalogue)
    else:
        out["fail_matter"] = False
    return _stages(out, settings)


def check_evaluations(
    evaluations: pd.DataFrame,
    cases: pd.DataFrame,
    period: Period,
    settings: QualitySettings = QualitySettings(),
    links: Linkage | None = None,
) -> pd.DataFrame:
    """Record-level quality of the evaluations produced in the period (evaluated_at in the period).

    Args:
        evaluations: canonical evaluations (the period's, plus earlier ones for the first-evaluation
            rule; only rows made in the period are returned).
        cases: canonical cases to link against (the loading window: the period and the one before).
        period: the statistical period.
        settings: thresholds.
        links: :func:`haocha_analysis.core.linkage.link` of ``cases`` and ``evaluations``, when
            already computed.

    Returns:
        One row per evaluation of the period with ``record_id``, ``unit_id`` (the linked case's unit
        wins, data contract §1), ``own_unit_id``, ``system`` (the linked case's source system),
        ``day``, ``delay_s``, ``timeliness``, ``has_case_id``, ``linked``, ``unit_conflict`` and the
        booleans of :func:`check_cases`. Duplicates are flagged in ``dup_id`` (same eval_id) and
        ``dup_attempt`` (same case evaluated twice as attempt 1); ``fail_duplicate`` is their union.
    """
    if links is None:
        links = link(cases, evaluations)
    dup_id = links.repeated_eval
    dup_attempt = links.duplicate_attempt
    in_period = period.contains(evaluations["evaluated_at"]).to_numpy(dtype=bool)
    wanted = [*REQUIRED["evaluations"], "eval_id", "unit_id", "evaluated_at", "reported_at"]
    frame = _period_rows(evaluations, in_period, wanted)

    # Link to cases (the one rule: the first row of each case_id is the case).
    position = links.case_pos[in_period]
    linked = position >= 0
    safe = np.where(linked, position, 0)
    has_case_id = links.has_case_id[in_period]

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
        before = made_before_case(frame["evaluated_at"], finished, settings.timing)
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
