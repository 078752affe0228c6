"""The bad-reviews scenario: 差评 that go through the closed loop (核实 → 整改 → 回访), with known truth.

``haocha synth --scenario bad-reviews`` generates the quarter as usual, then this module

1. adds designed 差评 as follow-up evaluations (追评, attempt 2: the annexes' 评价数 stay as they
   were) of cases of a few units, on the days where working-day arithmetic is easy to get wrong: on
   holidays, on the last working day before a multi-day holiday, on 调休 working weekends, at the
   end of the period;
2. gives every 差评 of the generated records (the baseline ones too) an outcome — invalid (on time, late,
   without approval), valid and rectified on time, late, never, with a 不满意 follow-up, awaiting the
   follow-up, followed up late, never verified — and writes its rectification row with steps placed
   a whole number of working days after the step before (:mod:`haocha_analysis.core.calendar`);
3. drops every step after the data's extraction date (the data are as extracted);
4. writes the truth: each 差评's expected stage and per-step overdue flags as of two dates, derived
   from the designed offsets (a step done k working days after its start is late exactly when k
   exceeds the limit), not from the ledger's code.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from haocha_analysis.core.calendar import add_working_days, is_workday
from haocha_analysis.core.config import BAD_SATISFACTION, SYNTHETIC_DIR
from haocha_analysis.core.periods import Period, parse_period
from haocha_analysis.core.reference import CityReference, ClosedLoopLimits
from haocha_analysis.core.schemas import INVALID_REASONS, coerce
from haocha_analysis.ingest.storage import swap_in

# Outcomes: (verdict, verify offset, rectify offset, revisit offset, follow-up); offsets in working
# days after the step before ("L" = the city's limit, "L+n" = n days past it); None = never happens.
OUTCOMES: dict[str, tuple] = {
    "invalid": ("invalid", 1, None, None, None),
    "invalid_late": ("invalid", "L+2", None, None, None),
    "invalid_unapproved": ("invalid", 1, None, None, None),
    "on_time": ("valid", 1, "L", 1, "满意"),
    "late": ("valid", 1, "L+1", 1, "基本满意"),
    "never": ("valid", 1, None, None, None),
    "unsatisfied": ("valid", 2, 4, 2, "不满意"),
    "awaiting_revisit": ("valid", 1, 3, None, None),
    "revisit_late": ("valid", 1, 2, "L+2", "满意"),
    "own_deadline": ("valid", 1, "own", 1, "满意"),
    "pending": (None, None, None, None, None),
}
# Outcomes of the baseline 差评 (those the usual model makes), drawn with these weights.
BASELINE_MIX = {
    "invalid": 0.40,
    "on_time": 0.25,
    "late": 0.08,
    "never": 0.05,
    "unsatisfied": 0.07,
    "awaiting_revisit": 0.05,
    "revisit_late": 0.05,
    "pending": 0.05,
}
# Designed 差评 around each multi-day holiday: (situation, outcome).
AROUND_HOLIDAY = (
    ("holiday_second_day", "on_time"),
    ("last_workday_before", "late"),
    ("holiday_first_day", "never"),
    ("day_before", "pending"),
    ("makeup_workday_after", "unsatisfied"),
    ("two_workdays_before", "invalid_late"),
    ("holiday_last_day", "awaiting_revisit"),
    ("five_workdays_before", "own_deadline"),
)
# Designed once per period: (situation, outcome).
ONCE = (
    ("mid_period", "revisit_late"),
    ("mid_period", "invalid_unapproved"),
    ("mid_period", "invalid"),
    ("last_workday", "on_time"),
    ("last_workday", "pending"),
)
MIN_HOLIDAY_DAYS = 3  # a multi-day holiday: at least this many consecutive non-working days
STEP_HOUR = {"verified": 10, "rectified": 15, "revisited": 16}


def holiday_blocks(period: Period) -> list[list[date]]:
    """Runs of consecutive non-working days in the period that include a weekday (public holidays)."""
    blocks, run = [], []
    day = period.start
    while day <= period.end:
        if not is_workday(day):
            run.append(day)
        elif run:
            blocks.append(run)
            run = []
        day += timedelta(days=1)
    if run:
        blocks.append(run)
    return [b for b in blocks if len(b) >= MIN_HOLIDAY_DAYS and any(d.weekday() < 5 for d in b)]


def _workday_before(day: date, n: int = 1) -> date:
    """The n-th working day before ``day``."""
    while n:
        day -= timedelta(days=1)
        if is_workday(day):
            n -= 1
    return day


def _makeup_after(day: date) -> date:
    """The first 调休 working Saturday or Sunday within ten days from ``day``, else the next working day."""
    for i in range(10):
        probe = day + timedelta(days=i)
        if probe.weekday() >= 5 and is_workday(probe):
            return probe
    return add_working_days(day, 0)


def _situations(period: Period) -> list[tuple[str, str, date, date | None]]:
    """Per designed 差评: situation, outcome, evaluation day, first day of the holiday it is near."""
    out = []
    for block in holiday_blocks(period)[:2]:
        first, last = block[0], block[-1]
        after = last + timedelta(days=1)
        days = {
            "holiday_second_day": block[1],
            "last_workday_before": _workday_before(first),
            "holiday_first_day": first,
            "day_before": first - timedelta(days=1),
            "makeup_workday_after": _makeup_after(after),
            "two_workdays_before": _workday_before(first, 2),
            "holiday_last_day": last,
            "five_workdays_before": _workday_before(first, 5),
        }
        out += [(s, o, days[s], first) for s, o in AROUND_HOLIDAY]
    mid = period.start + timedelta(days=period.days // 2)
    last_work = period.end if is_workday(period.end) else _workday_before(period.end)
    once_days = {"mid_period": mid, "last_workday": last_work}
    out += [(s, o, once_days[s], None) for s, o in ONCE]
    return [item for item in out if period.start <= item[2] <= period.end]


def _offset(spec: object, limit: int) -> int | None:
    if spec is None or spec == "own":
        return None
    if isinstance(spec, str) and spec.startswith("L"):
        return limit + (int(spec[2:]) if "+" in spec else 0)
    return int(spec)


def _at(day: date, hour: int) -> pd.Timestamp:
    return pd.Timestamp(datetime.combine(day, time(hour, 0)))


def add_bad_reviews(
    ref: CityReference,
    period: Period,
    tables: dict[str, pd.DataFrame],
    truth: dict,
    spec: dict,
    rng: np.random.Generator,
    extracted_on: date,
) -> None:
    """Add designed 差评, give every 差评 of the period its closed-loop steps, record the truth.

    Args:
        ref: the city (its units and closed-loop limits).
        period: the generated period.
        tables: the period's canonical tables (evaluations and rectifications are replaced).
        truth: truth.json's dict (gets ``rectification`` and updated ``record_level`` counts).
        spec: the scenario's ``bad_reviews`` block: ``units`` (how many units get the designed 差评),
            ``as_of`` (truth dates, ISO; default: the middle of the period and the extraction date).
        rng: the scenario's random stream.
        extracted_on: the data's extraction date: later steps are not in the data.
    """
    limits = ref.limits
    evaluations = tables["evaluations"]
    added = _designed_evaluations(ref, period, tables["cases"], evaluations, spec, rng)
    evaluations = coerce(pd.concat([evaluations, added["rows"]], ignore_index=True), "evaluations")
    tables["evaluations"] = evaluations

    bad = evaluations[np.isin(evaluations["satisfaction"], BAD_SATISFACTION)]
    forced_invalid = {
        i for a in truth.get("anomalies", []) if a["kind"] == "high_invalid_bad" for i in a["record_ids"]
    }
    outcome = pd.Series(
        rng.choice(list(BASELINE_MIX), len(bad), p=list(BASELINE_MIX.values())), index=bad["eval_id"]
    )
    outcome[outcome.index.isin(list(forced_invalid))] = "invalid"
    for eval_id, kind in added["outcomes"].items():
        outcome[eval_id] = kind
    plans = [
        _plan(eval_id, at, outcome[eval_id], limits, added["own"].get(eval_id), i)
        for i, (eval_id, at) in enumerate(zip(bad["eval_id"], bad["evaluated_at"], strict=True))
    ]
    cutoff = pd.Timestamp(extracted_on) + timedelta(days=1)
    tables["rectifications"] = _rows(plans, cutoff)

    units = evaluations.set_index("eval_id")["unit_id"].astype("str")
    as_of = [date.fromisoformat(str(d)) for d in spec.get("as_of") or []] or [
        period.start + timedelta(days=period.days // 2),
        extracted_on,
    ]
    truth["rectification"] = {
        "limits": {
            "verify_days": limits.verify_days,
            "rectify_days": limits.rectify_days,
            "revisit_days": limits.revisit_days,
        },
        "extracted_on": extracted_on.isoformat(),
        "designed": [
            {"eval_id": e, "outcome": k, **added["situations"][e]} for e, k in added["outcomes"].items()
        ],
        "as_of": {d.isoformat(): _expected(plans, units, period, d, cutoff) for d in as_of},
    }
    rect = tables["rectifications"]
    counts = truth.get("record_level", {})
    counts["evaluations"] = len(evaluations)
    counts["followups"] = int((evaluations["attempt"] >= 2).sum())
    counts["raw_bad"] = int(np.isin(evaluations["satisfaction"], BAD_SATISFACTION).sum())
    counts["valid_bad"] = int((rect["verdict"] == "valid").sum())
    counts["invalid_bad"] = int((rect["verdict"] == "invalid").sum())
    counts["unverified_bad"] = counts["raw_bad"] - counts["valid_bad"] - counts["invalid_bad"]


def _designed_evaluations(
    ref: CityReference,
    period: Period,
    cases: pd.DataFrame,
    evaluations: pd.DataFrame,
    spec: dict,
    rng: np.random.Generator,
) -> dict:
    """Follow-up 差评 (attempt 2) on the designed days, on cases of a few units of different levels."""
    first = evaluations[evaluations["attempt"] == 1].dropna(subset=["case_id"])
    first = first.sort_values("evaluated_at").drop_duplicates("case_id")
    first = first.merge(cases[["case_id", "unit_id"]], on="case_id", suffixes=("_eval", ""))
    levels = ref.units.set_index("unit_id")["level"]
    first["level"] = first["unit_id"].astype("str").map(levels)
    per_unit = first.groupby(first["unit_id"].astype("str")).size()
    chosen = []
    for level in ("city_dept", "district_dept", "town", "village", "district_dept"):
        candidates = [u for u in per_unit[per_unit >= 5].index if levels.get(u) == level and u not in chosen]
        if candidates:
            chosen.append(str(rng.choice(sorted(candidates))))
    chosen = chosen[: int(spec.get("units", 5))] or [str(per_unit.idxmax())]
    rows, outcomes, situations, own = [], {}, {}, {}
    label = period.label.replace("-", "").replace(".", "")
    for i, (situation, outcome, day, holiday) in enumerate(_situations(period)):
        hour = 16 if is_workday(day) else 20  # after office hours on a holiday: on a phone
        at = _at(day, hour) + pd.Timedelta(minutes=int(rng.integers(0, 50)))
        unit = chosen[i % len(chosen)]
        earlier = first[first["evaluated_at"] < at - pd.Timedelta(hours=1)]
        mine = earlier[earlier["unit_id"].astype("str") == unit]
        if not len(mine):
            mine = earlier
        if not len(mine):
            continue
        case = mine.iloc[-1]
        eval_id = f"PJ{label}B{i + 1:05d}"
        rows.append(
            {
                "eval_id": eval_id,
                "case_id": case["case_id"],
                "unit_id": str(case["unit_id"]),
                "channel": "mobile" if hour == 20 else "hall_tablet",
                "satisfaction": int(rng.choice(BAD_SATISFACTION)),
                "evaluated_at": at,
                "reported_at": at + pd.Timedelta(minutes=1),
                "attempt": 2,
                "active": True,
                "evaluator_key": case["evaluator_key"],
                "operator": case["operator"],
                "comment": "整改后仍不满意" if outcome == "unsatisfied" else "办理时间太长",
            }
        )
        outcomes[eval_id] = outcome
        situations[eval_id] = {
            "situation": situation,
            "holiday_starts": holiday.isoformat() if holiday else None,
            "evaluated_on": day.isoformat(),
        }
        if outcome == "own_deadline":
            # the unit agreed a deadline with the citizen on a holiday: it moves to the next working day
            own[eval_id] = _own_deadline(day, period)
    frame = pd.DataFrame(rows, columns=list(evaluations.columns))
    return {"rows": frame, "outcomes": outcomes, "situations": situations, "own": own}


def _own_deadline(day: date, period: Period) -> date:
    """A holiday (non-working day) after ``day``: the first one of the next multi-day holiday."""
    for block in holiday_blocks(period):
        if block[0] > day:
            return block[1]
    probe = day + timedelta(days=1)
    while is_workday(probe):
        probe += timedelta(days=1)
    return probe


def _plan(
    eval_id: str, at: pd.Timestamp, outcome: str, limits: ClosedLoopLimits, own: date | None, i: int
) -> dict:
    """The designed steps of one 差评 (before the extraction cut) and how late each is."""
    verdict, v, r, rv, follow = OUTCOMES[outcome]
    day = pd.Timestamp(at).date()
    plan = {
        "eval_id": eval_id,
        "evaluated_at": pd.Timestamp(at),
        "outcome": outcome,
        "verdict": verdict,
        "reason": INVALID_REASONS[i % len(INVALID_REASONS)] if verdict == "invalid" else None,
        "approved": outcome != "invalid_unapproved",
        "follow_up": follow,
        "deadline": own,
        "verify_day": add_working_days(day, limits.verify_days),
        "rectify_day": add_working_days(own, 0) if own else add_working_days(day, limits.rectify_days),
    }
    kv = _offset(v, limits.verify_days)
    plan["verified_at"] = _at(add_working_days(day, kv), STEP_HOUR["verified"]) if kv is not None else None
    plan["verify_late"] = kv is not None and kv > limits.verify_days
    if r == "own":
        kr = None
        rect_day = plan["rectify_day"]  # on the moved deadline's day: on time
    else:
        kr = _offset(r, limits.rectify_days)
        rect_day = add_working_days(day, kr) if kr is not None else None
    plan["rectified_at"] = _at(rect_day, STEP_HOUR["rectified"]) if rect_day is not None else None
    plan["rectify_late"] = kr is not None and kr > limits.rectify_days
    krv = _offset(rv, limits.revisit_days)
    plan["revisit_day"] = add_working_days(rect_day, limits.revisit_days) if rect_day is not None else None
    plan["revisited_at"] = (
        _at(add_working_days(rect_day, krv), STEP_HOUR["revisited"]) if krv is not None and rect_day else None
    )
    plan["revisit_late"] = krv is not None and krv > limits.revisit_days
    return plan


def _rows(plans: list[dict], cutoff: pd.Timestamp) -> pd.DataFrame:
    """The rectification rows as extracted: steps after the cutoff are not there yet."""

    def seen(ts: pd.Timestamp | None) -> pd.Timestamp | None:
        return ts if ts is not None and ts < cutoff else None

    rows = []
    for p in plans:
        verdict_at = seen(p["verified_at"])
        if p["verdict"] is None or verdict_at is None:
            continue  # not verified yet: no row
        rectified = seen(p["rectified_at"]) if p["verdict"] == "valid" else None
        revisited = seen(p["revisited_at"]) if rectified is not None else None
        rows.append(
            {
                "eval_id": p["eval_id"],
                "verdict": p["verdict"],
                "invalid_reason": p["reason"],
                "revisited_at": revisited,
                "deadline": pd.Timestamp(p["deadline"]) if p["deadline"] else None,
                "rectified_at": rectified,
                "follow_up": p["follow_up"] if revisited is not None else None,
                "verified_at": verdict_at,
                "approved_at": verdict_at + pd.Timedelta(hours=1)
                if p["verdict"] == "invalid" and p["approved"]
                else None,
            }
        )
    frame = pd.DataFrame(rows, columns=list(coerce(pd.DataFrame(), "rectifications").columns))
    return coerce(frame, "rectifications")


def _expected(
    plans: list[dict], units: pd.Series, period: Period, as_of: date, cutoff: pd.Timestamp
) -> list[dict]:
    """Each 差评 made in the period by ``as_of``: its stage and per-step overdue flags on that date."""
    end = min(pd.Timestamp(as_of) + timedelta(days=1), cutoff)
    out = []
    for p in plans:
        if p["evaluated_at"] >= end or not period.start_ts <= p["evaluated_at"] < period.end_ts:
            continue

        def done(ts: pd.Timestamp | None) -> bool:
            return ts is not None and ts < end

        # An invalid verdict counts from its approval (an hour after the verification).
        verdict_at = p["verified_at"]
        if verdict_at is not None and p["verdict"] == "invalid" and p["approved"]:
            verdict_at = verdict_at + pd.Timedelta(hours=1)
        verified = p["verdict"] is not None and done(verdict_at)
        valid = verified and p["verdict"] == "valid"
        rectified = valid and done(p["rectified_at"])
        revisited = rectified and done(p["revisited_at"])
        if not verified:
            stage = "待核实"
        elif not valid:
            stage = "核实为无效"
        elif not rectified:
            stage = "整改中"
        elif not revisited:
            stage = "已整改待回访"
        else:
            stage = "已回访"
        verify_late = p["verify_late"] if verified else as_of > p["verify_day"]
        rectify_late = (p["rectify_late"] if rectified else as_of > p["rectify_day"]) if valid else False
        revisit_late = (p["revisit_late"] if revisited else as_of > p["revisit_day"]) if rectified else False
        out.append(
            {
                "eval_id": p["eval_id"],
                "unit_id": str(units[p["eval_id"]]),
                "stage": stage,
                "verify_overdue": bool(verify_late),
                "rectify_overdue": bool(rectify_late),
                "revisit_overdue": bool(revisit_late),
                "on_time": bool(rectified and not p["rectify_late"]),
            }
        )
    return out


DEMO_SCALE, DEMO_SEED = 0.02, 7


def demo_data(city: str = "zibo", period: str = "2023Q2") -> Path:
    """The bad-reviews scenario's data for the rectification notebook, generated once.

    Written to ``data/synthetic/<city>-bad-reviews`` (scale 0.02, seed 7) and kept; a folder
    generated for another period or by another generator version is replaced.
    """
    from haocha_analysis.synth import generate as synth  # generate.py imports this module

    out = SYNTHETIC_DIR / f"{Path(str(city)).name}-bad-reviews"
    p = parse_period(period)
    truth_file = out / "truth.json"
    if truth_file.exists():
        truth = json.loads(truth_file.read_text(encoding="utf-8"))
        if truth.get("period") == p.label and truth.get("generator_version") == synth.GENERATOR_VERSION:
            return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        synth.write(synth.generate(city, p, DEMO_SCALE, DEMO_SEED, "bad-reviews"), tmp, p.label)
        tmp.chmod(0o755)
        swap_in([(tmp, out)])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
