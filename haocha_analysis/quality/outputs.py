"""Writing the quality report: CSVs, the workbook and the figures (JSON), as one set."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

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
            report.tables[key].to_csv(staging / name, index=False, encoding="utf-8-sig")
            names.append(name)
        with pd.ExcelWriter(staging / XLSX_NAME, engine="openpyxl") as writer:
            for key, (_, sheet) in OUTPUT_NAMES.items():
                report.tables[key].to_excel(writer, sheet_name=sheet, index=False)
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
