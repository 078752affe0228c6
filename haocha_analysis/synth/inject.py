"""Anomalies injected into a synthetic period by a scenario, each recorded with its unit and records.

Every injection re-times, re-channels, re-keys or adds rows that no annex counts, so the annex cells
stay exact (docs/synthetic-model.md, "Anomalies"). Row indices here refer to the unsorted arrays of
:class:`~haocha_analysis.synth.records.Records`; :mod:`synth` maps them to ids afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from haocha_analysis.synth.plan import KIND_CITY, KIND_DEPT, KIND_PUBLIC, KIND_TOWN, KIND_VILLAGE, KIND_WINDOW
from haocha_analysis.synth.records import (
    CH,
    DAY,
    NA,
    ONSITE,
    REMOTE,
    Calendar,
    Records,
    cap_to_period,
    channel_delays,
)

HALL_KINDS = (KIND_DEPT, KIND_WINDOW, KIND_TOWN, KIND_CITY)
# Fewest records an injection has at any scale (sizes are × scale, then at least this): twice the
# minimum the detector documents (anomalies.Settings), so a tiny scale keeps injections observable.
MIN_RECORDS = {
    "duplicates": 6,  # duplicates_min 3
    "eval_before_case": 6,  # before_case_min 3
    "staff_reentry": 40,  # reentry_min_cases 20
    "backfill_burst": 10,  # burst_min_size_after_hours 5 (the bursts are after hours)
    "late_aggregation": 20,  # late_min_cases 10 (late cases)
    "low_onsite": 60,  # min_first_evaluations 30 (the unit's on-site evaluations before)
    "missing_reported_at": 10,  # a record-level count, not a unit anomaly: enough to see
    "late_reporting": 20,  # late_min_cases 10 (late evaluations)
    "agent": 40,  # agent_min_cases 20 (cases evaluated by the agent's key)
}
# Person indices of invented agents (代办人): beyond the population and the staff's own keys.
AGENT_PERSON_BASE = 20_000_000


@dataclass
class Injected:
    """One anomaly: kind, unit (plan row), table and the rows concerned."""

    kind: str
    unit: int
    table: str
    case_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    eval_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    count: int | None = None
    detail: dict = field(default_factory=dict)
    source: str = "injected"


def _size(spec_value, scale: float, rng: np.random.Generator, minimum: int = 3) -> int:
    """A size from the scenario (a number or a [low, high] range), times the scale, at least ``minimum``."""
    if isinstance(spec_value, list | tuple):
        value = rng.integers(int(spec_value[0]), int(spec_value[1]) + 1)
    else:
        value = int(spec_value)
    return max(minimum, round(value * scale))


class Injector:
    """Applies a scenario's record-level anomalies to one period's records."""

    def __init__(
        self, rec: Records, plan: pd.DataFrame, cal: Calendar, rng: np.random.Generator, scale: float
    ):
        self.rec, self.plan, self.cal, self.rng, self.scale = rec, plan, cal, rng, scale
        c, e = rec.cases, rec.evals
        n = len(c["unit"])
        self.n_cases = n
        self.kinds = plan["kind"].to_numpy()
        # Cases an injection may touch: not yet used, and without a follow-up (kept in time order).
        self.used = np.zeros(n, dtype=bool)
        fu = e["case"][e["kind"] == 2]
        self.used[fu] = True
        # Units already given a plan-level anomaly are not picked again (one anomaly per unit).
        plan_level = [
            "injected_zero",
            "injected_low_volume",
            "_low_active",
            "injected_too_perfect",
            "injected_high_invalid_bad",
        ]
        flagged = np.zeros(len(plan), dtype=bool)
        for col in plan_level:
            if col in plan:
                flagged |= plan[col].to_numpy(dtype=bool)
        self.used_units: set[int] = set(np.flatnonzero(flagged).tolist())
        self.out: list[Injected] = []

    # -- helpers --
    def _first(self, key: str) -> np.ndarray:
        """Column of the first evaluations (rows 0..n-1 are the cases' first evaluations, in case order)."""
        return self.rec.evals[key][: self.n_cases]

    def _pick_units(self, spec: dict, candidates: np.ndarray, weight: np.ndarray | None = None) -> list[int]:
        ids = spec.get("unit_ids")
        if ids:
            pos = {u: i for i, u in enumerate(self.plan["unit_id"])}
            return [pos[u] for u in ids if u in pos]
        cand = np.array([u for u in candidates if u not in self.used_units], dtype=np.int64)
        k = min(int(spec.get("units", 0)), len(cand))
        if k == 0:
            return []
        p = None
        if weight is not None:
            w = weight[cand].astype(float)
            p = w / w.sum() if w.sum() > 0 else None
        chosen = self.rng.choice(cand, size=k, replace=False, p=p).tolist()
        self.used_units.update(chosen)
        return chosen

    def _unit_cases(self, u: int, mask: np.ndarray | None = None) -> np.ndarray:
        sel = (self.rec.cases["unit"] == u) & ~self.used
        if mask is not None:
            sel &= mask
        return np.flatnonzero(sel)

    def _volume_units(self, kinds: tuple[str, ...], min_cases: int) -> np.ndarray:
        ok = np.isin(self.kinds, kinds) & (self.plan["cases"].to_numpy() >= min_cases)
        return np.flatnonzero(ok)

    # -- anomalies --
    def low_onsite(self, spec: dict) -> None:
        """Windows with almost no on-site evaluation: on-site channels re-channelled to remote ones."""
        onsite_first = np.isin(self._first("channel"), ONSITE)
        counts = np.bincount(self.rec.cases["unit"][onsite_first], minlength=len(self.plan))
        floor = max(MIN_RECORDS["low_onsite"], 300 * self.scale)
        cand = np.flatnonzero(np.isin(self.kinds, HALL_KINDS) & (counts >= floor))
        keep = float(spec.get("keep_share", 0.03))
        for u in self._pick_units(spec, cand, weight=np.sqrt(counts)):
            rows = np.flatnonzero(onsite_first & (self.rec.cases["unit"] == u))
            change = rows[self.rng.random(len(rows)) >= keep]
            e, c = self.rec.evals, self.rec.cases
            e["channel"][change] = self.rng.choice(REMOTE, len(change), p=[0.4, 0.3, 0.2, 0.1]).astype(
                np.int8
            )
            delay = channel_delays(self.rng, e["channel"][change], c["finished"][change])
            e["evaluated"][change] = cap_to_period(
                self.rng, c["finished"][change], c["finished"][change] + delay, self.cal.end_s
            )
            e["reported"][change] = e["evaluated"][change] + self.rng.integers(1, 241, len(change))
            share = 1 - len(change) / max(len(rows), 1)
            self.out.append(
                Injected(
                    "low_onsite",
                    u,
                    "evaluations",
                    eval_rows=change,
                    count=len(change),
                    detail={
                        "onsite_before": len(rows),
                        "onsite_after": len(rows) - len(change),
                        "kept_share": round(share, 4),
                    },
                )
            )

    def backfill(self, spec: dict) -> None:
        """事后补录: bursts of near-identical times, days after the cases, after hours, one operator."""
        lo, hi = spec.get("days_after", [3, 20])
        c, e = self.rec.cases, self.rec.evals
        ok_first = (self._first("active") == 1) & (self._first("sat") >= 3)
        eligible = np.bincount(c["unit"][ok_first], minlength=len(self.plan))
        cand = np.flatnonzero(
            np.isin(self.kinds, (KIND_DEPT, KIND_WINDOW, KIND_TOWN))
            & (eligible >= max(20 * MIN_RECORDS["backfill_burst"], 1500 * self.scale))
        )
        for u in self._pick_units(spec, cand):
            op = int(self.rec.op_offset[u] + self.rng.integers(self.rec.op_count[u]))
            rows_all, bursts = [], []
            n_bursts = _size(spec.get("bursts", [2, 4]), 1.0, self.rng, minimum=1)
            for _ in range(n_bursts):
                # A burst on an evening (or weekend) at least ``lo`` days after the cases it records.
                day0 = self.cal.start_s + (lo + 7) * DAY
                day = day0 + int(self.rng.integers(0, max((self.cal.end_s - DAY - day0) // DAY, 1))) * DAY
                t0 = day + int(self.rng.integers(int(18.75 * 3600), 22 * 3600))
                window = (c["finished"] <= t0 - lo * DAY) & (c["finished"] >= t0 - hi * DAY)
                rows = self._unit_cases(u, ok_first & window)
                size = _size(
                    spec.get("burst_size", [30, 90]), self.scale, self.rng, MIN_RECORDS["backfill_burst"]
                )
                size = min(size, len(rows))
                if size < MIN_RECORDS["backfill_burst"]:
                    continue
                rows = np.sort(self.rng.choice(rows, size, replace=False))
                times = t0 + np.cumsum(self.rng.integers(2, 20, size))
                e["evaluated"][rows] = np.minimum(times, self.cal.end_s - 1)
                e["reported"][rows] = e["evaluated"][rows] + self.rng.integers(1, 60, size)
                e["channel"][rows] = CH["hall_tablet"]
                e["sat"][rows] = 5
                e["operator"][rows] = op
                self.used[rows] = True
                rows_all.append(rows)
                bursts.append(
                    {"start": _iso(int(times[0])), "end": _iso(int(times[-1])), "records": int(size)}
                )
            if rows_all:
                rows = np.concatenate(rows_all)
                self.out.append(
                    Injected(
                        "backfill",
                        u,
                        "evaluations",
                        eval_rows=rows,
                        count=len(rows),
                        detail={"operator": str(self.rec.operators[op]), "bursts": bursts},
                    )
                )

    def late_aggregation(self, spec: dict) -> None:
        """Cases reported to the evaluation system days after they finished."""
        lo, hi = spec.get("delay_days", [1, 12])
        share = float(spec.get("share", 0.5))
        floor = max(2 * MIN_RECORDS["late_aggregation"] / share, 500 * self.scale)
        cand = self._volume_units((KIND_DEPT, KIND_WINDOW, KIND_PUBLIC, KIND_TOWN, KIND_CITY), floor)
        c = self.rec.cases
        for u in self._pick_units(spec, cand):
            rows = self._unit_cases(u)
            rows = rows[self.rng.random(len(rows)) < share]
            delay = self.rng.integers(int(lo * DAY), int(hi * DAY) + 1, len(rows))
            c["reported"][rows] = c["finished"][rows] + delay
            # The case's evaluations reach the system with it (batch upload), not before.
            e = self.rec.evals
            later = self.rng.integers(60, 600, len(rows))
            e["reported"][rows] = np.maximum(e["reported"][rows], c["reported"][rows] + later)
            self.used[rows] = True
            late_evals = int((e["reported"][rows] - e["evaluated"][rows] > 300).sum())
            self.out.append(
                Injected(
                    "late_aggregation",
                    u,
                    "cases",
                    case_rows=rows,
                    count=len(rows),
                    detail={"delay_days": [lo, hi], "share": share, "late_evaluation_reports": late_evals},
                )
            )

    def duplicates(self, spec: dict) -> list[np.ndarray]:
        """A second attempt-1 evaluation of an evaluated case: same satisfaction, new eval_id, later."""
        cand = self._volume_units(
            (*HALL_KINDS, KIND_PUBLIC), max(10 * MIN_RECORDS["duplicates"], 300 * self.scale)
        )
        e = self.rec.evals
        ok = (self._first("sat") >= 3) & (self._first("evaluated") < self.cal.end_s - 3 * 3600)
        new_rows = []
        for u in self._pick_units(spec, cand):
            rows = self._unit_cases(u, ok)
            size = _size(spec.get("count", [15, 60]), self.scale, self.rng, MIN_RECORDS["duplicates"])
            size = min(size, len(rows))
            rows = np.sort(self.rng.choice(rows, size, replace=False))
            start = len(e["case"]) + sum(len(r) for r in new_rows)
            new_rows.append(rows)
            self.used[rows] = True
            self.out.append(
                Injected(
                    "duplicates",
                    u,
                    "evaluations",
                    eval_rows=np.arange(start, start + size),
                    count=size,
                    detail={"duplicated_first_evaluations": size},
                )
            )
        if new_rows:
            rows = np.concatenate(new_rows)
            add = {k: v[rows].copy() for k, v in e.items()}
            add["evaluated"] = add["evaluated"] + self.rng.integers(5, 7200, len(rows))
            add["evaluated"] = np.minimum(add["evaluated"], self.cal.end_s - 1)
            add["reported"] = add["evaluated"] + self.rng.integers(1, 241, len(rows))
            add["kind"] = np.full(len(rows), 3, dtype=np.int8)
            for k in e:
                e[k] = np.concatenate([e[k], add[k]])
        return new_rows

    def staff_reentry(self, spec: dict) -> None:
        """One operator enters many evaluations as the evaluator: one operator and one evaluator key."""
        c, e = self.rec.cases, self.rec.evals
        active_n = np.bincount(c["unit"][self._first("active") == 1], minlength=len(self.plan))
        floor = max(4 * MIN_RECORDS["staff_reentry"], 600 * self.scale)
        cand = np.flatnonzero(np.isin(self.kinds, HALL_KINDS) & (active_n >= floor))
        for u in self._pick_units(spec, cand):
            op = int(self.rec.op_offset[u] + self.rng.integers(self.rec.op_count[u]))
            rows = self._unit_cases(u, self._first("active") == 1)
            size = _size(spec.get("count", [40, 120]), self.scale, self.rng, MIN_RECORDS["staff_reentry"])
            size = min(size, len(rows))
            rows = np.sort(self.rng.choice(rows, size, replace=False))
            e["person"][rows] = self.rec.staff_person_base + op
            e["operator"][rows] = op
            c["operator"][rows] = op
            self.used[rows] = True
            self.out.append(
                Injected(
                    "staff_reentry",
                    u,
                    "evaluations",
                    eval_rows=rows,
                    count=size,
                    detail={"operator": str(self.rec.operators[op])},
                )
            )

    def eval_before_case(self, spec: dict) -> None:
        """First evaluations timed before their case finished (cases finished well inside the period)."""
        c, e = self.rec.cases, self.rec.evals
        active_n = np.bincount(c["unit"][self._first("active") == 1], minlength=len(self.plan))
        cand = np.flatnonzero(
            np.isin(self.kinds, (*HALL_KINDS, KIND_PUBLIC, KIND_VILLAGE))
            & (active_n >= max(10 * MIN_RECORDS["eval_before_case"], 300 * self.scale))
        )
        inside = (c["finished"] >= self.cal.start_s + 3 * DAY) & (c["finished"] < self.cal.end_s - 3 * DAY)
        for u in self._pick_units(spec, cand):
            rows = self._unit_cases(u, inside & (self._first("active") == 1))
            size = _size(spec.get("count", [8, 30]), self.scale, self.rng, MIN_RECORDS["eval_before_case"])
            size = min(size, len(rows))
            rows = np.sort(self.rng.choice(rows, size, replace=False))
            early = self.rng.integers(300, 2 * DAY, size)
            e["evaluated"][rows] = c["finished"][rows] - early
            e["reported"][rows] = e["evaluated"][rows] + self.rng.integers(1, 241, size)
            self.used[rows] = True
            self.out.append(
                Injected(
                    "eval_before_case",
                    u,
                    "evaluations",
                    eval_rows=rows,
                    count=size,
                    detail={"earliest_seconds_before": int(early.max()) if size else 0},
                )
            )

    def late_reporting(self, spec: dict) -> None:
        """Evaluation devices that sync once a day: a share of a unit's evaluations reported hours late.

        The chosen evaluations (citizens' first evaluations of cases) reach the system at the evening
        sync (22:00–23:00) of the day they were made, or the next morning's (08:00–08:30) when made later.
        """
        share = float(spec.get("share", 0.4))
        c, e = self.rec.cases, self.rec.evals
        active = self._first("active") == 1
        counts = np.bincount(c["unit"][active & ~self.used], minlength=len(self.plan))
        floor = max(2 * MIN_RECORDS["late_reporting"] / share, 300 * self.scale)
        cand = np.flatnonzero(np.isin(self.kinds, HALL_KINDS) & (counts >= floor))
        for u in self._pick_units(spec, cand):
            rows = self._unit_cases(u, active)
            rows = rows[self.rng.random(len(rows)) < share]
            rows = rows[e["evaluated"][rows] < self.cal.end_s - DAY]
            made = e["evaluated"][rows]
            evening = made // DAY * DAY + 22 * 3600 + self.rng.integers(0, 3600, len(rows))
            morning = made // DAY * DAY + DAY + 8 * 3600 + self.rng.integers(0, 1800, len(rows))
            e["reported"][rows] = np.where(made < evening - 600, evening, morning)
            self.used[rows] = True
            delay_h = (e["reported"][rows] - made) / 3600
            self.out.append(
                Injected(
                    "late_reporting",
                    u,
                    "evaluations",
                    eval_rows=rows,
                    count=len(rows),
                    detail={"share": share, "median_delay_hours": round(float(np.median(delay_h)), 1)},
                )
            )

    def agent(self, spec: dict) -> None:
        """代办人: one agent's key on many of a unit's cases over the period, at whatever window."""
        c = self.rec.cases
        active = self._first("active") == 1
        active_n = np.bincount(c["unit"][active], minlength=len(self.plan))
        floor = max(2 * MIN_RECORDS["agent"], 600 * self.scale)
        cand = np.flatnonzero(
            np.isin(self.kinds, HALL_KINDS) & (active_n >= floor) & (self.rec.op_count >= 3)
        )
        for u in self._pick_units(spec, cand):
            rows = self._unit_cases(u, active)
            size = min(_size(spec.get("count", [40, 60]), 1.0, self.rng, MIN_RECORDS["agent"]), len(rows))
            rows = np.sort(self.rng.choice(rows, size, replace=False))
            person = AGENT_PERSON_BASE + u
            self.rec.evals["person"][rows] = person
            c["person"][rows] = person
            self.used[rows] = True
            ops = len(np.unique(self.rec.evals["operator"][rows]))
            self.out.append(
                Injected("agent", u, "evaluations", eval_rows=rows, count=size, detail={"operators": ops})
            )

    def missing_reported_at(self, spec: dict) -> dict:
        """Records whose source gave no report time (a record-level count, not a unit anomaly)."""
        share = float(spec.get("share", 0.2))
        floor = max(2 * MIN_RECORDS["missing_reported_at"] / share, 200 * self.scale)
        cand = self._volume_units((KIND_DEPT, KIND_TOWN, KIND_PUBLIC), floor)
        units, n_cases, n_evals = [], 0, 0
        c, e = self.rec.cases, self.rec.evals
        for u in self._pick_units(spec, cand):
            rows = self._unit_cases(u)
            rows = rows[self.rng.random(len(rows)) < share]
            c["reported"][rows] = NA
            e["reported"][rows] = NA
            self.used[rows] = True
            units.append(str(self.plan.at[u, "unit_id"]))
            n_cases += len(rows)
            n_evals += len(rows)
        return {"units": units}


def _iso(seconds: int) -> str:
    return str(np.datetime64(seconds, "s")).replace("T", " ")
