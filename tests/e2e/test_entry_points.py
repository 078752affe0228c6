"""Every entry point reads one window: tables, quality and anomalies agree with haocha bulletin.

A period-partitioned folder of two quarters, where some of this quarter's evaluations belong to cases
finished (and stored) in the previous quarter and repeat an earlier first evaluation.
"""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from haocha_analysis.cli import cli
from haocha_analysis.ingest.storage import write_tables
from tests.e2e.test_bulletin import qinghe_quarter


def _two_quarters(units: pd.DataFrame) -> tuple[dict, dict]:
    q2 = qinghe_quarter(units, seed=11)
    q1 = qinghe_quarter(units, seed=12)
    months = pd.DateOffset(months=3)
    for table, column in (
        ("cases", "finished_at"),
        ("cases", "reported_at"),
        ("evaluations", "evaluated_at"),
    ):
        q1[table][column] = q1[table][column] - months
    q1["evaluations"]["reported_at"] = q1["evaluations"]["evaluated_at"]
    for table, key in (("cases", "case_id"), ("evaluations", "eval_id"), ("rectifications", "eval_id")):
        q1[table][key] = "P" + q1[table][key]
    q1["evaluations"]["case_id"] = "P" + q1["evaluations"]["case_id"]
    # This quarter: 20 evaluations of last quarter's cases, the first 10 repeating a first evaluation.
    late = q2["evaluations"].iloc[:20].copy()
    late["eval_id"] = [f"L{i:03d}" for i in range(20)]
    late["case_id"] = q1["cases"]["case_id"].iloc[:20].to_numpy()
    late["unit_id"] = "qh-d2-k1"  # the evaluation says one unit, the case says another: the case wins
    late["evaluator_key"] = [f"{i + 5000:016x}" for i in range(20)]
    q1["evaluations"] = q1["evaluations"][~q1["evaluations"]["case_id"].isin(late["case_id"].iloc[10:])]
    q1["rectifications"] = q1["rectifications"][
        q1["rectifications"]["eval_id"].isin(q1["evaluations"]["eval_id"])
    ]
    q2["evaluations"] = pd.concat([q2["evaluations"], late], ignore_index=True)
    return q1, q2


def _csv(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def test_entry_points_agree_with_the_bulletin_on_a_multi_quarter_folder(qinghe, tmp_path):
    q1, q2 = _two_quarters(qinghe.units)
    data = tmp_path / "data"
    write_tables(q1, data, "2023Q1")
    write_tables(q2, data, "2023Q2")
    common = ["--city", str(qinghe.path), "--period", "2023Q2", "--data", str(data)]
    out = {verb: tmp_path / verb for verb in ("bulletin", "tables", "quality", "anomalies")}
    for verb, folder in out.items():
        extra = ["--extracted-on", "2023-07-04"] if verb in ("bulletin", "tables") else []
        result = CliRunner().invoke(cli, [verb, *common, "--out", str(folder), *extra])
        assert result.exit_code == 0, (verb, result.output)

    bulletin = out["bulletin"]
    for name in ("annex1_districts", "annex2_city_departments", "annex3_district_departments",
                 "annex4_towns_villages", "annex5_public_services"):  # fmt: skip
        pd.testing.assert_frame_equal(_csv(out["tables"] / f"{name}.csv"), _csv(bulletin / f"{name}.csv"))
    headline = json.loads((out["tables"] / "headline.json").read_text(encoding="utf-8"))
    in_bulletin = json.loads((bulletin / "headline.json").read_text(encoding="utf-8"))
    in_bulletin.pop("data_coverage", None)
    assert headline == in_bulletin
    assert headline["linked_first_evaluations"] > 0 and headline["duplicate_evaluations"] == 10

    figures = json.loads((out["quality"] / "quality_figures.json").read_text(encoding="utf-8"))
    in_bulletin = json.loads((bulletin / "quality" / "quality_figures.json").read_text(encoding="utf-8"))
    assert figures == in_bulletin
    assert figures["duplicate_evaluations"] == 10 and figures["orphan_evaluations"] == 0

    pd.testing.assert_frame_equal(
        _csv(out["anomalies"] / "anomalies.csv"), _csv(bulletin / "anomalies" / "anomalies.csv")
    )
