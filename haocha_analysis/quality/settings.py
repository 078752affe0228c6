"""The quality checks' names, settings (each threshold with its rule) and labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

import pandas as pd

from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.rules import DEFAULT_TIMING, RecordTiming
from haocha_analysis.core.rules import INVERTED as INVERTED  # timeliness codes, re-exported
from haocha_analysis.core.rules import LATE as LATE
from haocha_analysis.core.rules import TIMELY as TIMELY
from haocha_analysis.core.rules import UNKNOWN as UNKNOWN
from haocha_analysis.core.text import format_ratio

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
        timing: the clock rules shared with the anomaly detectors (:class:`core.rules.RecordTiming`):
            the 5-minute rule (及时性: a record reported more than ``report_delay_limit`` after its
            event fails) and the one clock-skew tolerance (a report earlier than its event, or an
            evaluation made before its case finished, by more than it fails: 时间倒置 / 时序).
        blocking_checks: checks a submitted record must pass to count as 质检通过. Default: required
            fields, duplicates, the 5-minute rule and the evaluation/case order. Remove
            ``"timeliness"`` to treat late records as stored-but-late (the rule then only reports).
        linkage_checks: checks a 质检通过 record must pass to count as 关联度入库: evaluations that
            name a case must find it (orphans fail); cases must name a catalogued matter when the
            city has a catalogue (``matters.csv``).
        worst_units_top: how many units the 问题单位 table lists.
        worst_units_min_records: a unit needs at least this many records in the period to be ranked
            among the worst (a unit with 3 records and 1 late one is noise, not a finding).
        max_issue_rows: cap on the record-level problem list written out (the counts are never capped).
    """

    timing: RecordTiming = DEFAULT_TIMING
    blocking_checks: tuple[str, ...] = BLOCKING_CHECKS
    linkage_checks: tuple[str, ...] = LINKAGE_CHECKS
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

    @property
    def report_delay_limit(self) -> timedelta:
        """及时性: the 5-minute rule's limit (``timing.report_delay_limit``)."""
        return self.timing.report_delay_limit

    @property
    def clock_skew_tolerance(self) -> timedelta:
        """时间倒置 and 时序: the one clock-skew tolerance (``timing.clock_skew_tolerance``)."""
        return self.timing.clock_skew_tolerance

    def as_dict(self) -> dict:
        """JSON-friendly view (durations in seconds; the timing rules flattened)."""
        out = asdict(self)
        out.update(out.pop("timing"))
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

# Timeliness status codes (int8 in the record frames) live with the rule: core.rules (imported above).

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


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """Numeric ratio, NaN where the denominator is 0 (shown as "/")."""
    den = denominator.astype("float64")
    return (numerator.astype("float64") / den).where(den > 0)


def timeliness_base(produced, unknown):
    """The denominator of 及时率: the records produced, or 0 (shown "/") when none has a reporting time.

    A record without reported_at is never timely; but when no record of a group has one (an export
    without a 上报时间 column), timeliness is a figure the source cannot give, shown "/" rather than
    0 % (data contract §4). Works on counts and on Series of counts.
    """
    if isinstance(produced, pd.Series):
        return produced.where(unknown < produced, 0)
    return produced if unknown < produced else 0


def _rate_column(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return pd.Series(
        [format_ratio(n, d) for n, d in zip(numerator, denominator, strict=True)],
        index=numerator.index,
        dtype="str",
    )
