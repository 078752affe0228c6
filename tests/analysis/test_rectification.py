"""The 差评 closed loop on tiny literal frames: deadlines across holidays, stages as of a date, figures."""

from __future__ import annotations

import dataclasses
from datetime import date

import pandas as pd
import pytest

from haocha_analysis.analysis.rectification import (
    AUDIT_NO_APPROVAL,
    AUDIT_NO_REASON,
    AUDIT_REASON_NOT_CODED,
    build_ledger,
    closed_loop,
    rectify_deadlines,
)
from haocha_analysis.analysis.rectification_report import (
    figures_display,
    overdue_display,
    paragraph,
    sheet_names,
)
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.reference import ClosedLoopLimits, closed_loop_limits
from haocha_analysis.core.schemas import coerce

NATIONAL = ClosedLoopLimits(verify_days=3, rectify_days=15, revisit_days=5)


def ts(values):
    return pd.Series(pd.to_datetime(values))


# --- deadlines in working days (chinese-calendar: holidays and 调休 working weekends) ---------------


@pytest.mark.parametrize(
    ("evaluated_at", "days", "expected", "why"),
    [
        ("2023-01-20 15:00", 3, "2023-01-30", "春节 2023: 1-21..27 off, 1-28 Sat and 1-29 Sun worked"),
        ("2023-04-28 16:00", 3, "2023-05-06", "劳动节 2023: 4-29..5-3 off; the 3rd day is 5-6, a Saturday"),
        ("2023-04-28 16:00", 15, "2023-05-23", "劳动节 2023, the national 15 days"),
        ("2023-09-28 10:00", 3, "2023-10-09", "国庆 2023: 9-29..10-6 off, 10-7 Sat and 10-8 Sun worked"),
        ("2023-10-01 20:00", 3, "2023-10-09", "a 差评 made on a holiday: counting starts after it"),
        ("2023-10-01 20:00", 15, "2023-10-25", "made on a holiday, 15 days"),
        ("2024-02-08 09:00", 3, "2024-02-19", "春节 2024: 2-9 worked, 2-10..17 off, 2-18 Sun worked"),
        ("2024-02-08 09:00", 15, "2024-03-06", "春节 2024, 15 days"),
        ("2024-02-12 11:00", 3, "2024-02-20", "made on 春节 2024"),
        ("2024-05-03 21:00", 3, "2024-05-08", "made on 劳动节 2024 (5-1..5-5 off)"),
        ("2024-05-03 21:00", 5, "2024-05-10", "a city's 5-day limit"),
        ("2024-09-30 17:00", 15, "2024-10-25", "国庆 2024: 10-1..7 off, 10-12 Sat worked"),
    ],
)
def test_deadlines_count_working_days_across_holidays(evaluated_at, days, expected, why):
    evaluated = ts([evaluated_at])
    limits = ClosedLoopLimits(verify_days=days, rectify_days=days, revisit_days=days)
    loop = closed_loop(evaluated, pd.DataFrame(index=evaluated.index), limits)
    assert loop["verify_deadline"].iloc[0] == pd.Timestamp(expected), why
    assert loop["rectify_deadline"].iloc[0] == pd.Timestamp(expected), why


def test_revisit_deadline_counts_from_the_rectification():
    evaluated = ts(["2023-09-25 10:00", "2024-02-05 10:00"])
    rect = pd.DataFrame(
        {
            "verdict": ["valid", "valid"],
            "rectified_at": pd.to_datetime(["2023-09-28 15:00", "2024-02-09 16:00"]),
        }
    )
    loop = closed_loop(evaluated, rect, NATIONAL)
    # 9-28 + 5: 10-7 (Sat), 10-8 (Sun), 10-9, 10-10, 10-11; 2-9 + 5: 2-18 (Sun), 2-19 .. 2-22
    assert loop["revisit_deadline"].tolist() == [pd.Timestamp("2023-10-11"), pd.Timestamp("2024-02-22")]


def test_a_rows_own_deadline_wins_and_moves_off_a_holiday():
    evaluated = ts(["2024-09-20 10:00", "2024-02-01 10:00", "2024-10-08 10:00", "2024-09-20 10:00"])
    given = pd.Series(pd.to_datetime(["2024-10-03", "2024-02-17", "2024-10-12", None]))
    got = rectify_deadlines(evaluated, given, NATIONAL)
    assert got.tolist() == [
        pd.Timestamp("2024-10-08"),  # 国庆 holiday → the next working day
        pd.Timestamp("2024-02-18"),  # 春节 Saturday → Sunday 2-18, a 调休 working day
        pd.Timestamp("2024-10-12"),  # a 调休 working Saturday stays
        pd.Timestamp("2024-10-16"),  # none given: 9-20 + 15 working days (9-29 Sun and 10-12 Sat worked)
    ]


def test_on_time_is_decided_by_the_day_not_the_hour():
    evaluated = ts(["2023-10-01 20:00", "2023-10-01 20:00"])
    rect = pd.DataFrame(
        {
            "verdict": ["valid", "valid"],
            "rectified_at": pd.to_datetime(["2023-10-25 23:59", "2023-10-26 00:01"]),
        }
    )
    assert closed_loop(evaluated, rect, NATIONAL)["on_time"].tolist() == [True, False]


# --- the ledger: one row per 差评, stages as of a date -------------------------------------------------


def tables(evaluations, rectifications):
    """Cases c<n> of unit qh-d1-k1 finished 2023-09-25; evaluations (eval_id, case, sat, at, attempt)."""
    case_ids = sorted({e[1] for e in evaluations if e[1]})
    cases = coerce(
        pd.DataFrame(
            {
                "case_id": case_ids,
                "unit_id": "qh-d1-k1",
                "finished_at": pd.Timestamp("2023-09-25 09:00"),
                "matter_code": "M1",
                "matter_name": "社保卡申领",
            }
        ),
        "cases",
    )
    evals = pd.DataFrame(
        evaluations, columns=["eval_id", "case_id", "satisfaction", "evaluated_at", "attempt"]
    )
    evals["unit_id"] = "qh-c1"  # the linked case's unit wins
    evals["channel"] = "mobile"
    rect = pd.DataFrame(rectifications)
    return {
        "cases": cases,
        "evaluations": coerce(evals, "evaluations"),
        "rectifications": coerce(rect, "rectifications") if len(rect) else None,
    }


LOOP = tables(
    [
        ("e1", "c1", 1, "2023-10-08 10:00", 1),  # never verified
        ("e2", "c2", 2, "2023-10-08 11:00", 1),  # invalid, approved on the verify deadline's day
        ("e3", "c3", 1, "2023-10-01 20:00", 1),  # made on a holiday: rectified on time, followed up late
        ("e4", "c4", 2, "2023-10-08 16:00", 1),  # valid, never rectified
        ("e5", "c5", 1, "2023-09-28 09:00", 1),  # own deadline on a holiday, rectified on the moved day
        ("e6", "c6", 2, "2023-10-09 09:00", 2),  # a follow-up 差评; follow_up without a revisit time
        ("e7", "c7", 1, "2023-10-09 10:00", 1),  # valid without a verification time
        ("e8", "c8", 2, "2023-10-09 11:00", 1),  # invalid without reason or approval
        ("e9", "c9", 3, "2023-10-09 11:00", 1),  # 基本满意: not a 差评
    ],
    [
        {"eval_id": "e2", "verdict": "invalid", "invalid_reason": "误评", "verified_at": "2023-10-08 15:00",
         "approved_at": "2023-10-11 09:00"},
        {"eval_id": "e3", "verdict": "valid", "verified_at": "2023-10-07 09:00",
         "rectified_at": "2023-10-25 10:00", "revisited_at": "2023-11-02 10:00", "follow_up": "满意"},
        {"eval_id": "e4", "verdict": "valid", "verified_at": "2023-10-09 09:00"},
        {"eval_id": "e5", "verdict": "valid", "verified_at": "2023-09-28 15:00", "deadline": "2023-10-03",
         "rectified_at": "2023-10-07 11:00"},
        {"eval_id": "e6", "verdict": "valid", "verified_at": "2023-10-09 15:00",
         "rectified_at": "2023-10-10 10:00", "follow_up": "不满意"},
        {"eval_id": "e7", "verdict": "valid"},
        {"eval_id": "e8", "verdict": "invalid", "verified_at": "2023-10-09 15:00"},
    ],
)  # fmt: skip
PERIOD = parse_period("2023-09-25..2023-10-31")


def ledger_rows(qinghe, as_of, data=LOOP, limits=NATIONAL):
    ref = dataclasses.replace(qinghe, limits=limits)
    return build_ledger(ref, data, PERIOD, date.fromisoformat(as_of)).rows.set_index("eval_id")


def test_one_row_per_bad_review_made_by_the_as_of_date(qinghe):
    assert ledger_rows(qinghe, "2023-11-30").index.tolist() == [
        "e5",
        "e3",
        "e1",
        "e2",
        "e4",
        "e6",
        "e7",
        "e8",
    ]
    assert sorted(ledger_rows(qinghe, "2023-10-08").index) == ["e1", "e2", "e3", "e4", "e5"]
    rows = ledger_rows(qinghe, "2023-11-30")
    assert (rows["unit_id"] == "qh-d1-k1").all() and (rows["unit_name"] == "东湖区人社局").all()
    assert (rows["district"] == "东湖区").all() and (rows["matter_name"] == "社保卡申领").all()


def test_stages_as_of_a_date(qinghe):
    def stages(as_of):
        return ledger_rows(qinghe, as_of)["stage"].to_dict()

    assert stages("2023-10-08") == {
        "e1": "待核实",
        "e2": "待核实",  # verified, but the invalid verdict is not approved yet
        "e3": "整改中",
        "e4": "待核实",  # its verification is on 10-09
        "e5": "已整改待回访",
    }
    assert stages("2023-11-30") == {
        "e1": "待核实",
        "e2": "核实为无效",
        "e3": "已回访",
        "e4": "整改中",
        "e5": "已整改待回访",
        "e6": "已回访",  # follow_up recorded without a time
        "e7": "整改中",
        "e8": "核实为无效",
    }


def test_overdue_flags_per_step(qinghe):
    early, late = ledger_rows(qinghe, "2023-10-11"), ledger_rows(qinghe, "2023-11-30")
    # e1 made 10-08 (a 调休 Sunday): verify by 10-11 (10-9, 10-10, 10-11)
    assert not early.at["e1", "verify_overdue"] and late.at["e1", "verify_overdue"]
    assert early.at["e1", "days_left"] == 0 and early.at["e1", "days_used"] == 3
    # e2 approved on 10-11, its verify deadline: on time
    assert late.at["e2", "stage"] == "核实为无效" and not late.at["e2", "verify_overdue"]
    # e3 rectified on its deadline (10-25), followed up 11-02 > 10-25 + 5 working days (11-01)
    assert (
        late.at["e3", "on_time"] and not late.at["e3", "rectify_overdue"] and late.at["e3", "revisit_overdue"]
    )
    assert late.at["e3", "rectify_deadline"] == pd.Timestamp("2023-10-25")
    # e4: 10-08 + 15 working days = 10-27; open and past it by 11-30
    assert (
        late.at["e4", "rectify_deadline"] == pd.Timestamp("2023-10-27") and late.at["e4", "rectify_overdue"]
    )
    assert not ledger_rows(qinghe, "2023-10-27").at["e4", "rectify_overdue"]
    # e5: its own deadline 10-03 (国庆) moves to 10-07 (a 调休 Saturday); rectified that day: on time
    assert late.at["e5", "rectify_deadline"] == pd.Timestamp("2023-10-07") and late.at["e5", "on_time"]
    assert late.at["e5", "revisit_overdue"]  # never followed up: 10-07 + 5 = 10-13
    # e6's follow-up time is unknown, e7's verification time is unknown: NA, not False
    assert pd.isna(late.at["e6", "revisit_overdue"]) and pd.isna(late.at["e7", "verify_overdue"])
    assert late["overdue"].to_dict() == {
        "e5": True, "e3": True, "e1": True, "e2": False, "e4": True, "e6": False, "e7": True, "e8": False,
    }  # fmt: skip


def test_steps_after_the_as_of_date_are_not_shown(qinghe):
    rows = ledger_rows(qinghe, "2023-10-20")
    assert pd.isna(rows.at["e3", "rectified_at"]) and pd.isna(rows.at["e3", "revisited_at"])
    assert pd.isna(rows.at["e3", "follow_up"]) and rows.at["e3", "verdict"] == "valid"
    assert pd.isna(ledger_rows(qinghe, "2023-10-08").at["e2", "verdict"])


def test_invalid_verdicts_are_audited(qinghe):
    rows = ledger_rows(qinghe, "2023-11-30")
    assert rows.at["e8", "audit"] == f"{AUDIT_NO_REASON}；{AUDIT_NO_APPROVAL}"
    assert rows.at["e2", "audit"] == ""
    assert (rows.drop(index=["e8"])["audit"] == "").all()


def test_a_reason_outside_the_code_list_is_audited(qinghe):
    loop = {table: frame.copy() for table, frame in LOOP.items()}
    rect = loop["rectifications"]
    rect.loc[rect["eval_id"] == "e2", "invalid_reason"] = "群众操作失误"
    ref = dataclasses.replace(qinghe, limits=NATIONAL)
    rows = build_ledger(ref, loop, PERIOD, date(2023, 11, 30)).rows.set_index("eval_id")
    assert rows.at["e2", "audit"] == AUDIT_REASON_NOT_CODED


def test_the_citys_limits_apply(qinghe):
    rows = ledger_rows(qinghe, "2023-10-20", limits=ClosedLoopLimits(verify_days=1, rectify_days=5))
    assert (
        rows.at["e4", "rectify_deadline"] == pd.Timestamp("2023-10-13") and rows.at["e4", "rectify_overdue"]
    )
    assert rows.at["e2", "verify_overdue"]  # approved 10-11 > 10-09


def test_figures_per_unit_and_district(qinghe):
    ref = dataclasses.replace(qinghe, limits=NATIONAL)
    ledger = build_ledger(ref, LOOP, PERIOD, date(2023, 11, 30))
    unit = ledger.by_unit.set_index("unit_name").loc["东湖区人社局"]
    assert unit[["bad", "valid", "invalid", "verified", "rectified", "on_time", "revisited"]].tolist() == [
        8, 5, 2, 7, 3, 3, 2,
    ]  # fmt: skip
    # 按时整改率: over the valid 差评 rectified or past their deadline (e4, e7 open and past it)
    assert unit["due"] == 5 and unit["followup"] == 2 and unit["satisfied"] == 1
    shown = figures_display(ledger.by_unit, "unit_name", "单位").iloc[0]
    assert shown[["核实率", "整改率", "按时整改率", "回访率", "整改满意率", "无效差评占比"]].tolist() == [
        "87.5%", "60%", "60%", "66.66%", "50%", "28.57%",
    ]  # fmt: skip
    districts = figures_display(ledger.by_district, "district", "区县").set_index("区县")
    assert districts.loc["西山县", "核实率"] == "/" and districts.loc["合计", "差评数"] == 8
    assert pd.isna(districts.loc["合计", "序号"]) and districts.index.tolist()[-2:] == ["市直部门", "合计"]


def test_overdue_list_and_paragraph(qinghe):
    ref = dataclasses.replace(qinghe, limits=NATIONAL)
    ledger = build_ledger(ref, LOOP, PERIOD, date(2023, 11, 30))
    table = overdue_display(ledger)
    assert table["评价编号"].tolist() == ["e5", "e1", "e4", "e7", "e3"]  # open ones first, by time
    assert table.set_index("评价编号").at["e3", "超期环节"] == "回访"
    assert table.set_index("评价编号").at["e1", "超期环节"] == "核实"
    text = paragraph(ledger)
    assert "有效差评5件" in text and "东湖区人社局（5件）" in text and "整改满意率50%" in text
    none_valid = tables([("e1", "c1", 1, "2023-10-08 10:00", 1)], [{"eval_id": "e1", "verdict": "invalid"}])
    assert paragraph(build_ledger(ref, none_valid, PERIOD, date(2023, 11, 30))) == ""


def test_no_bad_reviews_gives_an_empty_ledger(qinghe):
    data = tables([("e1", "c1", 5, "2023-10-08 10:00", 1)], [])
    ledger = build_ledger(qinghe, data, PERIOD, date(2023, 11, 30))
    assert ledger.rows.empty and ledger.by_unit.empty and not ledger.has_valid
    assert ledger.by_district.set_index("district").loc["合计", "bad"] == 0
    assert overdue_display(ledger).empty


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "column", "problem"),
    [
        ({"eval_id": "e99"}, "eval_id", "所指的评价不存在"),
        ({"eval_id": "e9"}, "eval_id", "不是差评"),
        ({"rectified_at": "2023-09-30 09:00"}, "rectified_at", "整改完成时间早于评价时间"),
        ({"revisited_at": "2023-10-09 09:00"}, "revisited_at", "回访时间早于整改完成时间"),
        ({"approved_at": "2023-09-30 09:00"}, "approved_at", "审核通过时间早于评价时间"),
    ],
)
def test_rectifications_that_cannot_be_right_are_refused(qinghe, change, column, problem):
    rect = LOOP["rectifications"].copy()
    row = rect.index[rect["eval_id"] == "e3"][0]
    for key, value in change.items():
        rect.loc[row, key] = value if key == "eval_id" else pd.Timestamp(value)
    with pytest.raises(HaochaInputError) as err:
        build_ledger(qinghe, {**LOOP, "rectifications": rect}, PERIOD, date(2023, 11, 30))
    assert err.value.column == column and problem in err.value.problem and err.value.rows == [row + 1]


def test_a_repeated_rectification_is_refused(qinghe):
    rect = pd.concat([LOOP["rectifications"], LOOP["rectifications"].iloc[[0]]], ignore_index=True)
    with pytest.raises(HaochaInputError, match="同一评价编号出现多次"):
        build_ledger(qinghe, {**LOOP, "rectifications": rect}, PERIOD, date(2023, 11, 30))


# --- city settings and sheet names -------------------------------------------------------------------


def test_city_limits_from_city_yml(tmp_path):
    file = tmp_path / "city.yml"
    assert closed_loop_limits({}, file) == ClosedLoopLimits()
    assert ClosedLoopLimits() == NATIONAL
    got = closed_loop_limits({"rectification": {"rectify_working_days": 5, "verify_working_days": 1}}, file)
    assert got == ClosedLoopLimits(verify_days=1, rectify_days=5, revisit_days=5)
    for bad in ({"rectify_working_days": 16}, {"rectify_days": 5}, {"revisit_working_days": "5"}, [5]):
        with pytest.raises(HaochaInputError) as err:
            closed_loop_limits({"rectification": bad}, file)
        assert err.value.file == str(file) and err.value.column.startswith("rectification")


def test_sheet_names_are_valid_and_unique():
    names = sheet_names(["市人社局", "a/b:c*d?[e]", "很" * 40, "很" * 40, "按单位汇总"])
    assert names[0] == "市人社局" and names[1] == "a_b_c_d__e_"
    assert len(set(names)) == 5 and all(len(n) <= 31 for n in names)
    assert names[4] != "按单位汇总"


# --- the command -------------------------------------------------------------------------------------


def write_csv_data(folder, data):
    from haocha_analysis.ingest.storage import write_tables

    write_tables({k: v for k, v in data.items() if v is not None}, folder, "2023Q4", csv=True)
    return folder


def run_cli(*args):
    from click.testing import CliRunner

    from haocha_analysis.cli import cli

    return CliRunner().invoke(cli, ["rectification", *map(str, args)])


def test_command_writes_the_ledger_csv_and_a_sheet_per_unit(qinghe, tmp_path):
    import openpyxl

    data = write_csv_data(tmp_path / "data", LOOP)
    out = tmp_path / "out"
    result = run_cli(
        "--city", qinghe.path, "--period", PERIOD.label, "--data", data, "--out", out, "--as-of", "2023-11-30"
    )
    assert result.exit_code == 0, result.output
    assert "差评 8 件，有效 5 件，无效 2 件" in result.output
    raw = (out / "rectification_ledger.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
    ledger = pd.read_csv(
        out / "rectification_ledger.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False
    )
    assert len(ledger) == 8 and ledger.columns[0] == "评价编号"
    assert ledger.set_index("评价编号").at["e3", "当前阶段"] == "已回访"
    assert ledger.set_index("评价编号").at["e7", "核实超期"] == "/"  # unknown, not 否
    sheets = openpyxl.load_workbook(out / "rectification.xlsx").sheetnames
    assert sheets == ["按单位汇总", "按区县汇总", "超期清单", "东湖区人社局"]
    # Every figure reads back as a number: counts as integers, rates as fractions (or "/" when undefined).
    sheet = openpyxl.load_workbook(out / "rectification.xlsx")["按单位汇总"]
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    header = next(r for r in rows if "核实率" in r)
    first = rows[rows.index(header) + 1]
    assert first[header.index("差评数")] == 8 and first[header.index("核实率")] == 0.875
    assert sheet.cell(rows.index(header) + 2, header.index("核实率") + 1).number_format == "0.00%"
    assert all(not isinstance(v, str) or v == "/" for v in first[header.index("差评数") :])
    overdue = pd.read_csv(out / "rectification_overdue.csv", encoding="utf-8-sig")
    assert overdue["评价编号"].tolist() == ["e5", "e1", "e4", "e7", "e3"]


def test_command_refuses_a_period_without_records_and_warns_on_a_partial_one(qinghe, tmp_path):
    # An empty period used to give an all-zero ledger ("差评 0 件") with exit 0.
    data = write_csv_data(tmp_path / "data", LOOP)
    out = tmp_path / "out"
    result = run_cli("--city", qinghe.path, "--period", "2023Q2", "--data", data, "--out", out)
    assert result.exit_code == 2, result.output
    assert "统计期 2023年第二季度" in result.output and "没有任何办件或评价记录" in result.output
    assert not out.exists()
    result = run_cli("--city", qinghe.path, "--period", "2023", "--data", data, "--out", out)
    assert result.exit_code == 0, result.output
    assert "警告：本期数据仅覆盖" in result.output


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("eval_id", "e99", "所指的评价不存在"),
        ("rectified_at", "2023-09-30 09:00:00", "整改完成时间早于评价时间"),
        ("verdict", "maybe", "不是 valid/invalid"),
    ],
)
def test_command_refuses_bad_rectifications_and_writes_nothing(qinghe, tmp_path, column, value, message):
    data = write_csv_data(tmp_path / "data", LOOP)
    file = data / "rectifications.csv"
    rect = pd.read_csv(file, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    row = int(rect.index[rect["eval_id"] == "e3"][0])
    rect.loc[row, column] = value
    rect.to_csv(file, index=False, encoding="utf-8-sig")
    out = tmp_path / "out"
    result = run_cli("--city", qinghe.path, "--period", PERIOD.label, "--data", data, "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output and str(file) in result.output
    assert (
        f"列：{column}" in result.output and f"行号（前10个）：{row + 2}" in result.output
    )  # header is row 1
    assert "13800138000" not in result.output  # never the values
    assert not out.exists()


# --- the analysts' notebook ----------------------------------------------------------------------------


def test_notebook_views(qinghe):
    from haocha_analysis.analysis.rectification_report import (
        ageing,
        open_by_unit,
        pick_bad_review,
        plot_ageing,
        summary_line,
        timeline,
    )

    ledger = build_ledger(dataclasses.replace(qinghe, limits=NATIONAL), LOOP, PERIOD, date(2023, 11, 30))
    by_unit = open_by_unit(ledger).iloc[0]
    # open: e1 待核实; e4, e7 整改中; e5 已整改待回访 — all four past a deadline
    assert by_unit[["单位", "待核实", "整改中", "已整改待回访", "合计", "其中超期"]].tolist() == [
        "东湖区人社局", 1, 2, 1, 4, 4,
    ]  # fmt: skip
    assert open_by_unit(ledger, "qh-c1").empty
    ages = ageing(ledger)
    # working days to 11-30: e1 and e4 (made 10-08) 39, e7 (10-09) 38, e5 (9-28) 41
    assert ages.loc["31及以上"].tolist() == [1, 2, 1] and ages.to_numpy().sum() == 4
    assert plot_ageing(ledger).axes[0].get_title().startswith("青禾市")
    assert pick_bad_review(ledger) == "e5" and pick_bad_review(ledger, "e3") == "e3"
    with pytest.raises(HaochaInputError, match="e404"):
        pick_bad_review(ledger, "e404")
    steps = timeline(ledger, "e3").set_index("环节")
    assert steps.index.tolist() == ["评价", "核实", "整改", "回访"]
    assert steps.loc["整改", ["期限", "完成时间", "情况"]].tolist() == [
        "2023-10-25",
        "2023-10-25 10:00",
        "按时完成",
    ]
    assert steps.loc["回访", "情况"] == "超期完成 满意" and steps.loc["整改", "距评价工作日"] == 15
    assert timeline(ledger, "e8").set_index("环节").loc["无效审核通过", "情况"].startswith("（无原因）")
    assert "东湖区人社局" in summary_line(ledger, "e3") and timeline(ledger, "").empty


def test_notebook_runs_under_papermill(qinghe, tmp_path):
    import json

    import papermill as pm

    from haocha_analysis.core.config import KERNEL_NAME, NOTEBOOKS_DIR

    nb = NOTEBOOKS_DIR / "rectification.ipynb"
    params = pm.inspect_notebook(str(nb))
    assert set(params) == {"city", "period", "data_dir", "as_of", "unit_id", "eval_id", "top_n"}
    assert all(p["help"] for p in params.values())
    data = write_csv_data(tmp_path / "data", LOOP)
    out = tmp_path / "run.ipynb"
    pm.execute_notebook(
        str(nb),
        str(out),
        kernel_name=KERNEL_NAME,
        cwd=str(NOTEBOOKS_DIR),
        progress_bar=False,
        parameters={
            "city": str(qinghe.path),
            "period": PERIOD.label,
            "data_dir": str(data),
            "as_of": "2023-11-30",
            "eval_id": "e3",
        },
    )
    text = json.dumps(json.loads(out.read_text(encoding="utf-8")), ensure_ascii=False)
    assert "东湖区人社局" in text and "超期完成 满意" in text and "image/png" in text
