"""The shared per-unit statistics of one period that every detector reads (the detection context)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from haocha_analysis.analysis.anomalies.settings import DETECT_COLUMNS, HISTORY_COLUMNS, Settings
from haocha_analysis.core import config
from haocha_analysis.core.arrays import isin
from haocha_analysis.core.calendar import workday_calendar
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.linkage import link
from haocha_analysis.core.periods import Period, parse_period, period_label
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.schemas import DTYPES, ONSITE_CHANNELS
from haocha_analysis.core.settings import for_city as settings_for_city

# --- preparation -------------------------------------------------------------------------------


def _ensure(frame: pd.DataFrame | None, table: str, columns: list[str]) -> pd.DataFrame:
    """Keep the needed columns, adding missing optional ones as empty, with canonical dtypes."""
    if frame is None:
        frame = pd.DataFrame()
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    for col in columns:
        dtype = DTYPES[table][col]
        s = frame[col] if col in frame.columns else pd.Series(pd.NA, index=frame.index, dtype="object")
        if dtype.startswith("datetime64"):
            s = pd.to_datetime(s)
        elif dtype == "category":
            s = s.astype("str").astype("category") if not isinstance(s.dtype, pd.CategoricalDtype) else s
        elif dtype == "boolean":
            s = s.astype("boolean")
        elif dtype in ("int8",):
            s = pd.to_numeric(s).fillna(1 if col == "attempt" else 0).astype("int16")
        out[col] = s
    return out


def _unit_frame(ref: CityReference) -> pd.DataFrame:
    units = ref.units.copy()
    units["category"] = units["category"].fillna("")
    cat_sizes = units.groupby(["level", "category"])["unit_id"].transform("size")
    return units.set_index("unit_id")[["unit_name", "level", "district", "category", "order"]].assign(
        _cat_size=cat_sizes.to_numpy()
    )


@dataclass
class Context:
    """Everything the detectors share for one period, computed once."""

    ref: CityReference
    period: Period
    settings: Settings
    units: pd.DataFrame  # index unit_id: unit_name, level, district, category, order, peer_group
    cases: pd.DataFrame  # all loaded cases (for linking)
    evaluations: pd.DataFrame  # all loaded evaluations
    cases_in: pd.DataFrame  # finished in the period
    evals_in: pd.DataFrame  # made in the period
    first_in: pd.DataFrame  # attempt-1 evaluations made in the period
    stats: pd.DataFrame  # per unit counts
    history: dict[str, pd.DataFrame]  # label -> per unit counts of an earlier period (history_counts)
    history_note: str = ""  # what the unit's own history is (or that there is none), in Chinese
    cache: dict = field(default_factory=dict, repr=False)  # intermediate frames shared by detectors

    @property
    def previous_label(self) -> str:
        """Label of the period just before this one (the one a confirmed level shift shows in)."""
        previous = self.period.shifted("previous")
        return previous.label if previous else ""

    @property
    def year_label(self) -> str:
        """Label of the same period a year earlier (season), when it is a history period."""
        year = self.period.shifted("year")
        return year.label if year and year.label in self.history else ""


def _peer_groups(units: pd.DataFrame, min_units: int) -> pd.Series:
    """District departments are compared within their 附件3 category when it has enough units."""
    by_cat = (
        (units["level"] == "district_dept") & (units["category"] != "") & (units["_cat_size"] >= min_units)
    )
    return units["level"].where(~by_cat, units["level"] + "|" + units["category"])


def _count(series: pd.Series, index: pd.Index) -> pd.Series:
    counts = series.value_counts()
    counts.index = counts.index.astype("str")
    return counts.reindex(index, fill_value=0).astype("int64")


def _labels(series: pd.Series) -> np.ndarray:
    """Distinct non-missing labels of a (categorical or string) column."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.categories.astype("str").to_numpy()
    return series.dropna().astype("str").unique()


def _recode(series: pd.Series, dtype: pd.CategoricalDtype) -> pd.Series:
    """A unit column as the shared categorical (cheap when it is categorical already)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = series.cat.categories.astype("str")
        mapping = dtype.categories.get_indexer(cats)
        codes = series.cat.codes.to_numpy()
        return pd.Series(
            pd.Categorical.from_codes(np.where(codes >= 0, mapping[codes], -1), dtype=dtype),
            index=series.index,
        )
    return series.astype("str").astype(dtype)


def prepare(
    ref: CityReference,
    data: dict[str, pd.DataFrame],
    period: Period | str,
    history: dict[str, dict[str, pd.DataFrame]] | None = None,
    settings: Settings | None = None,
) -> Context:
    """Compute the shared per-unit statistics of one period (used by every detector)."""
    period = parse_period(period) if isinstance(period, str) else period
    if settings is None:  # the city's settings.yml, as the bulletin reads it
        settings = settings_for_city(Settings, ref.path, "anomalies")
    if "cases" not in data or "evaluations" not in data:
        raise HaochaInputError(
            "异常发现需要 cases 与 evaluations 两张规范表",
            fix="传入 {'cases': ..., 'evaluations': ...}（rectifications 可选），"
            "或先运行 haocha ingest/synth",
        )
    units = _unit_frame(ref)
    units["peer_group"] = _peer_groups(units, settings.peer_min_units)
    cases = _ensure(data["cases"], "cases", DETECT_COLUMNS["cases"])
    evaluations = _ensure(data["evaluations"], "evaluations", DETECT_COLUMNS["evaluations"])
    rect = _ensure(data.get("rectifications"), "rectifications", DETECT_COLUMNS["rectifications"])
    # Units seen in the data but missing from the reference are still reported (level unknown).
    seen = pd.Index(_labels(cases["unit_id"])).union(pd.Index(_labels(evaluations["unit_id"])))
    extra = seen.difference(units.index).dropna()
    if len(extra):
        add = pd.DataFrame(
            {
                "unit_name": extra,
                "level": "",
                "district": "",
                "category": "",
                "order": 10**6,
                "_cat_size": 0,
                "peer_group": "unknown",
            },
            index=extra,
        )
        units = pd.concat([units, add])
    unit_dtype = pd.CategoricalDtype(units.index.astype("str"))
    cases["unit_id"] = _recode(cases["unit_id"], unit_dtype)
    evaluations["unit_id"] = _recode(evaluations["unit_id"], unit_dtype)

    # The one linkage rule (core/linkage.py): the case's unit wins; duplicates counted nowhere.
    links = link(cases, evaluations)
    pos = links.case_pos
    linked = links.linked
    safe = np.where(linked, pos, 0)
    evaluations["cid"] = links.case_code
    evaluations["linked"] = linked
    evaluations["duplicate"] = links.duplicate
    evaluations["counted_first"] = links.linked_first | links.unlinked_first
    if len(cases):
        case_unit_codes = cases["unit_id"].cat.codes.to_numpy()
        own = evaluations["unit_id"].cat.codes.to_numpy()
        unit_codes = np.where(linked, case_unit_codes[safe], own)
        finished = np.where(
            linked, cases["finished_at"].to_numpy("datetime64[us]")[safe], np.datetime64("NaT")
        )
        case_reported = np.where(
            linked, cases["reported_at"].to_numpy("datetime64[us]")[safe], np.datetime64("NaT")
        )
    else:
        unit_codes = evaluations["unit_id"].cat.codes.to_numpy()
        finished = np.full(len(evaluations), np.datetime64("NaT"), dtype="datetime64[us]")
        case_reported = finished
    evaluations["unit_id"] = pd.Categorical.from_codes(unit_codes, dtype=unit_dtype)
    evaluations["case_finished"] = finished.astype("datetime64[us]")
    evaluations["case_reported"] = case_reported.astype("datetime64[us]")
    has_first = np.zeros(len(cases), dtype=bool)
    has_first[pos[links.linked_first]] = True
    cases["has_first"] = has_first
    cases = cases[~links.repeated_case]

    in_period = period.contains(cases["finished_at"]).to_numpy()
    cases_in = cases if in_period.all() else cases[in_period]
    in_period = period.contains(evaluations["evaluated_at"]).to_numpy()
    evals_in = evaluations if in_period.all() else evaluations[in_period].copy()  # no copy when all in it
    invalid_ids = rect.loc[rect["verdict"] == "invalid", "eval_id"]
    bad = evals_in["satisfaction"].isin(config.BAD_SATISFACTION)
    evals_in["bad"] = bad
    evals_in["invalid_bad"] = False
    if bad.any():
        evals_in.loc[bad, "invalid_bad"] = isin(evals_in.loc[bad, "eval_id"], invalid_ids)
    first_in = evals_in[evals_in["counted_first"]]

    idx = units.index
    stats = pd.DataFrame(index=idx)
    stats["n_cases"] = _count(cases_in["unit_id"], idx)
    stats["n_evals"] = _count(evals_in["unit_id"], idx)
    stats["n_first"] = _count(first_in["unit_id"], idx)
    # First evaluations naming a case (评价率's numerator; walk-in evaluations with no case left out).
    stats["n_named_first"] = _count(first_in.loc[(first_in["cid"] >= 0).to_numpy(), "unit_id"], idx)
    stats["n_cases_evaluated"] = _count(cases_in.loc[cases_in["has_first"], "unit_id"], idx)
    # Shares are taken over first evaluations of cases (the annex 1/2 definition of 主动评价率); the
    # on-site share over those the citizen made (a system default has no channel anyone chose).
    linked = first_in["linked"]
    citizen = first_in["channel"] != "system_default"
    onsite = isin(first_in["channel"], ONSITE_CHANNELS)
    first_unit = first_in["unit_id"]
    stats["n_citizen_linked"] = _count(first_unit[linked & citizen], idx)
    stats["n_onsite"] = _count(first_unit[linked & citizen & onsite], idx)
    known = first_in["active"].notna()
    stats["n_active_known"] = _count(first_unit[linked & known], idx)
    stats["n_active"] = _count(first_unit[linked & first_in["active"].fillna(False).astype(bool)], idx)
    stats["n_citizen_first"] = _count(first_unit[citizen], idx)
    stats["n_bad_citizen_first"] = _count(first_unit[citizen & first_in["bad"]], idx)
    stats["n_citizen"] = _count(evals_in.loc[evals_in["channel"] != "system_default", "unit_id"], idx)
    stats["n_bad"] = _count(evals_in.loc[evals_in["bad"], "unit_id"], idx)
    stats["n_invalid_bad"] = _count(evals_in.loc[evals_in["invalid_bad"], "unit_id"], idx)

    stats["workdays"] = working_days(period)
    hist = {
        label: history_counts(tables, hp, idx)
        for label, tables in (history or {}).items()
        if (hp := _earlier(label, period)) is not None
    }
    return Context(
        ref,
        period,
        settings,
        units,
        cases,
        evaluations,
        cases_in,
        evals_in,
        first_in,
        stats,
        hist,
        history_note(period, hist),
    )


def working_days(period: Period) -> int:
    """Official working days in a period (chinese-calendar: holidays out, 调休 days in)."""
    return int(workday_calendar(period.start, period.end).sum())


def _earlier(label: str, period: Period) -> Period | None:
    """The history period of a label, or None when it is not a parseable period before ``period``."""
    try:
        p = parse_period(label)
    except HaochaInputError:
        return None
    return p if p.end < period.start else None


def history_counts(tables: dict[str, pd.DataFrame], period: Period, index: pd.Index) -> pd.DataFrame:
    """Per-unit counts of an earlier period, from its own rows (no linkage: counts only).

    Columns: n_cases (cases finished in it), n_first (attempt-1 evaluations made in it), n_named (those
    naming a case: evaluations per case), n_citizen_named
    and n_onsite_named (attempt-1 evaluations naming a case, not system defaults, and those made on
    site: the on-site share's history), n_records (every row), n_events (cases and attempt-1
    evaluations naming no case), days, workdays.
    """
    ev = _ensure(tables.get("evaluations"), "evaluations", HISTORY_COLUMNS["evaluations"])
    cs = _ensure(tables.get("cases"), "cases", HISTORY_COLUMNS["cases"])
    ev = ev[period.contains(ev["evaluated_at"]).to_numpy()]
    cs = cs[period.contains(cs["finished_at"]).to_numpy()]
    unit = ev["unit_id"]
    first = (ev["attempt"] == 1).to_numpy()
    named = first & ev["case_id"].notna().to_numpy()  # blank ids are read as missing
    citizen = named & (ev["channel"] != "system_default").to_numpy()
    onsite = citizen & isin(ev["channel"], ONSITE_CHANNELS)
    h = pd.DataFrame(index=index)
    h["n_cases"] = _count(cs["unit_id"], index)
    h["n_first"] = _count(unit[first], index)
    h["n_named"] = _count(unit[named], index)
    h["n_citizen_named"] = _count(unit[citizen], index)
    h["n_onsite_named"] = _count(unit[onsite], index)
    h["n_records"] = h["n_cases"] + _count(unit, index)
    # Independent events: cases and evaluations naming no case (walk-ins); the zero-data expectation.
    h["n_events"] = h["n_cases"] + h["n_first"] - h["n_named"]
    h["days"] = period.days
    h["workdays"] = working_days(period)
    return h


def history_note(period: Period, history: dict[str, pd.DataFrame]) -> str:
    """One sentence on the history the findings were compared with (or that there was none)."""
    if not history:
        return (
            "无历史数据：数据中没有早于本期的记录，各单位只与同类单位比较，"
            "无法发现与本单位以往相比的变化（零数据、评价量、现场评价）"
        )
    labels = sorted(history, key=lambda label: parse_period(label).start)
    year = period.shifted("year")
    season = "，含去年同期" if year and year.label in history else "，不含去年同期（无法按季节比较）"
    return f"历史数据：{'、'.join(map(period_label, labels))} 共 {len(labels)} 期{season}"
