"""Running the quality checks on a data folder (what haocha quality and the notebook do)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from haocha_analysis.core import config
from haocha_analysis.core.coverage import coverage, require_records
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import load_city
from haocha_analysis.core.schemas import DTYPES
from haocha_analysis.core.settings import for_city as settings_for_city
from haocha_analysis.ingest.storage import available_periods, load_window, resolve_period_in
from haocha_analysis.quality.outputs import write_outputs
from haocha_analysis.quality.report import QualityReport, _limit_cn, run_quality
from haocha_analysis.quality.settings import QualitySettings

# --- loading -----------------------------------------------------------------------------------

CASE_COLUMNS = list(DTYPES["cases"])
EVALUATION_COLUMNS = list(DTYPES["evaluations"])


def load_quality_data(data_dir: Path, period: Period) -> dict[str, pd.DataFrame]:
    """The canonical columns of cases and evaluations through the one loading window.

    Repeated ids are not refused on load: duplicates and orphans are what quality counts.
    """
    columns = {"cases": CASE_COLUMNS, "evaluations": EVALUATION_COLUMNS}
    return load_window(Path(data_dir), period, columns=columns, tables=("cases", "evaluations"))


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
    settings: QualitySettings | None = None,
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
    stat_period = resolve_period_in(period, data_dir or None)
    data_path, out_path = default_paths(city, stat_period, data_dir, out_dir)
    if not data_path.exists():
        raise HaochaInputError(
            "找不到数据目录",
            file=str(data_path),
            fix=f"先运行 haocha synth --city {city} --period {stat_period.label} --out {data_path}，"
            "或用 --data 指定规范表目录",
        )
    data = load_quality_data(data_path, stat_period)
    cov = coverage(data, stat_period)
    require_records(cov, data_path, available_periods(data_path))
    if settings is None:  # the city's settings.yml, as the bulletin reads it
        settings = settings_for_city(QualitySettings, ref.path, "quality")
    report = run_quality(ref, data, stat_period, settings)
    report.figures["data_coverage"] = cov.as_dict()
    write_outputs(report, out_path)
    return report


def overview_markdown(report: QualityReport) -> str:
    """The overview figures as a short Chinese paragraph (Markdown) for the notebook."""
    f = report.figures
    limit = _limit_cn(f)
    lines = [
        f"**{f['city']} {f['period_label']}（{f['period_start']} 至 {f['period_end']}）数据质检**",
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
