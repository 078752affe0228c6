"""Anomaly detection (异常发现): detectors over the canonical tables, one ranked findings table.

Every detector takes the canonical frames of one period (and, where it compares with the past, the
frames of earlier periods) and returns findings: one row per (unit, kind) with the measure, the
threshold it crossed, the value expected from peers or history, a severity in [0, 1] and the ids of
up to ``Settings.evidence_max`` example records. Every threshold is a field of :class:`Settings`
whose metadata says the rule or statistic it comes from (``settings_table()`` lists them).

Unit-level statistics use the same counting rules as the metrics (docs/data-contract.md §4): cases
finished in the period, evaluations made in the period, first evaluation = attempt 1, 差评 =
satisfaction 1–2, invalid 差评 = verdict ``invalid`` in rectifications.

Severity is a number in [0, 1] (1 = most serious); each detector documents how it derives it
(docs/anomalies.md). Findings are sorted by severity, then kind, then the unit's official order.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path

import click
import numpy as np
import pandas as pd

from . import config
from .cli import city_option, data_option, out_option, period_option, user_errors
from .errors import HaochaInputError
from .metrics import CASE_COLUMNS, EVALUATION_COLUMNS
from .periods import Period, parse_period, resolve_period
from .reference import CityReference
from .schemas import DTYPES, LEVEL_LABELS, ONSITE_CHANNELS
from .spreadsheet import MEASURE_FORMAT, PLAIN_INTEGER_FORMAT, SheetSpec, neutralise_frame, write_workbook

# --- kinds -------------------------------------------------------------------------------------

KINDS: dict[str, str] = {
    "zero_data": "零数据",
    "low_volume": "评价数据量过低",
    "low_onsite": "现场评价量较少",
    "low_active": "主动评价率偏低",
    "backfill": "事后补录",
    "late_aggregation": "办件归集不及时",
    "duplicates": "重复评价",
    "staff_reentry": "工作人员代评（二次录入）",
    "eval_before_case": "评价早于办结",
    "too_perfect": "评价结果过于完美",
    "high_invalid_bad": "无效差评偏多",
}

# Weight of each kind in the severity (severity = weight × the detector's own strength in [0, 1]).
# Records that are not what they claim to be (entered by staff, backfilled, dated before the case)
# weigh most: they falsify the evaluation itself; missing, late or duplicated data next; shares
# that are low (on-site, active) or high (invalid 差评) point at practice rather than at the record.
KIND_WEIGHTS: dict[str, float] = {
    "staff_reentry": 1.0,
    "backfill": 1.0,
    "eval_before_case": 0.9,
    "too_perfect": 0.8,
    "zero_data": 0.8,
    "late_aggregation": 0.8,
    "duplicates": 0.7,
    "low_volume": 0.7,
    "low_onsite": 0.6,
    "low_active": 0.6,
    "high_invalid_bad": 0.6,
}

FINDING_COLUMNS = [
    "unit_id",
    "unit_name",
    "level",
    "district",
    "kind",
    "kind_cn",
    "measure",
    "threshold",
    "expected",
    "severity",
    "evidence",
    "description",
    "measure_cn",
    "records",
]

# Chinese headers for the CSV/XLSX a user opens.
FINDING_HEADERS_CN = {
    "rank": "序号",
    "unit_id": "单位编码",
    "unit_name": "单位",
    "level": "层级",
    "district": "区县",
    "kind": "异常类型代码",
    "kind_cn": "异常类型",
    "measure": "测量值",
    "threshold": "阈值",
    "expected": "期望值",
    "severity": "严重程度(0-1)",
    "evidence": "示例记录编号",
    "description": "说明",
    "measure_cn": "测量指标",
    "records": "涉及记录数",
}

# Columns the detectors read (storage.load_tables(columns=...) reads only these).
DETECT_COLUMNS: dict[str, list[str]] = {
    "cases": [*CASE_COLUMNS, "reported_at"],
    "evaluations": [*EVALUATION_COLUMNS, "evaluator_key", "operator", "comment"],
    "rectifications": ["eval_id", "verdict"],
}
HISTORY_COLUMNS: dict[str, list[str]] = {
    "cases": ["case_id", "unit_id", "finished_at"],
    "evaluations": ["eval_id", "unit_id", "evaluated_at", "attempt"],
}


def _s(value: object, rationale: str) -> object:
    return field(default=value, metadata={"rationale": rationale})


@dataclass(frozen=True)
class Settings:
    """Every threshold of the detectors, each with the rule or statistic it comes from."""

    evidence_max: int = _s(10, "每条发现列出的示例记录数上限（便于核查，不撑大表格）")
    robust_z: float = _s(
        3.5,
        "稳健 z 分数阈值：(x−中位数)/(1.4826·MAD)，Iglewicz–Hoaglin 建议以 3.5 判定离群",
    )
    alpha: float = _s(
        1e-4,
        "显著性：Chernoff 界给出的二项/泊松尾概率上界低于此值才判定，避免小样本的偶然波动",
    )
    peer_min_units: int = _s(5, "同类单位（同层级同类别）少于 5 个时改用整个层级作比较，中位数才稳定")
    min_first_evaluations: int = _s(30, "计算占比至少需要 30 条首次评价（常用的大样本下限）")
    # zero_data
    zero_data_peer_coverage: float = _s(
        0.5,
        "零数据：同层级至少一半单位本期有记录时，无记录的单位才算异常（某层级本无数据时不报）",
    )
    # low_volume
    low_volume_min_cases: int = _s(30, "评价/办件比：单位本期办件至少 30 件才比较")
    low_volume_ratio_factor: float = _s(0.5, "评价/办件比低于同类中位数的一半（且稳健 z 超限）为过低")
    low_volume_peer_factor: float = _s(
        0.1,
        "评价量低于同类单位中位数的 1/10（对数尺度稳健 z 超限）为过低",
    )
    low_volume_peer_min_median: float = _s(100.0, "同类单位评价量中位数至少 100 件时才按同类比较评价量")
    low_volume_history_factor: float = _s(0.5, "日均评价量不足本单位历史各期日均中位数的一半为过低")
    low_volume_history_min_expected: float = _s(
        10.0,
        "按历史推算本期应有至少 10 件评价时才与历史比较"
        "（更小的单位无从判断；偶然波动由泊松 Chernoff 界排除）",
    )
    low_volume_history_min_periods: int = _s(2, "至少有 2 个历史统计期才与本单位历史比较")
    # low_onsite / low_active
    low_share_factor: float = _s(
        0.5, "占比低于同类中位数的一半、且对数占比的稳健 z 低于 −3.5（占比的差异是倍数关系）为偏低"
    )
    log_share_sigma_floor: float = _s(
        0.1,
        "对数占比离散度的下限（约 10% 的相对差异）：同类单位占比完全一致时 MAD 为 0，"
        "避免任何微小差异都算离群",
    )
    low_onsite_peer_min: float = _s(
        0.2,
        "只有同类单位现场评价占比中位数不低于 20%（同类单位在现场评价）时才检查现场评价",
    )
    low_active_alpha: float = _s(
        0.01,
        "主动评价率须“有把握地”低于阈值：P(X≤k | n, 5%) 的 Chernoff 上界低于 1%，小单位的偶然偏低不报",
    )
    low_active_max_share: float = _s(
        0.05,
        "主动评价率低于 5%（二十件评价中不到一件由群众主动作出）即评价基本由系统默认生成；"
        "各区县主动评价率差别本就很大（附件1 为 0.05%–88%），故用绝对阈值而不与同类比较",
    )
    # backfill
    supplementary_working_days: int = _s(
        config.SUPPLEMENTARY_EVALUATION_WORKING_DAYS,
        "山东规定办结后 5 个工作日内可补充评价"
        "（config.SUPPLEMENTARY_EVALUATION_WORKING_DAYS），超出即事后补录嫌疑",
    )
    burst_gap_seconds: float = _s(
        30.0,
        "相邻评价间隔不超过 30 秒视为“时间戳几乎相同”（逐张录入纸质评价的节奏；"
        "繁忙单位的正常密集到达由下面的泊松门槛排除）",
    )
    burst_min_size: int = _s(10, "工作时间内连续至少 10 条几乎同时的评价才算批量录入")
    burst_min_size_after_hours: int = _s(
        5, "工作时间以外（大厅已关闭）连续至少 5 条几乎同时的评价即算批量录入"
    )
    burst_false_alarm: float = _s(
        0.01,
        "按单位评价到达率（泊松过程，高峰按 3 倍计）推算的偶然成批期望数上限，据此提高大单位的成批门槛",
    )
    burst_peak_factor: float = _s(3.0, "高峰时段到达率约为平均到达率的 3 倍")
    backfill_min_records: int = _s(
        5,
        "事后补录：至少 5 条可疑评价才报单位（零星迟评多为群众自行补评；显著性由 Chernoff 界与泊松门槛把关）",
    )
    backfill_min_share: float = _s(
        0.005, "超期评价占单位首次评价的比例至少 0.5% 才报（大单位的零星长尾不报）"
    )
    backfill_baseline_factor: float = _s(
        3.0, "超期评价占比至少为同层级合计占比的 3 倍（群众自行迟评的长尾各单位都有）"
    )
    backfill_full_share: float = _s(0.2, "可疑评价占比达到 20% 时严重程度取满分")
    # late_aggregation
    late_report_limit: timedelta = _s(  # noqa: RUF009
        config.REPORT_DELAY_LIMIT,
        "省级 5 分钟规则（config.REPORT_DELAY_LIMIT）：办结后超过 5 分钟才归集即为超时",
    )
    late_min_cases: int = _s(10, "办件归集：至少 10 件超时才报单位")
    late_min_share: float = _s(0.05, "超时办件占比至少 5% 才报")
    late_baseline_factor: float = _s(3.0, "超时占比至少为全市基线的 3 倍")
    # duplicates
    duplicates_min: int = _s(
        3, "重复评价：同一办件多条首次评价或内容完全相同的评价，单位至少 3 起才报（1–2 起多为传输重发）"
    )
    # staff_reentry
    reentry_min_cases: int = _s(
        20,
        "同一评价人标识在一个单位一个统计期内评价至少 20 件不同办件（群众个人极少如此）视为工作人员代评",
    )
    reentry_min_cases_one_operator: int = _s(
        5, "同一评价人至少 5 件办件全部由同一经办人录入，且随机落到同一经办人的概率很小，也视为代评"
    )
    reentry_alpha: float = _s(
        0.01, "k 件办件随机都落到同一经办人的概率 n_ops^(1−k) 低于 1% 才判定（单位经办人越少要求越多件）"
    )
    # eval_before_case
    before_case_tolerance: timedelta = _s(  # noqa: RUF009
        timedelta(minutes=1), "评价时间早于办结时间超过 1 分钟（容许系统时钟误差）"
    )
    before_case_min: int = _s(3, "评价早于办结：单位至少 3 条才报")
    # too_perfect
    too_perfect_baseline_quantile: float = _s(
        0.25, "基线差评率取同层级单位差评率的下四分位数（单位之间本有差异，取偏低而常见的水平，判定更保守）"
    )
    too_perfect_min_expected: float = _s(
        5.0, "计算基线的单位按全层级差评率至少应有 5 件差评（否则其差评率全是 0 或噪声）"
    )
    too_perfect_alpha: float = _s(1e-3, "无差评的概率 P(0|n,p)=(1−p)^n 低于 0.1% 判定为过于完美")
    # high_invalid_bad
    invalid_min: int = _s(5, "无效差评：单位至少 5 条才报")
    invalid_factor: float = _s(3.0, "无效差评率至少为同层级基线的 3 倍")
    invalid_peer_max_unit_share: float = _s(
        0.5,
        "同层级合计比率中单个单位的评价超过一半时，该比率主要是这个单位自己的（参考通报中张店区税务局即占"
        "市直部门办件的一半以上；它若无差评，其他部门都会显得偏多），改用全市合计比率作基线",
    )

    def table(self) -> pd.DataFrame:
        """The settings as a table: 参数, 取值, 依据."""
        rows = [
            {"参数": f.name, "取值": getattr(self, f.name), "依据": f.metadata.get("rationale", "")}
            for f in fields(self)
        ]
        return pd.DataFrame(rows)


def settings_table(settings: Settings | None = None) -> pd.DataFrame:
    """Every setting with its value and rationale (for the notebook and docs)."""
    return (settings or Settings()).table()


# --- working days ------------------------------------------------------------------------------


def _is_workday(day: date) -> bool:
    import chinese_calendar

    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        # chinese_calendar covers 2004..(current year); outside it, Monday–Friday.
        return day.weekday() < 5


def workday_calendar(first: date, last: date) -> pd.Series:
    """Boolean Series indexed by every date from first to last: True on working days (调休 included)."""
    days = pd.date_range(first, last, freq="D")
    return pd.Series([_is_workday(d.date()) for d in days], index=days)


def working_days_between(start: pd.Series, end: pd.Series) -> pd.Series:
    """Working days from ``start``'s date to ``end``'s date: workdays in (start date, end date].

    An evaluation on the 5th working day after the case finished gives 5. Missing timestamps give
    <NA>; an end before the start gives a negative count.
    """
    s = pd.to_datetime(start).to_numpy("datetime64[D]")
    e = pd.to_datetime(end).to_numpy("datetime64[D]")
    ok = ~(np.isnat(s) | np.isnat(e))
    out = pd.Series(pd.NA, index=start.index, dtype="Int64")
    if not ok.any():
        return out
    lo = min(s[ok].min(), e[ok].min())
    hi = max(s[ok].max(), e[ok].max())
    cal = workday_calendar(pd.Timestamp(lo).date(), pd.Timestamp(hi).date())
    cum = np.cumsum(cal.to_numpy().astype(np.int64))
    si = (s[ok] - lo).astype(np.int64)
    ei = (e[ok] - lo).astype(np.int64)
    out[ok] = cum[ei] - cum[si]
    return out


def after_hours(ts: pd.Series) -> pd.Series:
    """True where a timestamp falls outside working hours or on a non-working day."""
    t = pd.to_datetime(ts)
    hour = t.dt.hour + t.dt.minute / 60
    outside = (hour < config.WORKDAY_START_HOUR) | (hour >= config.WORKDAY_END_HOUR)
    days = t.dt.normalize()
    if t.notna().any():
        cal = workday_calendar(days.min().date(), days.max().date())
        work = days.map(cal).astype("boolean").fillna(True)
    else:
        work = pd.Series(True, index=t.index)
    return (outside | ~work.astype(bool)).fillna(False).astype(bool)


# --- statistics helpers ------------------------------------------------------------------------


def _kl(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Bernoulli KL divergence KL(q || p), elementwise, safe at 0 and 1."""
    q = np.clip(q, 1e-12, 1 - 1e-12)
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))


def binomial_tail_bound(k: np.ndarray, n: np.ndarray, p: np.ndarray, lower: bool) -> np.ndarray:
    """Chernoff–Hoeffding bound on P(X ≤ k) (lower) or P(X ≥ k) (upper), X ~ Binomial(n, p).

    exp(−n·KL(k/n ‖ p)) when k/n is on the tail's side of p, else 1. An upper bound of the exact
    probability, so a finding it supports is at least as significant as stated.
    """
    k, n, p = (np.asarray(x, dtype=float) for x in (k, n, p))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(n > 0, k / np.where(n > 0, n, 1), 0.0)
        bound = np.exp(-n * _kl(q, p))
    side = q < p if lower else q > p
    return np.where(side & (n > 0), bound, 1.0)


def poisson_lower_bound(k: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Chernoff bound on P(X ≤ k), X ~ Poisson(mu): exp(−mu + k − k·ln(k/mu)) for k < mu, else 1."""
    k, mu = np.asarray(k, dtype=float), np.asarray(mu, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        klog = np.where(k > 0, k * np.log(np.where(k > 0, k, 1) / np.where(mu > 0, mu, 1)), 0.0)
        bound = np.exp(-mu + k - klog)
    return np.where((k < mu) & (mu > 0), bound, 1.0)


def robust_center(values: pd.Series) -> tuple[float, float]:
    """Median and scaled MAD (1.4826·MAD, the normal-consistent σ estimate) of a Series."""
    v = pd.Series(values, dtype=float).dropna()
    if v.empty:
        return math.nan, math.nan
    med = float(v.median())
    return med, float(1.4826 * (v - med).abs().median())


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
    history: dict[str, pd.DataFrame]  # label -> per unit (n_first, days)


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


def _isin(values: pd.Series, members: pd.Series | pd.Index | list) -> pd.Series:
    """``values.isin(members)`` for large string columns, through pyarrow's hash set.

    (pandas' own isin on Arrow strings converts ``members`` one Python scalar at a time.)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    members = members if isinstance(members, pd.Series | pd.Index) else pd.Series(list(members), dtype="str")
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = pd.Series(values.cat.categories)
        hit = _isin(cats.astype("str"), members).to_numpy()
        codes = values.cat.codes.to_numpy()
        return pd.Series(np.where(codes >= 0, hit[codes], False), index=values.index)
    left = pa.array(values.astype("str"), from_pandas=True)
    right = pa.array(pd.Series(members).dropna().astype("str").unique(), from_pandas=True).cast(left.type)
    found = pc.is_in(left, value_set=right, skip_nulls=True).fill_null(False)
    return pd.Series(found.to_numpy(zero_copy_only=False), index=values.index)


def prepare(
    ref: CityReference,
    data: dict[str, pd.DataFrame],
    period: Period | str,
    history: dict[str, dict[str, pd.DataFrame]] | None = None,
    settings: Settings | None = None,
) -> Context:
    """Compute the shared per-unit statistics of one period (used by every detector)."""
    period = parse_period(period) if isinstance(period, str) else period
    settings = settings or Settings()
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

    # Case ids become integer codes once (one hashing pass); every later join is an array lookup.
    codes, uniques = pd.factorize(pd.concat([cases["case_id"], evaluations["case_id"]], ignore_index=True))
    cases["cid"] = codes[: len(cases)]
    evaluations["cid"] = codes[len(cases) :]
    n_ids = len(uniques)
    first_case = cases.drop_duplicates("cid")
    case_unit = np.full(n_ids + 1, -1, dtype=np.int64)  # index -1 (no case id) stays -1
    case_unit[first_case["cid"].to_numpy()] = first_case["unit_id"].cat.codes.to_numpy()
    case_finished = np.full(n_ids + 1, np.datetime64("NaT"), dtype="datetime64[us]")
    case_finished[first_case["cid"].to_numpy()] = first_case["finished_at"].to_numpy("datetime64[us]")
    ecid = evaluations["cid"].to_numpy()
    linked_unit = case_unit[ecid]
    evaluations["linked"] = linked_unit >= 0
    # A linked evaluation belongs to its case's unit (data contract: the case wins on conflict).
    unit_codes = np.where(linked_unit >= 0, linked_unit, evaluations["unit_id"].cat.codes.to_numpy())
    evaluations["unit_id"] = pd.Categorical.from_codes(unit_codes, dtype=unit_dtype)
    evaluations["case_finished"] = case_finished[ecid]
    has_first = np.zeros(n_ids + 1, dtype=bool)
    has_first[ecid[(evaluations["attempt"].to_numpy() == 1) & (ecid >= 0)]] = True
    cases["has_first"] = has_first[cases["cid"].to_numpy()]

    cases_in = cases[period.contains(cases["finished_at"])]
    evals_in = evaluations[period.contains(evaluations["evaluated_at"])].copy()
    invalid_ids = rect.loc[rect["verdict"] == "invalid", "eval_id"]
    bad = evals_in["satisfaction"].isin(config.BAD_SATISFACTION)
    evals_in["bad"] = bad
    evals_in["invalid_bad"] = False
    if bad.any():
        evals_in.loc[bad, "invalid_bad"] = _isin(evals_in.loc[bad, "eval_id"], invalid_ids).to_numpy()
    first_in = evals_in[evals_in["attempt"] == 1]

    idx = units.index
    stats = pd.DataFrame(index=idx)
    stats["n_cases"] = _count(cases_in["unit_id"], idx)
    stats["n_evals"] = _count(evals_in["unit_id"], idx)
    stats["n_first"] = _count(first_in["unit_id"], idx)
    stats["n_cases_evaluated"] = _count(cases_in.loc[cases_in["has_first"], "unit_id"], idx)
    # Shares are taken over first evaluations of cases (the annex 1/2 definition of 主动评价率); the
    # on-site share over those the citizen made (a system default has no channel anyone chose).
    linked = first_in["linked"]
    citizen = first_in["channel"] != "system_default"
    onsite = _isin(first_in["channel"], ONSITE_CHANNELS)
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

    hist: dict[str, pd.DataFrame] = {}
    for label, tables in (history or {}).items():
        try:
            hp = parse_period(label)
        except HaochaInputError:
            continue
        if hp.start >= period.start:
            continue  # only earlier periods are history
        he = _ensure(tables.get("evaluations"), "evaluations", HISTORY_COLUMNS["evaluations"])
        hc = _ensure(tables.get("cases"), "cases", HISTORY_COLUMNS["cases"])
        he = he[hp.contains(he["evaluated_at"])]
        hc = hc[hp.contains(hc["finished_at"])]
        h = pd.DataFrame(index=idx)
        h["n_first"] = _count(he.loc[he["attempt"] == 1, "unit_id"], idx)
        h["n_records"] = (
            h["n_first"] + _count(hc["unit_id"], idx) + _count(he.loc[he["attempt"] != 1, "unit_id"], idx)
        )
        h["days"] = hp.days
        hist[label] = h
    return Context(
        ref, period, settings, units, cases, evaluations, cases_in, evals_in, first_in, stats, hist
    )


# --- findings ----------------------------------------------------------------------------------


def _fmt_pct(x: float) -> str:
    return "/" if x is None or not np.isfinite(x) else f"{x:.1%}"


def _evidence(ids: pd.Series, n: int) -> str:
    return ";".join(map(str, ids.dropna().astype("str").head(n)))


def _evidence_by_unit(
    frame: pd.DataFrame, id_col: str, n: int, sort: str | None = None, ascending: bool = False
):
    """unit_id -> 'id1;id2;…' (the first n ids per unit, optionally by a sort column)."""
    if frame.empty:
        return {}
    f = frame.sort_values(sort, ascending=ascending, kind="stable") if sort else frame
    head = f.groupby(f["unit_id"].astype("str"), observed=True, sort=False).head(n)
    return (
        head.groupby(head["unit_id"].astype("str"), observed=True)[id_col]
        .agg(lambda s: ";".join(s.astype("str")))
        .to_dict()
    )


def _plain_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values, counts kept as int (for the Chinese descriptions)."""
    rows = frame.to_dict("records")
    for row in rows:
        for key, value in row.items():
            if (
                isinstance(value, float)
                and value.is_integer()
                and key in ("records", "k", "n", "n_cases", "late", "burst", "keys", "bad", "long")
            ):
                row[key] = int(value)
    return rows


def _rows(
    ctx: Context,
    kind: str,
    flagged: pd.DataFrame,
    measure_cn: str,
    describe,
    evidence: dict | None = None,
) -> pd.DataFrame:
    """Finding rows from a per-unit frame (columns measure, threshold, expected, severity, records)."""
    if flagged.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    u = ctx.units.loc[flagged.index]
    out = pd.DataFrame(
        {
            "unit_id": flagged.index.astype("str"),
            "unit_name": u["unit_name"].to_numpy(),
            "level": u["level"].to_numpy(),
            "district": u["district"].fillna("").to_numpy(),
            "kind": kind,
            "kind_cn": KINDS[kind],
            "measure": flagged["measure"].astype(float).to_numpy(),
            "threshold": flagged["threshold"].astype(float).to_numpy(),
            "expected": flagged["expected"].astype(float).to_numpy(),
            "severity": flagged["severity"].astype(float).clip(0, 1).round(3).to_numpy(),
            "evidence": [(evidence or {}).get(uid, "") for uid in flagged.index.astype("str")],
            "description": [
                f"{name}：{describe(row)}"
                for name, row in zip(u["unit_name"], _plain_rows(flagged), strict=True)
            ],
            "measure_cn": measure_cn,
            "records": flagged["records"].astype("int64").to_numpy(),
        }
    )
    return out


def _peer_stats(ctx: Context, share: pd.Series, eligible: pd.Series) -> pd.DataFrame:
    """Per unit: the median and scaled MAD of the share over eligible units of its peer group."""
    groups = ctx.units["peer_group"]
    frame = pd.DataFrame({"share": share.where(eligible), "group": groups})
    med = frame.groupby("group")["share"].median()
    mad = frame.assign(dev=(frame["share"] - frame["group"].map(med)).abs()).groupby("group")["dev"].median()
    return pd.DataFrame({"median": groups.map(med), "sigma": 1.4826 * groups.map(mad)}, index=share.index)


def _low_share(ctx: Context, k: pd.Series, n: pd.Series, peer_min: float) -> pd.DataFrame:
    """Units whose share k/n is far below their peers'.

    Shares vary multiplicatively between units, so the comparison is on the log scale: the robust z
    of log((k + ½)/(n + 1)) against the peer group's median and scaled MAD must be below −robust_z;
    the share must also be below ``low_share_factor`` × the peer median and pass a Chernoff bound.
    """
    s = ctx.settings
    eligible = n >= s.min_first_evaluations
    share = (k / n.where(n > 0)).astype(float)
    log_share = np.log((k + 0.5) / (n + 1)).where(eligible)
    peers = _peer_stats(ctx, share, eligible)
    log_peers = _peer_stats(ctx, log_share, eligible)
    med = peers["median"]
    sigma = log_peers["sigma"].clip(lower=s.log_share_sigma_floor)
    z = (log_share - log_peers["median"]) / sigma
    threshold = np.minimum(med * s.low_share_factor, np.exp(log_peers["median"] - s.robust_z * sigma))
    p = binomial_tail_bound(k, n, med.fillna(0).clip(0, 1), lower=True)
    flag = (
        eligible & (med >= peer_min) & (share < med * s.low_share_factor) & (z < -s.robust_z) & (p < s.alpha)
    )
    out = pd.DataFrame(
        {
            "measure": share,
            "threshold": threshold,
            "expected": med,
            "severity": 1 - share / med.where(med > 0),
            "records": n,
            "k": k,
            "p": p,
        }
    )
    return out[flag.fillna(False)]


def detect_zero_data(ctx: Context) -> pd.DataFrame:
    """零数据: reference units with no case finished and no evaluation made in the period.

    With history: reported when the unit had records in an earlier period (a unit that never had
    any is dormant, not a change). Without history: reported when at least
    ``zero_data_peer_coverage`` of the unit's level has records (a level that never carries records,
    such as aggregate district rows, is not a finding). Severity 0.9 when it had records in
    history, else 0.6.
    """
    s = ctx.settings
    st = ctx.stats
    records = st["n_cases"] + st["n_evals"]
    units = ctx.units
    has = records > 0
    coverage = has.groupby(units["level"]).mean()
    level_cov = units["level"].map(coverage)
    hist_records = sum((h["n_records"] for h in ctx.history.values()), pd.Series(0, index=st.index))
    had = hist_records > 0
    if ctx.history:
        # With history, a unit that never had records is dormant, not a change: only units that had
        # records in an earlier period and have none now are reported.
        flag = (~has) & had
    else:
        flag = (~has) & (level_cov >= s.zero_data_peer_coverage) & (units["level"] != "")
    f = pd.DataFrame(
        {
            "measure": 0.0,
            "threshold": 0.0,
            "expected": np.where(had, hist_records / max(len(ctx.history), 1), level_cov),
            "severity": np.where(had, 0.9, 0.6),
            "records": 0,
            "had": had,
            "cov": level_cov,
        },
        index=st.index,
    )[flag]

    def describe(r):
        if r["had"]:
            return f"本期无任何办件和评价记录，历史各期平均有 {r['expected']:,.0f} 条记录"
        return f"本期无任何办件和评价记录（同层级 {r['cov']:.0%} 的单位有记录）"

    return _rows(ctx, "zero_data", f, "本期记录数", describe)


def detect_low_volume(ctx: Context) -> pd.DataFrame:
    """评价数据量过低: against the unit's own history and against peers of the same level.

    Three signals, robust statistics throughout (median, scaled MAD):
    * evaluations per case (first evaluations made / cases finished) below
      ``low_volume_ratio_factor`` × the peer median and below median − robust_z·σ;
    * evaluation volume far below peers: log10 volume's robust z below −robust_z and volume below
      ``low_volume_peer_factor`` × the peer median (peers with a median of at least
      ``low_volume_peer_min_median``);
    * daily volume below ``low_volume_history_factor`` × the median of the unit's earlier periods.
    Each also needs a Chernoff tail bound below ``alpha``. The peer-volume signal applies only when
    no usable history is given (peers differ in size; the unit's past is the better expectation);
    units with no record at all are zero_data. Severity = 1 − measure/expected.
    """
    s = ctx.settings
    st = ctx.stats
    n_first, n_cases = st["n_first"], st["n_cases"]
    groups = ctx.units["peer_group"]

    # (a) evaluations per case
    elig_ratio = n_cases >= s.low_volume_min_cases
    ratio = (n_first / n_cases.where(n_cases > 0)).astype(float)
    peers = _peer_stats(ctx, ratio, elig_ratio)
    thr_a = np.minimum(
        peers["median"] * s.low_volume_ratio_factor, peers["median"] - s.robust_z * peers["sigma"]
    )
    p_a = binomial_tail_bound(
        np.minimum(n_first, n_cases), n_cases, peers["median"].fillna(0).clip(0, 1), True
    )
    flag_a = (elig_ratio & (ratio < thr_a) & (p_a < s.alpha)).fillna(False)

    # (b) volume against peers (log scale); units with any record in the period only
    active_units = (n_first + n_cases) > 0
    logv = np.log10(n_first.astype(float) + 1).where(active_units)
    frame = pd.DataFrame({"v": logv, "g": groups, "n": n_first.where(active_units)})
    med_log = frame.groupby("g")["v"].median()
    mad_log = frame.assign(d=(frame["v"] - frame["g"].map(med_log)).abs()).groupby("g")["d"].median()
    med_n = frame.groupby("g")["n"].median()
    size = frame.groupby("g")["v"].count()
    z = (logv - groups.map(med_log)) / (1.4826 * groups.map(mad_log)).replace(0, np.nan)
    peer_med_n = groups.map(med_n)
    p_b = poisson_lower_bound(n_first, peer_med_n.fillna(0))
    flag_b = (
        active_units
        & (groups.map(size) >= s.peer_min_units)
        & (peer_med_n >= s.low_volume_peer_min_median)
        & (z < -s.robust_z)
        & (n_first < s.low_volume_peer_factor * peer_med_n)
        & (p_b < s.alpha)
    ).fillna(False)

    # (c) against the unit's own history (daily rate, so months and quarters compare)
    if len(ctx.history) >= s.low_volume_history_min_periods:
        rates = pd.concat({k: h["n_first"] / h["days"] for k, h in ctx.history.items()}, axis=1)
        hist_rate = rates.median(axis=1)
        expected_c = hist_rate * ctx.period.days
        p_c = poisson_lower_bound(n_first, expected_c.fillna(0))
        flag_c = (
            (expected_c >= s.low_volume_history_min_expected)
            & (n_first < s.low_volume_history_factor * expected_c)
            & (p_c < s.alpha)
        ).fillna(False)
    else:
        expected_c = pd.Series(np.nan, index=st.index)
        flag_c = pd.Series(False, index=st.index)

    # A unit with no record at all is reported as zero_data. With a usable history, each unit's past
    # is its expectation: peers differ in size (a small development zone's town centre serves fewer
    # people, quarter after quarter), so the peer-volume signal applies only without history.
    has_records = (n_first + n_cases + st["n_evals"]) > 0
    if len(ctx.history) >= s.low_volume_history_min_periods:
        flag_b = flag_b & False
    flag = (flag_a | flag_b | flag_c) & has_records
    measure = np.where(flag_c, n_first, np.where(flag_a, ratio, n_first))
    threshold = np.where(
        flag_c,
        s.low_volume_history_factor * expected_c,
        np.where(flag_a, thr_a, s.low_volume_peer_factor * peer_med_n),
    )
    expected = np.where(flag_c, expected_c, np.where(flag_a, peers["median"], peer_med_n))
    f = pd.DataFrame(
        {
            "measure": measure,
            "threshold": threshold,
            "expected": expected,
            "severity": 1
            - pd.Series(measure, index=st.index) / pd.Series(expected, index=st.index).replace(0, np.nan),
            "records": n_first,
            "a": flag_a,
            "b": flag_b,
            "c": flag_c,
            "ratio": ratio,
            "ratio_med": peers["median"],
            "n_cases": n_cases,
            "peer_n": peer_med_n,
            "hist": expected_c,
        },
        index=st.index,
    )[flag]

    def describe(r):
        parts = []
        if r["c"]:
            parts.append(f"本期首次评价 {r['records']:,} 件，按本单位历史应有约 {r['hist']:,.0f} 件")
        if r["a"]:
            parts.append(
                f"办件 {r['n_cases']:,} 件仅有评价 {r['records']:,} 件（每件 {r['ratio']:.2f}，"
                f"同类单位中位数 {r['ratio_med']:.2f}）"
            )
        if r["b"]:
            parts.append(f"评价量 {r['records']:,} 件，同类单位中位数 {r['peer_n']:,.0f} 件")
        return "；".join(parts) + "，评价数据量过低"

    # Evidence: cases finished in the period that have no first evaluation.
    missing = ctx.cases_in[~ctx.cases_in["has_first"] & ctx.cases_in["unit_id"].isin(f.index)]
    ev = _evidence_by_unit(missing, "case_id", s.evidence_max)
    return _rows(ctx, "low_volume", f, "首次评价数或评价/办件比", describe, ev)


def detect_low_onsite(ctx: Context) -> pd.DataFrame:
    """现场评价量较少: share of first evaluations via on-site channels (schemas.ONSITE_CHANNELS).

    Only for units whose peers evaluate on site (peer median ≥ ``low_onsite_peer_min``); flagged when
    the share is below both ``low_share_factor`` × median and median − robust_z·σ, with a Chernoff
    bound below ``alpha``. Severity = 1 − share/median.
    """
    s = ctx.settings
    st = ctx.stats
    f = _low_share(ctx, st["n_onsite"], st["n_citizen_linked"], s.low_onsite_peer_min)
    first = ctx.first_in
    off = first[~_isin(first["channel"], ONSITE_CHANNELS) & _isin(first["unit_id"], f.index)]
    ev = _evidence_by_unit(off, "eval_id", s.evidence_max)

    def describe(r):
        return (
            f"群众作出的办件首次评价 {r['records']:,} 件中现场评价 {r['k']:,} 件"
            f"（{_fmt_pct(r['measure'])}），"
            f"同类单位中位数 {_fmt_pct(r['expected'])}，“现场评价”量较少"
        )

    return _rows(ctx, "low_onsite", f, "现场评价占比", describe, ev)


def detect_low_active(ctx: Context) -> pd.DataFrame:
    """主动评价率偏低: share of cases' first evaluations made by the citizen, not system defaults.

    An absolute rule, not a peer comparison: active shares differ between districts by policy (the
    reference bulletin's 附件1 ranges from 0.05% to 88%), so peers would flag whole districts. A
    unit is flagged when its share is below ``low_active_max_share`` with at least
    ``min_first_evaluations`` first evaluations whose active flag is known, and the share is
    confidently below the limit (Chernoff bound of P(X ≤ k | n, limit) below ``low_active_alpha``);
    units whose flag is
    unknown for every evaluation are skipped (shown as "/" in tables). Severity = 1 − share/limit.
    """
    s = ctx.settings
    st = ctx.stats
    k, n = st["n_active"], st["n_active_known"]
    share = (k / n.where(n > 0)).astype(float)
    # Confident, not merely observed: P(X ≤ k | n, limit) below low_active_alpha (Chernoff bound), so
    # a village with 1 active of 38 is not called low on its own.
    p = binomial_tail_bound(k, n, np.full(len(n), s.low_active_max_share), lower=True)
    flag = (n >= s.min_first_evaluations) & (share < s.low_active_max_share) & (p < s.low_active_alpha)
    f = pd.DataFrame(
        {
            "measure": share,
            "threshold": s.low_active_max_share,
            "expected": s.low_active_max_share,
            "severity": 1 - share / s.low_active_max_share,
            "records": n,
            "k": k,
        },
        index=st.index,
    )[flag.fillna(False)]
    first = ctx.first_in
    passive = first[(first["active"] == False) & _isin(first["unit_id"], f.index)]  # noqa: E712
    ev = _evidence_by_unit(passive, "eval_id", s.evidence_max)

    def describe(r):
        return (
            f"办件首次评价 {r['records']:,} 件中主动评价仅 {r['k']:,} 件（{_fmt_pct(r['measure'])}，"
            f"低于 {_fmt_pct(r['threshold'])}），评价基本为系统默认评价"
        )

    return _rows(ctx, "low_active", f, "主动评价率", describe, ev)


def first_evaluation_lags(ctx: Context) -> pd.DataFrame:
    """First evaluations made in the period, joined to their case: working-day lag after finishing."""
    cols = ["eval_id", "case_id", "unit_id", "channel", "evaluated_at", "operator", "case_finished"]
    linked = ctx.first_in.loc[ctx.first_in["linked"], cols].rename(columns={"case_finished": "finished_at"})
    linked["lag_workdays"] = working_days_between(linked["finished_at"], linked["evaluated_at"])
    linked["lag_hours"] = (linked["evaluated_at"] - linked["finished_at"]).dt.total_seconds() / 3600
    return linked


def burst_runs(evaluations: pd.DataFrame, settings: Settings, period: Period) -> pd.DataFrame:
    """Evaluations that belong to a burst of near-identical timestamps within their unit.

    A run is a maximal sequence of a unit's evaluations (system defaults excluded: the system makes
    them, not people), all inside or all outside working hours, whose consecutive gaps are at most
    ``burst_gap_seconds``. A run is a burst when it has at least ``m`` records: the larger of a floor
    (``burst_min_size`` in working hours, ``burst_min_size_after_hours`` outside them, when halls are
    closed) and the size for which a Poisson process expects fewer than ``burst_false_alarm`` such
    runs. The Poisson rate is the unit's own rate in the run's clock hour on that kind of day
    (working day or not), times ``burst_peak_factor``: busy units and busy hours need longer runs.

    Returns:
        The evaluations in bursts: eval_id, unit_id, evaluated_at, operator, after_hours, run, run_size.
    """
    cols = ["eval_id", "unit_id", "evaluated_at", "operator"]
    ev = evaluations.loc[
        (evaluations["channel"] != "system_default") & evaluations["evaluated_at"].notna(), cols
    ]
    empty = ev.assign(after_hours=pd.Series(dtype=bool), run=pd.Series(dtype="int64"),
                      run_size=pd.Series(dtype="int64"))  # fmt: skip
    if ev.empty:
        return empty
    ucode = ev["unit_id"].cat.codes if isinstance(ev["unit_id"].dtype, pd.CategoricalDtype) else None
    unit_key = ucode if ucode is not None else ev["unit_id"].astype("str")
    ev = ev.assign(unit=unit_key.to_numpy()).sort_values(["unit", "evaluated_at"], kind="stable")
    t_ = ev["evaluated_at"]
    days = t_.dt.normalize()
    cal = workday_calendar(min(days.min().date(), period.start), max(days.max().date(), period.end))
    workday = days.map(cal).fillna(True).astype(bool).to_numpy()
    hour = t_.dt.hour.to_numpy()
    frac = hour + t_.dt.minute.to_numpy() / 60
    ah = ~workday | (frac < config.WORKDAY_START_HOUR) | (frac >= config.WORKDAY_END_HOUR)
    ev["after_hours"] = ah
    t = t_.to_numpy("datetime64[ms]").astype(np.int64) / 1000.0
    u = ev["unit"].to_numpy()
    gap = np.diff(t, prepend=np.nan)
    same = np.r_[False, (u[1:] == u[:-1]) & (ah[1:] == ah[:-1])]
    run = np.cumsum(~(same & (gap <= settings.burst_gap_seconds)))
    ev["run"] = run
    ev["run_size"] = ev.groupby("run")["run"].transform("size")
    # The unit's rate in each (kind of day, clock hour): evaluations / hours of that kind in the period.
    in_period = cal[(cal.index >= period.start_ts) & (cal.index < period.end_ts)]
    n_work, n_off = max(int(in_period.sum()), 1), max(int((~in_period).sum()), 1)
    bucket = workday.astype(np.int64) * 24 + hour
    n_bucket = ev.assign(b=bucket).groupby(["unit", "b"])["eval_id"].transform("size").to_numpy(dtype=float)
    hours = np.where(workday, n_work, n_off) * 3600.0
    lam = n_bucket / hours * settings.burst_peak_factor
    q = np.clip(1 - np.exp(-lam * settings.burst_gap_seconds), 1e-12, 1 - 1e-9)
    m = 1 + np.log(settings.burst_false_alarm / n_bucket) / np.log(q)
    floor = np.where(ah, settings.burst_min_size_after_hours, settings.burst_min_size)
    ev["m"] = np.maximum(floor, np.ceil(m))
    m_run = ev.groupby("run")["m"].transform("max").to_numpy()
    out = ev[ev["run_size"].to_numpy() >= m_run]
    return out.drop(columns=["unit", "m"])


def detect_backfill(ctx: Context) -> pd.DataFrame:
    """事后补录: first evaluations long after the case finished, or bursts of near-identical timestamps.

    A first evaluation is late when it comes more than ``supplementary_working_days`` working days
    (chinese_calendar, 调休 included) after its case finished. A unit is flagged when its suspicious
    evaluations (late ∪ in a burst, system defaults excluded) number at least
    ``backfill_min_records`` and either the late ones reach ``backfill_min_share`` of its linked first
    evaluations or the burst ones reach ``backfill_min_records``. The description gives the after-hours
    share and the leading operator's share of the suspicious records.

    Severity = 0.5 + 0.3·min(1, share/backfill_full_share) + 0.1·after-hours share + 0.1·top operator share.
    """
    s = ctx.settings
    lags = first_evaluation_lags(ctx)
    lags = lags[lags["channel"] != "system_default"]
    late = lags[lags["lag_workdays"].fillna(0) > s.supplementary_working_days]
    linked_n = _count(lags["unit_id"], ctx.stats.index)
    late_n = _count(late["unit_id"], ctx.stats.index)
    bursts = burst_runs(ctx.first_in, s, ctx.period)
    burst_n = _count(bursts["unit_id"], ctx.stats.index)

    sus = pd.concat(
        [
            bursts[["eval_id", "unit_id", "evaluated_at", "operator"]].assign(src=0),
            late[["eval_id", "unit_id", "evaluated_at", "operator"]].assign(src=1),
        ]
    ).drop_duplicates("eval_id")
    sus["unit"] = sus["unit_id"].astype("str")
    sus_n = _count(sus["unit"], ctx.stats.index)
    late_share = (late_n / linked_n.where(linked_n > 0)).fillna(0)
    # Citizens' own late evaluations (SMS links, the website) form a small tail everywhere: a unit's
    # late share must stand out from its level's pooled share (Chernoff bound), not only exceed a floor.
    level = ctx.units["level"]
    base = (late_n.groupby(level).sum() / linked_n.groupby(level).sum().replace(0, np.nan)).fillna(0)
    baseline = level.map(base).fillna(0).astype(float)
    p_late = binomial_tail_bound(late_n, linked_n, baseline.clip(lower=1e-6), lower=False)
    late_ok = (
        (late_n >= s.backfill_min_records)
        & (late_share >= np.maximum(s.backfill_min_share, s.backfill_baseline_factor * baseline))
        & (p_late < s.alpha)
    )
    flag = (sus_n >= s.backfill_min_records) & (late_ok | (burst_n >= s.backfill_min_records))
    if not flag.any():
        return pd.DataFrame(columns=FINDING_COLUMNS)
    sus = sus[sus["unit"].isin(flag[flag].index)]
    sus["after_hours"] = after_hours(sus["evaluated_at"])
    ah = sus.groupby("unit")["after_hours"].mean()
    op_counts = sus.dropna(subset=["operator"]).groupby(["unit", "operator"], observed=True).size()
    if len(op_counts):
        top = op_counts.groupby(level=0).max() / sus.groupby("unit").size()
        top_name = op_counts.groupby(level=0).idxmax().map(lambda t: t[1])
    else:
        top, top_name = pd.Series(dtype=float), pd.Series(dtype=str)
    base = ctx.stats["n_first"].where(ctx.stats["n_first"] > 0)
    share = (sus_n / base).fillna(0)
    idx = flag[flag].index
    f = pd.DataFrame(
        {
            "measure": share[idx],
            "threshold": s.backfill_min_share,
            "expected": 0.0,
            "records": sus_n[idx],
            "late": late_n[idx],
            "burst": burst_n[idx],
            "ah": ah.reindex(idx).fillna(0),
            "top": top.reindex(idx).fillna(0),
            "top_name": top_name.reindex(idx).fillna(""),
        },
        index=idx,
    )
    f["severity"] = (
        0.5 + 0.3 * np.minimum(1, f["measure"] / s.backfill_full_share) + 0.1 * f["ah"] + 0.1 * f["top"]
    )

    def describe(r):
        parts = []
        if r["late"]:
            parts.append(f"{r['late']:,} 条首次评价晚于办结 {s.supplementary_working_days} 个工作日以上")
        if r["burst"]:
            parts.append(f"{r['burst']:,} 条评价成批出现、时间戳几乎相同")
        extra = f"，其中 {r['ah']:.0%} 在工作时间以外"
        if r["top"] >= 0.5 and r["top_name"]:
            extra += f"，{r['top']:.0%} 由同一经办人（{r['top_name']}）录入"
        return "；".join(parts) + extra + "，存在事后补录嫌疑"

    sus = sus.sort_values(["src", "evaluated_at"], kind="stable")
    ev = _evidence_by_unit(sus, "eval_id", s.evidence_max)
    return _rows(ctx, "backfill", f, "可疑评价占比", describe, ev)


def detect_late_aggregation(ctx: Context) -> pd.DataFrame:
    """办件归集不及时: cases finished in the period reported more than ``late_report_limit`` later.

    Flagged when a unit has at least ``late_min_cases`` late cases, a late share of at least
    ``late_min_share`` and ``late_baseline_factor`` × the city-wide share, with a Chernoff bound
    below ``alpha``. Severity = min(1, late share / 0.5)·0.8 + 0.2·(share of late cases over a day).
    """
    s = ctx.settings
    c = ctx.cases_in[ctx.cases_in["reported_at"].notna()]
    delay = c["reported_at"] - c["finished_at"]
    late_mask = delay > s.late_report_limit
    late = c[late_mask].assign(delay_h=delay[late_mask].dt.total_seconds() / 3600)
    idx = ctx.stats.index
    n = _count(c["unit_id"], idx)
    k = _count(late["unit_id"], idx)
    long_k = _count(late.loc[late["delay_h"] > 24, "unit_id"], idx)
    baseline = float(k.sum() / n.sum()) if n.sum() else 0.0
    share = (k / n.where(n > 0)).fillna(0)
    p = binomial_tail_bound(k, n, np.full(len(n), max(baseline, 1e-6)), lower=False)
    flag = (
        (k >= s.late_min_cases)
        & (share >= max(s.late_min_share, s.late_baseline_factor * baseline))
        & (p < s.alpha)
    )
    med_delay = late.groupby(late["unit_id"].astype("str"))["delay_h"].median()
    f = pd.DataFrame(
        {
            "measure": share,
            "threshold": max(s.late_min_share, s.late_baseline_factor * baseline),
            "expected": baseline,
            "records": k,
            "n": n,
            "long": long_k,
            "med": med_delay.reindex(idx),
        },
        index=idx,
    )[flag]
    f["severity"] = 0.8 * np.minimum(1, f["measure"] / 0.5) + 0.2 * (
        f["long"] / f["records"].where(f["records"] > 0)
    ).fillna(0)
    limit_min = s.late_report_limit.total_seconds() / 60

    def describe(r):
        return (
            f"办结 {r['n']:,} 件中 {r['records']:,} 件超过 {limit_min:g} 分钟才归集"
            f"（{_fmt_pct(r['measure'])}，"
            f"全市 {_fmt_pct(r['expected'])}），超时办件归集延迟中位数 {r['med']:.1f} 小时，办件归集不及时"
        )

    ev = _evidence_by_unit(late[_isin(late["unit_id"], f.index)], "case_id", s.evidence_max, "delay_h")
    return _rows(ctx, "late_aggregation", f, "超时归集办件占比", describe, ev)


def duplicate_evaluations(ctx: Context) -> pd.DataFrame:
    """Evaluations that repeat another one.

    A later attempt-1 evaluation of the same case, or an unlinked evaluation with the same
    evaluator, unit, channel, satisfaction, comment and minute as another.
    """
    first = ctx.first_in
    ev = ctx.evaluations
    # Attempt-1 evaluations of the same case (any period), by integer case code: the earliest (then
    # the smallest eval_id) is the first evaluation, every later one a duplicate.
    cid = ev["cid"].to_numpy()
    mask = (ev["attempt"].to_numpy() == 1) & (cid >= 0)
    counts = np.bincount(cid[mask], minlength=int(cid.max()) + 1 if len(cid) else 0)
    repeated = mask & (counts[np.where(cid >= 0, cid, 0)] > 1)
    cand = ev.loc[repeated, ["eval_id", "cid", "evaluated_at"]].sort_values(
        ["cid", "evaluated_at", "eval_id"], kind="stable"
    )
    later = cand.index[cand.duplicated("cid", keep="first")]
    dup_linked = first[first.index.isin(later)]
    unlinked = first[first["case_id"].isna() & first["evaluator_key"].notna()]
    key = ["unit_id", "evaluator_key", "channel", "satisfaction", "comment", "minute"]
    unlinked = unlinked.assign(minute=unlinked["evaluated_at"].dt.floor("min"))
    dup_unlinked = unlinked[unlinked.duplicated(key, keep="first")]
    return pd.concat([dup_linked, dup_unlinked.drop(columns="minute")])


def detect_duplicates(ctx: Context) -> pd.DataFrame:
    """重复评价: at least ``duplicates_min`` duplicate evaluations in a unit (see duplicate_evaluations).

    Severity = min(1, 0.5 + duplicates / 100).
    """
    s = ctx.settings
    dups = duplicate_evaluations(ctx)
    k = _count(dups["unit_id"], ctx.stats.index)
    flag = k >= s.duplicates_min
    f = pd.DataFrame(
        {
            "measure": k,
            "threshold": s.duplicates_min,
            "expected": 0.0,
            "records": k,
            "severity": np.minimum(1, 0.5 + k / 100),
            "n": ctx.stats["n_first"],
        },
        index=ctx.stats.index,
    )[flag]

    def describe(r):
        return f"首次评价 {r['n']:,} 件中有 {r['records']:,} 条重复评价（同一办件多次首评或内容完全相同）"

    ev = _evidence_by_unit(dups, "eval_id", s.evidence_max)
    return _rows(ctx, "duplicates", f, "重复评价条数", describe, ev)


def _operators_per_unit(ctx: Context) -> pd.Series:
    """Distinct operators recording first evaluations in the period, per unit (string index)."""
    f = ctx.first_in.loc[ctx.first_in["operator"].notna(), ["unit_id", "operator"]]
    if f.empty:
        return pd.Series(dtype="int64")
    op_codes, _ = pd.factorize(f["operator"])
    frame = pd.DataFrame({"u": f["unit_id"].cat.codes.to_numpy(), "o": op_codes}).drop_duplicates()
    counts = frame.groupby("u").size()
    counts.index = f["unit_id"].cat.categories[counts.index].astype("str")
    return counts


def detect_staff_reentry(ctx: Context) -> pd.DataFrame:
    """工作人员代评（二次录入）: one evaluator key behind many of a unit's cases.

    Per unit and evaluator key, over first evaluations of cases made in the period: the key is
    flagged when it evaluated at least ``reentry_min_cases`` distinct cases, or at least
    ``reentry_min_cases_one_operator`` cases all recorded by one operator while the chance that
    that many of the unit's cases fall to a single operator by luck, n_ops^(1−k), is below
    ``reentry_alpha`` (n_ops = the unit's operators in the period). Citizens who return (agents,
    companies) spread over windows; a member of staff evaluating as the citizen does not.
    Severity = 0.5 + 0.5·min(1, flagged evaluations / the unit's first evaluations).
    """
    s = ctx.settings
    first = ctx.first_in[ctx.first_in["evaluator_key"].notna() & (ctx.first_in["cid"] >= 0)]
    # Only keys seen at least reentry_min_cases_one_operator times can be flagged: filter before the
    # detailed group-by (most keys appear once).
    key_codes, _ = pd.factorize(first["evaluator_key"])
    pair = first["unit_id"].cat.codes.to_numpy().astype(np.int64) * (
        int(key_codes.max()) + 1 if len(key_codes) else 1
    )
    pair = pair + key_codes
    _, inverse, pair_counts = np.unique(pair, return_inverse=True, return_counts=True)
    first = first[pair_counts[inverse] >= s.reentry_min_cases_one_operator]
    first = first.assign(unit=first["unit_id"].astype("str"))
    per_key = first.groupby(["unit", "evaluator_key"], observed=True).agg(
        cases=("cid", "nunique"), ops=("operator", "nunique"), op_rows=("operator", "count")
    )
    per_key = per_key.reset_index()
    n_ops = _operators_per_unit(ctx)
    k_ops = per_key["unit"].map(n_ops).fillna(1).clip(lower=1).astype(float)
    chance = np.exp((1 - per_key["cases"]) * np.log(k_ops))
    one_op = (per_key["ops"] == 1) & (per_key["op_rows"] >= per_key["cases"])
    hot_mask = (per_key["cases"] >= s.reentry_min_cases) | (
        (per_key["cases"] >= s.reentry_min_cases_one_operator) & one_op & (chance < s.reentry_alpha)
    )
    hot = per_key[hot_mask]
    if hot.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    per_unit = hot.groupby("unit").agg(
        keys=("evaluator_key", "size"), cases=("cases", "sum"), top=("cases", "max")
    )
    rows = first.merge(hot[["unit", "evaluator_key"]], on=["unit", "evaluator_key"])
    ops = rows.dropna(subset=["operator"]).groupby(["unit", "operator"]).size()
    top_op = ops.groupby(level=0).idxmax().map(lambda t: t[1]) if len(ops) else pd.Series(dtype=str)
    top_share = (
        ops.groupby(level=0).max() / rows.groupby("unit").size() if len(ops) else pd.Series(dtype=float)
    )
    idx = per_unit.index
    n_first = ctx.stats["n_first"].reindex(idx)
    f = pd.DataFrame(
        {
            "measure": per_unit["top"],
            "threshold": s.reentry_min_cases,
            "expected": 1.0,
            "records": per_unit["cases"],
            "keys": per_unit["keys"],
            "op": top_op.reindex(idx).fillna(""),
            "op_share": top_share.reindex(idx).fillna(0),
            "n": n_first,
        },
        index=idx,
    )
    f["severity"] = 0.5 + 0.5 * np.minimum(1, f["records"] / f["n"].where(f["n"] > 0)).fillna(0)

    def describe(r):
        text = (
            f"{r['keys']:,} 个评价人标识在本单位评价了多件不同办件（最多 {r['measure']:,.0f} 件，"
            f"合计 {r['records']:,} 件）"
        )
        if r["op"] and r["op_share"] >= 0.5:
            text += f"，{r['op_share']:.0%} 由经办人 {r['op']} 录入"
        return text + "，疑似工作人员代替群众评价"

    ev = _evidence_by_unit(rows.sort_values("evaluated_at"), "eval_id", s.evidence_max)
    return _rows(ctx, "staff_reentry", f, "单一评价人评价办件数", describe, ev)


def detect_eval_before_case(ctx: Context) -> pd.DataFrame:
    """评价早于办结: evaluations made in the period before their case finished (beyond a tolerance).

    At least ``before_case_min`` per unit. Severity = min(1, 0.6 + count / 100).
    """
    s = ctx.settings
    ev = ctx.evals_in[ctx.evals_in["linked"]]
    early = ev[ev["evaluated_at"] < ev["case_finished"] - s.before_case_tolerance]
    k = _count(early["unit_id"], ctx.stats.index)
    flag = k >= s.before_case_min
    f = pd.DataFrame(
        {
            "measure": k,
            "threshold": s.before_case_min,
            "expected": 0.0,
            "records": k,
            "severity": np.minimum(1, 0.6 + k / 100),
        },
        index=ctx.stats.index,
    )[flag]

    def describe(r):
        return f"{r['records']:,} 条评价的评价时间早于所评办件的办结时间"

    evid = _evidence_by_unit(early, "eval_id", s.evidence_max)
    return _rows(ctx, "eval_before_case", f, "评价早于办结条数", describe, evid)


def detect_too_perfect(ctx: Context) -> pd.DataFrame:
    """评价结果过于完美: 100% 评价率 and no raw 差评 although some are expected.

    Counted over first evaluations the citizen made (system defaults are never 差评; 追评 follow a
    different process). Baseline p = the lower quartile (``too_perfect_baseline_quantile``) of the
    raw 差评 rates of the level's units that are large enough to show some (the whole city's when
    the level has fewer than ``peer_min_units`` such units, and the city's pooled rate when the whole
    city has fewer), so natural differences between units do not make a merely good unit look
    impossible. The
    chance of no 差评 among n is P(0 | n, p) = (1 − p)^n; flagged below ``too_perfect_alpha``. A unit
    with no cases is judged on its evaluations alone. Severity = min(1, −log10 P / 10).
    """
    s = ctx.settings
    st = ctx.stats
    level = ctx.units["level"]
    bad, n_all = st["n_bad_citizen_first"], st["n_citizen_first"]
    pooled = level.map(bad.groupby(level).sum() / n_all.groupby(level).sum().replace(0, np.nan)).fillna(0)
    # Units differ in their 差评 rates; the baseline is a low but typical rate: the lower quartile of
    # the rates of units large enough to show some (expected ≥ too_perfect_min_expected at the pooled rate).
    rates = (bad / n_all.where(n_all > 0)).where(n_all * pooled >= s.too_perfect_min_expected)
    quartile = rates.groupby(level).quantile(s.too_perfect_baseline_quantile)
    enough = rates.groupby(level).count() >= s.peer_min_units
    # A level with too few such units (e.g. city departments at a small scale) uses the whole city's.
    if rates.count() >= s.peer_min_units:
        city_wide = float(rates.quantile(s.too_perfect_baseline_quantile))
    else:  # no unit is large enough to estimate a spread of rates: the city's pooled rate
        city_wide = float(bad.sum() / n_all.sum()) if n_all.sum() else 0.0
    p = level.map(quartile.where(enough, city_wide)).fillna(city_wide).astype(float)
    full_rate = (st["n_cases"] == 0) | (st["n_cases_evaluated"] >= st["n_cases"])
    n = n_all.astype(float)
    with np.errstate(divide="ignore"):
        log_p0 = n * np.log1p(-p.clip(upper=1 - 1e-12))
    p0 = np.exp(log_p0)
    flag = (bad == 0) & full_rate & (n > 0) & (p > 0) & (p0 < s.too_perfect_alpha)
    f = pd.DataFrame(
        {
            "measure": p0,
            "threshold": s.too_perfect_alpha,
            "expected": n * p,
            "records": n_all,
            "severity": np.minimum(1, -log_p0 / np.log(10) / 10),
            "p": p,
        },
        index=st.index,
    )[flag]

    def describe(r):
        return (
            f"评价率 100%，群众作出的 {r['records']:,} 件首次评价无一差评；"
            f"按同层级常见差评率 {r['p']:.2%} 应有约 "
            f"{r['expected']:,.1f} 件，全无差评的概率为 {r['measure']:.1e}，评价结果过于完美"
        )

    return _rows(ctx, "too_perfect", f, "无差评概率 P(0|n,p)", describe)


def detect_high_invalid_bad(ctx: Context) -> pd.DataFrame:
    """无效差评偏多: invalid 差评 per evaluation far above the level's rate.

    The rate is invalid 差评 / evaluations the citizens made in the period (system defaults
    excluded); the baseline is the pooled rate of the unit's level, or the city's pooled rate when
    one unit makes more than ``invalid_peer_max_unit_share`` of its level's evaluations (the level's
    rate would then be mostly that unit's own). Flagged with at least ``invalid_min`` invalid 差评,
    a rate of at least ``invalid_factor`` × baseline, and a Chernoff bound below ``alpha``.
    Severity = 1 − baseline/rate.
    """
    s = ctx.settings
    st = ctx.stats
    level = ctx.units["level"]
    by_level = st.groupby(level)["n_citizen"]
    base = st.groupby(level)["n_invalid_bad"].sum() / by_level.sum().replace(0, np.nan)
    dominated = by_level.max() > s.invalid_peer_max_unit_share * by_level.sum()
    city_rate = st["n_invalid_bad"].sum() / st["n_citizen"].sum() if st["n_citizen"].sum() else np.nan
    base = base.where(~dominated, city_rate)
    p = level.map(base).fillna(0).astype(float)
    n, k = st["n_citizen"], st["n_invalid_bad"]
    rate = (k / n.where(n > 0)).fillna(0)
    bound = binomial_tail_bound(k, n, p.clip(lower=1e-9), lower=False)
    flag = (k >= s.invalid_min) & (rate >= s.invalid_factor * p) & (bound < s.alpha)
    f = pd.DataFrame(
        {
            "measure": rate,
            "threshold": s.invalid_factor * p,
            "expected": p,
            "records": k,
            "severity": 1 - p / rate.where(rate > 0),
            "bad": st["n_bad"],
            "n": n,
        },
        index=st.index,
    )[flag]

    def describe(r):
        return (
            f"{r['n']:,} 件评价中无效差评 {r['records']:,} 件（差评共 {r['bad']:,} 件），每万件 "
            f"{r['measure'] * 1e4:.1f} 件，同层级 {r['expected'] * 1e4:.1f} 件，无效差评偏多"
        )

    invalid = ctx.evals_in[ctx.evals_in["invalid_bad"]]
    ev = _evidence_by_unit(invalid, "eval_id", s.evidence_max)
    return _rows(ctx, "high_invalid_bad", f, "无效差评率", describe, ev)


DETECTORS = {
    "zero_data": detect_zero_data,
    "low_volume": detect_low_volume,
    "low_onsite": detect_low_onsite,
    "low_active": detect_low_active,
    "backfill": detect_backfill,
    "late_aggregation": detect_late_aggregation,
    "duplicates": detect_duplicates,
    "staff_reentry": detect_staff_reentry,
    "eval_before_case": detect_eval_before_case,
    "too_perfect": detect_too_perfect,
    "high_invalid_bad": detect_high_invalid_bad,
}


def detect(
    ref: CityReference,
    data: dict[str, pd.DataFrame],
    period: Period | str,
    history: dict[str, dict[str, pd.DataFrame]] | None = None,
    settings: Settings | None = None,
    kinds: list[str] | None = None,
) -> pd.DataFrame:
    """Run every detector on one period and return the findings table, most severe first.

    Args:
        ref: the city's reference data (units in official order).
        data: canonical tables {'cases', 'evaluations', 'rectifications' (optional)}.
        period: the period (``Period`` or label such as ``2023Q2``).
        history: earlier periods, {label: tables}; may be None or empty.
        settings: thresholds (default :class:`Settings`).
        kinds: run only these detectors (default all).

    Returns:
        One row per (unit, kind) with FINDING_COLUMNS.
    """
    ctx = prepare(ref, data, period, history, settings)
    return detect_context(ctx, kinds)


def detect_context(ctx: Context, kinds: list[str] | None = None) -> pd.DataFrame:
    """Run the detectors on a prepared context."""
    unknown = set(kinds or []) - set(DETECTORS)
    if unknown:
        raise HaochaInputError(
            f"未知的异常类型：{'、'.join(sorted(unknown))}", fix=f"可选：{'、'.join(DETECTORS)}"
        )
    parts = [DETECTORS[k](ctx) for k in (kinds or DETECTORS)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(
            {
                c: pd.Series(
                    dtype="float64" if c in ("measure", "threshold", "expected", "severity") else "object"
                )
                for c in FINDING_COLUMNS
            }
        )
    findings = pd.concat(parts, ignore_index=True)
    # Severity across kinds: each detector's strength (0–1) times the weight of its kind.
    findings["severity"] = (findings["severity"] * findings["kind"].map(KIND_WEIGHTS).fillna(1.0)).round(3)
    kind_order = {k: i for i, k in enumerate(KINDS)}
    findings["_k"] = findings["kind"].map(kind_order)
    findings["_o"] = findings["unit_id"].map(ctx.units["order"]).fillna(10**6)
    level_order = {lv: i for i, lv in enumerate(LEVEL_LABELS)}
    findings["_l"] = findings["level"].map(level_order).fillna(99)
    findings = findings.sort_values(
        ["severity", "_k", "_l", "_o", "unit_id"], ascending=[False, True, True, True, True]
    )
    findings = findings.drop(columns=["_k", "_o", "_l"]).reset_index(drop=True)
    assert findings["severity"].between(0, 1).all(), "severity must lie in [0, 1]"
    assert not findings.duplicated(["unit_id", "kind"]).any(), "one finding per unit and kind"
    return findings[FINDING_COLUMNS]


# --- outputs -----------------------------------------------------------------------------------


def findings_for_people(findings: pd.DataFrame) -> pd.DataFrame:
    """The findings with Chinese headers and a 序号 column, as written to CSV/XLSX."""
    out = findings.copy()
    for col in ("measure", "threshold", "expected"):
        out[col] = out[col].map(lambda x: float(f"{x:.6g}") if pd.notna(x) else x)
    out.insert(0, "rank", range(1, len(out) + 1))
    out["level"] = out["level"].map(LEVEL_LABELS).fillna(out["level"])
    return out.rename(columns=FINDING_HEADERS_CN)


def findings_sheet(table: pd.DataFrame) -> SheetSpec:
    """The XLSX sheet of :func:`findings_for_people`: typed numbers, measured values as plain decimals."""
    measures = [FINDING_HEADERS_CN[c] for c in ("measure", "threshold", "expected")]
    return SheetSpec(
        name="异常发现",
        frame=table.reset_index(drop=True),
        title="异常发现清单（按严重程度从高到低）",
        notes=["备注：测量值、阈值、期望值的含义见“测量指标”列；严重程度取0–1，越大越严重。"],
        number_formats={
            FINDING_HEADERS_CN["rank"]: PLAIN_INTEGER_FORMAT,
            FINDING_HEADERS_CN["severity"]: "0.000",
            **dict.fromkeys(measures, MEASURE_FORMAT),
        },
        integer_columns=[FINDING_HEADERS_CN["records"]],
        freeze_columns=3,  # 序号, 单位编码, 单位 stay in view
    )


def write_outputs(findings: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write ``anomalies.csv`` (UTF-8 with BOM) and ``anomalies.xlsx`` atomically; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = findings_for_people(findings)
    staged: list[tuple[str, Path]] = []
    try:  # both files are written before either replaces the previous set
        for name, writer in (
            ("anomalies.csv", lambda p: neutralise_frame(table).to_csv(p, index=False, encoding="utf-8-sig")),
            ("anomalies.xlsx", lambda p: write_workbook(p, [findings_sheet(table)])),
        ):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=Path(name).suffix, dir=out_dir)
            os.close(fd)
            staged.append((tmp, out_dir / name))
            writer(tmp)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; the findings are for every reader
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return [target for _, target in staged]


# --- the bulletin's problems paragraph ---------------------------------------------------------

# Order and wording follow the reference bulletin's problems paragraph.
PARAGRAPH_PHRASES: dict[str, str] = {
    "low_volume": "评价数据量过低",
    "zero_data": "本期无任何办件和评价数据（零数据）",
    "late_aggregation": "办件归集不及时",
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
            "duplicates": f"，重复评价{records}条",
            "staff_reentry": f"，涉及评价{records}条",
            "eval_before_case": f"，共{records}条",
            "high_invalid_bad": f"，无效差评{records}件",
        }.get(kind, "")
        scope = f"（{types}）" if n > 1 else ""
        clauses.append(f"{who}{scope}{phrase}{count_note}")
    total = findings["unit_id"].nunique()
    return lead + f"共发现{total}个单位存在{findings['kind'].nunique()}类问题：" + "；".join(clauses) + "。"


# --- evaluation against ground truth ----------------------------------------------------------


def evaluate(findings: pd.DataFrame, truth: dict) -> pd.DataFrame:
    """Unit-level precision and recall per kind against a ground truth (synth's ``truth.json``).

    A finding is a true positive when the truth lists the same (kind, unit_id). Precision is
    TP/(TP+FP) and recall TP/(TP+FN); undefined ones (no findings, or no truth) are NaN. Pairs the
    truth lists under ``unscored`` (e.g. units the published figures put in the ambiguous band of
    the 主动评价率 limit) count neither way: a finding there is not a false positive, and its absence
    not a false negative.

    Args:
        findings: the findings table.
        truth: {"anomalies": [{"kind", "unit_id", ...}, ...], "unscored": [...]}.

    Returns:
        One row per kind (KINDS order) and a 合计 row: kind, kind_cn, truth, found, tp, fp, fn,
        precision, recall.
    """
    items = truth.get("anomalies", []) if isinstance(truth, dict) else list(truth)
    true_pairs = {(a["kind"], str(a["unit_id"])) for a in items if a.get("unit_id") is not None}
    found_pairs = (
        set(zip(findings["kind"], findings["unit_id"].astype("str"), strict=True)) if len(findings) else set()
    )
    found_pairs -= _unscored_pairs(truth) - true_pairs
    rows = []
    extra = sorted({k for k, _ in true_pairs | found_pairs} - set(KINDS))
    for kind in [*KINDS, *extra]:
        t = {u for k, u in true_pairs if k == kind}
        f = {u for k, u in found_pairs if k == kind}
        rows.append(
            {
                "kind": kind,
                "kind_cn": KINDS.get(kind, kind),
                "truth": len(t),
                "found": len(f),
                "tp": len(t & f),
                "fp": len(f - t),
                "fn": len(t - f),
            }
        )
    out = pd.DataFrame(rows)
    total = out[["truth", "found", "tp", "fp", "fn"]].sum()
    out.loc[len(out)] = {"kind": "all", "kind_cn": "合计", **total.to_dict()}
    out["precision"] = out["tp"] / (out["tp"] + out["fp"]).replace(0, np.nan)
    out["recall"] = out["tp"] / (out["tp"] + out["fn"]).replace(0, np.nan)
    return out


def _unscored_pairs(truth: dict | list) -> set[tuple[str, str]]:
    """(kind, unit_id) pairs the truth lists as not scored (truth["unscored"])."""
    items = truth.get("unscored", []) if isinstance(truth, dict) else []
    return {(a["kind"], str(a["unit_id"])) for a in items if a.get("unit_id") is not None}


def mismatches(findings: pd.DataFrame, truth: dict, kind: str | None = None) -> pd.DataFrame:
    """The false positives and false negatives, unit by unit (for telling truth from detector)."""
    items = truth.get("anomalies", []) if isinstance(truth, dict) else list(truth)
    t = pd.DataFrame(
        [{"kind": a["kind"], "unit_id": str(a["unit_id"])} for a in items], columns=["kind", "unit_id"]
    )
    unscored = _unscored_pairs(truth)
    if unscored and len(findings):
        pairs = pd.Series(list(zip(findings["kind"], findings["unit_id"].astype(str), strict=True)))
        findings = findings[~pairs.isin(unscored).to_numpy()]
    f = findings[["kind", "unit_id", "measure", "expected", "description"]]
    m = t.assign(in_truth=True).merge(f.assign(found=True), on=["kind", "unit_id"], how="outer")
    m = m[m["in_truth"].isna() | m["found"].isna()]
    m["error"] = np.where(m["found"].isna(), "FN", "FP")
    if kind:
        m = m[m["kind"] == kind]
    return m.drop(columns=["in_truth", "found"]).reset_index(drop=True)


# --- loading and the command line --------------------------------------------------------------


def load_period(data_dir: Path, period: Period) -> dict[str, pd.DataFrame]:
    """Load the columns the detectors need for one period."""
    from .storage import load_tables

    return load_tables(Path(data_dir), period, columns=DETECT_COLUMNS, check=False)


def load_history(data_dir: Path, period: Period, max_periods: int = 4) -> dict[str, dict[str, pd.DataFrame]]:
    """Earlier periods stored in a data folder (storage.available_periods), the latest ``max_periods``."""
    from .storage import available_periods, load_tables

    earlier = []
    for label in available_periods(Path(data_dir)):
        try:
            p = parse_period(label)
        except HaochaInputError:
            continue
        if p.end < period.start:
            earlier.append(p)
    earlier = sorted(earlier, key=lambda p: p.start)[-max_periods:]
    return {
        p.label: load_tables(
            Path(data_dir), p, tables=("cases", "evaluations"), columns=HISTORY_COLUMNS, check=False
        )
        for p in earlier
    }


def default_data_dir(city: str | Path, data_dir: str | Path = "") -> Path:
    """The data folder: the one given, else the city's synthetic data folder (data/synthetic/<city>)."""
    path = Path(data_dir) if str(data_dir) else config.SYNTHETIC_DIR / Path(str(city)).name
    if not path.exists():
        raise HaochaInputError(
            "规范表目录不存在",
            file=str(path),
            fix=f"检查 data_dir，或先生成合成数据：haocha synth --city {city} --period 2023Q2 --out {path}",
        )
    return path


@dataclass
class Analysis:
    """One period's detection, with what it was computed from (for the analysts' notebook)."""

    ref: CityReference
    period: Period
    data: dict[str, pd.DataFrame]
    history: dict[str, dict[str, pd.DataFrame]]
    context: Context
    findings: pd.DataFrame


def analyse(
    city: str | Path,
    period: str,
    data_dir: str | Path = "",
    history_periods: int = 4,
    settings: Settings | None = None,
) -> Analysis:
    """Load a period (and up to ``history_periods`` earlier ones) from a data folder and detect."""
    from .reference import load_city

    ref = load_city(city)
    p = resolve_period(period)
    folder = default_data_dir(city, data_dir)
    data = load_period(folder, p)
    history = load_history(folder, p, history_periods) if history_periods else {}
    ctx = prepare(ref, data, p, history, settings)
    return Analysis(ref, p, data, history, ctx, detect_context(ctx))


def _evaluation_commands():
    from .anomalies_eval import evaluate_detectors_command

    return [evaluate_detectors_command]


@click.command("anomalies")
@city_option
@period_option
@data_option
@out_option
@click.option("--history", "history_n", default=4, show_default=True, help="用作历史比较的此前统计期个数")
@user_errors
def anomalies_command(city: str, period: str, data_dir: Path, out_dir: Path, history_n: int) -> None:
    """异常发现：写出按严重程度排序的异常清单（anomalies.csv / anomalies.xlsx）。"""
    import time

    from .reference import load_city

    t0 = time.perf_counter()
    ref = load_city(city)
    p = resolve_period(period)
    data = load_period(data_dir, p)
    history = load_history(data_dir, p, history_n)
    findings = detect(ref, data, p, history)
    paths = write_outputs(findings, out_dir)
    counts = findings["kind_cn"].value_counts()
    click.echo(
        f"{ref.city_name} {p.title_cn()}：发现 {len(findings)} 条异常"
        f"（{findings['unit_id'].nunique()} 个单位），"
        f"历史期 {len(history)} 个，用时 {time.perf_counter() - t0:.1f} 秒"
    )
    for name, c in counts.items():
        click.echo(f"  {name}：{c}")
    for path in paths:
        click.echo(f"已写出 {path}")


COMMANDS = [anomalies_command, *_evaluation_commands()]

__all__ = [
    "COMMANDS",
    "DETECTORS",
    "FINDING_COLUMNS",
    "KINDS",
    "Context",
    "Settings",
    "detect",
    "evaluate",
    "prepare",
    "problems_paragraph",
    "settings_table",
    "write_outputs",
]
