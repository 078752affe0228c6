"""Record-level generation of a synthetic period from a unit-level plan (vectorized with numpy).

Records are held as arrays (timestamps as int64 seconds, codes as small ints) while anomalies are
injected; :func:`to_frames` turns them into the canonical tables at the end.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from haocha_analysis.core.calendar import is_workday
from haocha_analysis.core.config import WORKDAY_END_HOUR, WORKDAY_START_HOUR
from haocha_analysis.core.periods import Period
from haocha_analysis.core.schemas import CHANNEL_CODES, coerce
from haocha_analysis.core.schemas import INVALID_REASONS as INVALID_REASONS_CODES
from haocha_analysis.synth.plan import (
    KIND_CITY,
    KIND_CITY_PUBLIC,
    KIND_DEPT,
    KIND_PUBLIC,
    KIND_TOWN,
    KIND_VILLAGE,
    KIND_WINDOW,
)

NA = np.iinfo(np.int64).min  # missing timestamp
DAY = 86_400
CH = {c: i for i, c in enumerate(CHANNEL_CODES)}
ONSITE = np.array([CH["hall_tablet"], CH["hall_terminal"], CH["paper"]])
REMOTE = np.array([CH["qr_code"], CH["mobile"], CH["sms"], CH["pc"]])

# Channel mix of active first evaluations, by unit kind, over CHANNEL_CODES without system_default:
#            pc    mobile qr    tablet term  paper phone sms
CHANNEL_MIX = {
    KIND_DEPT: [0.05, 0.08, 0.12, 0.52, 0.12, 0.05, 0.01, 0.05],
    KIND_WINDOW: [0.03, 0.05, 0.10, 0.62, 0.12, 0.05, 0.00, 0.03],
    KIND_PUBLIC: [0.06, 0.18, 0.20, 0.15, 0.08, 0.02, 0.22, 0.09],
    KIND_TOWN: [0.03, 0.09, 0.15, 0.45, 0.08, 0.12, 0.01, 0.07],
    KIND_VILLAGE: [0.02, 0.12, 0.25, 0.20, 0.03, 0.28, 0.00, 0.10],
    KIND_CITY: [0.06, 0.09, 0.12, 0.50, 0.12, 0.04, 0.02, 0.05],
    KIND_CITY_PUBLIC: [0.06, 0.18, 0.20, 0.12, 0.08, 0.02, 0.25, 0.09],
}
# Evaluations not linked to a case: mostly remote channels (scanned codes, SMS links, the website).
UNLINKED_MIX = [0.12, 0.22, 0.30, 0.08, 0.04, 0.02, 0.08, 0.14]
UNLINKED_MIX_PUBLIC = [0.08, 0.20, 0.22, 0.05, 0.03, 0.01, 0.27, 0.14]
FOLLOW_UP_MIX = {"mobile": 0.45, "sms": 0.25, "pc": 0.15, "qr_code": 0.15}

# Satisfaction of evaluations made by citizens: 5, 4, 3 (差评 1–2 take a per-unit rate out of the 3s).
SATISFACTION_P = (0.905, 0.068, 0.027)
BAD_SPLIT = (0.55, 0.45)  # shares of 1 (非常不满意) and 2 (不满意) among raw 差评

BAD_COMMENTS = np.array(
    [
        "办理时间太长",
        "窗口人员态度不好",
        "材料要求反复变化",
        "排队时间长",
        "系统卡顿无法提交",
        "不清楚评价怎么操作，点错了",
        "没有办成",
        "电话一直打不通",
        "与办事无关",
        "重复提交了",
    ],
    dtype=object,
)
GOOD_COMMENTS = np.array(
    ["办事效率高", "服务热情", "一次办好", "工作人员很耐心", "流程清楚", "非常方便"], dtype=object
)
SURNAMES = list(
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟"
)
GIVEN = [
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
    "霞",
    "平",
    "刚",
    "桂英",
    "文",
    "华",
    "鑫",
    "婷",
    "晨",
    "雪",
    "琳",
    "宁",
    "倩",
    "凯",
    "昊",
    "晓燕",
    "海燕",
    "建国",
    "玉兰",
]


# --- calendar --------------------------------------------------------------------------------------


@dataclass
class Calendar:
    """Working days around a period, as seconds since the epoch of each day's midnight."""

    period: Period
    day_s: np.ndarray  # midnight of every working day from 60 days before the start to the end
    in_period: np.ndarray  # boolean, working day inside the period
    start_s: int
    end_s: int  # first second after the period

    @classmethod
    def build(cls, period: Period, lead_days: int = 60) -> Calendar:
        """Working days from ``lead_days`` before the period start to its end."""
        first = period.start - timedelta(days=lead_days)
        days = [first + timedelta(days=i) for i in range((period.end - first).days + 1)]
        work = [d for d in days if is_workday(d)]
        day_s = np.array([(d - date(1970, 1, 1)).days * DAY for d in work], dtype=np.int64)
        start_s = (period.start - date(1970, 1, 1)).days * DAY
        end_s = (period.end - date(1970, 1, 1)).days * DAY + DAY
        return cls(period, day_s, day_s >= start_s, start_s, end_s)

    def period_days(self) -> np.ndarray:
        """Midnights of the working days inside the period."""
        return self.day_s[self.in_period]


def _tod_minutes() -> tuple[np.ndarray, np.ndarray]:
    """Minute-of-day grid of office hours and its weights (busy mornings, quiet lunch)."""
    minutes = np.arange(int(WORKDAY_START_HOUR * 60), int(WORKDAY_END_HOUR * 60))
    w = np.ones(len(minutes))
    w[(minutes >= 9 * 60) & (minutes < 11 * 60 + 30)] = 1.4
    w[(minutes >= 12 * 60) & (minutes < 13 * 60 + 30)] = 0.35
    w[minutes >= 17 * 60] = 0.6
    return minutes, w / w.sum()


TOD_MINUTES, TOD_WEIGHTS = _tod_minutes()


def office_times(rng: np.random.Generator, days_s: np.ndarray, n: int, day_weights: np.ndarray | None = None):
    """``n`` instants in office hours on the given working days."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    day = rng.choice(len(days_s), size=n, p=day_weights)
    minute = rng.choice(TOD_MINUTES, size=n, p=TOD_WEIGHTS)
    return days_s[day] + minute.astype(np.int64) * 60 + rng.integers(0, 60, n)


def day_weights(cal: Calendar) -> np.ndarray:
    """Working-day weights inside the period: Monday peak, quieter 调休 weekend days, mild upward trend."""
    days = cal.period_days()
    weekday = ((days // DAY) + 3) % 7  # 1970-01-01 was a Thursday
    w = np.ones(len(days))
    w[weekday == 0] = 1.15
    w[weekday == 4] = 0.92
    w[weekday >= 5] = 0.8
    w *= np.linspace(0.95, 1.05, len(days))
    return w / w.sum()


# --- helpers ---------------------------------------------------------------------------------------


def sample_rows(rng: np.random.Generator, group: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """For each row, draw a category from its group's probability row (vectorized)."""
    k = probs.shape[1]
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0 + 1e-9
    flat = (cum + np.arange(len(probs))[:, None]).ravel()
    pos = np.searchsorted(flat, group + rng.random(len(group)), side="right")
    # A draw within 1e-9 of its group's start lands before the group (the previous group's last bound
    # is g + 1e-9), one rounded up to g + 1 after it: both are the group's edge category, not -1 or k
    # (a missing channel: one in ~10^9 rows, seen at scale 4).
    return np.clip(pos - group.astype(np.int64) * k, 0, k - 1).astype(np.int64)


def rank_within(group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random rank 0..n-1 of each row inside its group."""
    key = rng.random(len(group))
    order = np.lexsort((key, group))
    sorted_groups = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(group)]))
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - first
    return rank


def lognormal_delay(rng, n: int, median_s: float, sigma: float, lo: float, hi: float) -> np.ndarray:
    """Delays (seconds) around a median, clipped."""
    return np.clip(np.exp(rng.normal(np.log(median_s), sigma, n)), lo, hi).astype(np.int64)


def channel_delays(rng: np.random.Generator, channel: np.ndarray, finished: np.ndarray) -> np.ndarray:
    """Seconds from a case's end to its evaluation, by channel."""
    n = len(channel)
    delay = np.zeros(n, dtype=np.int64)
    spec = {
        "hall_tablet": (45, 0.8, 3, 900),
        "hall_terminal": (90, 0.9, 5, 1800),
        "paper": (3600, 1.0, 60, 2 * DAY),
        "qr_code": (900, 1.5, 20, 10 * DAY),
        "mobile": (6 * 3600, 1.3, 60, 15 * DAY),
        "pc": (8 * 3600, 1.3, 60, 15 * DAY),
        "sms": (5 * 3600, 1.2, 60, 10 * DAY),
        "phone": (1.5 * DAY, 0.5, 2 * 3600, 10 * DAY),
    }
    for name, (med, sig, lo, hi) in spec.items():
        m = channel == CH[name]
        delay[m] = lognormal_delay(rng, int(m.sum()), med, sig, lo, hi)
    # System default evaluations: the nightly job 7 days after the case finished (1:00–3:00).
    m = channel == CH["system_default"]
    midnight = finished[m] // DAY * DAY
    delay[m] = midnight + 7 * DAY + 3600 + rng.integers(0, 7200, int(m.sum())) - finished[m]
    return delay


def cap_to_period(rng, after: np.ndarray, t: np.ndarray, end_s: int) -> np.ndarray:
    """Instants at or beyond the period end are redrawn uniformly between ``after`` and the end."""
    over = t >= end_s
    if over.any():
        span = np.maximum(end_s - 1 - after[over], 1)
        t = t.copy()
        t[over] = after[over] + 1 + (rng.random(int(over.sum())) * (span - 1)).astype(np.int64)
    return np.minimum(t, end_s - 1)


def person_keys(namespace: str, idx: np.ndarray) -> np.ndarray:
    """Hashed evaluator keys: the first 32 hex digits of sha256 of an invented person id.

    Only the distinct persons of a period are hashed (one short loop over them, not over records).
    """
    sha = hashlib.sha256
    prefix = f"{namespace}:"
    return np.array([sha(f"{prefix}{i}".encode()).hexdigest()[:32] for i in idx.tolist()], dtype=object)


# --- records ---------------------------------------------------------------------------------------


@dataclass
class Records:
    """A period's records as arrays; indices refer to the plan's units and the catalogue."""

    cases: dict[str, np.ndarray]
    evals: dict[str, np.ndarray]
    operators: np.ndarray  # operator labels (object)
    op_offset: np.ndarray  # per unit: first operator index
    op_count: np.ndarray  # per unit: number of operators
    staff_person_base: int  # person index of operator j's own key = base + j
    bad_valid: np.ndarray | None = None  # per evaluation row: True when a raw 差评 is judged valid
    notes: dict = field(default_factory=dict)


def make_operators(plan: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Invented window staff (窗口经办人) per unit: a name and a code."""
    volume = (plan["cases"].to_numpy() + plan["base_volume"].to_numpy()).astype(float)
    count = np.clip(np.round(np.sqrt(volume / 40.0)), 1, 40).astype(np.int64)
    offset = np.concatenate([[0], np.cumsum(count)[:-1]])
    labels = []
    for uid, n in zip(plan["unit_id"], count, strict=True):
        code = uid.split("-", 1)[-1].replace("-", "").upper()
        h = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:4], "little")
        for j in range(n):
            name = SURNAMES[(h + 7 * j) % len(SURNAMES)] + GIVEN[(h // 7 + 11 * j) % len(GIVEN)]
            labels.append(f"{name}({code}-{j + 1:02d})")
    return np.array(labels, dtype=object), offset, count


def case_rows(
    rng: np.random.Generator,
    unit: np.ndarray,
    accepted: np.ndarray,
    finished: np.ndarray,
    reported: np.ndarray,
    catalogue: dict[str, np.ndarray],
    population: int,
    operator_plan: pd.DataFrame,
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A period's cases from their units and times: matter, applicant and window staff drawn.

    A few matters of a unit's catalogue dominate; a few applicants (agents, companies) have several
    cases; each case is handled by one of its unit's staff (:func:`make_operators` of
    ``operator_plan``). Both generators (this module's and :mod:`.realistic`) draw in this order.

    Returns:
        The cases' columns, and the staff (labels, offset and count per unit).
    """
    n = len(unit)
    count = catalogue["count"][unit]
    within = np.minimum((count * rng.random(n) ** 2.5).astype(np.int64), np.maximum(count - 1, 0))
    matter = catalogue["offset"][unit] + within
    frequent = rng.random(n) < 0.05
    person = np.where(frequent, rng.integers(0, max(population // 50, 1), n), rng.integers(0, population, n))
    operators, op_offset, op_count = make_operators(operator_plan)
    operator = (op_offset[unit] + (rng.random(n) * op_count[unit]).astype(np.int64)).astype(np.int32)
    cases = {
        "unit": unit,
        "matter": matter,
        "accepted": accepted,
        "finished": finished,
        "reported": reported,
        "person": person,
        "operator": operator,
    }
    return cases, (operators, op_offset, op_count)


def generate_records(
    plan: pd.DataFrame,
    period: Period,
    catalogue: dict[str, np.ndarray],
    rng: np.random.Generator,
    params: dict,
    population: int,
    unit_rates: dict[str, np.ndarray],
) -> Records:
    """Cases, first evaluations, unlinked evaluations and follow-ups for one period."""
    cal = Calendar.build(period)
    n_units = len(plan)
    kinds = plan["kind"].to_numpy()
    cases_per_unit = plan["cases"].to_numpy().astype(np.int64)
    unit = np.repeat(np.arange(n_units, dtype=np.int32), cases_per_unit)
    n = len(unit)
    dw = day_weights(cal)
    pdays = cal.period_days()

    # --- cases ---
    finished = office_times(rng, pdays, n, dw)
    quick = rng.random(n) < 0.6  # 即办件: accepted minutes before; 承诺件: working days before
    opening = finished // DAY * DAY + int(WORKDAY_START_HOUR * 3600)
    accepted = np.minimum(
        np.maximum(finished - lognormal_delay(rng, n, 900, 0.8, 60, 4 * 3600), opening), finished - 30
    )
    slow = ~quick
    if slow.any():
        day_idx = np.searchsorted(cal.day_s, finished[slow] // DAY * DAY)
        back = np.minimum(rng.geometric(0.18, int(slow.sum())), day_idx)
        acc_day = cal.day_s[np.maximum(day_idx - back, 0)]
        minute = rng.choice(TOD_MINUTES, size=int(slow.sum()), p=TOD_WEIGHTS)
        acc = acc_day + minute.astype(np.int64) * 60 + rng.integers(0, 60, int(slow.sum()))
        accepted[slow] = np.minimum(acc, finished[slow] - 60)
    reported = finished + rng.integers(5, 291, n)
    if (catalogue["count"][unit] == 0).any():
        raise ValueError("a unit with cases has no catalogue matter")
    cases, (operators, op_offset, op_count) = case_rows(
        rng, unit, accepted, finished, reported, catalogue, population, plan
    )
    person, operator = cases["person"], cases["operator"]

    # --- first evaluations of cases ---
    known = plan["active_known"].to_numpy()
    active_rank = rank_within(unit, rng)
    active = (active_rank < plan["active"].to_numpy()[unit]).astype(np.int8)
    active[~known[unit]] = -1
    mix = np.array([CHANNEL_MIX.get(k, CHANNEL_MIX[KIND_DEPT]) for k in kinds], dtype=float)
    onsite_mult = np.exp(rng.normal(0, 0.35, n_units))
    mix[:, ONSITE] *= onsite_mult[:, None]
    channel = sample_rows(rng, unit, mix).astype(np.int8)
    channel[active == 0] = CH["system_default"]
    sat = _satisfaction(rng, unit, unit_rates["bad"])
    sat[active == 0] = 5
    evaluated = finished + channel_delays(rng, channel, finished)
    evaluated = cap_to_period(rng, finished, evaluated, cal.end_s)
    first = {
        "case": np.arange(n, dtype=np.int64),
        "unit": unit,
        "channel": channel,
        "sat": sat,
        "evaluated": evaluated,
        "attempt": np.ones(n, dtype=np.int8),
        "active": active,
        "person": person,
        "operator": operator,
    }

    # --- evaluations not linked to a case ---
    un_per_unit = plan["unlinked"].to_numpy().astype(np.int64)
    u_unit = np.repeat(np.arange(n_units, dtype=np.int32), un_per_unit)
    m = len(u_unit)
    visit = office_times(rng, pdays, m, dw)
    umix = np.array(
        [UNLINKED_MIX_PUBLIC if k in (KIND_PUBLIC, KIND_CITY_PUBLIC) else UNLINKED_MIX for k in kinds]
    )
    u_channel = sample_rows(rng, u_unit, umix).astype(np.int8)
    u_eval = cap_to_period(rng, visit, visit + channel_delays(rng, u_channel, visit), cal.end_s)
    u_active = np.where(known[u_unit], 1, -1).astype(np.int8)
    unlinked = {
        "case": np.full(m, -1, dtype=np.int64),
        "unit": u_unit,
        "channel": u_channel,
        "sat": _satisfaction(rng, u_unit, unit_rates["bad"]),
        "evaluated": u_eval,
        "attempt": np.ones(m, dtype=np.int8),
        "active": u_active,
        "person": rng.integers(0, population, m),
        "operator": np.full(m, -1, dtype=np.int32),
    }

    # --- follow-up evaluations (attempt 2) ---
    rate = float(params.get("followup_rate", 0.01))
    eligible = np.flatnonzero(evaluated < cal.end_s - 2 * DAY)
    k = min(round(rate * n), len(eligible))
    fu_case = np.sort(rng.choice(eligible, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
    fu_after = evaluated[fu_case]
    fu_eval = fu_after + lognormal_delay(rng, k, 3 * DAY, 1.0, 3600, 30 * DAY)
    fu_eval = cap_to_period(rng, fu_after, fu_eval, cal.end_s)
    names, probs = zip(*FOLLOW_UP_MIX.items(), strict=True)
    fu_channel = np.array([CH[c] for c in names], dtype=np.int8)[rng.choice(len(names), k, p=probs)]
    fu_sat = _satisfaction(rng, unit[fu_case], unit_rates["bad"] * 4)  # follow-ups are more critical
    followups = {
        "case": fu_case.astype(np.int64),
        "unit": unit[fu_case],
        "channel": fu_channel,
        "sat": fu_sat,
        "evaluated": fu_eval,
        "attempt": np.full(k, 2, dtype=np.int8),
        "active": np.where(known[unit[fu_case]], 1, -1).astype(np.int8),
        "person": person[fu_case],
        "operator": operator[fu_case],
    }

    evals = {key: np.concatenate([first[key], unlinked[key], followups[key]]) for key in first}
    evals["reported"] = evals["evaluated"] + rng.integers(1, 241, len(evals["case"]))
    evals["comment"] = _comments(rng, evals["sat"], evals["active"])
    evals["kind"] = np.concatenate([np.zeros(n, np.int8), np.ones(m, np.int8), np.full(k, 2, np.int8)])
    return Records(cases, evals, operators, op_offset, op_count, staff_person_base=population + 10_000_000)


def _satisfaction(rng: np.random.Generator, unit: np.ndarray, bad_rate: np.ndarray) -> np.ndarray:
    p5, p4, p3 = SATISFACTION_P
    bad = np.clip(bad_rate, 0.0, 0.5)
    probs = np.column_stack(
        [
            bad * BAD_SPLIT[0],
            bad * BAD_SPLIT[1],
            np.maximum(p3 - bad, 0.002),
            np.full_like(bad, p4),
            np.full_like(bad, p5),
        ]
    )
    return (sample_rows(rng, unit.astype(np.int64), probs) + 1).astype(np.int8)


def _comments(rng: np.random.Generator, sat: np.ndarray, active: np.ndarray) -> np.ndarray:
    out = np.full(len(sat), -1, dtype=np.int16)
    bad = sat <= 2
    out[bad] = rng.integers(0, len(BAD_COMMENTS), int(bad.sum()))
    good = (sat == 5) & (active != 0) & (rng.random(len(sat)) < 0.004)
    out[good] = 100 + rng.integers(0, len(GOOD_COMMENTS), int(good.sum()))
    return out


# --- frames ----------------------------------------------------------------------------------------


def _ts(seconds: np.ndarray) -> np.ndarray:
    us = np.where(seconds == NA, NA, seconds * 1_000_000)
    return us.view("datetime64[us]")


def _str(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    return pd.Series(pd.array(values, dtype="str"))


def _take(table: np.ndarray, idx: np.ndarray) -> pa.Array:
    """Strings of ``table`` at ``idx`` (-1 = missing), as an Arrow array."""
    arr = pa.array(table, type=pa.string())
    indices = pa.array(idx.astype(np.int64), mask=idx < 0)
    return pc.take(arr, indices)


def _categorical(codes: np.ndarray, categories: list[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int32), categories=pd.Index(categories, dtype="str"))


def to_frames(
    rec: Records,
    plan: pd.DataFrame,
    period: Period,
    catalogue: dict[str, np.ndarray],
    namespace: str,
    rect: dict,
) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
    """The canonical tables, sorted by time, and the row order used (to map injected rows to ids)."""
    c, e = rec.cases, rec.evals
    unit_ids = plan["unit_id"].tolist()
    case_order = np.argsort(c["finished"], kind="stable")
    case_pos = np.empty(len(case_order), dtype=np.int64)
    case_pos[case_order] = np.arange(len(case_order))
    codes = plan["region_code"].to_numpy(dtype=object)
    region = np.where(codes == "", rect.get("city_region", "370300"), codes).astype(object)
    cu = c["unit"][case_order]
    fin = c["finished"][case_order]
    day = pc.strftime(pa.array(_ts(fin)), format="%Y%m%d")
    seq = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, len(cu) + 1)), pa.string()), 8, "0")
    case_ids = pc.binary_join_element_wise(_take(region, cu), day, seq, "")
    systems = sorted(set(catalogue["system"].tolist()))
    sys_code = {s: i for i, s in enumerate(systems)}
    matter_sys = np.array([sys_code[s] for s in catalogue["system"]], dtype=np.int32)
    unit_region = np.where(codes == "", None, codes).astype(object)
    cases = pd.DataFrame(
        {
            "case_id": _str(case_ids),
            "unit_id": _categorical(cu, unit_ids),
            "matter_code": _str(_take(catalogue["code"], c["matter"][case_order])),
            "matter_name": _str(_take(catalogue["name"], c["matter"][case_order])),
            "region_code": _str(_take(unit_region, cu)),
            "accepted_at": _ts(c["accepted"][case_order]),
            "finished_at": _ts(fin),
            "reported_at": _ts(c["reported"][case_order]),
            "source_system": _categorical(matter_sys[c["matter"][case_order]], systems),
        }
    )

    eval_order = np.argsort(e["evaluated"], kind="stable")
    ne = len(eval_order)
    label = period.label.replace("-", "").replace(".", "")
    eseq = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, ne + 1)), pa.string()), 9, "0")
    eval_ids = pc.binary_join_element_wise(pa.scalar(f"PJ{label}"), eseq, "")
    ecase = e["case"][eval_order]
    linked = ecase >= 0
    case_idx = np.where(linked, case_pos[np.where(linked, ecase, 0)], -1)
    person = e["person"][eval_order]
    uniq, inv = np.unique(person, return_inverse=True)
    keys = person_keys(namespace, uniq)
    comments = np.concatenate(
        [BAD_COMMENTS, np.full(100 - len(BAD_COMMENTS), "", dtype=object), GOOD_COMMENTS]
    )
    active = e["active"][eval_order]
    evaluations = pd.DataFrame(
        {
            "eval_id": _str(eval_ids),
            "case_id": _str(pc.take(case_ids, pa.array(case_idx, mask=case_idx < 0))),
            "unit_id": _categorical(e["unit"][eval_order], unit_ids),
            "channel": _categorical(e["channel"][eval_order], CHANNEL_CODES),
            "satisfaction": e["sat"][eval_order].astype(np.int8),
            "evaluated_at": _ts(e["evaluated"][eval_order]),
            "reported_at": _ts(e["reported"][eval_order]),
            "attempt": e["attempt"][eval_order].astype(np.int8),
            "active": pd.array(np.where(active < 0, pd.NA, active == 1), dtype="boolean"),
            "evaluator_key": _str(_take(keys, inv.astype(np.int64))),
            "operator": _str(_take(rec.operators, e["operator"][eval_order])),
            "comment": _str(_take(comments, e["comment"][eval_order].astype(np.int64))),
        }
    )

    # 差评核实整改: every raw 差评 (first or follow-up) was checked; the default verdict is invalid.
    bad_rows = np.flatnonzero(evaluations["satisfaction"].to_numpy() <= 2)
    valid = (
        rec.bad_valid[eval_order][bad_rows] if rec.bad_valid is not None else np.zeros(len(bad_rows), bool)
    )
    rectifications = rectification_rows(evaluations.iloc[bad_rows], valid, rect)
    tables = {
        "cases": coerce(cases, "cases"),
        "evaluations": coerce(evaluations, "evaluations"),
        "rectifications": coerce(rectifications, "rectifications"),
    }
    return tables, {"case_pos": case_pos, "eval_order": eval_order}


# 无效原因 drawn for invalid 差评: the code list (core.schemas.INVALID_REASONS) without 其他.
INVALID_REASONS = INVALID_REASONS_CODES[:4]


def rectification_rows(bad: pd.DataFrame, valid: np.ndarray, rect: dict) -> pd.DataFrame:
    """One 核实整改 row per raw 差评: invalid (with a reason) unless marked valid.

    The steps keep their order: verified (40 min – 1 day after the evaluation; an invalid verdict is
    approved an hour later), rectified (valid only, 1 – 18 days, or 25 days when late), revisited
    (valid only, 2 hours – 3 days after the rectification).
    """
    rng = np.random.default_rng(rect.get("seed", 0))
    n = len(bad)
    ev = bad["evaluated_at"].to_numpy().astype("datetime64[s]").astype(np.int64)
    reasons = np.array(INVALID_REASONS, dtype=object)[
        rng.choice(4, n, p=rect.get("invalid_reason_p", [0.45, 0.2, 0.25, 0.1]))
    ]
    offset = rng.integers(2 * 3600, 3 * DAY, n)
    verified = ev + offset // 3
    approved = np.where(valid, NA, verified + 3600)
    deadline = (
        ev // DAY + 22
    ) * DAY - 1  # 15 working days (config.RECTIFICATION_WORKING_DAYS) ≈ 3 weeks, end of day
    late = rng.random(n) < rect.get("late_share", 0.1)
    rectified = np.where(valid, ev + np.where(late, 25 * DAY, rng.integers(DAY, 18 * DAY, n)), NA)
    revisited = np.where(valid, rectified + offset, NA)
    follow = np.where(
        valid, rng.choice(np.array(["满意", "基本满意", "不满意"], dtype=object), n, p=[0.7, 0.2, 0.1]), None
    )
    return pd.DataFrame(
        {
            "eval_id": bad["eval_id"].to_numpy(),
            "verdict": np.where(valid, "valid", "invalid"),
            "invalid_reason": np.where(valid, None, reasons),
            "revisited_at": _ts(revisited),
            "deadline": _ts(deadline),
            "rectified_at": _ts(rectified),
            "follow_up": follow,
            "verified_at": _ts(verified),
            "approved_at": _ts(approved),
        }
    )
