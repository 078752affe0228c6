"""A realistic city for judging the anomaly detectors: ``haocha synth --scenario realistic``.

The default scenario reproduces a published bulletin cell for cell and plants anomalies the
detectors were written against. This one is a city nobody tuned a detector on
(docs/synthetic-model.md, "The realistic scenario"):

* every reference unit gets persistent traits: a heavy-tailed volume (villages with about six cases
  a quarter, a few units with 20k–30k), its own evaluation rate, channel mix, active share, grade
  distribution, 差评 rate and chance of late reports;
* six quarters (the period and five before it): cases per working day with a seasonal factor, growth
  and noise, on the official working days (chinese-calendar: holidays, 调休 make-up days), a dip after
  the Spring Festival and peaks at month ends;
* tricky clean units that a naive rule mistakes for anomalies (online-only, newly opened, a service
  moved elsewhere a quarter ago, a confirmed channel shift, tiny perfect units, a 代办 agent, 24-hour
  self-service terminals, a one-day outage, very large units);
* subtle anomalies in the last quarter only: record-level ones touch 5–15% of a unit's records.

Records are built with the default generator's pieces (:mod:`.records`) and written by the same
``to_frames``; the truth lists every anomaly with its records, the agents (kind ``agent``) and the
tricky units (``truth["tricky_clean"]``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np
import pandas as pd

from haocha_analysis.core.calendar import holiday_name, workday_calendar
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.synth.inject import AGENT_PERSON_BASE, Injected
from haocha_analysis.synth.matters import catalogue_arrays
from haocha_analysis.synth.plan import (
    ACTIVE_BETA,
    KIND_CITY,
    KIND_CITY_PUBLIC,
    KIND_DEPT,
    KIND_DISTRICT,
    KIND_PUBLIC,
    KIND_TOWN,
    KIND_VILLAGE,
    KIND_WINDOW,
    _base_frame,
)
from haocha_analysis.synth.records import (
    CH,
    CHANNEL_MIX,
    DAY,
    FOLLOW_UP_MIX,
    ONSITE,
    REMOTE,
    UNLINKED_MIX,
    UNLINKED_MIX_PUBLIC,
    Calendar,
    Records,
    _comments,
    cap_to_period,
    case_rows,
    channel_delays,
    lognormal_delay,
    office_times,
    sample_rows,
    to_frames,
)
from haocha_analysis.synth.truth import SynthResult, build_truth_entries, record_level_counts
from haocha_analysis.synth.truth import named_rng as _rng

MODEL = "realistic"
# Quarterly cases at scale 1 by unit kind: median and lognormal sigma (heavy-tailed: a few units have
# tens of times the median).
VOLUME = {
    KIND_VILLAGE: (25, 0.8),
    KIND_TOWN: (600, 0.7),
    KIND_DEPT: (180, 1.3),
    KIND_WINDOW: (1500, 0.7),
    KIND_PUBLIC: (500, 1.0),
    KIND_CITY: (600, 1.5),
    KIND_CITY_PUBLIC: (1500, 1.0),
}
MIN_CASES = 6.0  # the smallest unit: a village with about six cases a quarter
# Evaluations not linked to a case, per case (median; lognormal 0.5 per unit): walk-in evaluations.
UNLINKED_PER_CASE = {KIND_VILLAGE: 0.3, KIND_TOWN: 0.25, KIND_PUBLIC: 0.1, KIND_DEPT: 0.05}
CHANNEL_CONCENTRATION = 40.0  # Dirichlet concentration of a unit's channel mix around its kind's
NON5_CONCENTRATION = 60.0  # Beta concentration of a unit's share of grades other than 非常满意
WORKDAYS_PER_QUARTER = 61.0
HALL = (KIND_DEPT, KIND_WINDOW, KIND_TOWN, KIND_CITY)
AGENT_CASES = (25, 40)
SELF_SERVICE_SHARE = 0.4  # 24-hour units: cases done at the self-service terminal


def _u(rng: np.random.Generator, spec, default) -> float:
    lo, hi = spec if isinstance(spec, list | tuple) else (spec, spec)
    lo, hi = (default if lo is None else lo), (default if hi is None else hi)
    return float(rng.uniform(lo, hi))


# --- the city: persistent traits of every unit ---------------------------------------------------


def build_city(ref: CityReference, scale: float, seed: int, scen: dict) -> pd.DataFrame:
    """Every unit's persistent traits and its tricky role (one frame, the plan's columns and more)."""
    rng = _rng(seed, ref.key, MODEL, "city")
    base = scen.get("baseline") or {}
    city = _base_frame(ref)
    kinds = city["kind"].to_numpy()
    n = len(city)
    live = kinds != KIND_DISTRICT
    med = np.array([VOLUME.get(k, (0, 0))[0] for k in kinds], dtype=float)
    sig = np.array([VOLUME.get(k, (0, 1))[1] for k in kinds], dtype=float)
    cases = np.maximum(med * np.exp(rng.normal(0, sig)), MIN_CASES) * live
    full = rng.random(n) < float(base.get("full_rate_share", 0.15))
    city["eval_rate"] = np.where(full, rng.uniform(0.98, 1.0, n), rng.beta(18, 2, n))
    unlinked = np.array([UNLINKED_PER_CASE.get(k, 0.0) for k in kinds])
    city["unlinked_rate"] = unlinked * np.exp(rng.normal(0, 0.5, n))
    a, b = np.array([ACTIVE_BETA.get(k, (2, 2)) for k in kinds]).T
    city["active_p"] = np.clip(rng.beta(a, b), 0.15, 0.95)
    unknown = rng.choice(np.flatnonzero(kinds == KIND_CITY), size=min(3, int((kinds == KIND_CITY).sum())))
    city["active_known"] = ~np.isin(np.arange(n), unknown)
    mix = np.array([CHANNEL_MIX.get(k, CHANNEL_MIX[KIND_DEPT]) for k in kinds], dtype=float)
    mix = np.vstack([rng.dirichlet(np.maximum(m * CHANNEL_CONCENTRATION, 0.05)) for m in mix])
    non5 = float(base.get("non5_share", 0.09))
    city["non5"] = rng.beta(non5 * NON5_CONCENTRATION, (1 - non5) * NON5_CONCENTRATION, n)
    city["bad_rate"] = float(base.get("bad_rate", 0.0008)) * np.exp(rng.normal(0, 0.5, n))
    late = float(base.get("late_report_rate", 0.002))
    city["late_eval"] = late * np.exp(rng.normal(0, 0.7, n))
    city["late_case"] = late * np.exp(rng.normal(0, 0.7, n))
    city["role"] = ""
    city["opened_k"] = 99  # quarters back in which the unit already existed (99: always)
    city["moved"] = False
    city["shift"] = False

    tricky = scen.get("tricky") or {}
    free = live.copy()

    def pick(role: str, ok: np.ndarray) -> np.ndarray:
        cand = np.flatnonzero(ok & free)
        k = min(int(tricky.get(role, 0)), len(cand))
        chosen = np.sort(rng.choice(cand, k, replace=False)) if k else np.zeros(0, dtype=np.int64)
        free[chosen] = False
        city.loc[chosen, "role"] = role
        return chosen

    big_kinds = np.isin(kinds, (KIND_DEPT, KIND_WINDOW, KIND_CITY))
    large = pick("very_large", big_kinds)
    cases[large] = rng.uniform(20_000, 30_000, len(large))
    online = pick("online_only", big_kinds & (cases >= 300))
    mix[np.ix_(online, ONSITE)] *= 0.03 / np.maximum(
        mix[np.ix_(online, ONSITE)].sum(axis=1, keepdims=True), 1e-9
    )
    rest = np.setdiff1d(np.arange(8), ONSITE)
    mix[np.ix_(online, rest)] *= 0.97 / mix[np.ix_(online, rest)].sum(axis=1, keepdims=True)
    city.loc[pick("newly_opened", live & (cases >= 100)), "opened_k"] = 1
    city.loc[pick("moved_service", live & (cases >= 300)), "moved"] = True
    onsite_share = mix[:, ONSITE].sum(axis=1)
    city.loc[
        pick("channel_shift", np.isin(kinds, HALL) & (cases >= 300) & (onsite_share >= 0.4)), "shift"
    ] = True
    perfect = pick("small_perfect", np.isin(kinds, (KIND_VILLAGE, KIND_TOWN)) & (cases >= 30) & (cases <= 90))
    city.loc[perfect, ["eval_rate", "non5", "bad_rate"]] = [1.0, 0.0, 0.0]
    mix[perfect] = np.eye(8)[CH["hall_tablet"]]
    pick("agent", np.isin(kinds, HALL) & (cases >= 400))
    pick("terminal24", big_kinds & (cases >= 300))
    pick("outage", live & (cases >= 200))
    city["base_cases"] = cases * scale
    city["cases"] = np.round(city["base_cases"]).astype(np.int64)  # for the operators' count
    city["base_volume"] = city["base_cases"]
    city["mix"] = list(mix)
    city["had_history"] = live
    return city


def tricky_units(city: pd.DataFrame) -> list[dict]:
    """The tricky clean units of a city (for truth.json and the evaluation's report)."""
    rows = city[city["role"] != ""]
    return [{"unit_id": str(u), "role": str(r)} for u, r in zip(rows["unit_id"], rows["role"], strict=True)]


# --- calendar -------------------------------------------------------------------------------------


def day_weights(cal: Calendar, base: dict) -> np.ndarray:
    """Working-day weights of a period: weekdays, month-end peaks, the dip after the Spring Festival."""
    days = cal.period_days()
    dates = [date(1970, 1, 1) + timedelta(days=int(d // DAY)) for d in days]
    weekday = np.array([d.weekday() for d in dates])
    w = np.ones(len(days))
    w[weekday == 0] = 1.15
    w[weekday == 4] = 0.92
    w[weekday >= 5] = 0.8  # 调休 make-up Saturdays and Sundays are quieter
    month = np.array([d.year * 12 + d.month for d in dates])
    from_end = pd.Series(np.arange(len(days))).groupby(month).rank(ascending=False).to_numpy()
    w[from_end <= 3] *= float(base.get("month_end_peak", 1.35))
    festival = [d for d in _days_around(cal.period) if holiday_name(d) == "Spring Festival"]
    if festival:
        off = [d for d in festival if not workday_calendar(d, d).iat[0]]
        last = max(off) if off else max(festival)
        after = np.array([0 < (d - last).days <= 10 for d in dates])
        w[after] *= float(base.get("spring_festival_dip", 0.6))
    return w / w.sum()


def _days_around(period: Period) -> list[date]:
    return [period.start + timedelta(days=i) for i in range(-15, period.days)]


def any_time(rng: np.random.Generator, period: Period, n: int) -> np.ndarray:
    """Instants at any hour of any day of the period (self-service terminals), quieter at night."""
    start = (period.start - date(1970, 1, 1)).days * DAY
    hour_w = np.where((np.arange(24) < 7) | (np.arange(24) >= 23), 0.25, 1.0)
    minute_w = np.repeat(hour_w, 60) / np.repeat(hour_w, 60).sum()
    day = rng.integers(0, period.days, n)
    minute = rng.choice(1440, size=n, p=minute_w)
    return start + day * DAY + minute.astype(np.int64) * 60 + rng.integers(0, 60, n)


# --- one quarter ------------------------------------------------------------------------------------


def quarter_plan(
    city: pd.DataFrame, q: Period, k: int, rng: np.random.Generator, scen: dict, injected: dict | None = None
) -> pd.DataFrame:
    """Cases and unlinked evaluations of every unit in quarter ``q`` (``k`` quarters back)."""
    base = scen.get("baseline") or {}
    season = {
        int(key): float(v) for key, v in (base.get("season") or {1: 0.9, 2: 1.0, 3: 1.03, 4: 1.08}).items()
    }
    quarter = (q.start.month - 1) // 3 + 1
    workdays = float(workday_calendar(q.start, q.end).sum())
    n = len(city)
    factor = (
        workdays
        / WORKDAYS_PER_QUARTER
        * season.get(quarter, 1.0)
        * (1 + float(base.get("growth", 0.015))) ** (-k)
        * np.exp(rng.normal(0, float(base.get("volume_noise", 0.08)), n))
    )
    exists = k <= city["opened_k"].to_numpy()
    ramp = np.where(k == city["opened_k"].to_numpy(), 0.6, 1.0)  # a new unit's first quarter
    moved = np.where(city["moved"].to_numpy() & (k <= 1), 0.5, 1.0)
    mean = city["base_cases"].to_numpy() * factor * exists * ramp * moved
    plan = city.copy()
    for unit, keep in ((injected or {}).get("volume_keep") or {}).items():
        mean[unit] *= keep
    plan["cases"] = rng.poisson(mean)
    plan["unlinked"] = rng.poisson(mean * plan["unlinked_rate"].to_numpy())
    return plan


def quarter_records(
    plan: pd.DataFrame,
    q: Period,
    k: int,
    rng: np.random.Generator,
    scen: dict,
    catalogue: dict[str, np.ndarray],
    population: int,
    overrides: dict | None = None,
) -> Records:
    """The records of one quarter from its plan (vectorised; ``overrides``: per-unit traits changed)."""
    base = scen.get("baseline") or {}
    cal = Calendar.build(q)
    pdays = cal.period_days()
    dw = day_weights(cal, base)
    n_units = len(plan)
    kinds = plan["kind"].to_numpy()
    trait = {c: plan[c].to_numpy(dtype=float).copy() for c in ("eval_rate", "active_p", "non5", "bad_rate")}
    for col, values in (overrides or {}).items():
        if col not in trait:
            continue  # volume changes act on the plan (quarter_plan)
        for unit, value in values.items():
            trait[col][unit] = value
    mix = np.vstack(plan["mix"].to_numpy())
    shifted = plan["shift"].to_numpy() & (k <= 1)
    mix[np.ix_(shifted, ONSITE)] *= 0.5
    mix = mix / mix.sum(axis=1, keepdims=True)
    role = plan["role"].to_numpy()

    # --- cases ---
    unit = np.repeat(np.arange(n_units, dtype=np.int32), plan["cases"].to_numpy())
    n = len(unit)
    finished = office_times(rng, pdays, n, dw)
    self_service = (role[unit] == "terminal24") & (rng.random(n) < SELF_SERVICE_SHARE)
    finished[self_service] = any_time(rng, q, int(self_service.sum()))
    accepted = finished - lognormal_delay(rng, n, 900, 0.8, 60, 4 * 3600)
    reported = finished + rng.integers(5, 291, n)
    late = rng.random(n) < plan["late_case"].to_numpy()[unit]
    reported[late] = finished[late] + lognormal_delay(rng, int(late.sum()), 3 * 3600, 1.0, 400, 3 * DAY)
    cases, (operators, op_offset, op_count) = case_rows(
        rng,
        unit,
        accepted,
        finished,
        reported,
        catalogue,
        population,
        plan.assign(cases=plan["base_cases"].round().astype(np.int64)),
    )
    person, operator = cases["person"], cases["operator"]
    operator[self_service] = -1

    # --- first evaluations of cases ---
    rows = np.flatnonzero(rng.random(n) < trait["eval_rate"][unit])
    eu = unit[rows]
    known = plan["active_known"].to_numpy()[eu]
    active = np.where(known, (rng.random(len(rows)) < trait["active_p"][eu]).astype(np.int8), -1).astype(
        np.int8
    )
    channel = sample_rows(rng, eu.astype(np.int64), mix).astype(np.int8)
    channel[self_service[rows]] = CH["hall_terminal"]
    channel[active == 0] = CH["system_default"]
    sat = _grades(rng, eu, trait["non5"], trait["bad_rate"])
    sat[active == 0] = 5
    fin = finished[rows]
    delay = channel_delays(rng, channel, fin)
    delay[self_service[rows]] = rng.integers(3, 120, int(self_service[rows].sum()))
    evaluated = cap_to_period(rng, fin, fin + delay, cal.end_s)
    first = {
        "case": rows.astype(np.int64),
        "unit": eu,
        "channel": channel,
        "sat": sat,
        "evaluated": evaluated,
        "attempt": np.ones(len(rows), dtype=np.int8),
        "active": active,
        "person": person[rows],
        "operator": operator[rows],
    }
    # 代办 agents: one person's key on some of the unit's evaluated cases, every quarter.
    for u in np.flatnonzero(role == "agent"):
        mine = np.flatnonzero((eu == u) & (active != 0))  # citizens' evaluations (active flag known or not)
        take = min(int(rng.integers(*AGENT_CASES)), len(mine))
        chosen = rng.choice(mine, take, replace=False)
        first["person"][chosen] = AGENT_PERSON_BASE + u
        cases["person"][rows[chosen]] = AGENT_PERSON_BASE + u

    # --- evaluations not linked to a case ---
    u_unit = np.repeat(np.arange(n_units, dtype=np.int32), plan["unlinked"].to_numpy())
    m = len(u_unit)
    visit = office_times(rng, pdays, m, dw)
    umix = np.array(
        [UNLINKED_MIX_PUBLIC if kd in (KIND_PUBLIC, KIND_CITY_PUBLIC) else UNLINKED_MIX for kd in kinds]
    )
    u_channel = sample_rows(rng, u_unit, umix).astype(np.int8)
    u_eval = cap_to_period(rng, visit, visit + channel_delays(rng, u_channel, visit), cal.end_s)
    unlinked = {
        "case": np.full(m, -1, dtype=np.int64),
        "unit": u_unit,
        "channel": u_channel,
        "sat": _grades(rng, u_unit, trait["non5"], trait["bad_rate"]),
        "evaluated": u_eval,
        "attempt": np.ones(m, dtype=np.int8),
        "active": np.where(plan["active_known"].to_numpy()[u_unit], 1, -1).astype(np.int8),
        "person": rng.integers(0, population, m),
        "operator": np.full(m, -1, dtype=np.int32),
    }

    # --- follow-up evaluations (attempt 2) ---
    eligible = np.flatnonzero(evaluated < cal.end_s - 2 * DAY)
    f = min(round(float(base.get("followup_rate", 0.01)) * len(rows)), len(eligible))
    pick = np.sort(rng.choice(eligible, f, replace=False)) if f else np.zeros(0, dtype=np.int64)
    fu_eval = cap_to_period(
        rng,
        evaluated[pick],
        evaluated[pick] + lognormal_delay(rng, f, 3 * DAY, 1.0, 3600, 30 * DAY),
        cal.end_s,
    )
    names, probs = zip(*FOLLOW_UP_MIX.items(), strict=True)
    followups = {
        "case": rows[pick].astype(np.int64),
        "unit": eu[pick],
        "channel": np.array([CH[c] for c in names], dtype=np.int8)[rng.choice(len(names), f, p=probs)],
        "sat": _grades(
            rng, eu[pick], np.minimum(trait["non5"] * 2, 0.9), np.minimum(trait["bad_rate"] * 4, 0.3)
        ),
        "evaluated": fu_eval,
        "attempt": np.full(f, 2, dtype=np.int8),
        "active": np.where(known[pick], 1, -1).astype(np.int8),
        "person": first["person"][pick],
        "operator": first["operator"][pick],
    }
    evals = {key: np.concatenate([first[key], unlinked[key], followups[key]]) for key in first}
    total = len(evals["case"])
    evals["reported"] = evals["evaluated"] + rng.integers(1, 241, total)
    late_e = rng.random(total) < plan["late_eval"].to_numpy()[evals["unit"]]
    evals["reported"][late_e] = evals["evaluated"][late_e] + lognormal_delay(
        rng, int(late_e.sum()), 2 * 3600, 1.0, 400, 2 * DAY
    )
    evals["comment"] = _comments(rng, evals["sat"], evals["active"])
    evals["kind"] = np.concatenate(
        [np.zeros(len(rows), np.int8), np.ones(m, np.int8), np.full(f, 2, np.int8)]
    )
    rec = Records(cases, evals, operators, op_offset, op_count, staff_person_base=population + 10_000_000)
    rec.bad_valid = np.zeros(total, dtype=bool)
    return rec


def _grades(rng: np.random.Generator, unit: np.ndarray, non5: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Satisfaction 1–5 from each unit's share of grades other than 5 and its 差评 rate."""
    nb = np.clip(non5, 0, 1)
    b = np.minimum(np.clip(bad, 0, 0.5), nb)
    probs = np.column_stack([b * 0.55, b * 0.45, (nb - b) * 0.3, (nb - b) * 0.7, 1 - nb])
    return (sample_rows(rng, unit.astype(np.int64), np.maximum(probs, 1e-12)) + 1).astype(np.int8)


def apply_outages(rec: Records, plan: pd.DataFrame, cal: Calendar, rng: np.random.Generator) -> list[dict]:
    """Tricky 'outage' units: one working day's records reach the system the next working morning."""
    out = []
    days = cal.period_days()
    c, e = rec.cases, rec.evals
    for u in np.flatnonzero(plan["role"].to_numpy() == "outage"):
        i = int(rng.integers(5, len(days) - 5))
        day, nxt = days[i], days[i + 1]
        for table, t_col in ((c, "finished"), (e, "evaluated")):
            hit = (table["unit"] == u) & (table[t_col] >= day) & (table[t_col] < day + DAY)
            table["reported"][hit] = nxt + int(8.5 * 3600) + rng.integers(0, 3600, int(hit.sum()))
        out.append({"unit_id": str(plan.at[u, "unit_id"]), "day": str(np.datetime64(int(day), "s"))[:10]})
    return out


# --- anomalies of the last quarter ---------------------------------------------------------------


class RealisticInjector:
    """Subtle anomalies in the last quarter's records, each recorded with its unit and rows."""

    def __init__(self, rec: Records, plan: pd.DataFrame, cal: Calendar, rng: np.random.Generator, taken: set):
        self.rec, self.plan, self.cal, self.rng = rec, plan, cal, rng
        self.taken = taken  # units already given a role or an anomaly
        self.out: list[Injected] = []
        e = rec.evals
        self.first = np.flatnonzero(e["kind"] == 0)  # rows of cases' first evaluations
        self.used = np.zeros(len(e["case"]), dtype=bool)

    def _pick(
        self, spec: dict, counts: np.ndarray, need: float, extra: np.ndarray | None = None
    ) -> list[int]:
        ok = (counts >= need) & (self.plan["kind"].to_numpy() != KIND_DISTRICT)
        ok &= ~np.isin(np.arange(len(counts)), list(self.taken))
        if extra is not None:
            ok &= extra
        cand = np.flatnonzero(ok)
        k = min(int(spec.get("units", 0)), len(cand))
        chosen = sorted(self.rng.choice(cand, k, replace=False).tolist()) if k else []
        self.taken.update(chosen)
        return chosen

    def _citizen_first(self, u: int | None = None) -> np.ndarray:
        e = self.rec.evals
        rows = self.first[(e["active"][self.first] != 0) & ~self.used[self.first]]
        return rows if u is None else rows[e["unit"][rows] == u]

    def _counts(self, rows: np.ndarray) -> np.ndarray:
        return np.bincount(self.rec.evals["unit"][rows], minlength=len(self.plan))

    def _share(self, spec: dict, n: int, minimum: int = 6) -> int:
        return min(n, max(minimum, round(_u(self.rng, spec.get("share", [0.05, 0.15]), 0.1) * n)))

    def _record(self, kind: str, u: int, rows: np.ndarray, detail: dict, table: str = "evaluations") -> None:
        if table == "evaluations":
            self.used[rows] = True
        key = "case_rows" if table == "cases" else "eval_rows"
        self.out.append(Injected(kind, u, table, **{key: np.sort(rows)}, count=len(rows), detail=detail))

    def low_onsite(self, spec: dict) -> None:
        """Most on-site evaluations re-channelled to remote ones: the on-site share halves."""
        e, c = self.rec.evals, self.rec.cases
        rows = self._citizen_first()
        onsite = rows[np.isin(e["channel"][rows], ONSITE)]
        on_n, all_n = self._counts(onsite), self._counts(rows)
        share = on_n / np.maximum(all_n, 1)
        for u in self._pick(
            spec, on_n, float(spec.get("min_onsite", 100)), share >= float(spec.get("min_share", 0.35))
        ):
            mine = onsite[e["unit"][onsite] == u]
            frac = _u(self.rng, spec.get("rechannel", [0.45, 0.6]), 0.5)
            change = mine[self.rng.random(len(mine)) < frac]
            e["channel"][change] = self.rng.choice(REMOTE, len(change), p=[0.4, 0.3, 0.2, 0.1]).astype(
                np.int8
            )
            fin = c["finished"][e["case"][change]]
            e["evaluated"][change] = cap_to_period(
                self.rng, fin, fin + channel_delays(self.rng, e["channel"][change], fin), self.cal.end_s
            )
            e["reported"][change] = e["evaluated"][change] + self.rng.integers(1, 241, len(change))
            before = len(mine) / max(all_n[u], 1)
            self._record(
                "low_onsite",
                u,
                change,
                {"onsite_share_before": round(before, 3), "rechannelled": round(frac, 3)},
            )

    def backfill(self, spec: dict) -> None:
        """Evaluations keyed in after hours in bursts, 6–25 working days after their cases."""
        e, c = self.rec.evals, self.rec.cases
        rows = self._citizen_first()
        days = self.cal.period_days()
        for u in self._pick(spec, self._counts(rows), float(spec.get("min_first", 400)), self._ops(2)):
            mine = rows[e["unit"][rows] == u]
            total = self._share(spec, len(mine), 10)
            n_bursts = int(self.rng.integers(*np.add(spec.get("bursts", [2, 5]), [0, 1])))
            op = self._operator(u)
            lo, hi = spec.get("workdays_after", [6, 25])
            done = []
            for size in np.array_split(np.arange(total), n_bursts):
                i = int(self.rng.integers(len(days) // 3, len(days) - 1))
                evening = days[i] + int(self.rng.integers(19 * 3600, int(21.5 * 3600)))
                lo_s, hi_s = days[max(i - int(hi), 0)], days[max(i - int(lo), 0)]
                fin = c["finished"][e["case"][mine]]
                cand = mine[(fin >= lo_s) & (fin < hi_s) & ~self.used[mine]]
                take = min(len(size), len(cand))
                if take < 5:
                    continue
                chosen = np.sort(self.rng.choice(cand, take, replace=False))
                channel = CH["paper"] if self.rng.random() < 0.5 else CH["hall_tablet"]
                done.append(self._key_in(chosen, evening, (3, 20), op, channel))
            self._record_bursts("backfill", u, done, op)

    def staff_reentry(self, spec: dict) -> None:
        """After closing, one operator keys in the day's evaluations for the citizens (their own keys)."""
        e, c = self.rec.evals, self.rec.cases
        rows = self._citizen_first()
        days = self.cal.period_days()
        for u in self._pick(spec, self._counts(rows), float(spec.get("min_first", 400)), self._ops(2)):
            mine = rows[e["unit"][rows] == u]
            total = self._share(spec, len(mine), 10)
            op = self._operator(u)
            done, left, tries = [], total, 0
            while left > 0 and tries < 200:
                tries += 1
                size = min(int(self.rng.integers(*np.add(spec.get("burst_size", [10, 30]), [0, 1]))), left)
                i = int(self.rng.integers(1, len(days) - 1))
                close = days[i] + int(17.6 * 3600) + int(self.rng.integers(0, 3600))
                fin = c["finished"][e["case"][mine]]
                cand = mine[(fin >= days[i - 1]) & (fin < days[i] + 16 * 3600) & ~self.used[mine]]
                take = min(size, len(cand))
                if take < 8:
                    continue
                chosen = np.sort(self.rng.choice(cand, take, replace=False))
                done.append(self._key_in(chosen, close, (5, 25), op, CH["hall_tablet"]))
                left -= take
            self._record_bursts("staff_reentry", u, done, op)

    def late_reporting(self, spec: dict) -> None:
        """Tablets that sync once a day: 5–15% of a unit's evaluations (made on site) reported hours late."""
        e = self.rec.evals
        rows = self._citizen_first()
        onsite = rows[np.isin(e["channel"][rows], ONSITE) & (e["evaluated"][rows] < self.cal.end_s - DAY)]
        on_n = self._counts(onsite)
        all_n = np.bincount(e["unit"], minlength=len(self.plan))
        share_hi = float(np.max(spec.get("share", [0.05, 0.15])))
        ok = on_n >= share_hi * all_n  # enough on-site evaluations to make up the share
        for u in self._pick(spec, on_n, float(spec.get("min_onsite", 150)), ok):
            mine = onsite[e["unit"][onsite] == u]
            chosen = self.rng.choice(
                mine, min(len(mine), self._share(spec, int(all_n[u]), 10)), replace=False
            )
            made = e["evaluated"][chosen]
            evening = made // DAY * DAY + 22 * 3600 + self.rng.integers(0, 3600, len(chosen))
            morning = made // DAY * DAY + DAY + 8 * 3600 + self.rng.integers(0, 1800, len(chosen))
            e["reported"][chosen] = np.where(made < evening - 600, evening, morning)
            self._record(
                "late_reporting", u, chosen, {"share_of_evaluations": round(len(chosen) / all_n[u], 3)}
            )

    def late_aggregation(self, spec: dict) -> None:
        """A share of a unit's cases reported days after they finished (their evaluations with them)."""
        c, e = self.rec.cases, self.rec.evals
        n_cases = np.bincount(c["unit"], minlength=len(self.plan))
        lo, hi = spec.get("delay_days", [1, 10])
        for u in self._pick(spec, n_cases, float(spec.get("min_cases", 300))):
            mine = np.flatnonzero(c["unit"] == u)
            chosen = self.rng.choice(mine, self._share(spec, len(mine), 20), replace=False)
            c["reported"][chosen] = c["finished"][chosen] + self.rng.integers(
                int(lo * DAY), int(hi * DAY) + 1, len(chosen)
            )
            linked = np.flatnonzero(np.isin(e["case"], chosen))
            e["reported"][linked] = np.maximum(
                e["reported"][linked],
                c["reported"][e["case"][linked]] + self.rng.integers(60, 600, len(linked)),
            )
            self._record("late_aggregation", u, chosen, {"delay_days": [lo, hi]}, table="cases")

    def duplicates(self, spec: dict) -> None:
        """A second attempt-1 evaluation of some of a unit's cases (same grade, later, new id)."""
        e = self.rec.evals
        rows = self._citizen_first()
        rows = rows[e["evaluated"][rows] < self.cal.end_s - 3 * 3600]
        add_rows = []
        for u in self._pick(spec, self._counts(rows), float(spec.get("min_first", 300))):
            mine = rows[e["unit"][rows] == u]
            chosen = np.sort(self.rng.choice(mine, self._share(spec, len(mine), 6), replace=False))
            start = len(e["case"]) + sum(len(r) for r in add_rows)
            add_rows.append(chosen)
            self.used[chosen] = True
            self.out.append(
                Injected(
                    "duplicates",
                    u,
                    "evaluations",
                    eval_rows=np.arange(start, start + len(chosen)),
                    count=len(chosen),
                )
            )
        if add_rows:
            chosen = np.concatenate(add_rows)
            add = {key: v[chosen].copy() for key, v in e.items()}
            add["evaluated"] = np.minimum(
                add["evaluated"] + self.rng.integers(5, 7200, len(chosen)), self.cal.end_s - 1
            )
            add["reported"] = add["evaluated"] + self.rng.integers(1, 241, len(chosen))
            add["kind"] = np.full(len(chosen), 3, dtype=np.int8)
            for key in e:
                e[key] = np.concatenate([e[key], add[key]])
            self.used = np.concatenate([self.used, np.ones(len(chosen), dtype=bool)])
            self.rec.bad_valid = np.zeros(len(e["case"]), dtype=bool)

    def eval_before_case(self, spec: dict) -> None:
        """Evaluations timed minutes before their case finished (staff evaluating before closing it)."""
        e, c = self.rec.evals, self.rec.cases
        rows = self._citizen_first()
        fin = c["finished"][e["case"][rows]]
        rows = rows[(fin >= self.cal.start_s + 2 * DAY) & (fin < self.cal.end_s - DAY)]
        lo, hi = spec.get("minutes_before", [1, 90])
        for u in self._pick(spec, self._counts(rows), float(spec.get("min_first", 300))):
            mine = rows[e["unit"][rows] == u]
            chosen = self.rng.choice(mine, self._share(spec, len(mine), 6), replace=False)
            before = self.rng.integers(int(lo * 60), int(hi * 60) + 1, len(chosen))
            e["evaluated"][chosen] = c["finished"][e["case"][chosen]] - before
            e["reported"][chosen] = e["evaluated"][chosen] + self.rng.integers(1, 241, len(chosen))
            self._record("eval_before_case", u, chosen, {"minutes_before": [lo, hi]})

    def too_perfect(self, spec: dict) -> None:
        """Most of a unit's evaluations made at the window by staff or the system.

        All 非常满意, on one hall tablet, seconds after the case finished.
        """
        e, c = self.rec.evals, self.rec.cases
        rows = self._citizen_first()
        for u in self._pick(spec, self._counts(rows), float(spec.get("min_citizen", 400))):
            mine = rows[e["unit"][rows] == u]
            share = _u(self.rng, spec.get("share", [0.8, 1.0]), 0.9)
            chosen = mine[self.rng.random(len(mine)) < share]
            e["sat"][chosen] = 5
            e["channel"][chosen] = CH["hall_tablet"]
            e["evaluated"][chosen] = c["finished"][e["case"][chosen]] + self.rng.integers(1, 9, len(chosen))
            e["reported"][chosen] = e["evaluated"][chosen] + self.rng.integers(1, 60, len(chosen))
            self._record("too_perfect", u, chosen, {"share": round(share, 3)})

    def _key_in(
        self, rows: np.ndarray, start: int, gaps: tuple[int, int], op: int, channel: int
    ) -> np.ndarray:
        """One operator keys in ``rows`` from ``start``, a few seconds apart, all 非常满意."""
        e = self.rec.evals
        e["evaluated"][rows] = np.minimum(
            start + np.cumsum(self.rng.integers(*gaps, len(rows))), self.cal.end_s - 1
        )
        e["reported"][rows] = e["evaluated"][rows] + self.rng.integers(1, 60, len(rows))
        e["channel"][rows] = channel
        e["sat"][rows] = 5
        e["operator"][rows] = op
        self.used[rows] = True
        return rows

    def _record_bursts(self, kind: str, u: int, bursts: list[np.ndarray], op: int) -> None:
        if bursts:
            detail = {"operator": str(self.rec.operators[op]), "bursts": len(bursts)}
            self._record(kind, u, np.concatenate(bursts), detail)

    def _ops(self, minimum: int) -> np.ndarray:
        return self.rec.op_count >= minimum

    def _operator(self, u: int) -> int:
        return int(self.rec.op_offset[u] + self.rng.integers(self.rec.op_count[u]))


RECORD_KINDS = (
    "low_onsite",
    "backfill",
    "staff_reentry",
    "late_reporting",
    "late_aggregation",
    "eval_before_case",
    "too_perfect",
    "duplicates",
)


def plan_injections(city: pd.DataFrame, rng: np.random.Generator, scen: dict) -> tuple[dict, list[Injected]]:
    """Unit-level anomalies of the last quarter: which units, and the traits they change."""
    spec = scen.get("anomalies") or {}
    kinds = city["kind"].to_numpy()
    free = (city["role"].to_numpy() == "") & (kinds != KIND_DISTRICT)
    base = city["base_cases"].to_numpy()
    citizen = base * city["eval_rate"].to_numpy() * np.where(city["active_known"], city["active_p"], 1.0)
    changes: dict = {"volume_keep": {}, "eval_rate": {}, "active_p": {}, "bad_rate": {}}
    out: list[Injected] = []

    def pick(kind: str, ok: np.ndarray) -> list[int]:
        s = spec.get(kind) or {}
        cand = np.flatnonzero(ok & free)
        k = min(int(s.get("units", 0)), len(cand))
        chosen = sorted(rng.choice(cand, k, replace=False).tolist()) if k else []
        free[chosen] = False
        return chosen

    s = spec.get("zero_data") or {}
    for u in pick(
        "zero_data", base * (1 + city["unlinked_rate"].to_numpy()) >= float(s.get("min_events", 40))
    ):
        changes["volume_keep"][u] = 0.0
        out.append(
            Injected("zero_data", u, "cases", count=0, detail={"expected_cases": round(float(base[u]), 1)})
        )
    s = spec.get("low_volume") or {}
    for i, u in enumerate(pick("low_volume", base >= float(s.get("min_cases", 150)))):
        if i % 2 == 0:
            keep = _u(rng, s.get("ratio_keep", [0.35, 0.55]), 0.45)
            changes["eval_rate"][u] = float(city.at[u, "eval_rate"]) * keep
            detail = {"variant": "evaluations_per_case", "keep": round(keep, 3)}
        else:
            keep = _u(rng, s.get("volume_keep", [0.25, 0.45]), 0.35)
            changes["volume_keep"][u] = keep
            detail = {"variant": "volume_per_working_day", "keep": round(keep, 3)}
        out.append(Injected("low_volume", u, "evaluations", count=0, detail=detail))
    s = spec.get("low_active") or {}
    ok = (
        (base >= float(s.get("min_cases", 300)))
        & city["active_known"].to_numpy()
        & (city["active_p"].to_numpy() >= 0.3)
    )
    for u in pick("low_active", ok):
        share = _u(rng, s.get("share", [0.005, 0.02]), 0.01)
        changes["active_p"][u] = share
        out.append(
            Injected("low_active", u, "evaluations", count=0, detail={"active_share": round(share, 4)})
        )
    s = spec.get("high_invalid_bad") or {}
    for u in pick("high_invalid_bad", citizen >= float(s.get("min_citizen", 1500))):
        rate = _u(rng, s.get("rate", [0.015, 0.03]), 0.02)
        changes["bad_rate"][u] = rate
        out.append(
            Injected("high_invalid_bad", u, "evaluations", count=0, detail={"raw_bad_rate": round(rate, 4)})
        )
    return changes, out


# --- generation -----------------------------------------------------------------------------------


def _quarters(period: Period, n: int) -> list[Period]:
    out, p = [period], period
    for _ in range(n - 1):
        p = p.shifted("previous")
        out.insert(0, p)
    return out


def _population(plan: pd.DataFrame) -> int:
    return max(500, int(0.8 * (plan["cases"].sum() + plan["unlinked"].sum())))


def generate_realistic(ref: CityReference, period: Period, scale: float, seed: int, scen: dict):
    """The last quarter of a realistic city, with its anomalies and their truth (a SynthResult)."""
    started = time.perf_counter()
    city = build_city(ref, scale, seed, scen)
    rng = _rng(seed, ref.key, MODEL, period.label, "plan")
    changes, planned = plan_injections(city, rng, scen)
    plan = quarter_plan(city, period, 0, rng, scen, changes)
    catalogue = catalogue_arrays(ref, plan["unit_id"].tolist())
    rec_rng = _rng(seed, ref.key, MODEL, period.label, "records")
    rec = quarter_records(plan, period, 0, rec_rng, scen, catalogue, _population(plan), changes)
    cal = Calendar.build(period)
    outages = apply_outages(rec, plan, cal, rec_rng)
    taken = {a.unit for a in planned} | set(np.flatnonzero(plan["role"].to_numpy() != "").tolist())
    inj = RealisticInjector(rec, plan, cal, _rng(seed, ref.key, MODEL, period.label, "inject"), taken)
    spec = scen.get("anomalies") or {}
    for kind in RECORD_KINDS:
        if spec.get(kind):
            getattr(inj, kind)(spec[kind])
    rect = {"seed": int(rec_rng.integers(2**31)), "city_region": "370300"}
    tables, order = to_frames(rec, plan, period, catalogue, f"{ref.key}-person", rect)
    agents = [
        Injected("agent", int(u), "evaluations", detail={"role": "tricky_clean"}, source="tricky_clean")
        for u in np.flatnonzero(plan["role"].to_numpy() == "agent")
    ]
    entries = build_truth_entries(plan, [*planned, *inj.out, *agents], tables, order)
    truth = {
        "city": ref.key,
        "city_name": ref.city_name,
        "period": period.label,
        "scale": scale,
        "seed": seed,
        "scenario": scen.get("name", MODEL),
        "model": MODEL,
        "anomalies": entries,
        "unscored": [],
        "tricky_clean": tricky_units(plan),
        "outages": outages,
        "record_level": record_level_counts(rec),
    }
    return SynthResult(
        tables=tables, truth=truth, plan=plan, period=period, seconds=time.perf_counter() - started
    )


def iter_history_realistic(
    ref: CityReference, period: Period, quarters: int, scale: float, seed: int, scen: dict
) -> Iterator[tuple[str, dict[str, pd.DataFrame]]]:
    """The quarters before ``period`` (oldest first), from the same city: no anomaly in them."""
    city = build_city(ref, scale, seed, scen)
    catalogue = catalogue_arrays(ref, city["unit_id"].tolist())
    earlier = _quarters(period, quarters + 1)[:-1]
    for k, q in zip(range(len(earlier), 0, -1), earlier, strict=True):
        rng = _rng(seed, ref.key, MODEL, q.label, "plan")
        plan = quarter_plan(city, q, k, rng, scen)
        rec_rng = _rng(seed, ref.key, MODEL, q.label, "records")
        rec = quarter_records(plan, q, k, rec_rng, scen, catalogue, _population(plan))
        rect = {"seed": int(rec_rng.integers(2**31)), "city_region": "370300"}
        tables, _ = to_frames(rec, plan, q, catalogue, f"{ref.key}-person", rect)
        yield q.label, tables
