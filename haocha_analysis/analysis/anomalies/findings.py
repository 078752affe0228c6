"""Running the detectors into one ranked findings table, and writing it for people (CSV, XLSX)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from haocha_analysis.analysis.anomalies.detectors import DETECTORS
from haocha_analysis.analysis.anomalies.features import Context, prepare
from haocha_analysis.analysis.anomalies.settings import (
    FINDING_COLUMNS,
    FINDING_HEADERS_CN,
    KIND_WEIGHTS,
    KINDS,
    Settings,
)
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.schemas import LEVEL_LABELS
from haocha_analysis.core.spreadsheet import (
    MEASURE_FORMAT,
    PLAIN_INTEGER_FORMAT,
    SheetSpec,
    neutralise_frame,
    write_workbook,
)


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
        settings: thresholds (default: the city's settings.yml applied to :class:`Settings`).
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
        empty = pd.DataFrame(
            {
                c: pd.Series(
                    dtype="float64" if c in ("measure", "threshold", "expected", "severity") else "object"
                )
                for c in FINDING_COLUMNS
            }
        )
        empty.attrs["history_note"] = ctx.history_note
        return empty
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
    findings = findings[FINDING_COLUMNS]
    findings.attrs["history_note"] = ctx.history_note  # travels with the table to its outputs
    return findings


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


def notes_table(findings: pd.DataFrame) -> pd.DataFrame:
    """What the findings were compared with (the XLSX's 说明 sheet): history, baselines, severity."""
    return pd.DataFrame(
        {
            "项目": ["历史数据", "比较基线", "严重程度"],
            "说明": [
                findings.attrs.get("history_note", "") or "未记录",
                "每条发现的“比较基线”列写明它与什么比较：有本单位历史时与本单位以往比较"
                "（上一期已确认的水平变化视为新常态，评价量还比较去年同期），并列出同类单位的水平；"
                "没有历史时只与同类单位比较",
                "0–1，类型权重 × 检测器自身强度（docs/anomalies.md）",
            ],
        }
    )


def write_outputs(findings: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write ``anomalies.csv`` (UTF-8 with BOM) and ``anomalies.xlsx`` atomically; return the paths.

    The XLSX has a second sheet, 说明, saying which history the findings were compared with (or that
    there was none).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = findings_for_people(findings)
    notes_sheet = SheetSpec(name="说明", frame=notes_table(findings), title="异常发现的比较基线与严重程度")

    staged: list[tuple[str, Path]] = []
    try:  # both files are written before either replaces the previous set
        for name, writer in (
            ("anomalies.csv", lambda p: neutralise_frame(table).to_csv(p, index=False, encoding="utf-8-sig")),
            ("anomalies.xlsx", lambda p: write_workbook(p, [findings_sheet(table), notes_sheet])),
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
