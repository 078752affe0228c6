"""Spreadsheet output: typed cells, layout and print setup, formula injection; the three writers."""

from __future__ import annotations

import math
import os
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from openpyxl.cell.cell import MergedCell

from haocha_analysis import quality
from haocha_analysis.analysis import anomalies
from haocha_analysis.analysis.annexes import (
    ANNEXES,
    SHEET_NAMES,
    build_tables,
    format_change,
    format_rate,
    write_outputs,
)
from haocha_analysis.core import spreadsheet
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.schemas import coerce
from haocha_analysis.core.spreadsheet import (
    CHANGE_FORMAT,
    MEASURE_FORMAT,
    PERCENT_FORMAT,
    SheetSpec,
    groups_by_prefix,
    neutralise,
    neutralise_frame,
    neutralise_series,
    truncate_fraction,
    write_workbook,
)
from haocha_analysis.core.text import format_ratio

Q1, Q2 = parse_period("2023Q1"), parse_period("2023Q2")
EXTRACTED = date(2023, 7, 4)
DANGEROUS = ["=1+1", "+86", "-x", "@SUM(A1)", "\t=cmd", "\r=cmd", "-2+3+cmd|' /C calc'!A0"]


def all_cells(book):
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            yield from row


def assert_no_formula(book) -> None:
    formulas = [(c.parent.title, c.coordinate, c.value) for c in all_cells(book) if c.data_type == "f"]
    assert formulas == []
    texts = [c.value for c in all_cells(book) if isinstance(c.value, str)]
    assert not [t for t in texts if t.startswith(("=", "+", "@", "\t", "\r"))]


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_printable(sheet, header_rows: str, landscape: bool) -> None:
    """Title merged over the table, header frozen, filtered, repeated on each page; A4, fit to width."""
    last = sheet.max_column
    assert any(
        r.min_row == r.max_row == 1 and r.min_col == 1 and r.max_col == last for r in sheet.merged_cells
    )
    first, final = (int(x) for x in header_rows.split(":"))
    assert sheet.freeze_panes.endswith(str(final + 1))
    assert sheet.auto_filter.ref.startswith(f"A{final}:")
    assert sheet.print_title_rows == f"${first}:${final}"
    assert sheet.page_setup.orientation == ("landscape" if landscape else "portrait")
    assert str(sheet.page_setup.paperSize) == "9"  # A4
    assert sheet.page_setup.fitToWidth == 1 and sheet.page_setup.fitToHeight == 0
    assert sheet.sheet_properties.pageSetUpPr.fitToPage
    for cell in sheet[final]:
        if isinstance(cell, MergedCell):  # under a header cell spanning both rows
            continue
        assert cell.font.bold and cell.fill.fgColor.rgb.endswith(spreadsheet.HEADER_FILL)
        assert cell.border.left.style == "thin"


# --- neutralise ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", DANGEROUS)
def test_neutralise_quotes_text_a_spreadsheet_would_run(text):
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize(
    "value", ["东湖区", "a=b", "", " =1", "-12", "-1,234.5", "-3.33%", -5, -2.5, 0, None, date(2023, 1, 1)]
)
def test_neutralise_leaves_safe_values_and_numbers_alone(value):
    assert neutralise(value) == value


def test_neutralise_series_and_frame():
    frame = pd.DataFrame(
        {
            "name": pd.Series(["=1+1", "东湖区", None, "-5"], dtype="str"),
            "mixed": pd.Series(["@x", 3, None, "+86"], dtype=object),
            "kind": pd.Categorical(["-x", "ok", "ok", "-x"]),
            "n": [-1, 2, 3, -4],
            "x": [-0.5, np.nan, 1.0, 2.0],
        }
    )
    out = neutralise_frame(frame)
    assert out["name"].tolist()[:2] == ["'=1+1", "东湖区"] and out["name"].tolist()[3] == "-5"
    assert pd.isna(out["name"][2])
    assert out["mixed"].tolist()[:2] == ["'@x", 3] and out["mixed"][3] == "'+86"
    assert isinstance(out["kind"].dtype, pd.CategoricalDtype) and out["kind"].tolist() == [
        "'-x",
        "ok",
        "ok",
        "'-x",
    ]
    assert out["n"].tolist() == [-1, 2, 3, -4] and out["x"].equals(frame["x"])
    assert frame["name"][0] == "=1+1"  # the input is not modified
    assert neutralise_frame(pd.DataFrame({"=x": [1]})).columns.tolist() == ["'=x"]  # the header row too
    numbers = pd.Series([-1.5, 2.0])
    assert neutralise_series(numbers) is numbers


def test_cell_values_are_plain_python_and_safe():
    assert spreadsheet.cell_value("\x01=cmd") == "'=cmd"  # a control character XML cannot hold is dropped
    assert spreadsheet.cell_value(np.int64(3)) == 3 and type(spreadsheet.cell_value(np.int64(3))) is int
    assert type(spreadsheet.cell_value(np.float32(0.5))) is float
    assert [spreadsheet.cell_value(v) for v in (np.nan, pd.NA, pd.NaT, None, float("inf"))] == [None] * 5
    aware = pd.Timestamp("2023-05-08 09:00", tz="Asia/Shanghai")
    assert spreadsheet.cell_value(aware) == datetime(2023, 5, 8, 9, 0)  # the clock reading: no zones in Excel


def test_truncate_fraction_never_rounds_up():
    assert truncate_fraction(0.99996) == 0.9999
    assert truncate_fraction(0.29) == 0.29  # 0.29 * 10000 is 2899.9999999999995
    assert truncate_fraction(-1 / 3) == -0.3333
    assert truncate_fraction(-0.00001) == 0.0 and math.copysign(1, truncate_fraction(-0.00001)) == 1
    assert truncate_fraction(pd.NA) is None and truncate_fraction(float("inf")) is None


def test_groups_by_prefix():
    assert groups_by_prefix(
        ["序号", "镇级评价总数", "村级差评数量", "镇级"], {"镇级": "镇 级", "村级": "村 级"}
    ) == [
        (None, "序号"),
        ("镇 级", "评价总数"),
        ("村 级", "差评数量"),
        (None, "镇级"),
    ]


def test_sheet_spec_rejects_what_excel_or_a_typo_would_break():
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(ValueError, match="sheet name"):
        SheetSpec("a/b", frame)
    with pytest.raises(ValueError, match="sheet name"):
        SheetSpec("x" * 32, frame)
    with pytest.raises(ValueError, match="no such column"):
        SheetSpec("s", frame, percent_columns=["rate"])
    with pytest.raises(ValueError, match="header_groups"):
        SheetSpec("s", frame, header_groups=[(None, "a"), (None, "b")])
    with pytest.raises(ValueError, match="repeated sheet names"):
        write_workbook("unused.xlsx", [SheetSpec("S", frame), SheetSpec("s", frame)])


# --- one sheet, every feature -------------------------------------------------------------------------


def sample_sheet(n_extra: int = 0) -> SheetSpec:
    frame = pd.DataFrame(
        {
            "序号": pd.array([1, 2, None], dtype="Int64"),
            "单位": ["=1+1", "东湖区湖滨街道便民服务中心", "合计"],
            "评价数": pd.array([1234567, 0, 1234567], dtype="Int64"),
            "评价率": pd.array([0.9999, None, None], dtype="Float64"),
            "测量值": [1.69992e-13, -2.5, 3.0],
            "日期": pd.to_datetime(["2023-05-08", None, "2023-05-09"]),
            "说明": ["+86", "\t=cmd", "@SUM(A1)"],
            **{f"x{i}": [i, i, i] for i in range(n_extra)},
        }
    )
    return SheetSpec(
        name="测试",
        frame=frame,
        title="青禾市测试表",
        notes=["备注：第一行。", "第二行"],
        header_groups={"评价数": "评价", "评价率": "评价"},
        percent_columns=["评价率"],
        number_formats={"序号": "0"},
        slash_columns=["评价率"],
        total_rows=[2],
    )


def test_sheet_cells_are_typed_formatted_and_safe(tmp_path):
    path = write_workbook(tmp_path / "t.xlsx", [sample_sheet()])
    book = load_workbook(path)
    sheet = book["测试"]
    assert_no_formula(book)
    assert_printable(sheet, "2:3", landscape=False)
    assert sheet["A1"].value == "青禾市测试表" and sheet["A1"].font.bold
    # two-level header: 评价 spans its two columns, the others span both header rows
    merged = {str(r) for r in sheet.merged_cells}
    assert {"C2:D2", "A2:A3", "B2:B3", "G2:G3"} <= merged
    assert (sheet["C2"].value, sheet["C3"].value, sheet["D3"].value) == ("评价", "评价数", "评价率")
    row = {c.column_letter: c for c in sheet[4]}
    assert row["A"].value == 1 and row["A"].number_format == "0"
    assert row["B"].value == "'=1+1" and row["B"].data_type == "s"
    assert row["C"].value == 1234567 and row["C"].number_format == "#,##0"
    assert is_number(row["D"].value) and row["D"].value == pytest.approx(0.9999)
    assert row["D"].number_format == PERCENT_FORMAT
    tiny = row["E"]
    assert tiny.value == pytest.approx(1.69992e-13) and tiny.number_format == "0.00"  # not 1.69992E-13
    assert row["F"].value == datetime(2023, 5, 8) and row["F"].number_format == "yyyy-mm-dd"
    assert row["G"].value == "'+86"
    second = {c.column_letter: c for c in sheet[5]}
    assert second["D"].value == "/"  # missing rate in a slash column
    assert second["F"].value is None  # missing date: empty
    assert second["G"].value == "'\t=cmd"
    total = {c.column_letter: c for c in sheet[6]}
    assert total["A"].value is None and total["D"].value is None  # summary row: blank, not "/"
    assert total["B"].font.bold and total["G"].value == "'@SUM(A1)"
    # notes after one blank row, merged over the table
    assert (
        sheet["A7"].value is None and sheet["A8"].value == "备注：第一行。" and sheet["A9"].value == "第二行"
    )
    assert {"A8:G8", "A9:G9"} <= merged
    assert sheet.auto_filter.ref == "A3:G6" and sheet.freeze_panes == "A4"
    # widths from content, CJK counting double; a long text column is capped
    widths = {k: d.width for k, d in sheet.column_dimensions.items()}
    assert widths["B"] == len("东湖区湖滨街道便民服务中心") * 2 + spreadsheet.PADDING
    assert widths["A"] == spreadsheet.MIN_WIDTH + spreadsheet.PADDING


def test_wide_sheet_is_landscape(tmp_path):
    spec = sample_sheet(n_extra=3)
    assert len(spec.columns) > spreadsheet.WIDE
    book = load_workbook(write_workbook(tmp_path / "w.xlsx", [spec]))
    assert book["测试"].page_setup.orientation == "landscape"
    narrow = SheetSpec("n", pd.DataFrame({"a": [1]}), landscape=True)
    assert (
        load_workbook(write_workbook(tmp_path / "n.xlsx", [narrow]))["n"].page_setup.orientation
        == "landscape"
    )


def test_sheet_without_title_notes_or_rows(tmp_path):
    spec = SheetSpec(
        "空表", pd.DataFrame({"单位": pd.Series([], dtype="str"), "n": pd.Series([], dtype="int64")})
    )
    sheet = load_workbook(write_workbook(tmp_path / "e.xlsx", [spec]))["空表"]
    assert sheet["A1"].value == "单位" and sheet.freeze_panes == "A2" and sheet.print_title_rows == "$1:$1"
    assert sheet.auto_filter.ref == "A1:B1" and sheet.max_row == 1


def test_write_is_atomic_and_readable(tmp_path, monkeypatch):
    target = tmp_path / "book.xlsx"
    target.write_bytes(b"previous")
    write_workbook(target, [sample_sheet()])
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["book.xlsx"]

    def fail(src, dst):
        raise OSError("disk full")

    before = target.read_bytes()
    monkeypatch.setattr(spreadsheet.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_workbook(target, [sample_sheet()])
    assert target.read_bytes() == before  # the previous file is untouched, no temporary file left
    assert [p.name for p in tmp_path.iterdir()] == ["book.xlsx"]


# --- the annexes, from the real code path -------------------------------------------------------------


def quarter(
    ref: CityReference, start: str, cases_per_unit: dict[str, tuple[int, int]]
) -> dict[str, pd.DataFrame]:
    """A tiny quarter: for each unit, (cases, of which evaluated); one bad review at 市人社局."""
    cases, evaluations = [], []
    day = pd.Timestamp(start)
    for unit, (n_cases, n_evaluated) in cases_per_unit.items():
        for i in range(n_cases):
            case_id = f"{unit}-{start}-{i}"
            finished = day + pd.Timedelta(hours=i)
            cases.append((case_id, unit, finished, "政务服务平台"))
            if i < n_evaluated:
                satisfaction = 1 if (unit == "qh-c1" and i == 0) else 5
                channel = "pc" if i % 3 else "system_default"
                evaluations.append(
                    (
                        f"e-{case_id}",
                        case_id,
                        unit,
                        channel,
                        satisfaction,
                        finished + pd.Timedelta(minutes=1),
                        1,
                    )
                )
    cases = pd.DataFrame(cases, columns=["case_id", "unit_id", "finished_at", "source_system"])
    evaluations = pd.DataFrame(
        evaluations,
        columns=["eval_id", "case_id", "unit_id", "channel", "satisfaction", "evaluated_at", "attempt"],
    )
    evaluations["active"] = evaluations["channel"] != "system_default"
    rectifications = pd.DataFrame(
        [(f"e-qh-c1-{start}-0", "valid", None, None, "满意")],
        columns=["eval_id", "verdict", "deadline", "rectified_at", "follow_up"],
    )
    return {
        "cases": coerce(cases, "cases"),
        "evaluations": coerce(evaluations, "evaluations"),
        "rectifications": coerce(rectifications, "rectifications"),
    }


UNITS_Q2 = {
    "qh-d1-k1": (3, 2),
    "qh-d1-k3": (7, 7),
    "qh-d1-t1": (5, 4),
    "qh-d1-t1-v1": (3, 1),
    "qh-d2-k2": (6, 5),
    "qh-c1": (9, 8),
    "qh-c2": (2, 0),
}
UNITS_Q1 = {"qh-d1-k1": (4, 4), "qh-d1-k3": (2, 2), "qh-c1": (3, 3), "qh-d2-k2": (7, 7)}  # 西山县 falls


@pytest.fixture(scope="module")
def annex_result(qinghe):
    history = {"2023Q1": quarter(qinghe, "2023-02-01", UNITS_Q1)}
    data = quarter(qinghe, "2023-05-02", UNITS_Q2)
    return build_tables(qinghe, data, Q2, extracted_on=EXTRACTED, compare=True, history=history)


def data_rows(sheet, first: int, n: int) -> list[list]:
    return [[c for c in row] for row in sheet.iter_rows(min_row=first, max_row=first + n - 1)]


def test_annex_workbook_matches_the_numeric_annexes_cell_for_cell(annex_result, tmp_path):
    write_outputs(annex_result, tmp_path)
    book = load_workbook(tmp_path / "annexes.xlsx")
    assert_no_formula(book)
    assert book.sheetnames == [SHEET_NAMES[n] for n in ANNEXES]
    # 14 of 18 cases evaluated: 77.77% (truncated; rounding would print 77.78%)
    assert annex_result.annexes["annex1_districts"]["评价率"][0] == "77.77%"
    checked = 0
    for i, name in enumerate(ANNEXES, start=1):
        sheet = book[SHEET_NAMES[name]]
        numeric, display = annex_result.numeric[name], annex_result.annexes[name]
        two_rows = name == "annex4_towns_villages"
        header_last = 3 if two_rows else 2
        assert_printable(sheet, f"2:{header_last}", landscape=len(numeric.columns) > 8)
        assert sheet["A1"].value == f"附件{i}\u3000{annex_result.titles[name]}"
        note_row = header_last + len(numeric) + 2
        assert sheet.cell(row=note_row, column=1).value == annex_result.notes[name]
        rows = data_rows(sheet, header_last + 1, len(numeric))
        for r, cells in enumerate(rows):
            summary = pd.isna(numeric["序号"].iloc[r])
            for c, col in enumerate(numeric.columns):
                cell, expected, shown = cells[c], numeric[col].iloc[r], display[col].iloc[r]
                if numeric[col].dtype == "str":
                    assert cell.value == shown, (name, col)
                    continue
                if pd.isna(expected):
                    assert cell.value == (None if summary else "/"), (name, r, col)
                    assert shown == ("" if summary else "/")
                    continue
                assert is_number(cell.value), (name, r, col, cell.value)
                checked += 1
                if col.endswith(("环比", "同比")):
                    assert cell.number_format == CHANGE_FORMAT
                    assert cell.value == pytest.approx(truncate_fraction(expected), abs=1e-12)
                    assert format_change(cell.value) == shown  # the figure the CSV prints
                elif col.endswith("率"):
                    assert cell.number_format == PERCENT_FORMAT
                    assert cell.value == pytest.approx(math.floor(expected * 10000 + 1e-9) / 10000, abs=1e-12)
                    assert format_rate(cell.value) == shown
                elif col == "总量占比":
                    assert cell.number_format == "0%" and cell.value == pytest.approx(expected / 100)
                    assert f"{round(cell.value * 100)}%" == shown
                else:  # 序号 and counts
                    assert isinstance(cell.value, int) and cell.number_format == "0"
                    assert cell.value == int(expected) and str(cell.value) == shown
                if summary:
                    assert cell.font.bold
    assert checked > 60
    a1 = book[SHEET_NAMES["annex1_districts"]]
    assert any(c.value == "评价数环比" for c in a1[2])  # compare columns are written too
    a4 = book[SHEET_NAMES["annex4_towns_villages"]]
    assert {"C2:E2", "F2:H2", "A2:A3", "B2:B3"} <= {str(r) for r in a4.merged_cells}
    assert (a4["C2"].value, a4["F2"].value, a4["C3"].value) == ("镇 级", "村 级", "评价总数")


def test_annex_csvs_quote_a_unit_name_a_spreadsheet_would_run(qinghe, tmp_path):
    units = qinghe.units.copy()
    evil = '=HYPERLINK("http://example.invalid","市人社局")'
    units.loc[units["unit_id"] == "qh-c1", "unit_name"] = evil
    units.loc[units["unit_name"] == "西山县", "unit_name"] = "@西山县"
    units.loc[units["district"] == "西山县", "district"] = "@西山县"
    ref = CityReference("evil", qinghe.path, units, meta=qinghe.meta)
    result = build_tables(ref, quarter(ref, "2023-05-02", UNITS_Q2), Q2, extracted_on=EXTRACTED)
    write_outputs(result, tmp_path)

    def csv(name):
        return pd.read_csv(tmp_path / f"{name}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")

    a2 = csv("annex2_city_departments")
    assert a2["部门"][0] == "'" + evil
    assert a2.drop(columns="部门").equals(result.annexes["annex2_city_departments"].drop(columns="部门"))
    assert csv("annex1_districts")["区县"].tolist() == ["东湖区", "'@西山县"]
    assert "'@西山县" in csv("annex3_district_departments").columns  # a header cell too
    assert "'@西山县" in csv("reconciliation")["范围"].tolist()
    book = load_workbook(tmp_path / "annexes.xlsx")
    assert_no_formula(book)
    assert book[SHEET_NAMES["annex2_city_departments"]]["B3"].value == "'" + evil


# --- quality.xlsx and anomalies.xlsx ------------------------------------------------------------------


def quality_data() -> dict[str, pd.DataFrame]:
    finished = pd.Timestamp("2023-05-08 09:00")
    cases = pd.DataFrame(
        {
            "case_id": ["=c1", "c2", "c3", "c4"],
            "unit_id": ["qh-d1-k1"] * 3 + ["qh-c1"],
            "finished_at": [finished] * 4,
            "reported_at": [finished + pd.Timedelta(minutes=m) for m in (9, 1, 2, 3)],  # =c1 is late
            "source_system": ["政务服务平台"] * 4,
            "matter_code": ["M1"] * 4,
        }
    )
    evaluations = pd.DataFrame(
        {
            "eval_id": ["e1", "e2", "e3"],
            "case_id": ["c2", "c3", "c9"],  # c9: an orphan
            "unit_id": ["qh-d1-k1"] * 3,
            "channel": ["hall_tablet"] * 3,
            "satisfaction": [5, 5, 4],
            "evaluated_at": [finished + pd.Timedelta(minutes=5)] * 3,
            "reported_at": [finished + pd.Timedelta(minutes=6)] * 3,
            "attempt": [1, 1, 1],
            "active": [True] * 3,
        }
    )
    return {"cases": coerce(cases, "cases"), "evaluations": coerce(evaluations, "evaluations")}


def test_quality_workbook_has_numbers_and_percentages(qinghe, tmp_path):
    report = quality.run_quality(qinghe, quality_data(), Q2)
    quality.write_outputs(report, tmp_path)
    book = load_workbook(tmp_path / "quality.xlsx")
    assert_no_formula(book)
    assert book.sheetnames == [sheet for _, sheet in quality.OUTPUT_NAMES.values()]
    rates = counts = 0
    for key, (_, sheet_name) in quality.OUTPUT_NAMES.items():
        table, sheet = report.tables[key], book[sheet_name]
        assert_printable(sheet, "2:2", landscape=len(table.columns) > 8)
        assert [c.value for c in sheet[2]] == list(table.columns)
        for r, cells in enumerate(data_rows(sheet, 3, len(table))):
            for c, col in enumerate(table.columns):
                cell, shown = cells[c], table[col].iloc[r]
                if str(shown).endswith("%"):
                    assert is_number(cell.value) and cell.number_format == PERCENT_FORMAT, (key, col)
                    assert format_ratio(round(cell.value * 10000), 10000) == shown
                    rates += 1
                elif isinstance(shown, int | np.integer):
                    assert isinstance(cell.value, int) and cell.value == shown, (key, col)
                    assert cell.number_format in ("#,##0", "0")
                    counts += 1
                elif col == "日期":
                    assert isinstance(cell.value, datetime) and cell.value.strftime("%Y-%m-%d") == shown
                else:
                    assert (cell.value or "") == neutralise(shown), (key, col)  # "" reads back as None
    assert rates > 20 and counts > 50
    overview = book["总体"]
    assert "/" in [c.value for c in overview[3]]  # 评价关联办件率 of the 办件 row: not applicable
    issues = report.tables["issues"]
    assert "=c1" in issues["记录编号"].tolist()
    assert "'=c1" in [c.value for c in book["问题记录"]["B"]]
    csv = pd.read_csv(tmp_path / "quality_issues.csv", dtype=str, encoding="utf-8-sig")
    assert "'=c1" in csv["记录编号"].tolist() and "=c1" not in csv["记录编号"].tolist()


def test_anomalies_outputs_keep_numbers_and_quote_text(tmp_path):
    findings = pd.DataFrame(
        [
            {
                "unit_id": "u1",
                "unit_name": "=1+1",
                "level": "town",
                "district": "甲区",
                "kind": "backfill",
                "kind_cn": "事后补录",
                "measure": 1.69992e-13,
                "threshold": 0.3,
                "expected": np.nan,
                "severity": 0.912,
                "evidence": "-x|e2",
                "description": "补录比例偏高",
                "measure_cn": "补录比例",
                "records": 12,
            },
            {
                "unit_id": "u2",
                "unit_name": "乙区便民服务中心",
                "level": "district",
                "district": "乙区",
                "kind": "duplicates",
                "kind_cn": "重复评价",
                "measure": -3.5,
                "threshold": 1234.5,
                "expected": 2.0,
                "severity": 0.5,
                "evidence": "e9",
                "description": "@SUM(A1)",
                "measure_cn": "重复条数",
                "records": 4,
            },
        ],
        columns=anomalies.FINDING_COLUMNS,
    )
    csv_path, xlsx_path = anomalies.write_outputs(findings, tmp_path)
    csv = pd.read_csv(csv_path, encoding="utf-8-sig")
    assert csv["单位"].tolist() == ["'=1+1", "乙区便民服务中心"]
    assert csv["示例记录编号"][0] == "'-x|e2" and csv["说明"][1] == "'@SUM(A1)"
    assert csv["测量值"].tolist() == pytest.approx([1.69992e-13, -3.5])  # numbers stay numbers
    book = load_workbook(xlsx_path)
    assert_no_formula(book)
    sheet = book["异常发现"]
    assert_printable(sheet, "2:2", landscape=True)
    assert sheet.freeze_panes == "D3"
    header = [c.value for c in sheet[2]]
    first = dict(zip(header, sheet[3], strict=True))
    second = dict(zip(header, sheet[4], strict=True))
    assert first["序号"].value == 1 and first["序号"].number_format == "0"
    assert first["单位"].value == "'=1+1" and second["说明"].value == "'@SUM(A1)"
    measure = first["测量值"]
    assert measure.value == pytest.approx(1.69992e-13) and measure.number_format == MEASURE_FORMAT
    assert "E" not in measure.number_format.upper() and measure.number_format != "General"
    assert first["期望值"].value is None  # missing: empty, not "/"
    assert second["测量值"].value == -3.5 and second["阈值"].value == 1234.5
    assert is_number(first["严重程度(0-1)"].value) and first["严重程度(0-1)"].number_format == "0.000"
    assert first["涉及记录数"].value == 12 and first["涉及记录数"].number_format == "#,##0"
    assert sheet["A6"].value.startswith("备注：")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_column_width_of_python_strings_is_the_pandas_width():
    from haocha_analysis.core.spreadsheet import _strings_width, _text_width

    texts = ["abc", "张店区", "Ａ１", "ｶﾅ", "混合 text，全角！", "", "  空格  ", "한국어"]
    for some in (texts, texts[:1], texts[1:2], [], [""]):
        assert _strings_width(some) == _text_width(pd.Series(some, dtype="str")), some
        assert _strings_width(some) == _text_width(pd.Series(some, dtype=object)), some
    assert _strings_width(["张店区", "abcdefg"]) == 7 and _strings_width(["张店区人社局"]) == 12
