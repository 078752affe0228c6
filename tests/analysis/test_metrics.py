"""unit_counts on tiny literal frames: every definition of docs/metrics.md, edge case by edge case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from haocha_analysis.analysis.metrics import (
    CHANNEL_COUNT_COLUMNS,
    COUNT_COLUMNS,
    CountsInvariantError,
    check_counts,
    source_system_counts,
    unit_counts,
)
from haocha_analysis.analysis.rectification import rectify_deadlines
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.reference import ClosedLoopLimits
from haocha_analysis.core.schemas import CHANNEL_CODES, coerce, empty

Q2 = parse_period("2023Q2")


def cases_frame(rows):
    """rows: (case_id, unit_id, finished_at[, source_system])."""
    cols = ["case_id", "unit_id", "finished_at", "source_system"][: len(rows[0])] if rows else ["case_id"]
    frame = pd.DataFrame(rows, columns=cols)
    return coerce(frame, "cases") if rows else empty("cases")


def evals_frame(rows):
    """rows: (eval_id, case_id, unit_id, channel, satisfaction, evaluated_at, attempt, active)."""
    frame = pd.DataFrame(
        rows,
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
    return coerce(frame, "evaluations")


def rects_frame(rows):
    """rows: (eval_id, verdict, deadline, rectified_at, follow_up)."""
    frame = pd.DataFrame(rows, columns=["eval_id", "verdict", "deadline", "rectified_at", "follow_up"])
    return coerce(frame, "rectifications")


def row(counts, unit):
    return counts.set_index("unit_id").loc[unit]


def test_columns_and_types():
    counts = unit_counts(
        cases_frame([("c1", "A", "2023-04-03 10:00")]),
        evals_frame([("e1", "c1", "A", "pc", 5, "2023-04-03 10:01", 1, True)]),
        None,
        Q2,
    )
    assert list(counts.columns) == ["unit_id", *COUNT_COLUMNS]
    assert CHANNEL_COUNT_COLUMNS == [f"ch_{c}" for c in CHANNEL_CODES]
    assert all(counts[c].dtype == "int64" for c in COUNT_COLUMNS)
    r = row(counts, "A")
    assert (r["cases"], r["cases_evaluated"], r["cases_active"], r["eval_first"], r["ch_pc"], r["sat_5"]) == (
        1,
        1,
        1,
        1,
        1,
        1,
    )


def test_first_evaluation_duplicates_and_followups_counted_once():
    cases = cases_frame([("c1", "A", "2023-04-03 10:00")])
    evals = evals_frame(
        [
            # two attempt-1 evaluations at the same instant: e1 (lower eval_id) is the first
            ("e2", "c1", "A", "pc", 1, "2023-04-03 10:05", 1, True),
            ("e1", "c1", "A", "mobile", 5, "2023-04-03 10:05", 1, False),
            ("e3", "c1", "A", "pc", 2, "2023-04-05 09:00", 2, True),  # 追评
        ]
    )
    r = row(unit_counts(cases, evals, None, Q2), "A")
    assert r["cases_evaluated"] == 1 and r["eval_first"] == 1  # not counted twice
    assert r["cases_default"] == 1 and r["cases_active"] == 0  # e1 (system default) decides
    assert r["ch_mobile"] == 1 and r["ch_pc"] == 0
    assert r["eval_duplicates"] == 1 and r["eval_followups"] == 1
    # the duplicate's 差评 counts nowhere; the follow-up's 差评 counts
    assert r["case_bad_raw"] == 1 and r["eval_bad_raw"] == 1


def test_invalid_bad_reviews_excluded_but_reported():
    cases = cases_frame([("c1", "A", "2023-04-03"), ("c2", "A", "2023-04-04")])
    evals = evals_frame(
        [
            ("e1", "c1", "A", "pc", 1, "2023-04-03 10:00", 1, True),
            ("e2", "c2", "A", "pc", 2, "2023-04-04 10:00", 1, True),
        ]
    )
    rects = rects_frame(
        [
            ("e1", "invalid", None, None, None),
            ("e2", "valid", "2023-04-20", "2023-04-20 18:00", "基本满意"),
        ]
    )
    r = row(unit_counts(cases, evals, rects, Q2), "A")
    assert (r["case_bad_raw"], r["case_bad_valid"], r["case_bad_invalid"]) == (2, 1, 1)
    assert (r["eval_bad_raw"], r["eval_bad_valid"], r["eval_bad_invalid"]) == (2, 1, 1)
    assert r["case_rectified_followup"] == 1 and r["case_rectified_satisfied"] == 1
    assert r["eval_rectified_on_time"] == 1  # rectified on the deadline's day


def test_records_outside_the_period():
    cases = cases_frame(
        [
            ("c_before", "A", "2023-03-31 23:59:59"),  # finished in Q1
            ("c_in", "A", "2023-06-30 23:59:59"),
            ("c_after", "A", "2023-07-01 00:00:00"),
        ]
    )
    evals = evals_frame(
        [
            ("e1", "c_before", "A", "pc", 5, "2023-04-01 08:00", 1, True),  # made in Q2, case from Q1
            ("e2", "c_in", "A", "pc", 5, "2023-07-01 09:00", 1, True),  # made in Q3, case from Q2
            ("e3", "c_after", "A", "pc", 1, "2023-07-02 09:00", 1, True),
        ]
    )
    r = row(unit_counts(cases, evals, None, Q2), "A")
    assert r["cases"] == 1 and r["case_records"] == 3
    assert r["cases_evaluated"] == 1  # c_in, whose first evaluation was made after Q2
    assert r["eval_first"] == 1 and r["eval_linked_first"] == 1  # e1 only
    assert r["case_bad_raw"] == 0 and r["eval_bad_raw"] == 0


def test_case_unit_wins_over_evaluation_unit_and_unlinked_keep_their_own():
    cases = cases_frame([("c1", "A", "2023-05-01")])
    evals = evals_frame(
        [
            ("e1", "c1", "B", "pc", 5, "2023-05-01 10:00", 1, True),  # evaluation says B, case says A
            ("e2", None, "B", "qr_code", 4, "2023-05-02 10:00", 1, True),  # no case_id
            ("e3", "", "B", "qr_code", 4, "2023-05-02 10:00", 1, True),  # empty case_id
            ("e4", "c404", "C", "paper", 3, "2023-05-03 10:00", 1, pd.NA),  # orphan: case not found
            # A later attempt 1 of the same case id is a duplicate even when the case is not loaded
            # (the one linkage rule, core/linkage.py): counted by quality, never in a table.
            ("e5", "c404", "C", "paper", 3, "2023-05-04 10:00", 1, pd.NA),
        ]
    )
    counts = unit_counts(cases, evals, None, Q2)
    a, b, c = row(counts, "A"), row(counts, "B"), row(counts, "C")
    assert (a["cases_evaluated"], a["eval_linked_first"], a["eval_records"]) == (1, 1, 1)
    assert (b["eval_first"], b["eval_unlinked_first"], b["cases"], b["ch_qr_code"]) == (2, 2, 0, 2)
    assert (c["eval_unlinked_first"], c["eval_active_unknown"], c["eval_onsite"]) == (1, 1, 1)
    assert c["eval_duplicates"] == 1


def test_active_true_false_unknown():
    cases = cases_frame([(f"c{i}", "A", "2023-04-10") for i in range(3)])
    evals = evals_frame(
        [
            ("e0", "c0", "A", "hall_tablet", 5, "2023-04-10 10:00", 1, True),
            ("e1", "c1", "A", "system_default", 5, "2023-04-11 10:00", 1, False),
            ("e2", "c2", "A", "pc", 5, "2023-04-11 10:00", 1, pd.NA),
        ]
    )
    r = row(unit_counts(cases, evals, None, Q2), "A")
    assert (r["cases_active"], r["cases_default"], r["cases_active_unknown"]) == (1, 1, 1)
    assert (r["eval_active"], r["eval_default"], r["eval_active_unknown"]) == (1, 1, 1)
    assert r["eval_onsite"] == 1 and r["ch_system_default"] == 1


def default_deadlines(evaluated_at: pd.Series) -> pd.Series:
    return rectify_deadlines(evaluated_at, None, ClosedLoopLimits())


def test_on_time_uses_the_working_day_calendar_when_no_deadline():
    # 2023-04-28 + 15 working days (劳动节 holiday, 4-23 and 5-6 make-up days) = 2023-05-23
    assert default_deadlines(pd.Series(pd.to_datetime(["2023-04-28 16:00"]))).iloc[0] == pd.Timestamp(
        "2023-05-23"
    )
    cases = cases_frame([("c1", "A", "2023-04-28"), ("c2", "A", "2023-04-28")])
    evals = evals_frame(
        [
            ("e1", "c1", "A", "pc", 1, "2023-04-28 16:00", 1, True),
            ("e2", "c2", "A", "pc", 2, "2023-04-28 16:00", 1, True),
        ]
    )
    rects = rects_frame(
        [
            ("e1", "valid", None, "2023-05-23 17:00", "满意"),  # on the 15th working day
            ("e2", "valid", None, "2023-05-24 09:00", "不满意"),  # one working day late
        ]
    )
    r = row(unit_counts(cases, evals, rects, Q2), "A")
    assert r["eval_rectified_on_time"] == 1
    assert (r["case_rectified_followup"], r["case_rectified_satisfied"]) == (2, 1)


def test_the_citys_rectify_limit_decides_on_time():
    # 2023-04-28 + 5 working days: 5-4, 5-5, 5-6 (调休 Saturday), 5-8, 5-9 → 2023-05-09
    cases = cases_frame([("c1", "A", "2023-04-28"), ("c2", "A", "2023-04-28")])
    evals = evals_frame(
        [
            ("e1", "c1", "A", "pc", 1, "2023-04-28 16:00", 1, True),
            ("e2", "c2", "A", "pc", 2, "2023-04-28 16:00", 1, True),
        ]
    )
    rects = rects_frame(
        [
            ("e1", "valid", None, "2023-05-09 17:00", "满意"),  # the 5th working day
            ("e2", "valid", None, "2023-05-10 09:00", "满意"),  # the 6th
        ]
    )
    five = unit_counts(cases, evals, rects, Q2, ClosedLoopLimits(rectify_days=5))
    assert row(five, "A")["eval_rectified_on_time"] == 1
    assert row(unit_counts(cases, evals, rects, Q2), "A")["eval_rectified_on_time"] == 2


def test_deadline_outside_calendar_years_falls_back_to_weekdays():
    got = default_deadlines(pd.Series(pd.to_datetime(["2031-01-06 10:00"])))  # a Monday
    assert got.iloc[0] == pd.Timestamp("2031-01-27")


def test_optional_columns_may_be_absent():
    cases = pd.DataFrame({"case_id": ["c1"], "unit_id": ["A"], "finished_at": pd.to_datetime(["2023-04-02"])})
    evals = pd.DataFrame(
        {
            "eval_id": ["e1", "e2"],
            "unit_id": ["A", "A"],
            "channel": ["pc", "pc"],
            "satisfaction": [5, 1],
            "evaluated_at": pd.to_datetime(["2023-04-02", "2023-04-03"]),
        }
    )
    r = row(unit_counts(cases, evals, None, Q2), "A")
    # no case_id: nothing is linked; no attempt: all are first attempts; no active: unknown
    assert (r["cases_evaluated"], r["eval_unlinked_first"], r["eval_active_unknown"], r["eval_bad_raw"]) == (
        0,
        2,
        2,
        1,
    )


def test_empty_frames_give_no_rows():
    counts = unit_counts(empty("cases"), empty("evaluations"), empty("rectifications"), Q2)
    assert counts.empty and list(counts.columns) == ["unit_id", *COUNT_COLUMNS]


def test_missing_required_column_is_a_clear_error():
    with pytest.raises(HaochaInputError, match="finished_at"):
        unit_counts(pd.DataFrame({"case_id": ["c1"], "unit_id": ["A"]}), empty("evaluations"), None, Q2)


def test_repeated_case_id_counts_once_first_row_wins():
    # The linkage rule: the first row is the case; a repeat is a duplicate quality reports.
    cases = cases_frame([("c1", "A", "2023-04-02"), ("c1", "B", "2023-04-03")])
    evals = evals_frame([("e1", "c1", "B", "pc", 5, "2023-04-04 10:00", 1, True)])
    counts = unit_counts(cases, evals, None, Q2)
    a, b = row(counts, "A"), row(counts, "B")
    assert (a["cases"], a["cases_evaluated"], a["eval_first"]) == (1, 1, 1)
    assert (b["cases"], b["case_records"], b["eval_first"]) == (0, 1, 0)


def test_check_counts_catches_a_broken_relation():
    counts = pd.DataFrame([dict.fromkeys(COUNT_COLUMNS, 0)])
    counts["cases_evaluated"] = 1  # more evaluated cases than cases
    with pytest.raises(CountsInvariantError, match="cases_evaluated <= cases"):
        check_counts(counts)


def test_source_systems_in_order_of_volume():
    cases = cases_frame(
        [
            ("c1", "A", "2023-04-02", "政务服务平台"),
            ("c2", "A", "2023-04-02", "不动产系统"),
            ("c3", "A", "2023-04-02", "不动产系统"),
            ("c4", "A", "2023-01-02", "住房公积金管理系统"),  # outside the period
        ]
    )
    assert source_system_counts(cases, Q2).to_dict() == {"不动产系统": 2, "政务服务平台": 1}


def _random_records(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    units = np.array([f"u{i:04d}" for i in range(1000)])
    finished = pd.Timestamp("2023-04-01") + pd.to_timedelta(rng.integers(0, 91 * 86400, n), unit="s")
    cases = pd.DataFrame(
        {
            "case_id": pd.Series([f"C{i:09d}" for i in range(n)], dtype="str"),
            "unit_id": pd.Series(units[rng.integers(0, 1000, n)], dtype="str").astype("category"),
            "finished_at": finished.astype("datetime64[us]"),
        }
    )
    m = n + n // 20
    case_of = np.concatenate([np.arange(n), rng.integers(0, n, m - n)])
    evals = pd.DataFrame(
        {
            "eval_id": pd.Series([f"E{i:09d}" for i in range(m)], dtype="str"),
            "case_id": cases["case_id"].to_numpy()[case_of],
            "unit_id": pd.Series(units[rng.integers(0, 1000, m)], dtype="str").astype("category"),
            "channel": pd.Series(np.array(CHANNEL_CODES)[rng.integers(0, 8, m)], dtype="str").astype(
                "category"
            ),
            "satisfaction": rng.choice([1, 2, 3, 4, 5], m, p=[0.01, 0.01, 0.03, 0.15, 0.8]).astype("int8"),
            "evaluated_at": (cases["finished_at"].to_numpy()[case_of] + np.timedelta64(600, "s")),
            "attempt": np.where(np.arange(m) < n, 1, 2).astype("int8"),
            "active": pd.array(rng.random(m) < 0.5, dtype="boolean"),
        }
    )
    bad = evals[evals["satisfaction"] <= 2]
    rects = pd.DataFrame(
        {
            "eval_id": bad["eval_id"].to_numpy(),
            "verdict": pd.Categorical(rng.choice(["valid", "invalid"], len(bad))),
            "deadline": pd.Series(pd.NaT, index=range(len(bad)), dtype="datetime64[us]"),
            "rectified_at": bad["evaluated_at"].to_numpy() + np.timedelta64(5, "D"),
            "follow_up": rng.choice(["满意", "不满意"], len(bad)),
        }
    )
    return cases, evals, rects


def test_random_records_agree_with_a_direct_count():
    cases, evals, rects = _random_records(20_000, seed=1)
    counts = unit_counts(cases, evals, rects, Q2)
    assert counts["cases"].sum() == len(cases)
    assert counts["cases_evaluated"].sum() == len(cases)
    assert counts["eval_followups"].sum() == len(evals) - len(cases)
    assert counts["eval_bad_raw"].sum() == (evals["satisfaction"] <= 2).sum()
    invalid = rects.loc[rects["verdict"] == "invalid", "eval_id"]
    assert counts["eval_bad_invalid"].sum() == len(invalid)


@pytest.mark.slow
def test_unit_counts_at_one_and_a_half_million_rows():
    # Its time is measured by `make bench` (stage tables, against DuckDB), not here.
    cases, evals, rects = _random_records(1_500_000)
    counts = unit_counts(cases, evals, rects, Q2)
    assert counts["cases"].sum() == 1_500_000
