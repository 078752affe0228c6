"""Data-quality centre: every check on tiny literal frames, boundaries spelled out; CLI, notebook, synth."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from haocha_analysis import quality
from haocha_analysis.cli import cli
from haocha_analysis.core.config import NOTEBOOKS_DIR
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.schemas import coerce
from haocha_analysis.core.text import format_ratio
from haocha_analysis.ingest.storage import write_tables
from haocha_analysis.quality.settings import INVERTED, LATE, TIMELY, UNKNOWN, QualitySettings

Q2 = parse_period("2023Q2")


def _frame(rows: list[dict], base: dict, table: str) -> pd.DataFrame:
    frame = pd.DataFrame([{**base, **r} for r in rows])
    for col in frame.columns:
        if col.endswith("_at"):
            frame[col] = pd.to_datetime(frame[col], format="ISO8601")
    return coerce(frame, table)


def _cases(rows: list[dict]) -> pd.DataFrame:
    return _frame(
        rows, {"unit_id": "qh-d1-k1", "source_system": "政务服务平台", "matter_code": "M1"}, "cases"
    )


def _evals(rows: list[dict]) -> pd.DataFrame:
    base = {"unit_id": "qh-d1-k1", "channel": "hall_tablet", "satisfaction": 5, "attempt": 1, "active": True}
    return _frame(rows, base, "evaluations")


# --- 及时性 -----------------------------------------------------------------------------------------


def test_timeliness_boundaries_exactly_five_minutes_passes_one_second_more_fails():
    event = pd.Series(pd.to_datetime(["2023-04-03 10:00:00"] * 6))
    reported = pd.Series(
        pd.to_datetime(
            [
                "2023-04-03 10:05:00",  # exactly 5:00 → passes
                "2023-04-03 10:05:01",  # 5:01 → fails
                "2023-04-03 10:06:00",  # 6:00 → fails
                None,  # unknown, never a pass
                "2023-04-03 09:59:00",  # reported before the event → time inversion
                "2023-04-03 10:00:00",  # zero delay → passes
            ]
        )
    )
    status = quality.timeliness_status(event, reported)
    assert status.tolist() == [TIMELY, LATE, LATE, UNKNOWN, INVERTED, TIMELY]
    # the limit is configuration
    assert quality.timeliness_status(event, reported, limit=timedelta(minutes=6)).tolist()[:3] == [
        TIMELY,
        TIMELY,
        TIMELY,
    ]


def test_case_timeliness_uses_finished_at_and_missing_reported_at_is_unknown_not_submitted(qinghe):
    cases = _cases(
        [
            {"case_id": "c1", "finished_at": "2023-04-03 10:00", "reported_at": "2023-04-03 10:05:00"},
            {"case_id": "c2", "finished_at": "2023-04-03 10:00", "reported_at": "2023-04-03 10:05:01"},
            {"case_id": "c3", "finished_at": "2023-04-03 10:00", "reported_at": None},
            {
                "case_id": "c4",
                "finished_at": "2023-03-31 23:59",
                "reported_at": "2023-04-01 09:00",
            },  # not in P
        ]
    )
    records = quality.check_cases(cases, Q2, qinghe)
    assert records["record_id"].tolist() == ["c1", "c2", "c3"]
    assert records["timeliness"].tolist() == [TIMELY, LATE, UNKNOWN]
    assert records["submitted"].tolist() == [True, True, False]
    assert records["passed"].tolist() == [True, False, False]
    report = quality.run_quality(qinghe, {"cases": cases, "evaluations": _evals([])}, Q2)
    f = report.figures
    assert f["produced"]["cases"] == 3
    assert f["late_reports"] == {"cases": 1, "evaluations": 0}
    assert f["missing_reported_at"] == {"cases": 1, "evaluations": 0}
    assert f["timeliness_rate"]["cases"] == "33.33%"  # unknown never counts as timely
    assert f["rates"]["submission_rate"] == "66.66%"  # truncated, never rounded up
    assert f["rates"]["quality_rate"] == "50%"


def test_evaluation_timeliness_uses_evaluated_at(qinghe):
    cases = _cases([{"case_id": "c1", "finished_at": "2023-04-03 09:00", "reported_at": "2023-04-03 09:01"}])
    evals = _evals(
        [
            {
                "eval_id": "e1",
                "case_id": "c1",
                "evaluated_at": "2023-04-03 10:00",
                "reported_at": "2023-04-03 10:05",
            },
            {
                "eval_id": "e2",
                "case_id": None,
                "evaluated_at": "2023-04-03 10:00",
                "reported_at": "2023-04-03 10:05:01",
            },
            {"eval_id": "e3", "case_id": None, "evaluated_at": "2023-04-03 10:00", "reported_at": None},
        ]
    )
    records = quality.check_evaluations(evals, cases, Q2)
    assert records["timeliness"].tolist() == [TIMELY, LATE, UNKNOWN]


# --- duplicates, orphans, order, unit conflicts --------------------------------------------------


def test_duplicates_counted_once_per_extra_row(qinghe):
    cases = _cases(
        [
            {"case_id": "c1", "finished_at": "2023-04-03 09:00", "reported_at": "2023-04-03 09:01"},
            {"case_id": "c2", "finished_at": "2023-04-03 09:00", "reported_at": "2023-04-03 09:01"},
            {"case_id": "c2", "finished_at": "2023-04-03 09:00", "reported_at": "2023-04-03 09:01"},
        ]
    )
    at = {"reported_at": "2023-04-04 10:01"}
    evals = _evals(
        [
            {"eval_id": "e1", "case_id": "c1", "evaluated_at": "2023-04-04 10:00", **at},
            # same case evaluated again as attempt 1: one duplicate
            {"eval_id": "e2", "case_id": "c1", "evaluated_at": "2023-04-04 11:00", **at},
            # the same eval_id three times: two extra rows, not also counted as repeated first attempts
            {"eval_id": "e3", "case_id": "c2", "evaluated_at": "2023-04-04 10:00", **at},
            {"eval_id": "e3", "case_id": "c2", "evaluated_at": "2023-04-04 10:00", **at},
            {"eval_id": "e3", "case_id": "c2", "evaluated_at": "2023-04-04 10:00", **at},
            # a follow-up (attempt 2) is not a duplicate
            {"eval_id": "e4", "case_id": "c1", "evaluated_at": "2023-04-04 10:00", "attempt": 2, **at},
            # unlinked evaluations are never repeated first attempts
            {"eval_id": "e5", "case_id": None, "evaluated_at": "2023-04-04 10:00", **at},
            {"eval_id": "e6", "case_id": None, "evaluated_at": "2023-04-04 10:00", **at},
        ]
    )
    records = quality.check_evaluations(evals, cases, Q2)
    assert records["dup_attempt"].tolist() == [False, True, False, False, False, False, False, False]
    assert records["dup_id"].tolist() == [False, False, False, True, True, False, False, False]
    report = quality.run_quality(qinghe, {"cases": cases, "evaluations": evals}, Q2)
    assert report.figures["duplicate_evaluations"] == 1
    assert report.figures["duplicate_eval_ids"] == 2
    assert report.figures["duplicate_cases"] == 1
    assert report.figures["passed"]["evaluations"] == 5
    issues = report.tables["issues"]
    assert (issues["检查项"] == "记录不重复").sum() == 4  # 1 case + 3 evaluation rows, each once


def test_first_evaluation_is_the_earliest_even_when_listed_later():
    cases = _cases([{"case_id": "c1", "finished_at": "2023-04-03 09:00", "reported_at": "2023-04-03 09:01"}])
    evals = _evals(
        [
            {
                "eval_id": "b",
                "case_id": "c1",
                "evaluated_at": "2023-04-05 10:00",
                "reported_at": "2023-04-05 10:00",
            },
            {
                "eval_id": "a",
                "case_id": "c1",
                "evaluated_at": "2023-04-04 10:00",
                "reported_at": "2023-04-04 10:00",
            },
        ]
    )
    records = quality.check_evaluations(evals, cases, Q2)
    assert records.set_index("record_id")["dup_attempt"].to_dict() == {"b": True, "a": False}


def test_orphans_before_case_and_unit_conflicts(qinghe):
    cases = _cases(
        [
            {"case_id": "c1", "finished_at": "2023-04-03 09:00", "reported_at": "2023-04-03 09:01"},
            {"case_id": "c2", "finished_at": "2023-04-10 09:00", "reported_at": "2023-04-10 09:01"},
        ]
    )
    at = lambda t: {"evaluated_at": t, "reported_at": t}  # noqa: E731
    evals = _evals(
        [
            {"eval_id": "e1", "case_id": "c1", **at("2023-04-03 09:00")},  # at the finish: fine
            {"eval_id": "e2", "case_id": "c2", **at("2023-04-10 08:59:59")},  # before its case finished
            {"eval_id": "e3", "case_id": "nope", **at("2023-04-04 10:00")},  # orphan
            {"eval_id": "e4", "case_id": "nope2", **at("2023-04-04 10:00")},  # orphan
            {"eval_id": "e5", "case_id": None, **at("2023-04-04 10:00")},  # no case: not an orphan
            {"eval_id": "e6", "case_id": "c1", "unit_id": "qh-d2-k1", "attempt": 2, **at("2023-04-05 10:00")},
        ]
    )
    records = quality.check_evaluations(evals, cases, Q2).set_index("record_id")
    assert records["fail_sequence"][lambda s: s].index.tolist() == ["e2"]
    assert records["fail_orphan"][lambda s: s].index.tolist() == ["e3", "e4"]
    assert records["unit_conflict"][lambda s: s].index.tolist() == ["e6"]
    assert records.loc["e6", "unit_id"] == "qh-d1-k1"  # the case's unit wins
    assert records.loc["e6", "own_unit_id"] == "qh-d2-k1"
    assert records.loc["e5", "system"] == quality.UNLINKED_SYSTEM
    report = quality.run_quality(qinghe, {"cases": cases, "evaluations": evals}, Q2)
    f = report.figures
    assert (f["orphan_evaluations"], f["evals_before_case"], f["unit_conflicts"]) == (2, 1, 1)
    assert f["unlinked_evaluations"] == 1
    assert f["evaluation_linkage_rate"] == "50%"  # e1, e2, e6 linked of 6
    # stages: 6 submitted; e2 fails a blocking check; e3, e4 pass 质检 but fail linkage
    assert (f["passed"]["evaluations"], f["stored"]["evaluations"]) == (5, 3)
    checks = report.tables["checks"].set_index("检查项")
    assert checks.loc["评价关联办件", "检查记录数"] == 5  # evaluations that name a case
    assert checks.loc["评价关联办件", "不通过数"] == 2
    assert checks.loc["评价单位与办件单位一致", "类别"] == "仅提示"


def test_matter_linkage_only_when_the_city_has_a_catalogue(qinghe):
    cases = _cases(
        [
            {"case_id": "c1", "finished_at": "2023-04-03 09:00", "reported_at": "2023-04-03 09:01"},
            {
                "case_id": "c2",
                "finished_at": "2023-04-03 09:00",
                "reported_at": "2023-04-03 09:01",
                "matter_code": "X",
            },
            {
                "case_id": "c3",
                "finished_at": "2023-04-03 09:00",
                "reported_at": "2023-04-03 09:01",
                "matter_code": None,
            },
        ]
    )
    data = {"cases": cases, "evaluations": _evals([])}
    without = quality.run_quality(qinghe, data, Q2).figures
    assert without["matter_catalogue"] is False
    assert without["case_matter_linkage_rate"] == "/"
    assert without["rates"]["storage_rate"] == "100%"
    assert "未提供事项目录" in without["sentence"]
    with_catalogue = dataclasses.replace(qinghe, matters=pd.DataFrame({"matter_code": ["M1", "M2"]}))
    f = quality.run_quality(with_catalogue, data, Q2).figures
    assert f["cases_without_matter"] == 2
    assert f["case_matter_linkage_rate"] == "33.33%"
    assert f["rates"]["storage_rate"] == "33.33%"


def test_required_fields_and_completeness(qinghe):
    cases = _cases(
        [
            {"case_id": "c1", "finished_at": "2023-04-03 09:00", "reported_at": "2023-04-03 09:01"},
            {
                "case_id": "",
                "finished_at": "2023-04-03 09:00",
                "reported_at": "2023-04-03 09:01",
                "matter_code": " ",
            },
        ]
    )
    report = quality.run_quality(qinghe, {"cases": cases, "evaluations": _evals([])}, Q2)
    assert report.figures["missing_required"]["cases"] == 1
    assert report.figures["rates"]["production_rate"] == "50%"
    comp = report.tables["completeness"].set_index(["数据类型", "字段"])
    assert comp.loc[("办件", "case_id"), "完整率"] == "50%"
    assert comp.loc[("办件", "matter_code"), "缺失数"] == 1  # a blank string is missing
    assert comp.loc[("办件", "accepted_at"), "完整率"] == "0%"
    assert comp.loc[("评价", "eval_id"), "完整率"] == "/"  # no evaluations: no denominator


# --- rates and the bulletin sentence -------------------------------------------------------------


@pytest.mark.parametrize(
    "num,den,text",
    [
        (1, 1, "100%"),
        (0, 0, "/"),
        (9999, 10000, "99.99%"),
        (99999, 100000, "99.99%"),
        (996, 1000, "99.6%"),
        (2, 3, "66.66%"),
        (0, 5, "0%"),
    ],
)
def test_format_rate(num, den, text):
    assert format_ratio(num, den) == text


def _clean_day(n: int = 4) -> dict:
    cases = _cases(
        [
            {"case_id": f"c{i}", "finished_at": "2023-05-08 09:00", "reported_at": "2023-05-08 09:02"}
            for i in range(n)
        ]
    )
    evals = _evals(
        [
            {
                "eval_id": f"e{i}",
                "case_id": f"c{i}",
                "evaluated_at": "2023-05-08 10:00",
                "reported_at": "2023-05-08 10:03",
            }
            for i in range(n)
        ]
    )
    return {"cases": cases, "evaluations": evals}


def test_sentence_is_the_reference_wording_only_when_everything_is_100(qinghe):
    ref = dataclasses.replace(qinghe, matters=pd.DataFrame({"matter_code": ["M1"]}))
    clean = quality.run_quality(ref, _clean_day(), Q2)
    assert clean.figures["sentence"] == "数据生产、提交、质检关联度入库率均达100%"
    data = _clean_day()
    data["cases"].loc[0, "reported_at"] = pd.Timestamp("2023-05-09 09:00")
    late = quality.run_quality(ref, data, Q2)
    sentence = late.figures["sentence"]
    assert "均达100%" not in sentence
    assert "质检通过率87.5%" in sentence and "办件超5分钟上报1件" in sentence
    # timeliness can be made non-blocking: late records are then reported but stored
    lenient = QualitySettings(blocking_checks=("required", "duplicate", "sequence"))
    assert quality.run_quality(ref, data, Q2, lenient).figures["rates"]["quality_rate"] == "100%"
    empty = quality.run_quality(ref, {"cases": _cases([]), "evaluations": _evals([])}, Q2)
    assert "无生产数据" in empty.figures["sentence"]


def test_unknown_check_name_is_a_clear_error():
    with pytest.raises(Exception, match="未知的质检项"):
        QualitySettings(blocking_checks=("timelines",))


def test_tables_by_system_unit_day_and_worst_units(qinghe):
    data = _clean_day(40)
    cases = data["cases"].astype({"unit_id": "str", "source_system": "str"})
    evals = data["evaluations"].astype({"unit_id": "str"})
    cases.loc[:4, "reported_at"] = pd.Timestamp("2023-05-08 12:00")
    cases.loc[20:, "unit_id"] = "qh-c2"
    evals.loc[20:, "unit_id"] = "qh-c2"
    cases.loc[30:, "source_system"] = "不动产系统"
    data = {"cases": coerce(cases, "cases"), "evaluations": coerce(evals, "evaluations")}
    report = quality.run_quality(qinghe, data, Q2, QualitySettings(worst_units_min_records=10))
    t = report.tables
    assert set(t) >= {"overview", "by_system", "by_unit", "by_day", "worst_units", "checks", "completeness"}
    systems = t["by_system"].set_index(["来源系统", "数据类型"])
    assert systems.loc[("政务服务平台", "办件"), "生产数"] == 30
    assert systems.loc[("政务服务平台", "办件"), "超时上报数"] == 5
    assert systems.loc[("不动产系统", "评价"), "生产数"] == 10  # evaluations take their case's system
    units = t["by_unit"].set_index("单位编码")
    assert units.loc["qh-d1-k1", "单位名称"] == "东湖区人社局"
    assert units.loc["qh-d1-k1", "层级"] == "区直部门"
    assert units.loc["qh-d1-k1", "所属区县"] == "东湖区"
    assert units.loc["qh-d1-k1", "办件超时数"] == 5
    assert units.loc["qh-c2", "办件及时率"] == "100%"
    assert t["worst_units"]["单位编码"].tolist() == ["qh-d1-k1"]
    assert "5分钟及时上报不通过5条" in t["worst_units"].loc[0, "主要问题"]
    day = t["by_day"].set_index("日期")
    assert day.loc["2023-05-08", "办件及时率"] == "87.5%"
    assert list(t["overview"]["数据类型"]) == ["办件", "评价", "合计"]


def test_write_outputs_csv_bom_xlsx_and_json(qinghe, tmp_path):
    report = quality.run_quality(qinghe, _clean_day(), Q2)
    written = quality.write_outputs(report, tmp_path)
    names = {p.name for p in written}
    assert {"quality_overview.csv", "quality_by_unit.csv", "quality.xlsx", "quality_figures.json"} <= names
    assert (tmp_path / "quality_overview.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    sheets = pd.read_excel(tmp_path / "quality.xlsx", sheet_name=None)
    assert "按单位" in sheets and len(sheets) == len(quality.OUTPUT_NAMES)
    figures = json.loads((tmp_path / "quality_figures.json").read_text(encoding="utf-8"))
    assert figures["produced"]["total"] == 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


# --- CLI and notebook on a tiny data folder -------------------------------------------------------


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    data = _clean_day(6)
    data["cases"].loc[0, "reported_at"] = pd.Timestamp("2023-05-08 09:05:01")
    extra = _evals(
        [{"eval_id": "e0", "case_id": "c0", "evaluated_at": "2023-05-09 10:00", "reported_at": None}]
    )
    # a duplicate eval_id survives loading (full-table validation would reject it before counting)
    data["evaluations"] = pd.concat([data["evaluations"], extra], ignore_index=True)
    write_tables(data, tmp_path / "data", "2023Q2")
    return tmp_path / "data"


def test_cli_quality_writes_tables(tiny_data, tmp_path):
    assert "quality" in cli.list_commands(None)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "quality",
            "--city",
            "tests/data/reference/qinghe",
            "--period",
            "2023Q2",
            "--data",
            str(tiny_data),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "quality_figures.json").read_text(encoding="utf-8"))
    assert figures["late_reports"] == {"cases": 1, "evaluations": 0}
    assert figures["duplicate_eval_ids"] == 1
    assert figures["missing_reported_at"]["evaluations"] == 1
    assert "均达100%" not in figures["sentence"]


def test_cli_missing_data_is_exit_2(tmp_path):
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(
        cli,
        [
            "quality",
            "--city",
            "tests/data/reference/qinghe",
            "--period",
            "2023Q2",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    assert "cases" in result.output
    assert not (tmp_path / "out").exists()  # bad input writes nothing


def test_lookback_finds_cases_of_the_previous_period(tmp_path):
    q1_cases = _cases(
        [{"case_id": "c9", "finished_at": "2023-03-31 16:00", "reported_at": "2023-03-31 16:01"}]
    )
    q1_evals = _evals(
        [
            {
                "eval_id": "e8",
                "case_id": "c9",
                "evaluated_at": "2023-03-31 17:00",
                "reported_at": "2023-03-31 17:00",
            }
        ]
    )
    q2 = _clean_day(2)
    late_eval = _evals(
        [
            # made in Q2 for a case finished in Q1: linked, and a repeated first evaluation (e8 was first)
            {
                "eval_id": "e9",
                "case_id": "c9",
                "evaluated_at": "2023-04-01 09:00",
                "reported_at": "2023-04-01 09:00",
            },
            {
                "eval_id": "e10",
                "case_id": "gone",
                "evaluated_at": "2023-04-01 09:00",
                "reported_at": "2023-04-01 09:00",
            },
        ]
    )
    q2["evaluations"] = pd.concat([q2["evaluations"], late_eval], ignore_index=True)
    write_tables({"cases": q1_cases, "evaluations": q1_evals}, tmp_path / "data", "2023Q1")
    write_tables(q2, tmp_path / "data", "2023Q2")
    city = str(Path("tests/data/reference/qinghe").resolve())
    report = quality.run_from_folder(city, "2023Q2", tmp_path / "data", tmp_path / "out")
    f = report.figures
    assert f["produced"] == {"cases": 2, "evaluations": 4, "total": 6}  # Q1 records are not counted
    assert (f["orphan_evaluations"], f["duplicate_evaluations"]) == (1, 1)


def test_notebook_parameters_and_run(tiny_data, tmp_path):
    papermill = pytest.importorskip("papermill")
    nb = NOTEBOOKS_DIR / "quality.ipynb"
    params = papermill.inspect_notebook(str(nb))
    assert set(params) == {"city", "period", "data_dir", "out_dir", "top_units"}
    out_dir = tmp_path / "nb_out"
    papermill.execute_notebook(
        str(nb),
        str(tmp_path / "quality.out.ipynb"),
        parameters={
            "city": str(Path("tests/data/reference/qinghe").resolve()),
            "period": "2023Q2",
            "data_dir": str(tiny_data),
            "out_dir": str(out_dir),
        },
        kernel_name="haocha",
        cwd=str(NOTEBOOKS_DIR),
        progress_bar=False,
    )
    assert (out_dir / "quality_figures.json").exists()


# --- the synthetic quarter -----------------------------------------------------------------------


def _synth():
    return pytest.importorskip("haocha_analysis.synth.generate")


def _check_against_truth(report, truth):
    f = report.figures
    level = truth["record_level"]
    assert f["late_reports"] == {
        "cases": level["late_reports"]["cases"],
        "evaluations": level["late_reports"]["evaluations"],
    }
    missing = level.get("missing_reported_at", {"cases": 0, "evaluations": 0})
    assert f["missing_reported_at"] == {"cases": missing["cases"], "evaluations": missing["evaluations"]}
    assert f["duplicate_evaluations"] + f["duplicate_eval_ids"] == level["duplicate_evaluations"]
    assert f["evals_before_case"] == level["evals_before_case"]
    assert f["unlinked_evaluations"] == level["unlinked_evaluations"]
    issues = report.tables["issues"]
    units = report.tables["by_unit"].set_index("单位编码")
    # Baseline delays are within the limit and baseline records are unique, so the records found are
    # exactly the injected ones, unit by unit.
    for kind, check, table, column in (
        ("late_aggregation", "5分钟及时上报", "办件", "办件超时数"),
        ("duplicates", "记录不重复", "评价", "重复记录数"),
    ):
        injected = [a for a in truth["anomalies"] if a["kind"] == kind]
        found = issues.loc[(issues["检查项"] == check) & (issues["数据类型"] == table)]
        assert set(found["记录编号"]) == {i for a in injected for i in a["record_ids"]}, kind
        assert len(found) == sum(len(a["record_ids"]) for a in injected), kind
        per_unit: dict[str, int] = {}
        for a in injected:
            per_unit[a["unit_id"]] = per_unit.get(a["unit_id"], 0) + len(a["record_ids"])
        for unit_id, count in per_unit.items():
            assert units.loc[unit_id, column] == count, (kind, unit_id)


def test_synthetic_small_scale_default_and_clean(zibo):
    synth = _synth()
    for scenario in ("default", "clean"):
        result = synth.generate(zibo, Q2, scale=0.02, seed=3, scenario=scenario)
        report = quality.run_quality(zibo, result.tables, Q2)
        _check_against_truth(report, result.truth)
        if scenario == "clean":
            assert report.figures["sentence"] == "数据生产、提交、质检关联度入库率均达100%"


@pytest.mark.slow
def test_synthetic_quarter_at_scale_1(zibo, tmp_path):
    synth = _synth()
    result = synth.generate(zibo, Q2, scale=1.0, seed=0, scenario="default")
    report = quality.run_quality(zibo, result.tables, Q2)
    _check_against_truth(report, result.truth)
    assert report.figures["produced"]["cases"] == 1428423


def test_a_citys_settings_file_reaches_haocha_quality_as_it_reaches_the_bulletin(qinghe, tmp_path):
    """A city that widens the 5-minute rule to 10 minutes gets that rule from `haocha quality` too."""
    import shutil

    city = tmp_path / "qinghe"
    shutil.copytree(qinghe.path, city)
    (city / "settings.yml").write_text("timing:\n  report_delay_limit: 10分钟\n", encoding="utf-8")
    cases = _cases(
        [{"case_id": "c1", "finished_at": "2023-04-03 10:00", "reported_at": "2023-04-03 10:07:00"}]
    )
    data = tmp_path / "data"
    write_tables({"cases": cases, "evaluations": _evals([])}, data, "2023Q2")
    for reference, late in ((qinghe.path, 1), (city, 0)):  # 7 minutes: late by default, timely at 10
        out = tmp_path / f"out-{late}"
        args = [
            "quality",
            "--city",
            str(reference),
            "--period",
            "2023Q2",
            "--data",
            str(data),
            "--out",
            str(out),
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        figures = json.loads((out / "quality_figures.json").read_text(encoding="utf-8"))
        assert figures["late_reports"]["cases"] == late
    # The library entry the notebook calls follows the file as well.
    report = quality.run_from_folder(str(city), "2023Q2", data, tmp_path / "lib")
    assert report.figures["late_reports"]["cases"] == 0


def test_timeliness_is_slash_when_no_record_has_a_reporting_time(qinghe):
    """An export without 上报时间: 及时率 is a figure the source cannot give ("/"), never 0 %."""
    cases = _cases(
        [
            {"case_id": "c1", "finished_at": "2023-04-03 10:00", "reported_at": None},
            {"case_id": "c2", "finished_at": "2023-04-04 10:00", "reported_at": None},
        ]
    )
    report = quality.run_quality(qinghe, {"cases": cases, "evaluations": _evals([])}, Q2)
    assert report.figures["timeliness_rate"]["cases"] == "/"
    assert report.figures["missing_reported_at"]["cases"] == 2
    assert set(report.tables["by_system"]["及时率"]) == {"/"}
    # One record with a time is enough for a rate: the unknown one still counts against it.
    cases.loc[0, "reported_at"] = pd.Timestamp("2023-04-03 10:01")
    report = quality.run_quality(qinghe, {"cases": cases, "evaluations": _evals([])}, Q2)
    assert report.figures["timeliness_rate"]["cases"] == "50%"


@pytest.mark.parametrize("dtype", ["str", object])
def test_blank_values_are_missing_empty_or_whitespace_only(dtype):
    from haocha_analysis.quality.checks import _blank

    values = ["", " ", "\u3000", "a", None, " a ", "\t\n", "无"]
    series = pd.Series(values, dtype=dtype, index=range(10, 18))
    blank = _blank(series)
    assert blank.tolist() == [True, True, True, False, True, False, True, False]
    assert blank.index.tolist() == list(range(10, 18))
    assert _blank(series.iloc[3:5]).tolist() == [False, True]  # a slice of the Arrow buffers
    assert _blank(pd.Series([], dtype=dtype)).tolist() == []
