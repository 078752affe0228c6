"""Anomaly detection (异常发现): detectors over the canonical tables, one ranked findings table.

Every detector takes the canonical frames of one period (and, where it compares with the past, the
frames of earlier periods) and returns findings: one row per (unit, kind) with the measure, the
threshold it crossed, the value expected from peers or history and, in Chinese, the baseline it was
compared with, a severity in [0, 1] and the ids of
up to ``Settings.evidence_max`` example records. Every threshold is a field of :class:`Settings`
whose metadata says the rule or statistic it comes from (``settings_table()`` lists them).

The modules: :mod:`.settings` (kinds, weights, thresholds), :mod:`.features` (the per-unit
statistics every detector reads), :mod:`.detectors` (one function per kind), :mod:`.findings`
(running them into one table, writing it), :mod:`.baselines` (what a unit is compared with: its
own history and its peers), :mod:`.problems` (the bulletin's paragraph),
:mod:`.run` (a period from a data folder, for analysts) and :mod:`.drill` (one unit's drill-down).
"""

from haocha_analysis.analysis.anomalies.detectors import DETECTORS, burst_runs, duplicate_evaluations
from haocha_analysis.analysis.anomalies.features import Context, history_note, prepare
from haocha_analysis.analysis.anomalies.findings import (
    detect,
    detect_context,
    findings_for_people,
    write_outputs,
)
from haocha_analysis.analysis.anomalies.problems import problems_paragraph
from haocha_analysis.analysis.anomalies.run import (
    HISTORY_PERIODS,
    Analysis,
    analyse,
    load_history,
    load_period,
)
from haocha_analysis.analysis.anomalies.settings import (
    FINDING_COLUMNS,
    FINDING_HEADERS_CN,
    KIND_WEIGHTS,
    KINDS,
    Settings,
    settings_table,
)

__all__ = [
    "DETECTORS",
    "FINDING_COLUMNS",
    "FINDING_HEADERS_CN",
    "HISTORY_PERIODS",
    "KINDS",
    "KIND_WEIGHTS",
    "Analysis",
    "Context",
    "Settings",
    "analyse",
    "burst_runs",
    "detect",
    "detect_context",
    "duplicate_evaluations",
    "findings_for_people",
    "history_note",
    "load_history",
    "load_period",
    "prepare",
    "problems_paragraph",
    "settings_table",
    "write_outputs",
]
