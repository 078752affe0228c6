"""Record timing rules shared by the quality checks and the anomaly detectors (one object, one place).

Quality (数据质检) and anomalies (异常发现) judge the same records by the same clocks: a record late
under the provincial 5-minute rule, or an evaluation made before its case finished, is late or early
for both. :class:`RecordTiming` holds the limits; :func:`timeliness_status` and
:func:`made_before_case` apply them. ``QualitySettings.timing`` and the detectors' ``Settings.timing``
default to the same :data:`DEFAULT_TIMING`; pass one ``RecordTiming`` to both to change them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from haocha_analysis.core import config
from haocha_analysis.core.errors import HaochaInputError

# Timeliness status codes (int8 in the record frames).
TIMELY, LATE, UNKNOWN, INVERTED = 0, 1, 2, 3


@dataclass(frozen=True)
class RecordTiming:
    """The clock rules every record is judged by, in quality and in anomalies alike.

    Attributes:
        report_delay_limit: 及时性, the provincial 5-minute rule (省级“5分钟”数据质检规则,
            ``config.REPORT_DELAY_LIMIT``): a record passes when it reached the 好差评 system at most
            this long after its event (case finished / evaluation made). Exactly the limit passes;
            one second more fails.
        clock_skew_tolerance: the one tolerance for clocks that disagree. A report earlier than its
            event by more than this is a time inversion (时间倒置); an evaluation made more than this
            before its case finished is out of sequence (data contract §5, 评价应在办结后). Default 0:
            the contract allows no skew; a city whose systems are known to drift sets it once here.
    """

    report_delay_limit: timedelta = config.REPORT_DELAY_LIMIT
    clock_skew_tolerance: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        """Reject negative limits (they would make every record late or early)."""
        for name in ("report_delay_limit", "clock_skew_tolerance"):
            if getattr(self, name) < timedelta(0):
                raise HaochaInputError(
                    f"时限 {name} 不能为负",
                    fix="取非负时长，如 report_delay_limit 5 分钟、clock_skew_tolerance 0 秒",
                )

    @property
    def limit_minutes(self) -> float:
        """The 5-minute rule's limit in minutes (for Chinese text)."""
        return self.report_delay_limit.total_seconds() / 60

    def __str__(self) -> str:
        """As a settings table shows it: 上报时限 5 分钟，时钟误差容忍 0 秒."""
        return (
            f"上报时限 {self.limit_minutes:g} 分钟，"
            f"时钟误差容忍 {self.clock_skew_tolerance.total_seconds():g} 秒"
        )


DEFAULT_TIMING = RecordTiming()


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
    delay = report_delay(event_at, reported_at)
    status = np.full(len(delay), TIMELY, dtype="int8")
    status[delay > np.timedelta64(limit)] = LATE  # a missing time (NaT) compares False
    status[delay < -np.timedelta64(skew_tolerance)] = INVERTED
    status[np.isnat(delay)] = UNKNOWN
    return pd.Series(status, index=event_at.index, name="timeliness")


def report_delay(event_at: pd.Series, reported_at: pd.Series) -> np.ndarray:
    """``reported_at - event_at`` of each record (``timedelta64[us]``; NaT when a time is missing)."""
    return reported_at.to_numpy(dtype="datetime64[us]") - event_at.to_numpy(dtype="datetime64[us]")


def made_before_case(
    evaluated_at: np.ndarray | pd.Series,
    finished_at: np.ndarray | pd.Series,
    timing: RecordTiming = DEFAULT_TIMING,
) -> np.ndarray:
    """True where an evaluation was made more than ``clock_skew_tolerance`` before its case finished.

    Missing timestamps (an unlinked evaluation has no finish) give False.
    """
    ev = np.asarray(evaluated_at, dtype="datetime64[us]")
    fin = np.asarray(finished_at, dtype="datetime64[us]")
    tol = np.timedelta64(int(timing.clock_skew_tolerance.total_seconds() * 1_000_000), "us")
    return (ev + tol) < fin  # NaT compares False
