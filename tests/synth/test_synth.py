"""Synthetic data generator: determinism, proportions, realism, truth consistency, scenarios, history."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from haocha_analysis.analysis.anomalies.settings import Settings
from haocha_analysis.cli import cli
from haocha_analysis.core.config import (
    REPORT_DELAY_LIMIT,
    SCENARIOS_DIR,
    WORKDAY_END_HOUR,
    WORKDAY_START_HOUR,
)
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.schemas import ONSITE_CHANNELS, validate
from haocha_analysis.core.stats import binomial_tail_bound
from haocha_analysis.ingest.storage import load_tables
from haocha_analysis.synth import generate as synth
from haocha_analysis.synth.inject import MIN_RECORDS
from haocha_analysis.synth.matters import build_catalogue
from haocha_analysis.synth.plan import ACTIVE_CLEARLY_LOW, ACTIVE_NORMAL_MIN, LOW_ACTIVE_MIN_CASES
from haocha_analysis.synth.records import is_workday

SCALE = 0.02
Q2 = parse_period("2023Q2")
TARGETS = yaml.safe_load((SCENARIOS_DIR / "targets-zibo-2023Q2.yml").read_text(encoding="utf-8"))


def scaled(x: int, scale: float = SCALE) -> int:
    return int(np.floor(x * scale + 0.5))


@pytest.fixture(scope="module")
def small(zibo):
    return synth.generate(zibo, Q2, scale=SCALE, seed=7, scenario="default")


@pytest.fixture(scope="module")
def clean(zibo):
    return synth.generate(zibo, Q2, scale=SCALE, seed=7, scenario="clean")


def first_evaluations(evaluations: pd.DataFrame) -> pd.DataFrame:
    """Earliest attempt-1 evaluation of each case, plus attempt-1 evaluations with no case."""
    att1 = evaluations[evaluations["attempt"] == 1].sort_values(["evaluated_at", "eval_id"])
    linked = att1[att1["case_id"].notna()].drop_duplicates("case_id")
    return pd.concat([linked, att1[att1["case_id"].isna()]])


# --- determinism and proportions -------------------------------------------------------------------


def test_deterministic_for_a_seed(zibo, small):
    again = synth.generate(zibo, Q2, scale=SCALE, seed=7, scenario="default")
    for table in small.tables:
        pd.testing.assert_frame_equal(small.tables[table], again.tables[table])
    assert small.truth == again.truth
    other = synth.generate(zibo, Q2, scale=SCALE, seed=8, scenario="default")
    assert not small.tables["evaluations"]["evaluated_at"].equals(other.tables["evaluations"]["evaluated_at"])


def test_every_record_validates(small, clean):
    for result in (small, clean):
        for table, frame in result.tables.items():
            validate(frame, table)
            assert len(frame.columns) >= 7


def test_small_scale_keeps_the_annex_proportions(zibo, small):
    """Every annex figure is the published one × scale (rounded), computed by independent group-bys."""
    units = zibo.units.set_index("unit_id")
    cases, evaluations = small.tables["cases"], small.tables["evaluations"]
    first = first_evaluations(evaluations)
    case_first = cases.merge(first[["case_id", "active"]], on="case_id", how="left")
    assert case_first["active"].notna().sum() + case_first["unit_id"].eq("zb-c13").sum() == len(cases)
    uid = case_first["unit_id"].astype(str)
    case_first["level"], case_first["district"] = uid.map(units["level"]), uid.map(units["district"])
    local = case_first[case_first["level"] != "city_dept"]
    by_district = local.groupby("district").agg(cases=("case_id", "size"), active=("active", "sum"))
    for name, t in TARGETS["districts"].items():
        assert by_district.loc[name, "cases"] == scaled(t["cases"]), name
        assert by_district.loc[name, "active"] == scaled(t["active"]), name
    city = case_first[case_first["level"] == "city_dept"]
    by_dept = city.groupby(city["unit_id"].astype(str).map(units["unit_name"])).agg(
        cases=("case_id", "size"), active=("active", "sum"), unknown=("active", lambda s: s.isna().sum())
    )
    for name, t in TARGETS["city_departments"].items():
        got = (
            by_dept.loc[name] if name in by_dept.index else pd.Series({"cases": 0, "active": 0, "unknown": 0})
        )
        assert got["cases"] == scaled(t["cases"]), name
        if t["active"] is None:
            assert got["unknown"] == got["cases"], name  # 张店区税务局: no active flag
        elif got["cases"]:
            assert got["active"] == scaled(t["active"]), name
    fu = first.assign(u=first["unit_id"].astype(str))
    fu["level"], fu["district"], fu["category"] = (
        fu["u"].map(units["level"]),
        fu["u"].map(units["district"]),
        fu["u"].map(units["category"]),
    )
    cells = fu[fu["level"] == "district_dept"].groupby(["category", "district"]).size()
    districts = list(TARGETS["districts"])
    for category, values in TARGETS["district_departments"].items():
        for district, value in zip(districts, values, strict=True):
            assert cells.get((category, district), 0) == scaled(value), (category, district)
    local_levels = fu[fu["level"].isin(["town", "village"])].groupby(["level", "district"]).size()
    for district, t in TARGETS["districts"].items():
        assert local_levels.get(("town", district), 0) == scaled(t["towns"])
        assert local_levels.get(("village", district), 0) == scaled(t["villages"])


def test_scale_multiplies_counts(zibo, small):
    bigger = synth.generate(zibo, Q2, scale=2 * SCALE, seed=7, scenario="clean")
    ratio = len(bigger.tables["cases"]) / len(small.tables["cases"])
    assert 1.95 < ratio < 2.05
    assert len(small.tables["cases"]) == sum(
        scaled(t["cases"]) for part in ("districts", "city_departments") for t in TARGETS[part].values()
    )


# --- realism ---------------------------------------------------------------------------------------


def test_cases_on_working_days_in_working_hours(small):
    cases = small.tables["cases"]
    finished = cases["finished_at"]
    days = pd.Series(finished.dt.date.unique())
    assert days.map(is_workday).all()
    assert not days.isin([pd.Timestamp("2023-04-05").date(), pd.Timestamp("2023-05-01").date()]).any()
    # 调休: the Sunday 2023-04-23 and the Saturday 2023-05-06 were working days
    assert days.isin([pd.Timestamp("2023-04-23").date(), pd.Timestamp("2023-05-06").date()]).any()
    hours = finished.dt.hour + finished.dt.minute / 60
    assert hours.between(WORKDAY_START_HOUR, WORKDAY_END_HOUR).all()
    assert (cases["accepted_at"] < finished).all()
    assert Q2.contains(finished).all()


def test_evaluations_follow_their_case_inside_the_period(small):
    cases, evaluations = small.tables["cases"], small.tables["evaluations"]
    assert Q2.contains(evaluations["evaluated_at"]).all()
    joined = evaluations.merge(cases[["case_id", "finished_at"]], on="case_id", how="inner")
    before = joined["evaluated_at"] < joined["finished_at"]
    injected = {
        i for a in small.truth["anomalies"] if a["kind"] == "eval_before_case" for i in a["record_ids"]
    }
    assert set(joined.loc[before, "eval_id"]) == injected


def test_channels_active_and_satisfaction(small):
    ev = small.tables["evaluations"]
    default = ev["channel"] == "system_default"
    assert (ev.loc[default, "active"] == False).all()  # noqa: E712
    assert (ev.loc[ev["active"] == False, "channel"] == "system_default").all()  # noqa: E712
    assert (ev.loc[default, "satisfaction"] == 5).all()
    tax = ev["unit_id"] == "zb-c13"
    assert ev.loc[tax, "active"].isna().all() and not (ev.loc[tax, "channel"] == "system_default").any()
    # Channel mix varies by unit type: villages use paper and QR codes more than district departments,
    # public services use the phone, and on-site channels dominate district halls.
    active = ev[ev["active"] == True]  # noqa: E712
    kind = active["unit_id"].astype(str)
    village = kind.str.contains(r"-t\d+-v\d+$")
    public = kind.str.contains(r"-k30-\d$")
    dept = kind.str.contains(r"-k\d+$")
    assert (active.loc[village, "channel"] == "paper").mean() > (
        active.loc[dept, "channel"] == "paper"
    ).mean()
    assert (active.loc[public, "channel"] == "phone").mean() > 0.1
    assert active.loc[dept, "channel"].isin(ONSITE_CHANNELS).mean() > 0.5
    shares = ev["satisfaction"].value_counts(normalize=True)
    assert shares[5] > 0.85 and shares.get(1, 0) + shares.get(2, 0) < 0.01


def test_bad_reviews_are_judged_invalid(small):
    ev, rect = small.tables["evaluations"], small.tables["rectifications"]
    bad = ev[ev["satisfaction"] <= 2]
    assert len(bad) > 0
    assert set(rect["eval_id"]) == set(bad["eval_id"])
    assert (rect["verdict"] == "invalid").all()
    assert rect["invalid_reason"].isin(["误评", "恶意差评", "与本办件无关", "重复评价"]).all()
    # every invalid verdict is audited: verified after the evaluation, approved after the verification
    at = rect["eval_id"].map(ev.set_index("eval_id")["evaluated_at"])
    assert (rect["verified_at"] > at).all() and (rect["approved_at"] > rect["verified_at"]).all()


def test_followups_ids_keys_matters_systems(zibo, small):
    cases, ev = small.tables["cases"], small.tables["evaluations"]
    followups = ev[ev["attempt"] == 2]
    assert 0.005 < len(followups) / len(cases) < 0.02
    assert followups["case_id"].notna().all()
    assert cases["case_id"].is_unique and ev["eval_id"].is_unique
    assert ev["evaluator_key"].str.fullmatch(r"[0-9a-f]{32}").all()
    matters = zibo.matters.set_index("matter_code")
    assert cases["matter_code"].isin(matters.index).all()
    assert (
        matters.loc[cases["matter_code"], "unit_id"].to_numpy() == cases["unit_id"].astype(str).to_numpy()
    ).all()
    systems = set(cases["source_system"].astype(str))
    assert systems <= {"不动产系统", "住房公积金管理系统", "住房资金预售监管系统", "政务服务平台"}
    names = cases["unit_id"].astype(str).map(zibo.units.set_index("unit_id")["unit_name"])
    realty = cases["source_system"] == "不动产系统"
    assert names[realty].str.contains("自然资源").all()
    assert names[cases["source_system"] == "住房公积金管理系统"].str.contains("公积金").all()
    assert names[cases["source_system"] == "住房资金预售监管系统"].str.contains("住").all()
    region = cases["region_code"].dropna()
    assert region.str.fullmatch(r"\d{6}").all()
    ops = ev["operator"].dropna()
    assert ops.str.fullmatch(r".+\([0-9A-Z]+-\d{2}\)").all()


def test_report_delays_within_five_minutes_except_injections(clean):
    limit = REPORT_DELAY_LIMIT
    cases, ev = clean.tables["cases"], clean.tables["evaluations"]
    assert ((cases["reported_at"] - cases["finished_at"]) <= limit).all()
    assert ((ev["reported_at"] - ev["evaluated_at"]) <= limit).all()


# --- truth -----------------------------------------------------------------------------------------


def record_level_from_frames(tables: dict[str, pd.DataFrame]) -> dict:
    cases, ev, rect = tables["cases"], tables["evaluations"], tables["rectifications"]
    limit = REPORT_DELAY_LIMIT
    linked = ev.merge(cases[["case_id", "finished_at"]], on="case_id", how="inner")
    att1 = ev[(ev["attempt"] == 1) & ev["case_id"].notna()]
    bad = ev["satisfaction"] <= 2
    return {
        "cases": len(cases),
        "evaluations": len(ev),
        "late_reports": {
            "cases": int(((cases["reported_at"] - cases["finished_at"]) > limit).sum()),
            "evaluations": int(((ev["reported_at"] - ev["evaluated_at"]) > limit).sum()),
        },
        "missing_reported_at": {
            "cases": int(cases["reported_at"].isna().sum()),
            "evaluations": int(ev["reported_at"].isna().sum()),
        },
        "duplicate_evaluations": len(att1) - att1["case_id"].nunique(),
        "evals_before_case": int((linked["evaluated_at"] < linked["finished_at"]).sum()),
        "raw_bad": int(bad.sum()),
        "invalid_bad": int((rect["verdict"] == "invalid").sum()),
        "unlinked_evaluations": int(ev["case_id"].isna().sum()),
        "followups": int((ev["attempt"] >= 2).sum()),
    }


def test_truth_counts_are_exact(small):
    level = small.truth["record_level"]
    for key, value in record_level_from_frames(small.tables).items():
        got = level[key]
        if isinstance(value, dict):
            got = {k: got[k] for k in value}
        assert got == value, key
    assert level["late_reports"]["cases"] > 0 and level["duplicate_evaluations"] > 0
    assert level["evals_before_case"] > 0 and level["missing_reported_at"]["cases"] > 0


def test_truth_anomalies_point_at_real_records(small):
    tables = small.tables
    index = {
        "cases": tables["cases"].set_index("case_id"),
        "evaluations": tables["evaluations"].set_index("eval_id"),
    }
    kinds = {a["kind"] for a in small.truth["anomalies"]}
    assert {
        "zero_data",
        "low_volume",
        "low_onsite",
        "low_active",
        "backfill",
        "late_aggregation",
        "duplicates",
    } <= kinds
    assert {"staff_reentry", "eval_before_case", "high_invalid_bad"} <= kinds
    for a in small.truth["anomalies"]:
        assert set(a) >= {"kind", "unit_id", "table", "record_ids", "count", "detail"}
        rows = index[a["table"]].loc[a["record_ids"]]
        assert (rows["unit_id"].astype(str) == a["unit_id"]).all(), a["kind"]
        if a["record_ids"]:
            assert a["count"] == len(a["record_ids"])
    ev = tables["evaluations"]
    counts = ev["unit_id"].astype(str).value_counts()
    for a in small.truth["anomalies"]:
        if a["kind"] == "zero_data":
            assert counts.get(a["unit_id"], 0) == 0
            assert a["unit_id"] not in set(tables["cases"]["unit_id"].astype(str))
        if a["kind"] == "backfill":
            rows = ev.set_index("eval_id").loc[a["record_ids"]]
            assert rows["operator"].nunique() == 1
            assert (rows["evaluated_at"].dt.hour >= 18).all()
        if a["kind"] == "staff_reentry":
            rows = ev.set_index("eval_id").loc[a["record_ids"]]
            assert rows["evaluator_key"].nunique() == 1 and rows["operator"].nunique() == 1
            assert rows["case_id"].nunique() == len(rows)
        if a["kind"] == "duplicates":
            rows = ev.set_index("eval_id").loc[a["record_ids"]]
            originals = ev[ev["case_id"].isin(rows["case_id"]) & ~ev["eval_id"].isin(a["record_ids"])]
            originals = originals[originals["attempt"] == 1].set_index("case_id")
            assert (
                originals.loc[rows["case_id"], "satisfaction"].to_numpy() == rows["satisfaction"].to_numpy()
            ).all()
            assert (
                originals.loc[rows["case_id"], "evaluated_at"].to_numpy() < rows["evaluated_at"].to_numpy()
            ).all()


def test_clean_scenario_has_no_injections(clean, small):
    assert not [a for a in clean.truth["anomalies"] if a["source"] == "injected"]
    level = clean.truth["record_level"]
    assert level["late_reports"] == {"cases": 0, "evaluations": 0}
    assert level["duplicate_evaluations"] == 0 and level["evals_before_case"] == 0
    assert level["missing_reported_at"]["cases"] == 0
    # Same model and figures: the case counts per unit agree with the default scenario's where no
    # plan-level anomaly moved them.
    assert len(clean.tables["cases"]) == len(small.tables["cases"])


def test_scenario_from_a_yaml_path(zibo, tmp_path):
    path = tmp_path / "only_dups.yml"
    path.write_text("extends: clean\nanomalies:\n  duplicates: {units: 1, count: 500}\n", encoding="utf-8")
    result = synth.generate(zibo, Q2, scale=SCALE, seed=1, scenario=path)
    kinds = [a["kind"] for a in result.truth["anomalies"] if a["source"] == "injected"]
    assert kinds == ["duplicates"]
    assert result.truth["record_level"]["duplicate_evaluations"] == 10  # 500 at scale 1
    # A size that scales below the detector's minimum is floored in records, not shrunk to nothing.
    path.write_text("extends: clean\nanomalies:\n  duplicates: {units: 1, count: 50}\n", encoding="utf-8")
    result = synth.generate(zibo, Q2, scale=SCALE, seed=1, scenario=path)
    assert result.truth["record_level"]["duplicate_evaluations"] == MIN_RECORDS["duplicates"]  # not 1


def test_unknown_scenario_is_a_clear_error(zibo):
    from haocha_analysis.core.errors import HaochaInputError

    with pytest.raises(HaochaInputError, match="场景"):
        synth.generate(zibo, Q2, scale=SCALE, scenario="no-such-scenario")


def test_injections_keep_a_floor_in_records_at_a_tiny_scale(small):
    """At scale 0.02 every record-level injection still has at least its floor (twice the detector's
    documented minimum), and the plan-level ones their floors in records."""
    floors = {
        "duplicates": MIN_RECORDS["duplicates"],
        "eval_before_case": MIN_RECORDS["eval_before_case"],
        "staff_reentry": MIN_RECORDS["staff_reentry"],
        "late_aggregation": MIN_RECORDS["late_aggregation"],
        "backfill": MIN_RECORDS["backfill_burst"],
        "late_reporting": MIN_RECORDS["late_reporting"],
        "agent": MIN_RECORDS["agent"],
    }
    settings = Settings()
    assert floors["duplicates"] >= 2 * settings.duplicates_min
    assert floors["eval_before_case"] >= 2 * settings.before_case_min
    assert floors["staff_reentry"] >= 2 * settings.reentry_min_cases_one_operator
    assert floors["late_aggregation"] >= 2 * settings.late_min_cases
    assert floors["late_reporting"] >= 2 * settings.late_min_cases
    assert floors["agent"] >= 2 * settings.agent_min_cases
    assert MIN_RECORDS["backfill_burst"] >= 2 * settings.burst_min_size_after_hours
    seen = set()
    for a in small.truth["anomalies"]:
        if a["kind"] in floors:
            seen.add(a["kind"])
            assert a["count"] >= floors[a["kind"]], a
        if a["kind"] == "backfill":
            assert all(b["records"] >= MIN_RECORDS["backfill_burst"] for b in a["detail"]["bursts"])
        if a["kind"] == "high_invalid_bad":
            assert a["detail"]["citizen_evaluations"] * a["detail"]["raw_bad_rate"] >= 15
            assert a["count"] >= settings.invalid_min
        if a["kind"] == "low_onsite":
            assert a["detail"]["onsite_before"] >= MIN_RECORDS["low_onsite"]
        if a["kind"] == "low_active" and a["source"] == "injected":
            assert a["detail"]["cases"] >= LOW_ACTIVE_MIN_CASES
    assert seen == set(floors)


def _active_plan(zibo, scale: float, seed: int, scenario: str = "default") -> pd.DataFrame:
    return synth.build_plan(zibo, Q2, scale, seed, synth.load_scenario(scenario))


@pytest.mark.parametrize(("scale", "seed"), [(1.0, 0), (0.1, 1)])
def test_active_shares_are_clearly_normal_or_clearly_low(zibo, scale, seed):
    """No unit is planned in the band around the 5% limit unless the published figures force it:
    district units are ≥ 10% (within one case) or the scenario's low units (≤ 1%); only a district
    whose published share is below 10% (经开区, 2 of 3698) and city departments (published one by one)
    may be lower. District totals stay exact."""
    plan = _active_plan(zibo, scale, seed)
    units = plan[(plan["cases"] > 0) & plan["active_known"]]
    share = units["active"] / units["cases"]
    district_share = {
        d: scaled(t["active"], scale) / scaled(t["cases"], scale) for d, t in TARGETS["districts"].items()
    }
    local = units["level"] != "city_dept"
    forced = units["district"].map(district_share).fillna(1.0) < ACTIVE_NORMAL_MIN
    normal = share >= ACTIVE_NORMAL_MIN - 1 / units["cases"]
    low = units["_low_active"] & (share <= ACTIVE_CLEARLY_LOW)
    assert (normal | low)[local & ~forced].all(), units[local & ~forced & ~(normal | low)]
    assert units["_low_active"].sum() == 2 and low.sum() == 2
    assert (units.loc[units["_low_active"], "cases"] >= LOW_ACTIVE_MIN_CASES).all()
    # The forced district: every unit at about the district's share (within one case).
    f = units[forced & local]
    assert len(f) and (f["active"] <= np.ceil(f["cases"] * district_share["经开区"])).all()
    totals = units[local].groupby("district")["active"].sum()
    for name, t in TARGETS["districts"].items():
        assert totals.get(name, 0) == scaled(t["active"], scale), name


def test_low_active_truth_is_observable_with_one_fixed_floor(zibo, small):
    """The low_active truth: planned share < 5% and ≥ 90 cases (the one floor, from the detector's
    rule), scored when clearly low; the published near-zero units deterministically, at every scale."""
    settings = Settings()
    floor = int(np.ceil(np.log(settings.low_active_alpha) / np.log1p(-settings.low_active_max_share)))
    assert synth.LOW_ACTIVE_TRUTH_MIN_CASES == floor == 90
    names = zibo.units.set_index("unit_name")["unit_id"]
    published_zero = {names[n] for n in ("市公安局", "市住房公积金", "市教育局", "山东省淄博市鲁中公证处")}
    ambiguous = {names[n] for n in ("市场监管局", "市应急管理局")}  # published 3.8% and 3.9%
    for scale in (1.0, 0.1):
        sets = []
        for seed in (0, 1):
            plan = _active_plan(zibo, scale, seed, "clean")
            rows = synth.low_active_truth(plan)
            scored = {plan.at[i, "unit_id"] for i, ok in rows if ok}
            unscored = {plan.at[i, "unit_id"] for i, ok in rows if not ok}
            listed = plan.loc[[i for i, _ in rows]]
            assert (listed["cases"] >= floor).all() and not listed["_low_active"].any()
            ref_units = {u for u in scored if u.startswith("zb-c")}
            sets.append((ref_units, unscored))
            expect = {u for u in published_zero if plan.set_index("unit_id").at[u, "cases"] >= floor}
            assert expect <= scored, (scale, seed)
        assert sets[0] == sets[1], scale  # no seed dependence for the published units
        if scale == 1.0:
            assert published_zero <= sets[0][0]  # 市教育局 0/269 and 鲁中公证处 0/904 included
            assert sets[0][1] == ambiguous
    # In generated data: every scored entry passes the detector's documented test on the records.
    cases = small.tables["cases"]
    first = first_evaluations(small.tables["evaluations"])
    first = first[first["case_id"].isin(cases["case_id"])]
    k = first.groupby(first["unit_id"].astype(str))["active"].sum()
    n = first.groupby(first["unit_id"].astype(str)).size()
    entries = [a for a in small.truth["anomalies"] if a["kind"] == "low_active"]
    assert {a["source"] for a in entries} == {"injected", "reference"}
    for a in entries:
        u = a["unit_id"]
        assert n[u] == a["detail"]["cases"] >= floor and k[u] == a["count"]
        assert k[u] / n[u] <= ACTIVE_CLEARLY_LOW
        bound = binomial_tail_bound(np.array([k[u]]), np.array([n[u]]), np.array([0.05]), lower=True)
        assert bound[0] < settings.low_active_alpha
    for a in small.truth["unscored"]:
        assert a["kind"] == "low_active" and a["detail"]["band"] == "ambiguous"


def test_too_perfect_truth_states_the_observable_expectation(small, zibo):
    """too_perfect units are big enough that the peers' lower-quartile 差评 rate expects ≥ 10 of them."""
    entries = [a for a in small.truth["anomalies"] if a["kind"] == "too_perfect"]
    plan = _active_plan(zibo, 1.0, 0)
    assert plan["injected_too_perfect"].sum() == 2
    assert (plan.loc[plan["injected_too_perfect"], "expected_bad_at_peer_rate"] >= 10).all()
    for a in entries:
        assert a["detail"]["raw_bad"] == 0
        assert a["detail"]["expected_raw_bad_at_peer_rate"] >= 10
        assert a["detail"]["p_zero_at_peer_rate"] < 1e-4
    ev = small.tables["evaluations"]
    for a in entries:
        assert not (ev.loc[ev["unit_id"].astype(str) == a["unit_id"], "satisfaction"] <= 2).any()


# --- history, other cities, writing ----------------------------------------------------------------


def test_history_quarters(zibo, small):
    history = synth.generate_history(zibo, Q2, quarters=4, scale=SCALE, seed=7, scenario="default")
    assert list(history) == ["2022Q2", "2022Q3", "2022Q4", "2023Q1"]
    sizes = {label: len(t["cases"]) for label, t in history.items()}
    assert sizes["2023Q1"] < sizes["2022Q4"]  # 春节
    assert sizes["2022Q2"] < len(small.tables["cases"])  # a year of growth
    for label, tables in history.items():
        p = parse_period(label)
        assert p.contains(tables["cases"]["finished_at"]).all()
        assert p.contains(tables["evaluations"]["evaluated_at"]).all()
        for table, frame in tables.items():
            validate(frame, table)
    ids = pd.concat([t["cases"]["case_id"] for t in history.values()] + [small.tables["cases"]["case_id"]])
    assert ids.is_unique
    seen = set().union(*(set(t["evaluations"]["unit_id"].astype(str)) for t in history.values()))
    for a in small.truth["anomalies"]:
        if a["kind"] == "zero_data":
            assert a["unit_id"] in seen  # had records before, none now
    # Persons come back across quarters.
    keys = set(history["2023Q1"]["evaluations"]["evaluator_key"])
    assert len(keys & set(small.tables["evaluations"]["evaluator_key"])) > 0


def test_another_city_without_targets(qinghe):
    result = synth.generate(qinghe, "2023Q2", scale=0.1, seed=0, scenario="clean")
    for table, frame in result.tables.items():
        validate(frame, table)
    assert len(result.tables["cases"]) > 0
    assert set(result.tables["cases"]["unit_id"].astype(str)) <= set(qinghe.units["unit_id"])
    month = synth.generate(qinghe, "2023-05", scale=0.1, seed=0, scenario="default")
    assert parse_period("2023-05").contains(month.tables["evaluations"]["evaluated_at"]).all()


def test_write_and_load_round_trip(small, tmp_path):
    synth.write(small, tmp_path / "pq", "2023Q2")
    loaded = load_tables(tmp_path / "pq", Q2)
    assert len(loaded["evaluations"]) == len(small.tables["evaluations"])
    truth = json.loads((tmp_path / "pq" / "truth.json").read_text(encoding="utf-8"))
    assert truth["record_level"] == small.truth["record_level"]
    synth.write(small, tmp_path / "csv", "2023Q2", csv=True)
    assert (tmp_path / "csv" / "cases.csv").exists()
    loaded = load_tables(tmp_path / "csv")
    assert len(loaded["cases"]) == len(small.tables["cases"])


def test_cli_synth(tmp_path):
    out = tmp_path / "out"
    args = ["synth", "--city", "zibo", "--period", "2023Q2", "--scale", "0.01", "--seed", "2"]
    result = CliRunner().invoke(cli, [*args, "--history", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "truth.json").exists()
    assert (out / "cases" / "period=2023Q2" / "part-0.parquet").exists()
    assert (out / "cases" / "period=2023Q1" / "part-0.parquet").exists()
    bad = CliRunner().invoke(cli, ["synth", "--city", "zibo", "--period", "2023Q9", "--out", str(out)])
    assert bad.exit_code == 2


def test_ensure_default_data_regenerates_only_when_stale(monkeypatch, tmp_path):
    monkeypatch.setattr(synth, "SYNTHETIC_DIR", tmp_path)
    real_generate, real_history = synth.generate, synth.iter_history
    calls = []

    def small_generate(ref, period, scale, seed, scenario):
        calls.append(period)
        return real_generate(ref, period, 0.01, seed, scenario)

    def small_history(ref, period, quarters, scale, seed, scenario):
        return real_history(ref, period, quarters, 0.01, seed, scenario)

    monkeypatch.setattr(synth, "generate", small_generate)
    monkeypatch.setattr(synth, "iter_history", small_history)
    path = synth.ensure_default_data("zibo", "2023Q2", history=2)
    assert path == tmp_path / "zibo" and (path / "truth.json").exists()
    stamps = json.loads((path / "synth-stamp.json").read_text(encoding="utf-8"))
    stamp = stamps["2023Q2"]
    assert stamp["scale"] == 1.0 and stamp["seed"] == 0 and stamp["scenario"] == "default"
    assert sorted(p.name for p in (path / "cases").iterdir()) == [
        "period=2022Q4",
        "period=2023Q1",
        "period=2023Q2",
    ]
    synth.ensure_default_data("zibo", "2023Q2", history=2)
    assert len(calls) == 1  # fresh: not regenerated
    stamp["generator"] = "old"
    (path / "synth-stamp.json").write_text(json.dumps({"2023Q2": stamp}), encoding="utf-8")
    synth.ensure_default_data("zibo", "2023Q2", history=2)
    assert len(calls) == 2  # stale: regenerated
    # Another period is added beside the first, which is kept as it was (a schedule never wipes it).
    before = (path / "cases" / "period=2023Q2" / "part-0.parquet").read_bytes()
    synth.ensure_default_data("zibo", "2023Q3", history=2)
    assert len(calls) == 3
    assert (path / "cases" / "period=2023Q2" / "part-0.parquet").read_bytes() == before
    written = json.loads((path / "synth-stamp.json").read_text(encoding="utf-8"))
    assert {k for k, v in written.items() if v["role"] == "period"} == {"2023Q2", "2023Q3"}
    assert (path / "truth-2023Q2.json").exists() and (path / "truth-2023Q3.json").exists()
    assert (path / "cases" / "period=2023Q3").is_dir()
    synth.ensure_default_data("zibo", "2023Q2", history=2)
    assert len(calls) == 3  # both fresh


def test_demo_data_never_holds_two_copies_of_a_record(monkeypatch, tmp_path):
    """Months, halves and years are served by the quarters they overlap, each quarter once."""
    monkeypatch.setattr(synth, "SYNTHETIC_DIR", tmp_path)
    real_generate, real_history = synth.generate, synth.iter_history
    calls = []

    def small_generate(ref, period, scale, seed, scenario):
        calls.append(period)
        return real_generate(ref, period, 0.01, seed, scenario)

    monkeypatch.setattr(synth, "generate", small_generate)
    monkeypatch.setattr(
        synth,
        "iter_history",
        lambda ref, period, q, scale, seed, sc: real_history(ref, period, q, 0.01, seed, sc),
    )
    path = synth.ensure_default_data("zibo", "2023Q2", history=1)
    q2 = (path / "evaluations" / "period=2023Q2" / "part-0.parquet").read_bytes()
    for asked in ("2023-05", "2023H1", "2023Q2", "2023-04-10..2023-05-20"):
        synth.ensure_default_data("zibo", asked, history=1)
    assert calls == ["2023Q2", "2023Q1"]  # 2023Q1 was only history: asked for by 2023H1, made a period
    assert sorted(p.name for p in (path / "cases").iterdir()) == [
        "period=2022Q4",
        "period=2023Q1",
        "period=2023Q2",
    ]
    assert (path / "evaluations" / "period=2023Q2" / "part-0.parquet").read_bytes() == q2
    ids = load_tables(
        path, parse_period("2023H1"), tables=("evaluations",), columns={"evaluations": ["eval_id"]}
    )
    assert ids["evaluations"]["eval_id"].is_unique


def test_matters_catalogue(zibo):
    matters = zibo.matters
    assert 15_000 <= len(matters) < 16_000  # the bulletin's 1.5万余件
    assert matters["matter_code"].is_unique
    assert (matters["invented"] == "true").all()
    assert set(matters.columns) >= {"matter_code", "matter_name", "unit_id", "category", "level", "type"}
    rebuilt = build_catalogue(zibo)
    pd.testing.assert_frame_equal(
        rebuilt.reset_index(drop=True), matters[rebuilt.columns].reset_index(drop=True)
    )


def test_written_data_record_the_reference_extraction_date(tmp_path, zibo):
    from datetime import date

    from haocha_analysis.ingest.storage import extraction_date

    result = synth.generate(zibo, "2023Q2", scale=0.005, seed=0, scenario="clean")
    synth.write(result, tmp_path, "2023Q2")
    assert extraction_date(tmp_path, parse_period("2023Q2")) == date(2023, 7, 4)


def test_sample_rows_never_leaves_its_group_at_the_edges():
    """Draws at a group's very start (u < 1e-9) or rounding up to its end stay in the group's range."""
    import numpy as np

    from haocha_analysis.synth.records import sample_rows

    class Draws:
        def __init__(self, values):
            self.values = np.asarray(values, dtype=float)

        def random(self, n):
            return self.values[:n]

    probs = np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])
    group = np.array([1, 2, 0, 1])
    got = sample_rows(Draws([0.0, 0.0, 1 - 1e-17, 0.3]), group, probs)
    assert got.tolist() == [0, 0, 1, 1]  # before the fix: -1, -1, …: a missing channel
