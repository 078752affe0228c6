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

The modules: :mod:`.settings`, :mod:`.checks` (record level), :mod:`.report` (aggregation),
:mod:`.outputs`, :mod:`.charts` and :mod:`.run` (a data folder end to end).

The figures the bulletin quotes (数据生产、提交、质检、关联度入库率) are defined in
:func:`record_stages` and turned into a sentence by :func:`bulletin_sentence`.
"""

from haocha_analysis.quality.charts import plot_linkage_by_system, plot_timeliness_by_day
from haocha_analysis.quality.checks import check_cases, check_evaluations, timeliness_status
from haocha_analysis.quality.outputs import OUTPUT_NAMES, write_outputs
from haocha_analysis.quality.report import QualityReport, bulletin_sentence, run_quality
from haocha_analysis.quality.run import (
    load_quality_data,
    overview_markdown,
    problem_units,
    run_from_folder,
)
from haocha_analysis.quality.settings import UNLINKED_SYSTEM, QualitySettings

__all__ = [
    "OUTPUT_NAMES",
    "UNLINKED_SYSTEM",
    "QualityReport",
    "QualitySettings",
    "bulletin_sentence",
    "check_cases",
    "check_evaluations",
    "load_quality_data",
    "overview_markdown",
    "plot_linkage_by_system",
    "plot_timeliness_by_day",
    "problem_units",
    "run_from_folder",
    "run_quality",
    "timeliness_status",
    "write_outputs",
]
