"""The bad-reviews scenario: the ledger equals the generator's truth, row for row, as of two dates."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from haocha_analysis.analysis.annexes import build_tables
from haocha_analysis.analysis.anomalies.features import prepare
from haocha_analysis.analysis.rectification import STAGES, build_ledger, load_ledger_data
from haocha_analysis.core.calendar import is_workday
from haocha_analysis.core.periods import parse_period
from haocha_analysis.ingest.storage import load_window
from haocha_analysis.synth import generate as synth
from haocha_analysis.synth.bad_reviews import OUTCOMES, holiday_blocks

Q2 = parse_period("2023Q2")
FLAGS = ["verify_overdue", "rectify_overdue", "revisit_overdue", "on_time"]


@pytest.fixture(scope="module")
def scenario(zibo, tmp_path_factory):
    result = synth.generate(zibo, Q2, scale=0.02, seed=7, scenario="bad-reviews")
    folder = tmp_path_factory.mktemp("bad-reviews")
    synth.write(result, folder, Q2.label)
    return result, folder


def test_the_quarter_spans_labour_day_and_dragon_boat():
    blocks = [(b[0].isoformat(), b[-1].isoformat()) for b in holiday_blocks(Q2)]
    assert blocks == [("2023-04-29", "2023-05-03"), ("2023-06-22", "2023-06-24")]


def test_designed_bad_reviews_cover_holidays_and_every_outcome(scenario):
    result, _ = scenario
    designed = pd.DataFrame(result.truth["rectification"]["designed"])
    assert set(designed["outcome"]) == set(OUTCOMES)
    days = pd.to_datetime(designed["evaluated_on"]).dt.date
    assert (~days.map(is_workday)).sum() >= 6  # made on holidays
    assert {"2023-04-23", "2023-05-06", "2023-06-25"} & set(designed["evaluated_on"])  # 调休 working days
    assert "2023-04-28" in set(designed["evaluated_on"])  # the last working day before 劳动节
    rect = result.tables["rectifications"]
    assert set(rect["verdict"]) == {"valid", "invalid"} and rect["deadline"].notna().sum() == 2


@pytest.mark.parametrize("which", [0, 1])
def test_the_ledger_equals_the_truth_row_for_row(zibo, scenario, which):
    result, folder = scenario
    as_of, expected = list(result.truth["rectification"]["as_of"].items())[which]
    assert as_of == ["2023-05-16", "2023-07-04"][which]
    ledger = build_ledger(zibo, load_ledger_data(folder, Q2), Q2, date.fromisoformat(as_of))
    got = ledger.rows.set_index("eval_id")
    want = pd.DataFrame(expected).set_index("eval_id")
    assert sorted(got.index) == sorted(want.index)
    got = got.loc[want.index]
    assert (got["unit_id"] == want["unit_id"]).all()
    assert (got["stage"] == want["stage"]).all(), got.loc[got["stage"] != want["stage"], "stage"]
    for flag in FLAGS:
        assert (got[flag].astype(bool) == want[flag]).all(), flag
        assert got[flag].notna().all()  # every step's time is known in the scenario


def test_the_two_dates_differ_and_every_stage_occurs(zibo, scenario):
    result, _ = scenario
    first, second = (pd.DataFrame(rows) for rows in result.truth["rectification"]["as_of"].values())
    assert len(second) > len(first) > 30
    both = first.merge(second, on="eval_id", suffixes=("_1", "_2"))
    assert (both["stage_1"] != both["stage_2"]).sum() >= 3
    assert set(second["stage"]) == set(STAGES)
    assert second[["verify_overdue", "rectify_overdue", "revisit_overdue"]].any().all()


def test_invalid_share_per_unit_is_what_the_anomaly_reads(zibo, scenario):
    result, folder = scenario
    extracted = date.fromisoformat(result.truth["rectification"]["extracted_on"])
    ledger = build_ledger(zibo, load_ledger_data(folder, Q2), Q2, extracted)
    ctx = prepare(zibo, load_window(folder, Q2), Q2)
    by_unit = ledger.by_unit.set_index("unit_id")["invalid"]
    seen = ctx.stats["n_invalid_bad"]
    assert by_unit.sum() > 15
    assert (seen[seen > 0].sort_index() == by_unit[by_unit > 0].sort_index()).all()
    assert seen.sum() == by_unit.sum()
    injected = [a["unit_id"] for a in result.truth["anomalies"] if a["kind"] == "high_invalid_bad"]
    assert ledger.by_unit.set_index("unit_id").loc[injected[0], "invalid"] >= 15


def test_the_annexes_use_the_ledgers_definitions(zibo, scenario):
    result, folder = scenario
    extracted = date.fromisoformat(result.truth["rectification"]["extracted_on"])
    ledger = build_ledger(zibo, load_ledger_data(folder, Q2), Q2, extracted)
    tables = build_tables(zibo, load_window(folder, Q2), Q2, extracted_on=extracted)
    made = tables.headline["bad_reviews_made_in_period"]
    rows = ledger.rows
    assert made["raw"] == len(rows) and made["invalid"] == int(rows["invalid"].sum())
    assert made["rectified_on_time"] == int(rows["on_time"].sum()) > 0
    annex4 = tables.numeric["annex4_towns_villages"].set_index("区县")
    for level, prefix in (("town", "镇级"), ("village", "村级")):
        mine = rows[rows["level"] == level]
        on_time = mine[mine["on_time"]].groupby("district").size()
        assert (annex4[f"{prefix}按时整改数量"] == on_time.reindex(annex4.index, fill_value=0)).all()
    assert annex4[["镇级按时整改数量", "村级按时整改数量"]].to_numpy().sum() > 0
    assert np.isin(tables.annexes["annex1_districts"]["整改满意率"], ["/"]).mean() < 1


def test_demo_data_for_the_notebook_is_generated_once(tmp_path, monkeypatch):
    from haocha_analysis.synth import bad_reviews

    monkeypatch.setattr(bad_reviews, "SYNTHETIC_DIR", tmp_path)
    folder = bad_reviews.demo_data("zibo", "2023Q2")
    assert folder == tmp_path / "zibo-bad-reviews" and (folder / "truth.json").exists()
    stamp = (folder / "truth.json").stat().st_mtime_ns
    assert bad_reviews.demo_data("zibo", "2023Q2") == folder
    assert (folder / "truth.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["zibo-bad-reviews"]  # no temporary folder left
