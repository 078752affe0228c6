"""Unit-level plan of a synthetic period: cases, unlinked and active evaluations per unit.

The plan says how many cases, evaluations not linked to cases and active first evaluations every
unit gets (docs/synthetic-model.md).

With targets (the published annex figures of a city and period), the plan reproduces every annex cell
exactly at scale 1; without them (another city, earlier quarters) volumes are drawn plausibly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from haocha_analysis.core.config import SCENARIOS_DIR
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.reference import CityReference, normalize_name

# Unit kinds: what a unit does decides its channels, active share and volume.
KIND_DISTRICT = "district"  # the 区县 row itself: no records
KIND_DEPT = "district_dept"
KIND_WINDOW = "window"  # a district department outside the 附件3 categories (综合受理窗口)
KIND_PUBLIC = "public_service"
KIND_TOWN = "town"
KIND_VILLAGE = "village"
KIND_CITY = "city_dept"
KIND_CITY_PUBLIC = "city_public"

# Beta(a, b) of the share of a unit's cases whose first evaluation is active (the citizen evaluated).
ACTIVE_BETA = {
    KIND_DEPT: (2.0, 2.0),
    KIND_WINDOW: (2.0, 2.5),
    KIND_PUBLIC: (1.5, 3.0),
    KIND_TOWN: (2.0, 2.0),
    KIND_VILLAGE: (1.2, 2.5),
    KIND_CITY: (1.5, 2.0),
    KIND_CITY_PUBLIC: (1.5, 3.0),
}
# Planned active shares come in two clearly separated bands, so that whether a unit's 主动评价率 is
# low never hinges on noise around the detector's limit (anomalies.Settings.low_active_max_share, 5%):
# every unit is planned at ACTIVE_NORMAL_MIN (twice the limit) or more, unless the published figures
# force its district (or itself, for a city department) lower; a scenario's low_active units are
# planned at LOW_ACTIVE_SHARE, well under ACTIVE_CLEARLY_LOW (a fifth of the limit).
ACTIVE_NORMAL_MIN = 0.10
ACTIVE_CLEARLY_LOW = 0.01
LOW_ACTIVE_SHARE = 0.002
# A low_active injection needs a unit with at least this many cases at any scale: with ≤ 1% active
# among 300 cases the detector's rule (P(X ≤ k | n, 5%) < 1%) holds by a wide margin.
LOW_ACTIVE_MIN_CASES = 300
# zero_data / low_volume injections: the unit's usual volume at least this many records at any scale
# (the history-based low-volume check needs ≥ 10 expected; cutting 40 to ~3 is beyond chance).
PLAN_INJECTION_MIN_RECORDS = 40.0
# Dirichlet concentration and share of units left at zero when a cell total is spread over its units.
SPLIT = {"public": (0.8, 0.2), "towns": (1.5, 0.08), "villages": (0.7, 0.22)}
# Typical quarterly evaluations of a unit when no target is given (median, lognormal sigma).
GENERIC_VOLUME = {
    KIND_DEPT: (900, 1.6),
    KIND_WINDOW: (3000, 0.8),
    KIND_PUBLIC: (1200, 1.2),
    KIND_TOWN: (1500, 0.9),
    KIND_VILLAGE: (250, 1.1),
    KIND_CITY: (2500, 1.8),
    KIND_CITY_PUBLIC: (1500, 1.5),
}


def unit_kinds(ref: CityReference) -> pd.Series:
    """Kind of every reference unit, indexed like ``ref.units``."""
    u = ref.units
    kind = pd.Series(KIND_DEPT, index=u.index, dtype=object)
    cat = u["category"].fillna("")
    kind[(u["level"] == "district_dept") & (cat == "")] = KIND_WINDOW
    kind[(u["level"] == "district_dept") & u["public_service"]] = KIND_PUBLIC
    kind[u["level"] == "town"] = KIND_TOWN
    kind[u["level"] == "village"] = KIND_VILLAGE
    kind[u["level"] == "city_dept"] = KIND_CITY
    kind[(u["level"] == "city_dept") & u["public_service"]] = KIND_CITY_PUBLIC
    kind[u["level"] == "district"] = KIND_DISTRICT
    return kind


def scaled(x: float, scale: float) -> int:
    """Round a published count times the scale (half up); scale 1 gives the count itself."""
    return int(np.floor(float(x) * scale + 0.5))


def apportion(rng: np.random.Generator, total: int, quotas: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total``, each the floor or ceiling of its (fractional) quota.

    Largest remainders get the leftover units (ties in random order); ``quotas`` must sum to
    ``total``. A unit's count is therefore within 1 of its quota, never above its cap when the quota
    is at most the cap.
    """
    quotas = np.asarray(quotas, dtype=float)
    out = np.floor(quotas).astype(np.int64)
    left = int(total) - int(out.sum())
    if left > 0:
        frac = quotas - out
        order = np.lexsort((rng.random(len(quotas)), -frac))
        out[order[:left]] += 1
    return out


def district_active(
    rng: np.random.Generator, total: int, cases: np.ndarray, propensity: np.ndarray, low: np.ndarray
) -> np.ndarray:
    """Active first evaluations per unit of one district: exactly ``total``, in two clear bands.

    The ``low`` units (a scenario's low_active) get LOW_ACTIVE_SHARE of their cases. The others get
    shares r = clip(λ·propensity, floor, 1) with λ solved so that the counts add up to ``total``,
    where floor = ACTIVE_NORMAL_MIN, or the district's remaining share when that is lower (then the
    published total itself forces every unit below the normal band, and each gets that share).
    Counts are the shares × cases rounded by largest remainder, so a unit's share is within one case
    of its planned share (no binomial noise into the band around the detector's limit).
    """
    cases = np.asarray(cases, dtype=np.int64)
    low = np.asarray(low, dtype=bool)
    out = np.zeros(len(cases), dtype=np.int64)
    if len(cases) == 0 or total <= 0:
        return out
    out[low] = np.minimum(np.floor(cases[low] * LOW_ACTIVE_SHARE + 0.5).astype(np.int64), cases[low])
    rest = int(total) - int(out.sum())
    normal = ~low
    n = cases[normal].astype(float)
    if rest < 0 or rest > n.sum():
        raise ValueError(f"cannot place {total} active evaluations in units holding {cases.sum()} cases")
    share = rest / n.sum() if n.sum() else 0.0
    floor = min(ACTIVE_NORMAL_MIN, share)
    p = np.maximum(np.asarray(propensity, dtype=float)[normal], 1e-6)

    def placed(lam: float) -> float:
        return float((n * np.clip(lam * p, floor, 1.0)).sum())

    lo_l, hi_l = 0.0, 1.0 / p.min()
    for _ in range(100):  # bisection: placed() is continuous and non-decreasing in λ
        mid = (lo_l + hi_l) / 2
        lo_l, hi_l = (mid, hi_l) if placed(mid) < rest else (lo_l, mid)
    r = np.clip(hi_l * p, floor, 1.0)
    quotas = n * r
    quotas *= rest / quotas.sum() if quotas.sum() else 0.0
    quotas = np.minimum(quotas, n)
    # Rescaling may have pushed a few quotas over their cases: hand the excess to units with room.
    excess = rest - quotas.sum()
    while excess > 1e-6:
        room = n - quotas
        add = np.minimum(room, excess * room / room.sum())
        quotas += add
        excess = rest - quotas.sum()
    out[normal] = apportion(rng, rest, quotas)
    return out


def find_targets(city_key: str, period_label: str) -> Path | None:
    """The published-figures file for a city and period, if the package has one."""
    path = SCENARIOS_DIR / f"targets-{city_key}-{period_label}.yml"
    return path if path.exists() else None


def load_targets(path: Path) -> dict:
    """Read a targets file (see targets-zibo-2023Q2.yml)."""
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _base_frame(ref: CityReference) -> pd.DataFrame:
    u = ref.units
    plan = pd.DataFrame(
        {
            "unit_id": u["unit_id"].to_numpy(),
            "unit_name": u["unit_name"].to_numpy(),
            "level": u["level"].to_numpy(),
            "kind": unit_kinds(ref).to_numpy(),
            "district": u["district"].fillna("").to_numpy(),
            "cell": "",
            "region_code": u["region_code"].fillna("").to_numpy() if "region_code" in u else "",
        }
    )
    for col in ("cases", "unlinked", "active"):
        plan[col] = np.zeros(len(plan), dtype=np.int64)
    plan["active_known"] = True
    plan["base_volume"] = 0.0
    plan["active_p"] = 0.0
    plan["had_history"] = False
    plan["first_quarter"] = 0  # quarters before the period: records exist from this history offset on
    plan["target_zero"] = False  # the published figure of the unit's row or cell is 0
    return plan


def target_plan(
    ref: CityReference, targets: dict, scale: float, rng: np.random.Generator, scen: dict
) -> pd.DataFrame:
    """Plan reproducing the published annexes: see docs/synthetic-model.md, "The default model"."""
    plan = _base_frame(ref)
    kinds = plan["kind"].to_numpy()
    base = scen.get("baseline", {})
    extra = float(base.get("extra_unlinked_share", 0.02))
    inj = scen.get("anomalies") or {}
    low_vol = inj.get("low_volume") or {}
    zero = inj.get("zero_data") or {}
    low_act = inj.get("low_active") or {}

    a, b = np.array([ACTIVE_BETA.get(k, (1, 1)) for k in kinds]).T
    plan["active_p"] = rng.beta(a, b)
    by_name = {normalize_name(n): i for i, n in enumerate(plan["unit_name"])}

    districts = ref.level("district")["unit_name"].tolist()
    dist_targets = {normalize_name(k): v for k, v in targets["districts"].items()}
    cat_targets = targets.get("district_departments", {})
    categories = ref.categories
    missing = [c for c in cat_targets if c not in categories]
    if missing:
        raise HaochaInputError(
            f"目标数据中的区直部门类别不在参考数据中：{'、'.join(missing)}", fix="核对 units.csv 的 category"
        )

    # Phase A: every annex cell, its units and their uneven shares (expected volumes).
    dlevel = plan["level"].to_numpy()
    cats = ref.units["category"].fillna("").to_numpy()
    cells: list[dict] = []
    district_t: dict[str, tuple[int, int]] = {}
    for di, dname in enumerate(districts):
        t = dist_targets.get(normalize_name(dname))
        if t is None:
            raise HaochaInputError(
                f"目标数据缺少区县“{dname}”", fix="targets 文件的 districts 应列出全部区县"
            )
        in_d = plan["district"].to_numpy() == dname
        district_t[dname] = (scaled(t["cases"], scale), scaled(t["active"], scale))
        specs = [
            (cat, np.flatnonzero(in_d & (dlevel == "district_dept") & (cats == cat)), values[di])
            for cat, values in cat_targets.items()
        ]
        specs += [
            (key, np.flatnonzero(in_d & (dlevel == level)), t[key])
            for level, key in (("town", "towns"), ("village", "villages"))
        ]
        for name, idx, value in specs:
            total = scaled(value, scale)
            if len(idx) == 0:
                if total:
                    raise HaochaInputError(f"{dname} 的“{name}”有目标数 {total}，但参考数据中没有对应单位")
                continue
            split = name if name in ("towns", "villages") else ("public" if len(idx) > 1 else None)
            if split is None:
                raw, keep = np.ones(1), np.ones(1, dtype=bool)
            else:
                alpha, zero_share = SPLIT[split]
                raw = rng.dirichlet(np.full(len(idx), alpha)) if len(idx) > 1 else np.ones(1)
                keep = rng.random(len(idx)) >= zero_share
                if not keep.any():
                    keep[int(np.argmax(raw))] = True
            plan.loc[idx, "cell"] = name
            plan.loc[idx, "base_volume"] = raw / raw.sum() * total
            plan.loc[idx, "target_zero"] = value == 0
            cells.append(
                {
                    "district": dname,
                    "name": name,
                    "idx": idx,
                    "total": total,
                    "raw": raw,
                    "keep": keep,
                    "multi": split is not None,
                }
            )

    # Phase B: the scenario's zero_data and low_volume units, among units of multi-unit cells (towns,
    # villages, public services) with a volume worth noticing; their siblings take their share.
    pos = {u: i for i, u in enumerate(plan["unit_id"])}
    floor = max(float(zero.get("min_expected", 40)) * scale, PLAN_INJECTION_MIN_RECORDS)
    cand = np.array(
        [
            i
            for c in cells
            if c["multi"]
            for i, k, r in zip(c["idx"], c["keep"], c["raw"], strict=True)
            if k and r / c["raw"].sum() * c["total"] >= floor
        ],
        dtype=np.int64,
    )
    picks = rng.permutation(cand)
    n_zero, n_low = int(zero.get("units", 0)), int(low_vol.get("units", 0))
    forced_zero = {pos[u] for u in zero.get("unit_ids") or []} or set(picks[:n_zero].tolist())
    forced_low = {pos[u] for u in low_vol.get("unit_ids") or []} or set(
        picks[n_zero : n_zero + n_low].tolist()
    )
    low_factor = float(low_vol.get("factor", 0.08))
    plan["injected_zero"] = plan.index.isin(list(forced_zero))
    plan["injected_low_volume"] = plan.index.isin(list(forced_low))

    # Phase C: counts per unit; per district the unlinked evaluations U_d and the window's cases O_d.
    active_targets: dict[str, int] = {}
    for dname in districts:
        c_d, a_d = district_t[dname]
        in_d = plan["district"].to_numpy() == dname
        window = np.flatnonzero(in_d & (kinds == KIND_WINDOW))
        units_l, counts_l = [], []
        for c in (c for c in cells if c["district"] == dname):
            idx, total = c["idx"], c["total"]
            w = c["raw"] * c["keep"]
            w = np.where(np.isin(idx, list(forced_zero)), 0.0, w)
            w = w * np.where(np.isin(idx, list(forced_low)), low_factor, 1.0)
            if total and w.sum() <= 0:
                w = c["raw"] * ~np.isin(idx, list(forced_zero))
                w = w if w.sum() > 0 else c["raw"]
            counts = rng.multinomial(total, w / w.sum()) if total else np.zeros(len(idx), dtype=np.int64)
            units_l.append(idx)
            counts_l.append(counts)
        units_d = np.concatenate(units_l) if units_l else np.array([], dtype=int)
        n_u = np.concatenate(counts_l) if counts_l else np.array([], dtype=np.int64)
        gap = int(n_u.sum()) - c_d
        e_d = scaled(extra * c_d, 1.0) if len(window) else 0
        e_d = max(0, min(e_d, c_d - max(-gap, 0)))
        o_d, u_d = max(-gap, 0) + e_d, max(gap, 0) + e_d
        if o_d and not len(window):
            raise HaochaInputError(
                f"{dname}：附件1 办件数比附件3、附件4 合计多 {o_d}，"
                "但参考数据中没有附件3 类别之外的单位（综合受理窗口）",
                fix="在 units.csv 中为该区县加一个 category 为空的 district_dept 单位",
            )
        if o_d > c_d:
            raise HaochaInputError(f"{dname}：目标数不一致（附件1 办件数 {c_d} 小于所需窗口办件 {o_d}）")
        unlinked = rng.multivariate_hypergeometric(n_u, u_d) if u_d else np.zeros_like(n_u)
        plan.loc[units_d, "unlinked"] = unlinked
        plan.loc[units_d, "cases"] = n_u - unlinked
        if len(window):
            w0 = window[:1]
            plan.loc[w0, "cases"] = o_d
            plan.loc[w0, "cell"] = "window"
            plan.loc[w0, "base_volume"] = max(o_d, 1)
        active_targets[dname] = a_d

    # Exactly a_d active first evaluations per district, spread unevenly over the district's units
    # but every unit clearly normal (≥ ACTIVE_NORMAL_MIN) unless the district total forces less;
    # the scenario's low_active units get almost none (their district total is unchanged).
    shares = {d: a / max(district_t[d][0], 1) for d, a in active_targets.items()}
    mark_low_active(plan, rng, low_act, shares, scale)
    for dname, a_d in active_targets.items():
        case_units = np.flatnonzero((plan["district"].to_numpy() == dname) & (plan["cases"].to_numpy() > 0))
        plan.loc[case_units, "active"] = district_active(
            rng,
            a_d,
            plan.loc[case_units, "cases"].to_numpy(),
            plan.loc[case_units, "active_p"].to_numpy(),
            plan.loc[case_units, "_low_active"].to_numpy(),
        )

    city = dict(targets.get("city_departments", {}))
    for name, t in city.items():
        i = by_name.get(normalize_name(name))
        if i is None:
            raise HaochaInputError(
                f"目标数据中的市直部门“{name}”不在参考数据中", fix="核对 units.csv 的 unit_name"
            )
        plan.loc[i, "cases"] = scaled(t["cases"], scale)
        plan.loc[i, "cell"] = "city"
        plan.loc[i, "target_zero"] = int(t["cases"]) == 0
        if t.get("active") is None:
            plan.loc[i, "active_known"] = False
            plan.loc[i, "active"] = 0
        else:
            plan.loc[i, "active"] = scaled(t["active"], scale)
        plan.loc[i, "base_volume"] = max(scaled(t["cases"], scale), 0)
    return plan


def generic_plan(ref: CityReference, scale: float, rng: np.random.Generator, scen: dict) -> pd.DataFrame:
    """Plausible volumes for a city without published targets."""
    plan = _base_frame(ref)
    kinds = plan["kind"].to_numpy()
    a, b = np.array([ACTIVE_BETA.get(k, (1, 1)) for k in kinds]).T
    plan["active_p"] = rng.beta(a, b)
    med = np.array([GENERIC_VOLUME.get(k, (0, 0))[0] for k in kinds], dtype=float)
    sig = np.array([GENERIC_VOLUME.get(k, (0, 1))[1] for k in kinds], dtype=float)
    vol = med * np.exp(rng.normal(0, sig)) * scale
    vol[kinds == KIND_DISTRICT] = 0
    total = rng.poisson(vol)
    share = float((scen.get("baseline") or {}).get("generic_unlinked_share", 0.06))
    cityish = np.isin(kinds, [KIND_CITY, KIND_CITY_PUBLIC, KIND_WINDOW])
    unlinked = np.where(cityish, 0, rng.binomial(total, share))
    plan["cases"] = total - unlinked
    plan["unlinked"] = unlinked
    # Active shares in the normal band (no target forces lower), rounded randomly (within one case).
    quota = plan["cases"].to_numpy() * np.maximum(plan["active_p"].to_numpy(), ACTIVE_NORMAL_MIN)
    plan["active"] = np.floor(quota + rng.random(len(plan))).astype(np.int64)
    plan["base_volume"] = np.maximum(vol, 1.0) * (kinds != KIND_DISTRICT)
    plan["cell"] = np.where(kinds == KIND_DISTRICT, "", "generic")
    plan["injected_zero"] = False
    plan["injected_low_volume"] = False
    plan["_low_active"] = False
    return plan


def mark_low_active(
    plan: pd.DataFrame,
    rng: np.random.Generator,
    spec: dict,
    district_share: dict[str, float] | None = None,
    scale: float = 1.0,
) -> None:
    """Pick the units the scenario gives a very low active share (column ``_low_active``).

    Only department units of districts whose active share (``district_share``) leaves the others
    room to make up the district total are candidates.
    """
    plan["_low_active"] = False
    if not spec:
        return
    if spec.get("unit_ids"):
        plan.loc[plan["unit_id"].isin(spec["unit_ids"]), "_low_active"] = True
        return
    # Department units of districts whose active share leaves room for one unit near zero, with
    # enough cases at any scale (LOW_ACTIVE_MIN_CASES) for a near-zero share to be observable.
    floor = max(
        float(spec.get("min_cases", LOW_ACTIVE_MIN_CASES)), float(spec.get("min_volume", 800)) * scale
    )
    cand = np.flatnonzero(((plan["kind"] == KIND_DEPT) & (plan["cases"] >= floor)).to_numpy())
    cand = rng.permutation(cand)
    chosen, used = [], set()
    for i in cand:
        d = plan.at[i, "district"]
        lo, hi = spec.get("district_share_range", [0.25, 0.7])
        if d in used or (district_share is not None and not lo <= district_share.get(d, 0) <= hi):
            continue
        chosen.append(i)
        used.add(plan.at[i, "district"])
        if len(chosen) >= int(spec.get("units", 0)):
            break
    plan.loc[chosen, "_low_active"] = True


def finish_history_flags(
    plan: pd.DataFrame, rng: np.random.Generator, scen: dict, history_quarters: int = 4
) -> None:
    """Decide which units had records in earlier quarters (zero_data truth) and which are new.

    Units with records in the period had history; of the units without, the scenario's cut units
    (injected_zero) and ``zero_data.reference_units`` units whose published figure is 0 had history
    (so they are zero_data), the others never had records.
    """
    zero = (scen.get("anomalies") or {}).get("zero_data") or {}
    active_units = (plan["cases"] + plan["unlinked"]) > 0
    records_possible = plan["kind"] != KIND_DISTRICT
    plan["had_history"] = active_units & records_possible
    cand = np.flatnonzero((~active_units & records_possible & plan["target_zero"]).to_numpy())
    k = min(int(zero.get("reference_units", 0)), len(cand))
    ref_zero = rng.choice(cand, k, replace=False) if k else np.zeros(0, dtype=np.int64)
    plan["reference_zero"] = plan.index.isin(ref_zero)
    with_hist = plan["injected_zero"] | plan["reference_zero"]
    plan.loc[with_hist, "had_history"] = True
    # Units whose published figure is 0: an invented usual volume (a few dozen records a quarter).
    need = (with_hist & (plan["base_volume"] <= 0)).to_numpy()
    scale_hint = float(scen.get("_scale", 1.0))
    plan.loc[need, "base_volume"] = np.maximum(
        np.exp(rng.normal(np.log(120), 0.6, need.sum())) * scale_hint, 8.0
    )
    # A few units are new: no records before some recent quarter.
    # A few units are new: no records before some quarter (``first_quarter`` = how many quarters
    # before the period they have records in; 0 = all; had_history False = new in the period).
    new_share = float((scen.get("baseline") or {}).get("new_unit_share", 0.03))
    injected = plan["injected_low_volume"] | plan["_low_active"]
    new = (active_units & records_possible & ~injected).to_numpy() & (rng.random(len(plan)) < new_share)
    brand_new = new & (rng.random(len(plan)) < 0.4)
    plan.loc[brand_new, "had_history"] = False
    later = new & ~brand_new
    plan.loc[later, "first_quarter"] = rng.integers(1, max(history_quarters, 1) + 1, int(later.sum()))
