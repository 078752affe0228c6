"""Writing the quality report: CSVs, the workbook and the figures (JSON), as one set."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.spreadsheet import (
    PLAIN_INTEGER_FORMAT,
    SheetSpec,
    neutralise_frame,
    printed_rates_as_fractions,
    write_workbook,
)
from haocha_analysis.quality.report import QualityReport

# --- outputs -----------------------------------------------------------------------------------

OUTPUT_NAMES = {
    "overview": ("quality_overview.csv", "总体"),
    "by_system": ("quality_by_system.csv", "按来源系统"),
    "by_unit": ("quality_by_unit.csv", "按单位"),
    "by_day": ("quality_by_day.csv", "按日"),
    "worst_units": ("quality_worst_units.csv", "问题单位"),
    "checks": ("quality_checks.csv", "质检项"),
    "completeness": ("quality_completeness.csv", "字段完整性"),
    "issues": ("quality_issues.csv", "问题记录"),
}
XLSX_NAME = "quality.xlsx"
FIGURES_NAME = "quality_figures.json"
XLSX_NOTE = "备注：比率按截断保留两位小数（不四舍五入）；“/”表示分母为0，不适用。"


def quality_sheet(report: QualityReport, key: str) -> SheetSpec:
    """The XLSX sheet of one presentation table: counts as integers, rates as percentages, dates as dates."""
    frame, rates = printed_rates_as_fractions(report.tables[key].reset_index(drop=True))
    sheet = OUTPUT_NAMES[key][1]
    try:
        when = parse_period(report.period).title_cn()
    except HaochaInputError:
        when = report.period
    return SheetSpec(
        name=sheet,
        frame=frame,
        title=f"{report.city}{when}数据质检：{sheet}",
        notes=[XLSX_NOTE] if rates else [],
        percent_columns=rates,
        number_formats={"排名": PLAIN_INTEGER_FORMAT} if "排名" in frame else {},
        slash_columns=rates,
    )


def write_outputs(report: QualityReport, out_dir: Path) -> list[Path]:
    """Write the quality tables (CSV, UTF-8 with BOM), one XLSX with a sheet per table, and the figures JSON.

    Files are written into a temporary folder beside the target, then moved into place, so a failure
    leaves no half-written file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".quality-", dir=out_dir))
    try:
        names = []
        for key, (name, _) in OUTPUT_NAMES.items():
            neutralise_frame(report.tables[key]).to_csv(staging / name, index=False, encoding="utf-8-sig")
            names.append(name)
        write_workbook(staging / XLSX_NAME, [quality_sheet(report, key) for key in OUTPUT_NAMES])
        names.append(XLSX_NAME)
        (staging / FIGURES_NAME).write_text(
            json.dumps(report.figures, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        names.append(FIGURES_NAME)
        written = []
        for name in names:
            os.replace(staging / name, out_dir / name)
            written.append(out_dir / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
