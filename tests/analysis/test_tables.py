"""Annex tables, headline, reconciliation and outputs, on tiny literal frames (青禾市 and 淄博 layout)."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from haocha_analysis.analysis.annexes import (
    ANNEXES,
    SHEET_NAMES,
    annex1_districts,
    annex2_city_departments,
    annex3_district_departments,
    annex4_towns_villages,
    annex5_public_services,
    build_tables,
    comparison_sentence,
    format_change,
    format_rate,
    matters_catalogued,
    percent_half_up,
    to_display,
    write_outputs,
)
from haocha_analysis.cli import cli
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.schemas import coerce, empty
from haocha_analysis.ingest.storage import write_tables
from tests.conftest import GOLDEN_DIR

Q2 = parse_period("2023Q2")
EXTRACTED = date(2023, 7, 4)


def rows_of(frame: pd.DataFrame) -> list[list[str]]:
    return frame.astype(str).values.tolist()


def golden(name: str) -> pd.DataFrame:
    return pd.read_csv(GOLDEN_DIR / "zibo-2023Q2" / f"{name}.csv", dtype=str, keep_default_na=False)


def counts(**units) -> pd.DataFrame:
    """counts(unit_id={column: value}) → a per-unit counts frame (absent columns are 0)."""
    return pd.DataFrame([{"unit_id": uid, **cols} for uid, cols in units.items()])


# --- formatting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,text",
    [
        (1.0, "100%"),
        (0.996, "99.6%"),
        (2 / 3698, "0.05%"),
        (0.99999, "99.99%"),  # truncated, never rounded up to 100%
        (59071 / 108908, "54.23%"),
        (0.5, "50%"),
        (0.0, "0%"),
        (None, "/"),
        (pd.NA, "/"),
    ],
)
def test_format_rate(value, text):
    assert format_rate(value) == text


def test_format_change():
    assert [format_change(v) for v in (0.5, -1 / 3, 0.0, None)] == ["+50%", "-33.33%", "0%", "/"]


@pytest.mark.parametrize(
    "part,total,percent",
    [(3658, 162342, 2), (592, 162342, 0), (119994, 162342, 74), (1, 200, 1), (0, 10, 0), (5, 0, None)],
)
def test_percent_half_up(part, total, percent):
    assert percent_half_up(part, total) == percent


def test_matters_catalogued_wording(qinghe):
    def with_matters(n):
        return CityReference("x", qinghe.path, qinghe.units, matters=pd.DataFrame({"matter_code": range(n)}))

    assert matters_catalogued(with_matters(15234)) == "1.5万余件"
    assert matters_catalogued(with_matters(20999)) == "2万余件"
    assert matters_catalogued(with_matters(8000)) == "8000件"
    assert matters_catalogued(qinghe) is None


# --- each annex on literal counts ---------------------------------------------------------------


def test_annex1_rolls_up_every_district_unit_and_prints_slashes(qinghe):
    c = counts(
        **{
            "qh-d1-k1": {"cases": 10, "cases_evaluated": 9, "cases_active": 3, "cases_default": 6},
            "qh-d1-x1": {"cases": 2, "cases_evaluated": 2, "cases_active_unknown": 2},  # outside 附件3
            "qh-d1-t1-v1": {
                "cases": 1,
                "cases_evaluated": 1,
                "cases_default": 1,
                "case_bad_raw": 2,
                "case_bad_valid": 1,
                "case_bad_invalid": 1,
                "case_rectified_followup": 1,
                "case_rectified_satisfied": 1,
            },
            "qh-c1": {"cases": 100, "cases_evaluated": 100},  # a city department: not in 附件1
        }
    )
    numeric = annex1_districts(qinghe, c)
    assert numeric.loc[0, "办件数"] == 13 and numeric.loc[0, "主动评价数"] == 3
    assert rows_of(to_display(numeric)) == [
        ["1", "东湖区", "13", "12", "92.3%", "3", "1", "100%"],
        ["2", "西山县", "0", "0", "/", "/", "/", "/"],  # a district with no cases
    ]


def test_annex2_no_cases_and_no_active_flag(qinghe):
    c = counts(
        **{
            "qh-c1": {
                "cases": 3,
                "cases_evaluated": 3,
                "cases_active": 1,
                "cases_default": 2,
                "case_bad_valid": 1,
            },
            "qh-c2": {"cases": 4, "cases_evaluated": 4, "cases_active_unknown": 4},  # like 张店区税务局
        }
    )
    assert rows_of(to_display(annex2_city_departments(qinghe, c))) == [
        ["1", "市人社局", "3", "3", "100%", "1", "1"],
        ["2", "市公安局", "4", "4", "100%", "/", "0"],
        ["3", "市供水公司", "0", "0", "/", "/", "/"],
    ]


def test_annex3_categories_by_district_with_summary_row(qinghe):
    c = counts(
        **{
            "qh-d1-k1": {"eval_first": 5},
            "qh-d1-k3": {"eval_first": 2},
            "qh-d1-x1": {"eval_first": 50},  # no category: not in 附件3
            "qh-d2-k2": {"eval_first": 7},
            "qh-d2-t1": {"eval_first": 9},  # a town: 附件4
        }
    )
    display = to_display(annex3_district_departments(qinghe, c))
    assert list(display.columns) == ["序号", "部门", "东湖区", "西山县"]
    assert rows_of(display) == [
        ["1", "人社局", "5", "0"],
        ["2", "公安局", "0", "7"],
        ["3", "公共服务（水电气热通讯）", "2", "0"],
        ["", "汇总", "7", "7"],
    ]


def test_annex4_towns_and_villages(qinghe):
    c = counts(
        **{
            "qh-d1-t1": {
                "eval_first": 4,
                "eval_bad_raw": 3,
                "eval_bad_valid": 2,
                "eval_rectified_on_time": 1,
            },
            "qh-d1-t1-v1": {"eval_first": 6},
            "qh-d1-k1": {"eval_first": 100},
        }
    )
    display = to_display(annex4_towns_villages(qinghe, c))
    assert list(display.columns) == list(golden("annex4_towns_villages").columns)
    assert rows_of(display) == [
        ["1", "东湖区", "4", "2", "1", "6", "0", "0"],
        ["2", "西山县", "0", "0", "0", "0", "0", "0"],
    ]


def test_annex5_public_services_percent_and_total_row(qinghe):
    c = counts(
        **{
            "qh-d1-k3": {"eval_first": 1},
            "qh-d2-k3": {"eval_first": 2},
            "qh-c3": {"eval_first": 1000},  # a city-level company: 附件2, not 附件5
        }
    )
    assert rows_of(to_display(annex5_public_services(qinghe, c))) == [
        ["1", "东湖区", "1", "33%"],
        ["2", "西山县", "2", "67%"],
        ["", "总数", "3", ""],
    ]
    empty_table = to_display(annex5_public_services(qinghe, counts(**{"qh-d1-k1": {"eval_first": 1}})))
    assert rows_of(empty_table)[0] == ["1", "东湖区", "0", "/"]  # no base: "/"
    assert rows_of(empty_table)[-1] == ["", "总数", "0", ""]


def test_zibo_layout_matches_the_published_annexes(zibo):
    data = {t: empty(t) for t in ("cases", "evaluations", "rectifications")}
    result = build_tables(zibo, data, Q2, extracted_on=EXTRACTED)
    for name in ANNEXES:
        published = golden(name)
        ours = result.annexes[name]
        assert list(ours.columns) == list(published.columns), name
        assert ours.iloc[:, :2].equals(published.iloc[:, :2]), name  # 序号 and row names, in order
        assert (ours.dtypes == "str").all()
    # a unit with no cases: 0, 0, / ... (附件2 row 10 市残联 in the bulletin)
    assert (
        rows_of(result.annexes["annex2_city_departments"])[9] == rows_of(golden("annex2_city_departments"))[9]
    )
    assert result.notes["annex3_district_departments"] == (
        "备注：数据来源淄博市政务服务好差评系统，数据统计范围2023年4月1日至6月30日，数据提取时间：2023年7月4日。"
    )
    assert result.titles["annex3_district_departments"] == "区直部门第二季度“好差评”评价数据通报表"


# --- end to end on records ------------------------------------------------------------------------


def qinghe_records() -> dict[str, pd.DataFrame]:
    """A quarter of 青禾市 records exercising every rule (see test comments)."""
    cases = pd.DataFrame(
        [
            ("c1", "qh-d1-k1", "2023-04-10 09:00", "政务服务平台"),
            ("c2", "qh-d1-k1", "2023-04-11 09:00", "政务服务平台"),
            ("c3", "qh-d1-x1", "2023-05-01 09:00", "不动产系统"),  # 综合受理窗口: outside 附件3
            ("c4", "qh-d1-t1", "2023-05-02 09:00", "政务服务平台"),
            ("c5", "qh-d2-k2", "2023-06-30 17:00", "政务服务平台"),  # evaluated in Q3
            ("c6", "qh-c1", "2023-04-03 09:00", "政务服务平台"),
            ("c7", "qh-c1", "2023-04-04 09:00", "政务服务平台"),
            ("c8", "qh-c1", "2023-04-05 09:00", "政务服务平台"),
            ("c9", "qh-c2", "2023-04-06 09:00", "不动产系统"),  # source without the active flag
            ("c0", "qh-c1", "2023-03-30 09:00", "政务服务平台"),  # Q1: outside the period
        ],
        columns=["case_id", "unit_id", "finished_at", "source_system"],
    )
    evaluations = pd.DataFrame(
        [
            ("e1", "c1", "qh-d1-k1", "hall_tablet", 5, "2023-04-10 09:01", 1, True),
            ("e2", "c2", "qh-d1-k1", "system_default", 5, "2023-04-11 09:01", 1, False),
            ("e3", "c3", "qh-d1-k1", "pc", 5, "2023-05-01 09:01", 1, True),  # case c3 (x1) wins
            ("e4", "c4", "qh-d1-t1", "system_default", 5, "2023-05-02 09:01", 1, False),
            ("e5", None, "qh-d1-t1", "qr_code", 4, "2023-05-03 10:00", 1, True),  # not linked
            ("e6", "", "qh-d1-k3", "mobile", 5, "2023-05-04 10:00", 1, True),  # not linked
            ("e7", "c5", "qh-d2-k2", "pc", 5, "2023-07-01 08:00", 1, True),
            ("e8", "c6", "qh-c1", "pc", 1, "2023-04-03 09:01", 1, True),  # valid 差评
            ("e9", "c6", "qh-c1", "pc", 4, "2023-04-20 09:01", 2, True),  # 追评: not counted twice
            ("e10", "c7", "qh-c1", "pc", 2, "2023-04-04 09:01", 1, True),  # invalid 差评
            ("e11", "c8", "qh-c1", "system_default", 5, "2023-04-05 09:01", 1, False),
            ("e12", "c9", "qh-c2", "pc", 5, "2023-04-06 09:01", 1, pd.NA),
            ("e13", "c0", "qh-c1", "pc", 5, "2023-03-30 09:05", 1, True),  # Q1
        ],
        columns=[
            "eval_id",
            "case_id",
            "unit_id",
            "channel",
            "satisfaction",
            "evaluated_at",
            "attempt",
            "active",
        ],
    )
    rectifications = pd.DataFrame(
        [
            ("e8", "valid", None, "2023-04-10 10:00", "满意"),
            ("e10", "invalid", None, None, None),
        ],
        columns=["eval_id", "verdict", "deadline", "rectified_at", "follow_up"],
    )
    return {
        "cases": coerce(cases, "cases"),
        "evaluations": coerce(evaluations, "evaluations"),
        "rectifications": coerce(rectifications, "rectifications"),
    }


@pytest.fixture(scope="module")
def qinghe_result(qinghe):
    return build_tables(qinghe, qinghe_records(), Q2, extracted_on=EXTRACTED)


def test_records_to_annexes(qinghe_result):
    a = qinghe_result.annexes
    assert rows_of(a["annex1_districts"]) == [
        ["1", "东湖区", "4", "4", "100%", "2", "0", "/"],
        ["2", "西山县", "1", "1", "100%", "1", "0", "/"],
    ]
    assert rows_of(a["annex2_city_departments"]) == [
        ["1", "市人社局", "3", "3", "100%", "2", "1"],
        ["2", "市公安局", "1", "1", "100%", "/", "0"],
        ["3", "市供水公司", "0", "0", "/", "/", "/"],
    ]
    assert rows_of(a["annex3_district_departments"]) == [
        ["1", "人社局", "2", "0"],
        ["2", "公安局", "0", "0"],
        ["3", "公共服务（水电气热通讯）", "1", "0"],
        ["", "汇总", "3", "0"],
    ]
    assert rows_of(a["annex4_towns_villages"])[0] == ["1", "东湖区", "2", "0", "0", "0", "0", "0"]
    assert rows_of(a["annex5_public_services"]) == [
        ["1", "东湖区", "1", "100%"],
        ["2", "西山县", "0", "0%"],
        ["", "总数", "1", ""],
    ]


def test_headline(qinghe_result):
    h = qinghe_result.headline
    assert h["total_evaluations"] == 9 and h["district_cases"] == 5 and h["city_department_cases"] == 4
    assert h["evaluation_rate"] == "100%" and h["valid_bad_reviews"] == 1
    assert h["raw_bad_reviews"] == 2 and h["invalid_bad_reviews"] == 1
    assert h["followup_evaluations"] == 1 and h["unlinked_evaluations"] == 2
    assert h["business_systems_connected"] == ["政务服务平台", "不动产系统"]
    assert h["active_unknown_evaluations"] == 1 and h["rectification_satisfaction_rate"] == "100%"
    assert (h["period_start"], h["period_end"], h["extracted_on"]) == (
        "2023-04-01",
        "2023-06-30",
        "2023-07-04",
    )
    published = json.loads((GOLDEN_DIR / "zibo-2023Q2" / "headline.json").read_text(encoding="utf-8"))
    assert set(published) - set(h) == {"quality_rates"}  # that sentence is haocha quality's


def test_reconciliation_explains_the_district_gap(qinghe_result):
    rec = qinghe_result.reconciliation
    assert list(rec.columns) == [
        "check",
        "scope",
        "expected",
        "actual",
        "difference",
        "result",
        "explanation",
    ]
    gap = rec[rec["check"].str.startswith("附件1评价数 与")].set_index("scope")
    # 东湖区: 附件1 4 vs 附件3 3 + 附件4 2: 2 unlinked evaluations − 1 evaluated case at the 综合受理窗口
    assert (gap.loc["东湖区", "expected"], gap.loc["东湖区", "actual"], gap.loc["东湖区", "difference"]) == (
        4,
        5,
        1,
    )
    assert "未关联办件的评价 2 件" in gap.loc["东湖区", "explanation"]
    assert "综合受理窗口等）的已评价办件 1 件" in gap.loc["东湖区", "explanation"]
    # 西山县: its only case was evaluated after the quarter
    assert (
        gap.loc["西山县", "difference"] == -1
        and "不在同一统计期造成的差 1 件" in gap.loc["西山县", "explanation"]
    )
    assert gap["explanation"].str.endswith("差额已由以上各项完全解释。").all()
    others = rec[~rec["check"].str.startswith("附件1评价数 与")]
    assert (others["difference"] == 0).all()


def test_unknown_unit_is_a_clear_error(qinghe):
    data = qinghe_records()
    extra = coerce(
        pd.DataFrame([("cx", "qh-zz", "2023-04-10")], columns=["case_id", "unit_id", "finished_at"]), "cases"
    )
    data["cases"] = pd.concat([data["cases"], extra], ignore_index=True)
    with pytest.raises(HaochaInputError) as err:
        build_tables(qinghe, data, Q2, extracted_on=EXTRACTED)
    message = err.value.message()
    assert "qh-zz（办件 1 行，评价 0 行）" in message and "units.csv" in message and "aliases" in message


@pytest.mark.parametrize(
    "label,range_cn,cases",
    [
        ("2023-04", "2023年4月1日至4月30日", 6),  # c1, c2, c6, c7, c8, c9
        ("2023H1", "2023年1月1日至6月30日", 10),  # with c0 (March) and c5 (June 30)
        ("2023", "2023年1月1日至12月31日", 10),
    ],
)
def test_month_half_year_and_year(qinghe, label, range_cn, cases):
    period = parse_period(label)
    result = build_tables(qinghe, qinghe_records(), period, extracted_on=EXTRACTED)
    assert result.headline["total_cases"] == cases
    assert range_cn in result.notes["annex1_districts"]


def test_month_counts_only_that_month(qinghe):
    result = build_tables(qinghe, qinghe_records(), parse_period("2023-05"), extracted_on=EXTRACTED)
    assert rows_of(result.annexes["annex1_districts"])[0][:4] == ["1", "东湖区", "2", "2"]  # c3, c4
    assert rows_of(result.annexes["annex3_district_departments"])[-1] == ["", "汇总", "1", "0"]  # e6 only


def test_compare_adds_period_over_period_columns(qinghe):
    data = qinghe_records()
    previous = {t: frame.copy() for t, frame in data.items()}
    # the same 东湖区 records three months earlier, half of them
    shift = pd.DateOffset(months=3)
    previous["cases"] = previous["cases"][previous["cases"]["case_id"].isin(["c1", "c3"])]
    previous["cases"]["finished_at"] = previous["cases"]["finished_at"] - shift
    previous["evaluations"]["evaluated_at"] = previous["evaluations"]["evaluated_at"] - shift
    result = build_tables(
        qinghe, data, Q2, extracted_on=EXTRACTED, compare=True, history={"2023Q1": previous}
    )
    a1 = result.annexes["annex1_districts"]
    assert list(a1.columns)[-1] == "评价数环比" and "评价数同比" not in a1.columns  # no 2022Q2 data
    assert a1["评价数环比"].tolist() == ["+100%", "/"]  # 4 vs 2; 西山县 had none
    assert "合计环比" in result.annexes["annex3_district_departments"].columns
    assert result.headline["comparisons"]["环比"]["period"] == "2023Q1"
    # 9 cases and 9 evaluations against 2 and 2; no valid 差评 before.
    assert comparison_sentence(result.headline) == (
        "与上期（2023年第一季度）相比，汇聚办件数据增长350%，评价数据增长350%，有效差评无可比基数，评价率持平。"
    )
    default = build_tables(qinghe, data, Q2, extracted_on=EXTRACTED)
    assert "评价数环比" not in default.annexes["annex1_districts"].columns  # off by default


def test_write_outputs(qinghe_result, tmp_path):
    paths = write_outputs(qinghe_result, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [*(f"{n}.csv" for n in ANNEXES), "annexes.xlsx", "headline.json", "reconciliation.csv"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary file left behind
    raw = (tmp_path / "annex1_districts.csv").read_bytes()
    assert raw.startswith("\ufeff序号,区县".encode())
    assert pd.read_csv(tmp_path / "annex5_public_services.csv", dtype=str, keep_default_na=False).iloc[
        -1
    ].tolist() == [
        "",
        "总数",
        "1",
        "",
    ]
    assert json.loads((tmp_path / "headline.json").read_text(encoding="utf-8"))["total_evaluations"] == 9
    assert (
        (tmp_path / "reconciliation.csv")
        .read_text(encoding="utf-8-sig")
        .startswith("检查项,范围,应为,实际,差额")
    )
    book = load_workbook(tmp_path / "annexes.xlsx")
    assert book.sheetnames == [SHEET_NAMES[n] for n in ANNEXES]
    sheet = book["附件1 各区县"]
    # title row, header row, two districts, a blank row, the 备注 line (layout: tests/test_spreadsheet.py)
    assert sheet.freeze_panes == "A3" and sheet["A1"].font.bold and sheet["A2"].font.bold
    assert sheet.cell(row=6, column=1).value.startswith("备注：数据来源青禾市政务服务好差评系统")


def test_cli_tables(tmp_path):
    data_dir = tmp_path / "data"
    write_tables(qinghe_records(), data_dir, "2023Q2")
    out = tmp_path / "out"
    city = str(GOLDEN_DIR.parent / "data" / "reference" / "qinghe")
    runner = CliRunner()
    args = ["tables", "--city", city, "--period", "2023Q2", "--data", str(data_dir), "--out", str(out)]
    result = runner.invoke(cli, [*args, "--extracted-on", "2023-07-04"])
    assert result.exit_code == 0, result.output
    assert "总评价数 9" in result.output
    assert (out / "annexes.xlsx").exists()
    assert json.loads((out / "headline.json").read_text(encoding="utf-8"))["extracted_on"] == "2023-07-04"

    bad = tmp_path / "bad"
    records = qinghe_records()
    units = records["cases"]["unit_id"].astype("str")
    records["cases"]["unit_id"] = units.where(units.index != 0, "qh-zz").astype("category")
    write_tables(records, bad, "2023Q2")
    result = runner.invoke(
        cli,
        ["tables", "--city", city, "--period", "2023Q2", "--data", str(bad), "--out", str(tmp_path / "o2")],
    )
    assert result.exit_code == 2 and "qh-zz" in result.output
    assert not (tmp_path / "o2").exists()
