"""Own-history baselines, the new kinds and every detector's tricky clean twin, on tiny literal frames.

Each twin is a unit a naive rule would flag and the detector must not: an online-only unit, a service
moved away a quarter ago, a 代办 agent, a one-day outage, a tiny perfect unit, 24-hour terminals….
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from haocha_analysis.analysis import anomalies
from haocha_analysis.analysis.anomalies import Settings, detect
from haocha_analysis.core.calendar import workday_calendar
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.rules import DEFAULT_TIMING
from haocha_analysis.core.schemas import coerce

Q2 = parse_period("2023Q2")
TOWNS = [f"t-d1-t{i}" for i in range(1, 9)]


def make_ref(n_towns: int = 8) -> CityReference:
    rows = [("t-d1", "甲区", "district", "甲区", "", 1)]
    rows += [
        (f"t-d1-t{i}", f"甲区第{i}街道便民服务中心", "town", "甲区", "", i) for i in range(1, n_towns + 1)
    ]
    units = pd.DataFrame(rows, columns=["unit_id", "unit_name", "level", "district", "category", "order"])
    units["public_service"] = False
    units["aliases"] = ""
    return CityReference(key="tiny", path=Path("."), units=units, meta={"city_name": "甲市"})


@pytest.fixture
def ref() -> CityReference:
    return make_ref()


def workdays(period) -> pd.DatetimeIndex:
    cal = workday_calendar(period.start, period.end)
    return cal.index[cal.to_numpy()]


def key(text: str) -> str:
    """An evaluator key as ingest writes it (a hash: canonical data never hold raw ids)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def quarter(label: str, units: dict[str, dict] | list[str], n: int = 100) -> dict[str, pd.DataFrame]:
    """Cases and their first evaluations of one quarter, per unit.

    Per unit (optional keys): n cases, onsite (share evaluated on the hall tablet, else by QR code),
    evaluated (share of cases evaluated), lag (evaluation delay after the finish), operators.
    Cases are spread over the quarter's working days from 09:00; evaluator keys are one per case.
    """
    period = parse_period(label)
    days = workdays(period)
    specs = units if isinstance(units, dict) else {u: {} for u in units}
    cases, evals = [], []
    for u_i, (unit, spec) in enumerate(specs.items()):
        count = int(spec.get("n", n))
        onsite = round(spec.get("onsite", 1.0) * count)
        evaluated = round(spec.get("evaluated", 1.0) * count)
        lag = spec.get("lag", pd.Timedelta(minutes=1))
        ops = spec.get("operators", 4)
        for j in range(count):
            finished = days[(j * 7 + u_i) % len(days)] + pd.Timedelta(hours=9, minutes=(11 * j + u_i) % 420)
            cid = f"{label}-{unit}-c{j}"
            cases.append((cid, unit, finished, finished + pd.Timedelta(minutes=1)))
            if j < evaluated:
                at = finished + lag
                evals.append(
                    (f"{label}-{unit}-e{j}", cid, unit, "hall_tablet" if j < onsite else "qr_code", 5, at,
                     at + pd.Timedelta(seconds=30), 1, True, key(f"{unit}-k{j}-{label}"),
                     f"{unit}-op{j % ops}")
                )  # fmt: skip
    c = pd.DataFrame(cases, columns=["case_id", "unit_id", "finished_at", "reported_at"])
    e = pd.DataFrame(
        evals,
        columns=["eval_id", "case_id", "unit_id", "channel", "satisfaction", "evaluated_at", "reported_at",
                 "attempt", "active", "evaluator_key", "operator"],
    )  # fmt: skip
    r = pd.DataFrame({"eval_id": pd.Series(dtype="str"), "verdict": pd.Series(dtype="str")})
    return {
        "cases": coerce(c, "cases"),
        "evaluations": coerce(e, "evaluations"),
        "rectifications": coerce(r, "rectifications"),
    }


def history(units, labels=("2022Q2", "2022Q3", "2022Q4", "2023Q1"), per_quarter=None, n=100):
    """Earlier quarters: ``per_quarter[label]`` overrides the unit specs of one quarter."""
    out = {}
    for label in labels:
        specs = dict(units) if isinstance(units, dict) else {u: {} for u in units}
        for unit, spec in (per_quarter or {}).get(label, {}).items():
            specs[unit] = {**specs.get(unit, {}), **spec}
        out[label] = quarter(label, specs, n)
    return out


def found(findings: pd.DataFrame, kind: str) -> list[str]:
    return sorted(findings.loc[findings["kind"] == kind, "unit_id"])


def edit(frame: pd.DataFrame, mask, column: str, values) -> pd.DataFrame:
    out = frame.copy()
    if isinstance(out[column].dtype, pd.CategoricalDtype):
        out[column] = out[column].astype("object")
    out.loc[mask, column] = values
    return coerce(out, "evaluations" if "eval_id" in out else "cases")


# --- one settings object with quality -------------------------------------------------------------


def test_quality_and_anomalies_share_one_timing_object():
    from haocha_analysis.quality.settings import QualitySettings

    assert Settings().timing is DEFAULT_TIMING and QualitySettings().timing is DEFAULT_TIMING
    assert QualitySettings().report_delay_limit == DEFAULT_TIMING.report_delay_limit == timedelta(minutes=5)
    assert QualitySettings().as_dict()["clock_skew_tolerance"] == 0.0  # flattened for the report
    assert "timing" in set(anomalies.settings_table()["参数"])


# --- own history: on-site share ------------------------------------------------------------------


def test_low_onsite_from_own_history_not_peers(ref):
    """t1 falls from 58% to 28% on site: within its peers' spread (28%–60%), flagged against its own
    past. t2 has always been online-only (3%): far below its peers, never a finding."""
    peers = {u: {"onsite": s} for u, s in zip(TOWNS[2:], (0.28, 0.35, 0.45, 0.5, 0.55, 0.6), strict=True)}
    usual = {"t-d1-t1": {"onsite": 0.58}, "t-d1-t2": {"onsite": 0.03}, **peers}
    now = quarter("2023Q2", {**usual, "t-d1-t1": {"onsite": 0.28}}, n=200)
    findings = detect(ref, now, Q2, history=history(usual, n=200), kinds=["low_onsite"])
    assert found(findings, "low_onsite") == ["t-d1-t1"]
    row = findings.iloc[0]
    assert row["expected"] == pytest.approx(0.58) and row["measure"] == pytest.approx(0.28)
    assert row["baseline"].startswith("本单位前4期中位数 58.0%") and "同类中位数" in row["baseline"]
    # Without history the same quarter is judged by peers only: t2 is then the outlier, t1 is not.
    alone = detect(ref, now, Q2, kinds=["low_onsite"])
    assert found(alone, "low_onsite") == ["t-d1-t2"]
    assert "无历史数据" in alone["baseline"].iloc[0]


def test_low_onsite_confirmed_shift_is_the_new_normal(ref):
    """t1 moved online a quarter ago (58% → 28%) and stays at 28%: not reported again."""
    usual = {u: {"onsite": 0.58} for u in TOWNS}
    hist = history(usual, per_quarter={"2023Q1": {"t-d1-t1": {"onsite": 0.28}}}, n=200)
    now = quarter("2023Q2", {**usual, "t-d1-t1": {"onsite": 0.28}}, n=200)
    assert detect(ref, now, Q2, history=hist, kinds=["low_onsite"]).empty
    # Falling again, to 8%, is a finding against the new normal.
    lower = quarter("2023Q2", {**usual, "t-d1-t1": {"onsite": 0.08}}, n=200)
    findings = detect(ref, lower, Q2, history=hist, kinds=["low_onsite"])
    assert found(findings, "low_onsite") == ["t-d1-t1"]
    assert "上期已确认的水平变化" in findings["baseline"].iloc[0]


def test_small_and_never_on_site_units_have_a_history_too(ref):
    """t1, a village-sized unit (25–31 evaluations a quarter), has always had ~13% on site: no single
    quarter reaches 30 evaluations, its pooled past does. t2 has never evaluated on site (0% in every
    quarter). Against peers at 50% both look low; against their own past neither is."""
    usual = {u: {"onsite": 0.5} for u in TOWNS} | {
        "t-d1-t1": {"n": 25, "onsite": 0.12},
        "t-d1-t2": {"onsite": 0.0},
    }
    now = quarter("2023Q2", {**usual, "t-d1-t1": {"n": 31, "onsite": 4 / 31}})
    assert found(detect(ref, now, Q2, kinds=["low_onsite"]), "low_onsite") == ["t-d1-t1", "t-d1-t2"]
    findings = detect(ref, now, Q2, history=history(usual), kinds=["low_onsite"])
    assert findings.empty
    # The pooled past is a real baseline: t1 falling to 0 of 120 (P = 0.88^120 ≈ 2e-7) is reported.
    lower = quarter("2023Q2", {**usual, "t-d1-t1": {"n": 120, "onsite": 0.0}})
    findings = detect(ref, lower, Q2, history=history(usual), kinds=["low_onsite"])
    assert found(findings, "low_onsite") == ["t-d1-t1"]
    assert findings["baseline"].iloc[0].startswith("本单位前4期合计 12.0%")


# --- own history: volume per case and per working day ---------------------------------------------


def test_low_volume_moved_service_is_not_reported_twice(ref):
    """t1's volume halved a quarter ago (a service moved elsewhere); its evaluations per case are
    unchanged: the new level is accepted. t2 halves only now: reported, per working day."""
    units = {u: {"n": 200} for u in TOWNS}
    hist = history(units, per_quarter={"2023Q1": {"t-d1-t1": {"n": 100}}})
    now = quarter("2023Q2", {**units, "t-d1-t1": {"n": 100}, "t-d1-t2": {"n": 60}})
    findings = detect(ref, now, Q2, history=hist, kinds=["low_volume"])
    assert found(findings, "low_volume") == ["t-d1-t2"]
    row = findings.iloc[0]
    assert "工作日日均办结办件" in row["description"] and "按全市变化调整" in row["baseline"]


def test_low_volume_season_and_holidays_cancel_out(ref):
    """Every unit has 40% fewer cases this quarter (Spring Festival, fewer working days): the city
    moved, no unit did: nothing to report."""
    units = {u: {"n": 200} for u in TOWNS}
    now = quarter("2023Q2", {u: {"n": 120} for u in TOWNS})
    assert detect(ref, now, Q2, history=history(units), kinds=["low_volume"]).empty


def test_low_volume_evaluations_per_case_against_own_history(ref):
    """t1 always evaluated 60% of its cases (below its peers' 100%): its normal. t2 falls from 100%
    to 45%: reported, with its own past as the baseline."""
    units = {u: {"n": 200} for u in TOWNS} | {"t-d1-t1": {"n": 200, "evaluated": 0.6}}
    now = quarter("2023Q2", {**units, "t-d1-t2": {"n": 200, "evaluated": 0.45}})
    findings = detect(ref, now, Q2, history=history(units), kinds=["low_volume"])
    assert found(findings, "low_volume") == ["t-d1-t2"]
    assert findings["baseline"].iloc[0].startswith("评价/办件比：本单位前4期中位数 1.00")


# --- zero data --------------------------------------------------------------------------------------


def test_zero_data_tiny_unit_with_a_quiet_quarter_is_not_reported(ref):
    """t7 had 2 cases a quarter: none this quarter is plausible (e^-2 = 14%); t8 had 100: reported."""
    units = {u: {"n": 100} for u in TOWNS} | {"t-d1-t7": {"n": 2}}
    now = quarter("2023Q2", {u: {"n": 100} for u in TOWNS[:6]})
    findings = detect(ref, now, Q2, history=history(units), kinds=["zero_data"])
    assert found(findings, "zero_data") == ["t-d1-t8"]
    assert findings["baseline"].iloc[0] == "本单位历史各期平均 200 条记录"


# --- re-entry, agents, backfill ----------------------------------------------------------------------


def test_agent_is_its_own_low_severity_kind_not_reentry(ref):
    """One key on 25 of t1's cases over the quarter at four windows: a 代办 agent, not staff."""
    now = quarter("2023Q2", TOWNS)
    ev = now["evaluations"]
    agent = ev.index[ev["unit_id"].eq("t-d1-t1")][:25]
    now["evaluations"] = edit(ev, agent, "evaluator_key", key("agent-key"))
    findings = detect(ref, now, Q2)
    assert set(zip(findings["kind"], findings["unit_id"], strict=True)) == {("agent", "t-d1-t1")}
    row = findings.iloc[0]
    assert row["severity"] <= anomalies.KIND_WEIGHTS["agent"] and row["records"] == 25
    assert "4 名经办人" in row["description"] and "代办" in row["description"]
    assert "代办" not in anomalies.problems_paragraph(findings, ref, Q2)  # lawful: not a bulletin problem


def test_reentry_burst_of_distinct_citizens_is_not_backfill(ref):
    """At 17:40 one operator keys in 20 evaluations in 4 minutes, each with its citizen's own key,
    for cases finished that day or the day before: staff re-entry. A queue at a terminal (evaluations
    seconds after each case) is natural."""
    now = quarter("2023Q2", TOWNS)
    ev, cases = now["evaluations"].copy(), now["cases"].set_index("case_id")["finished_at"]
    rows = ev.index[ev["unit_id"].eq("t-d1-t1")][:20]
    day = pd.Timestamp("2023-06-16")
    ev.loc[rows, "evaluated_at"] = [
        day + pd.Timedelta(hours=17, minutes=40, seconds=12 * i) for i in range(20)
    ]
    c = now["cases"].copy()
    c.loc[c["case_id"].isin(ev.loc[rows, "case_id"]), "finished_at"] = [
        day - pd.Timedelta(days=i % 2) + pd.Timedelta(hours=9 + i % 7) for i in range(20)
    ]
    ev = edit(ev, rows, "operator", "张三")
    queue = ev.index[ev["unit_id"].eq("t-d1-t2")][:20]  # a terminal queue: each right after its case
    t0 = pd.Timestamp("2023-06-15 10:00")
    c.loc[c["case_id"].isin(ev.loc[queue, "case_id"]), "finished_at"] = [
        t0 + pd.Timedelta(seconds=20 * i) for i in range(20)
    ]
    ev.loc[queue, "evaluated_at"] = [t0 + pd.Timedelta(seconds=20 * i + 5) for i in range(20)]
    ev = edit(ev, queue, "operator", "李四")
    now["cases"], now["evaluations"] = coerce(c, "cases"), coerce(ev, "evaluations")
    findings = detect(ref, now, Q2)
    assert set(zip(findings["kind"], findings["unit_id"], strict=True)) == {("staff_reentry", "t-d1-t1")}
    d = findings["description"].iloc[0]
    assert "20 条不同群众的评价分 1 批" in d and "张三" in d
    assert cases.index.size == 800


def test_backfill_channel_adjusted_and_24_hour_terminals_are_natural(ref):
    """t1 evaluates by SMS links: 12 of its 100 come 6–8 working days late, as SMS evaluations do
    across the level (a tail of that channel): not backfill. t2's self-service terminals take
    evaluations through the night, minutes apart: not a burst. t3 keys in 12 on-site evaluations
    6 working days late: backfill."""
    units = {u: {} for u in TOWNS} | {"t-d1-t1": {"onsite": 0.0}}
    now = quarter("2023Q2", units)
    ev = now["evaluations"].copy()
    fin = now["cases"].set_index("case_id")["finished_at"]
    # The level's SMS evaluations: a late tail everywhere (every unit's QR/SMS share is late 12%).
    for unit in TOWNS[3:]:
        idx = ev.index[ev["unit_id"].eq(unit)][-25:]
        ev = edit(ev, idx, "channel", "sms")
        late = idx[:3]
        ev.loc[late, "evaluated_at"] = [
            (fin[c] + pd.offsets.BDay(7)).replace(hour=20) for c in ev.loc[late, "case_id"]
        ]
    t1 = ev.index[ev["unit_id"].eq("t-d1-t1")]
    ev = edit(ev, t1, "channel", "sms")
    ev.loc[t1[:12], "evaluated_at"] = [
        (fin[c] + pd.offsets.BDay(6)).replace(hour=21) for c in ev.loc[t1[:12], "case_id"]
    ]
    t2 = ev.index[ev["unit_id"].eq("t-d1-t2")][:40]
    night = pd.Timestamp("2023-06-10 23:00")  # a Saturday night: terminals at a steady trickle
    ev.loc[t2, "evaluated_at"] = [night + pd.Timedelta(minutes=7 * i) for i in range(40)]
    c = now["cases"].copy()
    c.loc[c["case_id"].isin(ev.loc[t2, "case_id"]), "finished_at"] = [
        night + pd.Timedelta(minutes=7 * i, seconds=-30) for i in range(40)
    ]
    ev = edit(ev, t2, "channel", "hall_terminal")
    t3 = ev.index[ev["unit_id"].eq("t-d1-t3")][:12]
    ev.loc[t3, "evaluated_at"] = [
        (fin[c] + pd.offsets.BDay(6)).replace(hour=11) for c in ev.loc[t3, "case_id"]
    ]
    now["cases"], now["evaluations"] = coerce(c, "cases"), coerce(ev, "evaluations")
    findings = detect(ref, now, Q2, kinds=["backfill", "staff_reentry"])
    assert found(findings, "backfill") == ["t-d1-t3"] and found(findings, "staff_reentry") == []
    assert "按各渠道同层级超期率推算" in findings["baseline"].iloc[0]


# --- late reporting ----------------------------------------------------------------------------------


def test_late_reporting_daily_sync_but_not_a_one_day_outage(ref):
    """t1's tablets sync every evening: 40% of its evaluations are reported hours late (the quality
    5-minute rule). t2's system was down one day: that day's records came the next morning (an
    incident). t3's evaluations came late with their late cases: late aggregation, counted once."""
    now = quarter("2023Q2", TOWNS, n=200)
    ev, c = now["evaluations"].copy(), now["cases"].copy()
    t1 = ev.index[ev["unit_id"].eq("t-d1-t1")][:80]
    ev.loc[t1, "reported_at"] = ev.loc[t1, "evaluated_at"].dt.normalize() + pd.Timedelta(hours=22)
    day = ev.loc[ev["unit_id"].eq("t-d1-t2"), "evaluated_at"].dt.normalize().value_counts().index[0]
    t2 = ev.index[ev["unit_id"].eq("t-d1-t2") & ev["evaluated_at"].dt.normalize().eq(day)]
    ev.loc[t2, "reported_at"] = day + pd.Timedelta(days=1, hours=8, minutes=30)
    t3 = c.index[c["unit_id"].eq("t-d1-t3")][:40]
    c.loc[t3, "reported_at"] = c.loc[t3, "finished_at"] + pd.Timedelta(days=2)
    linked = ev["case_id"].isin(c.loc[t3, "case_id"])
    ev.loc[linked, "reported_at"] = ev.loc[linked, "case_id"].map(
        c.set_index("case_id")["reported_at"]
    ) + pd.Timedelta(minutes=3)
    now["evaluations"], now["cases"] = coerce(ev, "evaluations"), coerce(c, "cases")
    findings = detect(ref, now, Q2, kinds=["late_reporting", "late_aggregation"])
    assert found(findings, "late_reporting") == ["t-d1-t1"]
    assert found(findings, "late_aggregation") == ["t-d1-t3"]
    row = findings.set_index("kind").loc["late_reporting"]
    assert row["measure"] == pytest.approx(0.4) and "超过 5 分钟才上报" in row["description"]
    assert "评价数据上报不及时" in anomalies.problems_paragraph(findings, ref, Q2)
    assert len(t2) >= 2  # the outage day had records: they are set aside as one incident


def test_late_aggregation_one_day_outage_is_an_incident(ref):
    """All of one busy day's cases (12 of 200, 6%) reported the next morning: not a practice."""
    now = quarter("2023Q2", TOWNS, n=200)
    c = now["cases"].copy()
    day = pd.Timestamp("2023-05-29")
    busy = c.index[c["unit_id"].eq("t-d1-t1")][:12]
    c.loc[busy, "finished_at"] = [day + pd.Timedelta(hours=9, minutes=20 * i) for i in range(12)]
    c.loc[busy, "reported_at"] = day + pd.Timedelta(days=1, hours=8, minutes=40)
    now["cases"] = coerce(c, "cases")
    assert detect(ref, now, Q2, kinds=["late_aggregation"]).empty


# --- too perfect --------------------------------------------------------------------------------------


def _grades(frame: pd.DataFrame, unit: str, every: int) -> pd.DataFrame:
    """Every ``every``-th evaluation of a unit graded 4 (基本 the rest 5)."""
    ev = frame.copy()
    idx = ev.index[ev["unit_id"].eq(unit)]
    ev.loc[idx[::every], "satisfaction"] = 4
    return ev


def test_too_perfect_from_the_whole_picture(ref):
    """Peers grade 10% of cases below 非常满意 and evaluate about a minute after the case. t1: 400
    evaluations, all 非常满意, all within 5 seconds: too perfect. t2: a tiny unit, 40 of 40 perfect
    and fast (below the minimum evidence). t3: 400 all 非常满意 but at a natural pace (no
    concentration: a good unit)."""
    units = {u: {"n": 400} for u in TOWNS} | {"t-d1-t3": {"n": 400, "onsite": 0.6}}
    units["t-d1-t1"] = {"n": 400, "lag": pd.Timedelta(seconds=5)}
    units["t-d1-t2"] = {"n": 40, "lag": pd.Timedelta(seconds=4)}
    now = quarter("2023Q2", units)
    ev = now["evaluations"]
    for unit in TOWNS[3:]:
        ev = _grades(ev, unit, 10)
    now["evaluations"] = coerce(ev, "evaluations")
    findings = detect(ref, now, Q2, kinds=["too_perfect"])
    assert found(findings, "too_perfect") == ["t-d1-t1"]
    d = findings["description"].iloc[0]
    assert "“非常满意”占 100.0%" in d and "10 秒内" in d
    assert "下四分位数" in findings["baseline"].iloc[0]


# --- invalid 差评 ---------------------------------------------------------------------------------


def test_high_invalid_bad_two_units_in_one_level_do_not_hide_each_other():
    """t1 (6000 evaluations) and t2 (1500) both have 2.5% invalid 差评; the six other towns 0.4%. The
    level's pooled rate (1.0%, ×3 = 3.0%) would hide both; without each unit itself, and then without
    the other one flagged, the level's rate is 0.4%: both are reported."""
    ref = make_ref()
    sizes = {"t-d1-t1": 6000, "t-d1-t2": 1500} | {u: 1000 for u in TOWNS[2:]}
    now = quarter("2023Q2", {u: {"n": n} for u, n in sizes.items()})
    ev = now["evaluations"].copy()
    rank = ev.groupby("unit_id", observed=True).cumcount()
    share = ev["unit_id"].astype(str).map(lambda u: 40 if u in ("t-d1-t1", "t-d1-t2") else 333)
    bad = rank % share == 0
    ev.loc[bad, "satisfaction"] = 1
    now["evaluations"] = coerce(ev, "evaluations")
    now["rectifications"] = coerce(
        pd.DataFrame({"eval_id": ev.loc[bad, "eval_id"], "verdict": "invalid"}), "rectifications"
    )
    findings = detect(ref, now, Q2, kinds=["high_invalid_bad"])
    assert found(findings, "high_invalid_bad") == ["t-d1-t1", "t-d1-t2"]
    assert findings["expected"].tolist() == [pytest.approx(24 / 6000)] * 2


# --- duplicates --------------------------------------------------------------------------------------


def test_follow_up_evaluations_are_not_duplicates(ref):
    """Five follow-up evaluations (attempt 2) of t1's cases: a citizen's second word, not a repeat."""
    now = quarter("2023Q2", TOWNS)
    ev = now["evaluations"]
    again = ev[ev["unit_id"].eq("t-d1-t1")].head(5).copy()
    again["eval_id"] = again["eval_id"] + "-fu"
    again["attempt"] = 2
    again["evaluated_at"] = again["evaluated_at"] + pd.Timedelta(days=2)
    now["evaluations"] = coerce(pd.concat([ev, again], ignore_index=True), "evaluations")
    assert detect(ref, now, Q2, kinds=["duplicates"]).empty


# --- history from any canonical folder ----------------------------------------------------------------


def three_quarters() -> dict[str, pd.DataFrame]:
    parts = [quarter(label, TOWNS, n=30) for label in ("2022Q4", "2023Q1", "2023Q2")]
    return {t: coerce(pd.concat([p[t] for p in parts], ignore_index=True), t) for t in parts[0]}


@pytest.mark.parametrize("form", ["csv", "parquet", "partitioned"])
def test_history_from_flat_or_partitioned_folders(tmp_path, form):
    from haocha_analysis.ingest.storage import write_tables

    tables = three_quarters()
    if form == "csv":
        write_tables(tables, tmp_path, "all", csv=True)
    elif form == "parquet":
        for name, frame in tables.items():
            frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    else:
        for label in ("2022Q4", "2023Q1", "2023Q2"):
            p = parse_period(label)
            write_tables(
                {
                    "cases": tables["cases"][p.contains(tables["cases"]["finished_at"])],
                    "evaluations": tables["evaluations"][p.contains(tables["evaluations"]["evaluated_at"])],
                },
                tmp_path,
                label,
            )
    found_history = anomalies.load_history(tmp_path, Q2)
    assert sorted(found_history) == ["2022Q4", "2023Q1"]
    for label, frames in found_history.items():
        assert len(frames["cases"]) == 8 * 30 and len(frames["evaluations"]) == 8 * 30
        assert parse_period(label).contains(frames["cases"]["finished_at"]).all()


def test_no_history_is_said_plainly(tmp_path, ref, caplog):
    from click.testing import CliRunner

    from haocha_analysis.cli import cli
    from haocha_analysis.ingest.storage import write_tables

    now = quarter("2023Q2", TOWNS[:-1], n=40)
    write_tables(now, tmp_path / "data", "2023Q2")
    (tmp_path / "ref").mkdir()
    ref.units.to_csv(tmp_path / "ref" / "units.csv", index=False)
    with caplog.at_level(logging.INFO, logger="haocha.anomalies"):
        assert anomalies.load_history(tmp_path / "data", Q2) == {}
    assert "无历史数据" in caplog.text
    findings = detect(ref, now, Q2)
    assert findings.attrs["history_note"].startswith("无历史数据")
    assert "无历史数据" in findings.loc[findings["kind"] == "zero_data", "baseline"].iloc[0]
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["anomalies", "--city", str(tmp_path / "ref"), "--period", "2023Q2",
         "--data", str(tmp_path / "data"), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "历史期 0 个" in result.output and "无历史数据" in result.output
    notes = pd.read_excel(out / "anomalies.xlsx", sheet_name="说明", header=1)  # under the title row
    assert notes.loc[notes["项目"] == "历史数据", "说明"].iloc[0].startswith("无历史数据")
    table = pd.read_csv(out / "anomalies.csv", encoding="utf-8-sig")
    assert "比较基线" in table.columns and table["比较基线"].notna().all()


def test_history_periods_include_the_same_quarter_a_year_earlier():
    from haocha_analysis.analysis.anomalies.run import history_periods

    assert [p.label for p in history_periods(Q2, 4)] == ["2022Q2", "2022Q3", "2022Q4", "2023Q1"]
    assert [p.label for p in history_periods(Q2, 2)] == ["2022Q2", "2022Q4", "2023Q1"]
    assert [p.label for p in history_periods(parse_period("2023-05"), 1)] == ["2022-05", "2023-04"]
    assert history_periods(Q2, 0) == []


def test_every_finding_states_its_baseline(ref):
    now = quarter("2023Q2", TOWNS[:-1])
    ev = now["evaluations"]
    now["evaluations"] = edit(ev, ev.index[ev["unit_id"].eq("t-d1-t1")][:25], "evaluator_key", key("agent"))
    findings = detect(ref, now, Q2, history=history(TOWNS))
    assert set(findings["kind"]) == {"zero_data", "agent"}
    assert (findings["baseline"].str.len() > 5).all()
    assert np.isin(anomalies.FINDING_COLUMNS, findings.columns).all()
