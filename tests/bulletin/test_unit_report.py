"""One unit's report from the run's shared results: figures, rank, trend, findings, quality, 差评."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from haocha_analysis.bulletin import unit_report
from haocha_analysis.bulletin.render import StageResults
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period


def counts(rows: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Per-unit counts: the columns given, every other count 0 (with_reference fills them)."""
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna(0).astype("int64")
    return frame.rename_axis("unit_id").reset_index()


# 东湖区 (qh-d1) = its district department k1 + its town t1; 西山县 (qh-d2) = its k1.
CURRENT = counts(
    {
        "qh-d1-k1": {"cases": 10, "cases_evaluated": 10, "cases_active": 4, "case_bad_raw": 2,
                     "case_bad_valid": 1, "case_bad_invalid": 1, "eval_bad_raw": 2, "eval_bad_valid": 1},
        "qh-d1-t1": {"cases": 10, "cases_evaluated": 5, "cases_active": 5},
        "qh-d2-k1": {"cases": 40, "cases_evaluated": 40, "cases_active": 30},
        "qh-c1": {"cases": 3, "cases_evaluated": 3, "cases_active": 3},
    }
)  # fmt: skip
EARLIER = counts({"qh-d1-k1": {"cases": 8, "cases_evaluated": 8, "cases_active": 2}})


@pytest.fixture
def inputs():
    by_unit = pd.DataFrame(
        {
            "单位编码": ["qh-d1-t1", "qh-d1-k1", "qh-d2-k1"],
            "单位名称": ["东湖区湖滨街道便民服务中心", "东湖区人社局", "西山县人社局"],
            "记录数": [30, 20, 80],
            "不通过记录数": [4, 0, 9],
            "办件及时率": ["90%", "100%", "80%"],
        }
    )
    findings = pd.DataFrame(
        {
            "unit_id": ["qh-d2-k1", "qh-d1-t1", "qh-d1-k1"],
            "unit_name": ["西山县人社局", "东湖区湖滨街道便民服务中心", "东湖区人社局"],
            "kind_cn": ["事后补录", "评价量过低", "重复评价"],
            "description": ["甲", "乙", "丙"],
            "evidence": ["E1;E2;E3", "", "E9"],
            "severity": [0.9, 0.2, 0.7],
        }
    )
    tables = SimpleNamespace(
        counts=CURRENT,
        headline={"total_cases": 63, "total_evaluations": 58, "evaluation_rate": "92.06%"},
        notes={"annex1_districts": "备注：测试。"},
    )
    results = StageResults(
        tables=tables, quality=SimpleNamespace(tables={"by_unit": by_unit}), findings=findings, problems=""
    )
    return unit_report.UnitReportInputs(
        city="qinghe", period=parse_period("2023Q2"), results=results, history_counts={"2023Q1": EARLIER}
    )


def figure(uctx, name: str) -> dict[str, str]:
    return uctx.figures.set_index("指标").loc[name].to_dict()


def test_a_district_covers_its_units_as_annex1_does(qinghe, inputs):
    uctx = unit_report.build_unit_context(qinghe, inputs, "qh-d1")
    assert figure(uctx, "办件数") == {
        "本单位": "20",
        "同级平均": "30",
        "全市": "63",
        "同级排名": "第2名/共2个",
    }
    assert figure(uctx, "评价率") == {
        "本单位": "75%",
        "同级平均": "91.66%",
        "全市": "92.06%",
        "同级排名": "第2名/共2个",
    }
    assert figure(uctx, "主动评价率")["本单位"] == "60%"  # 9 of 15
    assert figure(uctx, "差评数")["本单位"] == "1" and figure(uctx, "整改满意率")["本单位"] == "/"
    # the trend: the earlier quarter's count of the same scope, then this one
    assert uctx.trend["统计期"].tolist() == ["2023年第一季度", "2023年第二季度"]
    assert uctx.trend["办件数"].tolist() == [8, 20]
    # findings and quality problems of the district's own units only, most severe first
    assert uctx.findings["unit_id"].tolist() == ["qh-d1-k1", "qh-d1-t1"] and uctx.findings_total == 2
    assert uctx.quality["单位名称"].tolist() == ["东湖区湖滨街道便民服务中心"]  # 0 failed records: not listed
    assert uctx.bad_reviews == {
        "raw": 2, "valid": 1, "invalid": 1, "made_raw": 2, "made_valid": 1, "on_time": 0, "overdue": 1,
    }  # fmt: skip
    assert "超期未整改 1 件" in unit_report.bad_reviews_html(uctx)
    peers = unit_report.peers_html(uctx)
    assert '<tr class="self"><td class="num">1</td><td class="name">东湖区</td>' in peers


def test_a_department_covers_itself(qinghe, inputs):
    uctx = unit_report.build_unit_context(qinghe, inputs, "qh-d1-k1")
    assert figure(uctx, "办件数") == {
        "本单位": "10",
        "同级平均": "7",
        "全市": "63",
        "同级排名": "第2名/共7个",
    }
    assert figure(uctx, "评价率")["同级排名"] == "第1名/共2个"  # only units with cases have a rate
    assert uctx.findings["kind_cn"].tolist() == ["重复评价"]
    assert uctx.quality.empty and "全部通过数据质检" in unit_report.quality_html(uctx)
    assert unit_report.peers_html(uctx).count("<tr") == 8  # 7 district departments and the header
    html = unit_report.findings_html(uctx)
    assert "E9" in html and "重复评价" in html


def test_no_findings_no_bad_reviews_one_period(qinghe, inputs):
    inputs.history_counts = {}
    uctx = unit_report.build_unit_context(qinghe, inputs, "qh-c1")
    assert uctx.trend["统计期"].tolist() == ["2023年第二季度"]
    assert "仅列本期" in unit_report.trend_html(uctx)
    assert "本期未发现异常" in unit_report.findings_html(uctx)
    assert "本期无差评" in unit_report.bad_reviews_html(uctx)
    assert "data-tips=" in unit_report.trend_html(uctx)


def test_unknown_unit_and_level(qinghe, inputs):
    with pytest.raises(HaochaInputError, match="nope"):
        unit_report.build_unit_context(qinghe, inputs, "nope")
    with pytest.raises(HaochaInputError, match="town"):
        unit_report.level_units(qinghe, "town")


@pytest.mark.parametrize(
    ("values", "position", "expected"),
    [
        ([10, 30, 30, None], 1, "第1名/共3个"),
        ([10, 30, 30, None], 0, "第3名/共3个"),
        ([10, 30, 30, None], 3, "/"),
        ([5], 0, "第1名/共1个"),
    ],
)
def test_rank(values, position, expected):
    assert unit_report._rank(pd.Series(values, dtype="Float64"), position) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("E1;E2;E3", "E1、E2等"), (["E1"], "E1"), ("", ""), (None, ""), (float("nan"), "")],
)
def test_evidence(value, expected):
    assert unit_report._evidence(value) == expected


def test_mark_row():
    table = "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>1</td></tr><tr><td>2</td></tr></tbody>"
    assert unit_report.mark_row(table, 1).endswith(
        '<tr><td>1</td></tr><tr class="self"><td>2</td></tr></tbody>'
    )
    assert unit_report.mark_row(table, 2) == table and unit_report.mark_row(table, -1) == table
