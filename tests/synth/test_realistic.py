"""The realistic scenario: a city nobody tuned a detector on (docs/synthetic-model.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from haocha_analysis.core.calendar import holiday_name, is_workday
from haocha_analysis.core.periods import parse_period
from haocha_analysis.synth import generate as synth
from haocha_analysis.synth.realistic import build_city

Q2 = parse_period("2023Q2")
SEED = 11


@pytest.fixture(scope="module")
def current(zibo):
    return synth.generate(zibo, Q2, scale=1.0, seed=SEED, scenario="realistic")


@pytest.fixture(scope="module")
def earlier(zibo):
    return synth.generate_history(zibo, Q2, quarters=5, scale=1.0, seed=SEED, scenario="realistic")


def test_six_quarters_from_one_city(current, earlier):
    assert list(earlier) == ["2022Q1", "2022Q2", "2022Q3", "2022Q4", "2023Q1"]
    cases = {label: len(t["cases"]) for label, t in earlier.items()} | {
        "2023Q2": len(current.tables["cases"])
    }
    # Spring Festival quarters are lower; every quarter is within ±30% of the others.
    assert cases["2023Q1"] < cases["2022Q4"] and cases["2022Q1"] < cases["2022Q2"]
    assert max(cases.values()) / min(cases.values()) < 1.4
    # The same units carry on: the share of the city's cases of every large unit barely moves.
    now = current.tables["cases"]["unit_id"].astype(str).value_counts(normalize=True)
    before = earlier["2022Q4"]["cases"]["unit_id"].astype(str).value_counts(normalize=True)
    big = now[now > 0.005].index
    ratio = (now[big] / before.reindex(big)).dropna()
    roles = current.plan.set_index("unit_id")["role"]
    steady = ratio[~roles.reindex(ratio.index).isin(["moved_service", "newly_opened"]).to_numpy()]
    assert steady.between(0.6, 1.6).mean() > 0.9


def test_heavy_tailed_units_and_tricky_roles(current):
    plan = current.plan
    live = plan[plan["kind"] != "district"]
    assert live["cases"].max() >= 15_000  # very large units
    assert (live.loc[live["kind"] == "village", "cases"] <= 10).sum() >= 5  # villages with a handful
    roles = set(plan["role"]) - {""}
    assert roles == {
        "very_large", "online_only", "newly_opened", "moved_service", "channel_shift",
        "small_perfect", "agent", "terminal24", "outage",
    }  # fmt: skip
    tricky = {t["unit_id"] for t in current.truth["tricky_clean"]}
    injected = {a["unit_id"] for a in current.truth["anomalies"] if a["source"] == "injected"}
    assert tricky and not tricky & injected
    agents = {a["unit_id"] for a in current.truth["anomalies"] if a["kind"] == "agent"}
    assert agents == set(plan.loc[plan["role"] == "agent", "unit_id"])


def test_calendar_holidays_tiaoxiu_and_the_festival_dip(current, earlier):
    cases = current.tables["cases"]
    roles = current.plan.set_index("unit_id")["role"]
    office = cases[~cases["unit_id"].astype(str).map(roles).eq("terminal24").to_numpy()]
    days = office["finished_at"].dt.date
    assert days.map(is_workday).all()  # nothing finishes on a holiday, except at 24-hour terminals
    assert (days == pd.Timestamp("2023-04-23").date()).sum() > 0  # 调休 Sunday before May Day
    q1 = earlier["2023Q1"]["cases"]["finished_at"].dt.normalize().value_counts().sort_index()
    after = q1[(q1.index > "2023-01-27") & (q1.index <= "2023-02-06")]
    rest = q1[(q1.index > "2023-02-15") & (q1.index < "2023-03-20")]
    assert after.mean() < 0.75 * rest.mean()
    assert holiday_name(pd.Timestamp("2023-01-23").date()) == "Spring Festival"


def test_subtle_injections_touch_5_to_15_percent_of_a_units_records(current):
    """Record-level injections take 5–15% of a unit's records: of its citizens' first evaluations of
    cases (bursts take what the calendar window offers, so a little less at most), or, for tablets
    that sync late, of all its evaluations."""
    evals = current.tables["evaluations"]
    citizen = (evals["attempt"] == 1) & evals["case_id"].notna() & (evals["channel"] != "system_default")
    per_unit = {
        "backfill": evals.loc[citizen, "unit_id"].astype(str).value_counts(),
        "staff_reentry": evals.loc[citizen, "unit_id"].astype(str).value_counts(),
        "late_reporting": evals["unit_id"].astype(str).value_counts(),
    }
    kinds = {a["kind"] for a in current.truth["anomalies"]}
    assert kinds == {
        "zero_data", "low_volume", "low_onsite", "low_active", "backfill", "late_aggregation",
        "late_reporting", "duplicates", "staff_reentry", "agent", "eval_before_case", "too_perfect",
        "high_invalid_bad",
    }  # fmt: skip
    for a in current.truth["anomalies"]:
        if a["kind"] in ("backfill", "staff_reentry", "late_reporting"):
            share = a["count"] / per_unit[a["kind"]][a["unit_id"]]
            assert 0.04 <= share <= 0.17, (a["kind"], share)
            assert len(a["record_ids"]) == a["count"]
    assert len({a["unit_id"] for a in current.truth["anomalies"]}) == len(current.truth["anomalies"])


def test_same_seed_same_city(zibo, current):
    again = synth.generate(zibo, Q2, scale=1.0, seed=SEED, scenario="realistic")
    assert again.truth["anomalies"] == current.truth["anomalies"]
    pd.testing.assert_frame_equal(again.tables["cases"].head(1000), current.tables["cases"].head(1000))
    other = build_city(zibo, 1.0, SEED + 1, synth.load_scenario("realistic"))
    assert not np.allclose(other["base_cases"], current.plan["base_cases"])


@pytest.mark.slow
def test_detectors_on_the_realistic_city_over_five_held_out_seeds(zibo):
    """The acceptance of issue 14: recall ≥ 0.9 for every kind, ≤ 0.5 false alarms per 100 clean units."""
    from haocha_analysis.bench.detectors import evaluate_seeds

    result = evaluate_seeds(zibo, "2023Q2", [0, 1, 2, 3, 4], "realistic")
    table = result["table"].set_index("kind")
    per_kind = table.drop(index="all")
    assert (per_kind["truth"] > 0).all(), table.to_string()
    assert (per_kind["recall"] >= 0.9).all(), table.to_string()
    assert result["false_alarms_per_100"] <= 0.5, result["mismatches"].to_string()
