"""The anomaly kinds, their weights, the findings' columns and the detectors' settings.

Every threshold is a field of :class:`Settings` with the rule or statistic it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import pandas as pd

from haocha_analysis.analysis.metrics import CASE_COLUMNS, EVALUATION_COLUMNS
from haocha_analysis.core import config
from haocha_analysis.core.rules import DEFAULT_TIMING, RecordTiming

# --- kinds -------------------------------------------------------------------------------------

KINDS: dict[str, str] = {
    "zero_data": "零数据",
    "low_volume": "评价数据量过低",
    "low_onsite": "现场评价量较少",
    "low_active": "主动评价率偏低",
    "backfill": "事后补录",
    "late_aggregation": "办件归集不及时",
    "late_reporting": "评价数据上报不及时",
    "duplicates": "重复评价",
    "staff_reentry": "工作人员代评（二次录入）",
    "agent": "代办人集中评价",
    "eval_before_case": "评价早于办结",
    "too_perfect": "评价结果过于完美",
    "high_invalid_bad": "无效差评偏多",
}

# Weight of each kind in the severity (severity = weight × the detector's own strength in [0, 1]).
# Records that are not what they claim to be (entered by staff, backfilled, dated before the case)
# weigh most: they falsify the evaluation itself; missing, late or duplicated data next; shares
# that are low (on-site, active) or high (invalid 差评) point at practice rather than at the record; an
# agent (代办) evaluating the cases they brought is lawful and only worth a look.
KIND_WEIGHTS: dict[str, float] = {
    "staff_reentry": 1.0,
    "backfill": 1.0,
    "eval_before_case": 0.9,
    "too_perfect": 0.8,
    "zero_data": 0.8,
    "late_aggregation": 0.8,
    "late_reporting": 0.7,
    "duplicates": 0.7,
    "low_volume": 0.7,
    "low_onsite": 0.6,
    "low_active": 0.6,
    "high_invalid_bad": 0.6,
    "agent": 0.3,
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
    "baseline",
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
    "baseline": "比较基线",
    "severity": "严重程度(0-1)",
    "evidence": "示例记录编号",
    "description": "说明",
    "measure_cn": "测量指标",
    "records": "涉及记录数",
}

# Columns the detectors read (storage.load_tables(columns=...) reads only these).
DETECT_COLUMNS: dict[str, list[str]] = {
    "cases": [*CASE_COLUMNS, "reported_at"],
    "evaluations": [*EVALUATION_COLUMNS, "reported_at", "evaluator_key", "operator", "comment"],
    "rectifications": ["eval_id", "verdict"],
}
# Earlier periods are only counted per unit (no linkage): volumes, evaluations per case, channels.
HISTORY_COLUMNS: dict[str, list[str]] = {
    "cases": ["unit_id", "finished_at"],
    "evaluations": ["case_id", "unit_id", "channel", "evaluated_at", "attempt"],
}


def _s(value: object, rationale: str) -> object:
    return field(default=value, metadata={"rationale": rationale})


@dataclass(frozen=True)
class Settings:
    """Every threshold of the detectors, each with the rule or statistic it comes from."""

    evidence_max: int = _s(10, "每条发现列出的示例记录数上限（便于核查，不撑大表格）")
    timing: RecordTiming = _s(  # noqa: RUF009 (a frozen dataclass: immutable)
        DEFAULT_TIMING,
        "与数据质检共用的时间规则（core.rules.RecordTiming）：5 分钟及时上报规则与唯一的时钟误差容忍度，"
        "质检判为超时或早于办结的记录，异常发现也这样判",
    )
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
    # the unit's own history
    history_min_periods: int = _s(2, "与本单位历史比较至少需要 2 个可用的历史统计期（一期可能本身异常）")
    history_shift_factor: float = _s(
        0.7,
        "上一期比更早各期的中位数低 30% 以上（且本期与上一期相近）即视为已确认的水平变化（如业务迁出），"
        "以上一期为新常态，不再重复报告",
    )
    history_new_drop_z: float = _s(
        2.0,
        "与本单位历史比较时，本期还须明显低于上一期（z < −2，计入两期各自的抽样波动）："
        "上一期已经这么低，说明变化在上一期就已出现，视为新常态，不再报告；"
        "去年同期也须明显低于常态（z < −2）才按季节取用",
    )
    # zero_data
    zero_data_peer_coverage: float = _s(
        0.5,
        "零数据：同层级至少一半单位本期有记录时，无记录的单位才算异常（某层级本无数据时不报）",
    )
    zero_data_alpha: float = _s(
        0.01,
        "有历史时：本期全无记录的概率 e^(−μ)（μ 为本单位历史上有业务的各期平均的办件与未关联评价数）"
        "低于 1% 才报：很小的单位偶尔一季度没有业务是正常的",
    )
    # low_volume
    low_volume_min_cases: int = _s(30, "评价/办件比：单位本期办件至少 30 件才比较")
    low_volume_ratio_factor: float = _s(
        0.5, "无本单位历史时：评价/办件比低于同类中位数的一半（且稳健 z 超限）为过低"
    )
    low_volume_own_ratio_factor: float = _s(
        0.7,
        "有本单位历史时：评价/办件比低于本单位历史水平的 0.7 倍为过低"
        "（单位自身各期比值稳定，差异远小于同类之间）",
    )
    low_volume_history_factor: float = _s(
        0.6,
        "工作日日均办件量或首次评价量（按全市同期变化调整，消除季节、节假日与调休的影响）"
        "不足本单位历史水平（前几期中位数；去年同期明显更低时取去年同期）的六成为过低",
    )
    low_volume_min_expected: float = _s(
        10.0,
        "按历史推算本期应有至少 10 件时才与历史比较（更小的单位无从判断；偶然波动由泊松 Chernoff 界排除）",
    )
    # low_onsite / low_active
    low_share_factor: float = _s(
        0.5,
        "无本单位历史时：占比低于同类中位数的一半、且对数占比的稳健 z 低于 −3.5"
        "（占比的差异是倍数关系）为偏低",
    )
    log_share_sigma_floor: float = _s(
        0.1,
        "对数占比离散度的下限（约 10% 的相对差异）：同类单位占比完全一致时 MAD 为 0，"
        "避免任何微小差异都算离群",
    )
    low_onsite_peer_min: float = _s(
        0.2,
        "无本单位历史时，只有同类单位现场评价占比中位数不低于 20%（同类单位在现场评价）时才检查现场评价",
    )
    low_onsite_own_factor: float = _s(
        0.6,
        "有本单位历史时：现场评价占比低于本单位历史水平的 0.6 倍为偏低（一贯以网上评价为主的单位不报）",
    )
    low_active_alpha: float = _s(
        0.01,
        "主动评价率须“有把握地”低于阈值：P(X≤k | n, 5%)（精确二项）低于 1%，小单位的偶然偏低不报",
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
        "按到达率（泊松过程，高峰按 3 倍计）推算的偶然成批期望数上限，据此提高繁忙单位、繁忙经办人的成批门槛",
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
        3.0,
        "超期评价数至少为按渠道推算之期望的 3 倍：期望 = Σ 各渠道评价数 × 同层级该渠道的超期率"
        "（短信、网站等渠道群众自行迟评的长尾各单位都有，现场渠道几乎没有）",
    )
    backfill_full_share: float = _s(0.2, "可疑评价占比达到 20% 时严重程度取满分")
    # late_aggregation / late_reporting
    late_min_cases: int = _s(10, "办件归集、评价上报：至少 10 条超时才报单位")
    late_min_share: float = _s(
        0.03,
        "超时占比至少 3% 才报（一次一天的系统故障约占一个季度的 1/60，不构成问题）",
    )
    late_baseline_factor: float = _s(3.0, "超时占比至少为全市基线的 3 倍")
    # duplicates
    duplicates_min: int = _s(
        3, "重复评价：同一办件多条首次评价或内容完全相同的评价，单位至少 3 起才报（1–2 起多为传输重发）"
    )
    # staff_reentry / agent
    reentry_min_cases_one_operator: int = _s(
        5, "同一评价人至少 5 件办件全部由同一经办人录入，且随机落到同一经办人的概率很小，视为工作人员代评"
    )
    reentry_alpha: float = _s(
        0.01, "k 件办件随机都落到同一经办人的概率 n_ops^(1−k) 低于 1% 才判定（单位经办人越少要求越多件）"
    )
    reentry_burst_min_records: int = _s(
        10,
        "成批录入的不同群众的评价（办结 5 个工作日以内）在单位内至少 10 条才报工作人员代评",
    )
    reentry_burst_min_lag_minutes: float = _s(
        30.0,
        "成批评价距各自办件办结的时间中位数至少 30 分钟：群众当场评价在办结后几分钟内，"
        "工作人员事后集中点评则在数小时后",
    )
    reentry_burst_max_workdays: int = _s(
        1,
        "成批评价距各自办件办结的工作日数中位数不超过 1（当天或次日集中点评）为代评；"
        "数日之后的成批录入属事后补录",
    )
    agent_min_cases: int = _s(
        20,
        "同一评价人标识在一个单位一个统计期内评价至少 20 件不同办件（群众个人极少如此），"
        "分散在不同经办人、不同日子：代办人（中介）代办件并评价，单列为低严重度的一类",
    )
    # eval_before_case
    before_case_min: int = _s(3, "评价早于办结（超过 timing.clock_skew_tolerance）：单位至少 3 条才报")
    # too_perfect
    too_perfect_baseline_quantile: float = _s(
        0.25,
        "基线取同层级单位差评率、非“非常满意”占比的下四分位数（单位之间本有差异，取偏低而常见的水平，判定更保守）",
    )
    too_perfect_min_expected: float = _s(
        5.0, "计算基线的单位按全层级差评率至少应有 5 件差评（否则其差评率全是 0 或噪声）"
    )
    too_perfect_alpha: float = _s(
        1e-3, "无差评的概率 P(0|n,p)=(1−p)^n、或非“非常满意”如此之少的概率低于 0.1% 判定为过于完美"
    )
    too_perfect_picture_alpha: float = _s(
        0.01,
        "等级分布的检验在时滞或渠道已高度集中的单位上进行：两项相互独立的迹象同时出现，"
        "等级过好的概率（精确二项）低于 1% 即判定",
    )
    too_perfect_min_evaluations: int = _s(
        100,
        "按等级分布、时滞与渠道判定过于完美至少需要 100 条群众作出的首次评价（小单位全部满意不足为凭）",
    )
    too_perfect_fast_seconds: float = _s(
        10.0, "办结后 10 秒内作出的评价算“即刻评价”（群众在窗口平板上评价通常要数十秒）"
    )
    too_perfect_fast_share: float = _s(0.5, "一半以上的办件首次评价为即刻评价即为时滞过于集中")
    too_perfect_channel_share: float = _s(
        0.9, "九成以上的评价来自同一个现场渠道（同一台设备类型）即为渠道过于集中"
    )
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
