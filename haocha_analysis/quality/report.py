"""Aggregation of the record-level checks into the quality report: by source system, unit and day."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.linkage import link
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.schemas import DTYPES, REQUIRED
from haocha_analysis.core.text import format_ratio
from haocha_analysis.quality.checks import (
    _blank,
    _catalogue,
    _unit_attributes,
    check_cases,
    check_evaluations,
    record_stages,
)
from haocha_analysis.quality.settings import (
    ALL_CHECKS,
    BULLETIN_ALL_100,
    CHECK_DUPLICATE,
    CHECK_LABELS,
    CHECK_MATTER,
    CHECK_ORPHAN,
    CHECK_REQUIRED,
    CHECK_SEQUENCE,
    CHECK_TIMELINESS,
    COLUMN_LABELS,
    INVERTED,
    LATE,
    NO_SYSTEM,
    RATE_LABELS,
    TABLE_LABELS,
    TIMELY,
    UNKNOWN,
    UNKNOWN_UNIT,
    UNLINKED_SYSTEM,
    QualitySettings,
    _rate_column,
    _ratio,
    timeliness_base,
)

# --- aggregation -------------------------------------------------------------------------------


DIMENSIONS = ("", "system", "unit_id", "day")  # "": the totals


def _flags(records: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per record, every flag the counts add up (one boolean array each)."""
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
    return flags


def _counts(records: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Numeric counts of every flag, in total (``""``) and per group of each of :data:`DIMENSIONS`.

    The flags are read once. Records with the same flags share a pattern (a few hundred at most),
    so a dimension is one bincount of its (group, pattern) pairs times the patterns' flags, whatever
    the number of flags.
    """
    flags = _flags(records)
    names = list(flags)
    if len(names) > 64:
        raise ValueError("more than 64 quality flags: one pattern no longer fits 64 bits")
    packed = np.packbits(np.column_stack(list(flags.values())), axis=1, bitorder="little")
    words = np.zeros((len(records), 8), dtype=np.uint8)
    words[:, : packed.shape[1]] = packed
    pattern, patterns = pd.factorize(words.view("<u8").ravel())
    patterns = np.ascontiguousarray(patterns, dtype="<u8")
    pattern_flags = np.unpackbits(patterns.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    pattern_flags = pattern_flags[:, : len(names)].astype(np.int64)
    n_patterns = len(patterns)
    out = {}
    for dim in DIMENSIONS:
        if not dim:
            totals = np.bincount(pattern, minlength=n_patterns) @ pattern_flags
            out[dim] = pd.DataFrame([totals], columns=names, dtype="int64")
            continue
        column = records[dim]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes, labels = column.cat.codes.to_numpy(), pd.Index(column.cat.categories.astype("str"))
        else:
            codes, labels = pd.factorize(column, sort=True)
        present = codes >= 0
        pairs = codes[present].astype(np.int64) * n_patterns + pattern[present]
        per_group = np.bincount(pairs, minlength=len(labels) * n_patterns).reshape(len(labels), n_patterns)
        counts = pd.DataFrame(per_group @ pattern_flags, columns=names, dtype="int64")
        counts.insert(0, dim, labels)
        out[dim] = counts.loc[counts["produced"] > 0].reset_index(drop=True)
    return out


def _rates(counts: pd.DataFrame) -> pd.DataFrame:
    """Numeric rates beside the counts (NaN where the denominator is 0)."""
    out = counts.copy()
    out["production_rate"] = _ratio(out["complete"], out["produced"])
    out["submission_rate"] = _ratio(out["submitted"], out["produced"])
    out["quality_rate"] = _ratio(out["passed"], out["submitted"])
    out["storage_rate"] = _ratio(out["stored"], out["passed"])
    out["timely_rate"] = _ratio(out["timely"], timeliness_base(out["produced"], out["unknown"]))
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


def completeness_counts(frame: pd.DataFrame, table: str, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Filled (non-missing) records per canonical column of one table's records (additive).

    Empty or whitespace-only strings count as missing. Columns absent from the frame have 0 filled
    records (the source does not give them). ``rows``: a mask of the records counted (default all;
    the frame is not copied to select them).
    """
    if rows is None:
        rows = np.ones(len(frame), dtype=bool)
    return pd.DataFrame(
        {
            "column": list(DTYPES[table]),
            "records": int(rows.sum()),
            "filled": [
                int((rows & ~_blank(frame[c]).to_numpy(dtype=bool)).sum()) if c in frame else 0
                for c in DTYPES[table]
            ],
        }
    ).astype({"records": "int64", "filled": "int64"})


def completeness_table(counts: pd.DataFrame, table: str) -> pd.DataFrame:
    """The completeness table of one table's :func:`completeness_counts`: non-missing / records."""
    rows = []
    for col, records, filled in zip(counts["column"], counts["records"], counts["filled"], strict=True):
        records, filled = int(records), int(filled)
        rows.append(
            {
                "数据类型": TABLE_LABELS[table],
                "字段": col,
                "字段名称": COLUMN_LABELS.get(col, col),
                "是否必填": "是" if col in REQUIRED[table] else "否",
                "记录数": records,
                "非空数": filled,
                "缺失数": records - filled,
                "完整率": format_ratio(filled, records),
            }
        )
    return pd.DataFrame(rows)


def completeness(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Completeness per canonical column of one table's records: non-missing / records."""
    return completeness_table(completeness_counts(frame, table), table)


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
    out["及时率"] = _rate_column(
        counts["timely"], timeliness_base(counts["produced"], counts["unknown"])
    ).to_numpy()
    return out.reset_index(drop=True)


def _by_kind(counts: QualityCounts, dim: str) -> pd.DataFrame:
    parts = []
    for table in ("cases", "evaluations"):
        frame = counts.counts[table][dim].copy()
        frame.insert(0, "table", TABLE_LABELS[table])
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def _bulletin_figures(total: pd.Series) -> dict:
    return {
        "production_rate": format_ratio(total["complete"], total["produced"]),
        "submission_rate": format_ratio(total["submitted"], total["produced"]),
        "quality_rate": format_ratio(total["passed"], total["submitted"]),
        "storage_rate": format_ratio(total["stored"], total["passed"]),
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


@dataclass
class QualityCounts:
    """Records → counts: what the quality report is built from, additive over disjoint partitions.

    A partition holds whole linkage groups (a case with every evaluation naming it, every row of a
    repeated id), so the record-level checks give in it the flags they give on the whole window.

    Attributes:
        counts: ``<table>`` → ``<dimension>`` (``""`` total, ``system``, ``unit_id``, ``day``) →
            the flag counts of :func:`_counts` per key, sorted by key.
        systems: the source systems of the period's cases.
        completeness: ``<table>`` → :func:`completeness_counts` of the period's records.
        issues: the first ``max_issue_rows`` listed records of every (table, check), as the issues
            table shows them, with ``_table``, ``_check`` and ``_order`` (the record's place in the
            load order: the records' index).
    """

    counts: dict[str, dict[str, pd.DataFrame]]
    systems: set[str]
    completeness: dict[str, pd.DataFrame]
    issues: pd.DataFrame


def _check_input(data: dict[str, pd.DataFrame]) -> None:
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


def quality_counts(
    ref: CityReference,
    data: dict[str, pd.DataFrame],
    period: Period,
    settings: QualitySettings = QualitySettings(),
) -> QualityCounts:
    """Records → counts: every record-level check on canonical tables, counted by unit/system/day.

    Args:
        ref: the city's reference data (units; ``matters`` for the case-matter linkage).
        data: canonical ``cases`` and ``evaluations`` (extra earlier rows allowed: only records of
            the period are counted, earlier ones serve for linking and the first-evaluation rule);
            the whole window, or one partition of whole linkage groups.
        period: the statistical period.
        settings: thresholds (:class:`QualitySettings`).
    """
    _check_input(data)
    cases, evaluations = data["cases"], data["evaluations"]
    if "case_id" not in evaluations:  # optional in the contract: no evaluation names a case
        evaluations = evaluations.assign(case_id=pd.Series(pd.NA, index=evaluations.index, dtype="str"))
    # Completeness reads no linkage: counted on a second thread while the records are linked (its
    # work is in numpy and Arrow, which release the GIL).
    with ThreadPoolExecutor(1, thread_name_prefix="completeness") as pool:
        completeness = pool.submit(
            lambda: {
                "cases": completeness_counts(
                    cases, "cases", period.contains(cases["finished_at"]).to_numpy()
                ),
                "evaluations": completeness_counts(
                    evaluations, "evaluations", period.contains(evaluations["evaluated_at"]).to_numpy()
                ),
            }
        )
        links = link(cases, evaluations)
        records = {
            "cases": check_cases(cases, period, ref, settings, links),
            "evaluations": check_evaluations(evaluations, cases, period, settings, links),
        }
        counts = {table: _counts(frame) for table, frame in records.items()}
        return QualityCounts(
            counts=counts,
            systems={str(s) for s in records["cases"]["system"].unique() if s != NO_SYSTEM},
            completeness=completeness.result(),
            issues=_issue_hits(records["cases"], records["evaluations"], _unit_attributes(ref), settings),
        )


def combine_quality_counts(parts: list[QualityCounts], settings: QualitySettings) -> QualityCounts:
    """Sum the counts of disjoint partitions (the keys sorted); keep the first listed records."""
    counts: dict[str, dict[str, pd.DataFrame]] = {}
    for table in ("cases", "evaluations"):
        counts[table] = {}
        for dim in DIMENSIONS:
            frames = [p.counts[table][dim] for p in parts]
            if not dim:
                counts[table][dim] = pd.concat(frames).sum().to_frame().T.astype("int64")
                continue
            frames = [f for f in frames if len(f)] or frames[:1]
            both = pd.concat(frames, ignore_index=True)
            summed = both.groupby(dim, sort=True).sum().astype("int64").reset_index()
            counts[table][dim] = summed.loc[summed["produced"] > 0].reset_index(drop=True)
    completeness = {
        table: pd.concat([p.completeness[table] for p in parts])
        .groupby("column", sort=False)[["records", "filled"]]
        .sum()
        .reset_index()
        for table in ("cases", "evaluations")
    }
    hits = [p.issues for p in parts if len(p.issues)]
    issues = pd.concat(hits, ignore_index=True) if hits else parts[0].issues
    kept = []
    for _, group in issues.groupby(["_table", "_check"], sort=False):
        kept.append(group.sort_values("_order", kind="stable").head(settings.max_issue_rows))
    issues = pd.concat(kept, ignore_index=True) if kept else issues.iloc[:0]
    return QualityCounts(counts, set().union(*(p.systems for p in parts)), completeness, issues)


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
    counts = combine_quality_counts([quality_counts(ref, data, period, settings)], settings)
    return quality_report(ref, counts, period, settings)


def quality_report(
    ref: CityReference,
    counts: QualityCounts,
    period: Period,
    settings: QualitySettings = QualitySettings(),
) -> QualityReport:
    """Counts → report: the figures and tables of the quality report, whichever engine counted.

    Args:
        ref: the city's reference data.
        counts: :func:`combine_quality_counts` of the window's partitions.
        period: the statistical period.
        settings: thresholds (:class:`QualitySettings`).
    """
    units = _unit_attributes(ref)
    totals = {t: counts.counts[t][""].iloc[0] for t in ("cases", "evaluations")}
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
        "period_label": period.title_cn(),
        "period_start": str(period.start),
        "period_end": str(period.end),
        "produced": {**pair("produced"), "total": int(total["produced"])},
        "submitted": {**pair("submitted"), "total": int(total["submitted"])},
        "passed": {**pair("passed"), "total": int(total["passed"])},
        "stored": {**pair("stored"), "total": int(total["stored"])},
        "rates": _bulletin_figures(total),
        "rates_by_table": {t: _bulletin_figures(totals[t]) for t in totals},
        "timely": pair("timely"),
        "timeliness_rate": {
            t: format_ratio(totals[t]["timely"], timeliness_base(totals[t]["produced"], totals[t]["unknown"]))
            for t in totals
        },
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
        "evaluation_linkage_rate": format_ratio(
            totals["evaluations"]["linked"], totals["evaluations"]["produced"]
        ),
        "case_matter_linkage_rate": (
            format_ratio(
                totals["cases"]["produced"] - totals["cases"]["fail_matter"], totals["cases"]["produced"]
            )
            if catalogue is not None
            else "/"
        ),
        "systems": sorted(counts.systems),
        "definitions": record_stages(),
        "settings": settings.as_dict(),
    }
    figures["sentence"] = bulletin_sentence(figures)

    tables, series = _build_tables(counts, totals, units, figures, settings)
    tables["completeness"] = pd.concat(
        [completeness_table(counts.completeness[t], t) for t in ("cases", "evaluations")],
        ignore_index=True,
    )
    tables["issues"] = _issues_table(counts.issues, settings)
    return QualityReport(
        city=ref.city_name, period=period.label, figures=figures, tables=tables, series=series
    )


def _build_tables(
    counts: QualityCounts,
    totals: dict[str, pd.Series],
    units: pd.DataFrame,
    figures: dict,
    settings: QualitySettings,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    tables: dict[str, pd.DataFrame] = {}
    series: dict[str, pd.DataFrame] = {}

    # overview: one row per data type and a total row.
    overview = _by_kind(counts, "")
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
    by_system = _by_kind(counts, "system")
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
    unit_counts = _by_unit_counts(counts)
    tables["by_unit"], unit_numeric = _present_units(unit_counts, units)
    tables["worst_units"] = _worst_units(unit_numeric, settings)

    # by day.
    day = _by_kind(counts, "day")
    series["by_day"] = _rates(day)
    tables["by_day"] = _present_days(day)

    tables["checks"] = _checks_table(figures, totals, settings)
    return tables, series


def _by_unit_counts(counts: QualityCounts) -> pd.DataFrame:
    cases = counts.counts["cases"]["unit_id"].set_index("unit_id").add_prefix("c_")
    evals = counts.counts["evaluations"]["unit_id"].set_index("unit_id").add_prefix("e_")
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
            "办件及时率": _rate_column(
                numeric["c_timely"], timeliness_base(numeric["c_produced"], numeric["c_unknown"])
            ).to_numpy(),
            "办件事项未关联数": numeric["c_fail_matter"].to_numpy(),
            "评价生产数": numeric["e_produced"].to_numpy(),
            "评价超时数": numeric["e_late"].to_numpy(),
            "评价无上报时间数": numeric["e_unknown"].to_numpy(),
            "评价及时率": _rate_column(
                numeric["e_timely"], timeliness_base(numeric["e_produced"], numeric["e_unknown"])
            ).to_numpy(),
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
            "办件及时率": _rate_column(
                both["c_timely"], timeliness_base(both["c_produced"], both["c_unknown"])
            ).to_numpy(),
            "评价生产数": both["e_produced"].to_numpy(),
            "评价超时数": both["e_late"].to_numpy(),
            "评价无上报时间数": both["e_unknown"].to_numpy(),
            "评价及时率": _rate_column(
                both["e_timely"], timeliness_base(both["e_produced"], both["e_unknown"])
            ).to_numpy(),
            "重复记录数": (both["c_fail_duplicate"] + both["e_fail_duplicate"]).to_numpy(),
            "评价早于办结数": both["e_fail_sequence"].to_numpy(),
        }
    )


def _checks_table(figures: dict, totals: dict[str, pd.Series], settings: QualitySettings) -> pd.DataFrame:
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
    rows = []
    for table, check, rule, threshold in rules:
        total = totals[table]
        failed = int(total[f"fail_{check}"])
        unknown = int(total["unknown"]) if check == CHECK_TIMELINESS else 0
        checked = int(total["produced"]) if not (check == CHECK_MATTER and not catalogue) else 0
        if check == CHECK_ORPHAN:
            checked = int(total["has_case_id"])
        if check == CHECK_SEQUENCE:
            checked = int(total["linked"])
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
                "通过率": format_ratio(checked - failed, checked),
            }
        )
    conflicts = int(totals["evaluations"]["unit_conflict"])
    linked = int(totals["evaluations"]["linked"])
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
            "通过率": format_ratio(linked - conflicts, linked),
        }
    )
    return pd.DataFrame(rows)


ISSUE_COLUMNS = ["数据类型", "记录编号", "单位编码", "单位名称", "来源系统", "日期", "检查项", "说明"]


def _issue_hits(
    case_records: pd.DataFrame, eval_records: pd.DataFrame, units: pd.DataFrame, settings: QualitySettings
) -> pd.DataFrame:
    """The first ``max_issue_rows`` listed records of every (table, check), presented, with their order."""
    parts = []
    for table, records in (("cases", case_records), ("evaluations", eval_records)):
        checks = [*ALL_CHECKS, "unit_conflict"] if table == "evaluations" else list(ALL_CHECKS)
        for check in checks:
            column = check if check == "unit_conflict" else f"fail_{check}"
            listed = records[column].to_numpy(dtype=bool)
            if check == CHECK_TIMELINESS:  # not submitted: counted, not listed
                listed = listed & (records["timeliness"].to_numpy() != UNKNOWN)
            hit = records.iloc[np.flatnonzero(listed)[: settings.max_issue_rows]]
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
                        "_table": table,
                        "_check": check,
                        "_order": hit.index.to_numpy(dtype="int64"),
                    }
                )
            )
    if not parts:
        empty = pd.DataFrame(columns=ISSUE_COLUMNS)
        return empty.assign(_table=pd.Series(dtype="str"), _check="", _order=pd.Series(dtype="int64"))
    return pd.concat(parts, ignore_index=True)


def _issues_table(hits: pd.DataFrame, settings: QualitySettings) -> pd.DataFrame:
    """Record-level problem list (one row per record and failed check), capped, in check order."""
    parts, room = [], settings.max_issue_rows
    for table in ("cases", "evaluations"):
        checks = [*ALL_CHECKS, "unit_conflict"] if table == "evaluations" else list(ALL_CHECKS)
        for check in checks:
            hit = hits.loc[(hits["_table"] == table) & (hits["_check"] == check)]
            hit = hit.sort_values("_order", kind="stable").iloc[: max(room, 0)]
            room -= len(hit)
            if not hit.empty:
                parts.append(hit[ISSUE_COLUMNS])
    if not parts:
        return pd.DataFrame(columns=ISSUE_COLUMNS)
    return pd.concat(parts, ignore_index=True).head(settings.max_issue_rows)
