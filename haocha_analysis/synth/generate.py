"""Synthetic 好差评 records with known truth (docs/synthetic-model.md).

A quarter that reproduces a published bulletin cell for cell, with anomalies of known truth, and
plausible earlier quarters.

    result = generate(load_city("zibo"), "2023Q2", scale=1.0, seed=0, scenario="default")
    result.tables["cases"], result.truth["anomalies"]
    write(result, out_dir, "2023Q2")

The unit-level plan is in :mod:`.plan`, records in :mod:`.records`, anomalies in
:mod:`.inject`, the invented matters catalogue in :mod:`.matters`.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from haocha_analysis.analysis.anomalies.settings import KINDS, Settings
from haocha_analysis.core import atomic
from haocha_analysis.core.config import DEFAULT_SCENARIO, SCENARIOS_DIR, SYNTHETIC_DIR
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, parse_period, resolve_period
from haocha_analysis.core.reference import CityReference, load_city
from haocha_analysis.core.stats import binomial_tail_bound
from haocha_analysis.ingest.storage import record_extraction, write_tables
from haocha_analysis.synth.bad_reviews import add_bad_reviews
from haocha_analysis.synth.inject import Injected, Injector
from haocha_analysis.synth.matters import catalogue_arrays
from haocha_analysis.synth.plan import (
    ACTIVE_CLEARLY_LOW,
    KIND_CITY,
    KIND_CITY_PUBLIC,
    KIND_DISTRICT,
    find_targets,
    finish_history_flags,
    generic_plan,
    load_targets,
    target_plan,
)
from haocha_analysis.synth.realistic import generate_realistic, iter_history_realistic
from haocha_analysis.synth.records import Calendar, generate_records, to_frames
from haocha_analysis.synth.truth import (
    SynthResult,
    build_truth_entries,
    record_level_counts,
    truth_entry,
)
from haocha_analysis.synth.truth import named_rng as _rng

GENERATOR_VERSION = "1.0"

# Quarter-of-year volume factors: Q1 is low around 春节; Q4 is the year-end peak.
SEASONALITY = {1: 0.80, 2: 1.00, 3: 1.03, 4: 1.10}
QUARTERLY_GROWTH = 1.04
# Per-unit raw 差评 rates: the scenario's bad_rate × lognormal(0, BAD_RATE_SIGMA).
BAD_RATE_SIGMA = 0.5
# An observer can only judge a unit's 差评 against its peers: a low but common rate is the lower
# quartile of the unit rates, bad_rate × exp(BAD_RATE_SIGMA × z₀.₂₅) (z₀.₂₅ = −0.6745), the
# baseline the too_perfect detector estimates (anomalies.Settings.too_perfect_baseline_quantile).
PEER_BASELINE_Z = -0.6745
# high_invalid_bad: the injected unit's expected raw 差评 at the injected rate, at any scale
# (three times the detector's minimum of 5, anomalies.Settings.invalid_min).
HIGH_INVALID_MIN_RECORDS = 15
# low_active truth: the one fixed floor of cases, the smallest n at which the detector's documented
# rule can confirm a share under 5% at all: (1 − 0.05)^n < 0.01 ⇔ n ≥ 90 (anomalies.Settings).
LOW_ACTIVE_TRUTH_MIN_CASES = 90


# --- scenarios -------------------------------------------------------------------------------------


def scenario_path(scenario: str | Path) -> Path:
    """A scenario name under haocha_analysis/scenarios/ or a path to a YAML file."""
    path = Path(scenario)
    if path.suffix in (".yml", ".yaml") and path.exists():
        return path
    named = SCENARIOS_DIR / f"{scenario}.yml"
    if named.exists():
        return named
    known = sorted(p.stem for p in SCENARIOS_DIR.glob("*.yml") if not p.stem.startswith("targets-"))
    raise HaochaInputError(
        f"找不到合成数据场景“{scenario}”",
        file=str(path),
        fix=f"--scenario 取 {'、'.join(known)} 之一，或 YAML 文件路径",
    )


def load_scenario(scenario: str | Path | dict) -> dict:
    """Read a scenario; ``extends: NAME`` starts from another scenario (top-level keys merged)."""
    if isinstance(scenario, dict):
        return scenario
    path = scenario_path(scenario)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if data.get("extends"):
        base = load_scenario(data["extends"])
        for key in ("baseline", "anomalies"):
            if key in data and key in base and data[key] is not None:
                data[key] = {**(base.get(key) or {}), **data[key]}
        data = {**base, **data}
    data.setdefault("name", path.stem)
    data["_path"] = str(path)
    return data


def _as_ref(ref: CityReference | str | Path) -> CityReference:
    return ref if isinstance(ref, CityReference) else load_city(ref)


def _as_period(period: Period | str) -> Period:
    return period if isinstance(period, Period) else parse_period(period)


# --- plan ------------------------------------------------------------------------------------------


def build_plan(ref: CityReference, period: Period, scale: float, seed: int, scen: dict) -> pd.DataFrame:
    """The unit-level plan of the period: targets when the package has them, else generic volumes."""
    rng = _rng(seed, ref.key, period.label, "plan")
    targets = scen.get("targets", "auto")
    path = (
        find_targets(ref.key, period.label)
        if targets == "auto"
        else (None if targets in (None, "none") else Path(targets))
    )
    if path is not None and not path.is_absolute() and not path.exists():
        path = SCENARIOS_DIR / path
    plan = (
        target_plan(ref, load_targets(path), scale, rng, scen)
        if path
        else generic_plan(ref, scale, rng, scen)
    )
    plan["targets"] = str(path.name) if path else ""
    finish_history_flags(plan, rng, {**scen, "_scale": scale})
    _unit_rates(plan, rng, scen, scale)
    return plan


def _unit_rates(plan: pd.DataFrame, rng: np.random.Generator, scen: dict, scale: float) -> None:
    """Per-unit raw 差评 rate, with the scenario's too_perfect and high_invalid_bad units."""
    base = scen.get("baseline") or {}
    inj = scen.get("anomalies") or {}
    rate = float(base.get("bad_rate", 0.0008))
    plan["bad_rate"] = rate * np.exp(rng.normal(0, BAD_RATE_SIGMA, len(plan)))
    known = plan["active_known"].to_numpy()
    citizen = (
        plan["active"].to_numpy() * known + plan["cases"].to_numpy() * ~known + plan["unlinked"].to_numpy()
    )
    plan["citizen_evaluations"] = citizen
    plan["injected_too_perfect"] = False
    plan["injected_high_invalid_bad"] = False
    used = plan["injected_zero"] | plan["injected_low_volume"] | plan["_low_active"]
    # too_perfect: units large enough that an observer, who knows only the peers' rates, expects at
    # least ``min_expected`` raw 差评 at the peer baseline (see PEER_BASELINE_Z), so seeing none is
    # improbable: P(0) ≈ exp(−min_expected). The truth states that expectation, not the unit's own.
    peer_rate = rate * float(np.exp(BAD_RATE_SIGMA * PEER_BASELINE_Z))
    plan["expected_bad_at_peer_rate"] = citizen * peer_rate
    spec = inj.get("too_perfect") or {}
    if spec:
        need = float(spec.get("min_expected", 10))
        cand = np.flatnonzero((citizen * peer_rate >= need) & ~used.to_numpy())
        picks = _pick(rng, plan, spec, cand)
        plan.loc[picks, "expected_bad"] = citizen[picks] * plan.loc[picks, "bad_rate"].to_numpy()
        plan.loc[picks, "bad_rate"] = 0.0
        plan.loc[picks, "injected_too_perfect"] = True
    spec = inj.get("high_invalid_bad") or {}
    if spec:
        taken = plan["injected_too_perfect"].to_numpy() | used.to_numpy()
        inj_rate = float(spec.get("rate", 0.03))
        min_records = float(spec.get("min_records", HIGH_INVALID_MIN_RECORDS))
        cand = np.flatnonzero(
            (citizen >= max(min_records / inj_rate, 1500 * scale))
            & ~taken
            & (plan["kind"] != KIND_DISTRICT).to_numpy()
        )
        picks = _pick(rng, plan, spec, cand)
        plan.loc[picks, "bad_rate"] = inj_rate
        plan.loc[picks, "injected_high_invalid_bad"] = True


def _pick(rng: np.random.Generator, plan: pd.DataFrame, spec: dict, cand: np.ndarray) -> np.ndarray:
    if spec.get("unit_ids"):
        return np.flatnonzero(plan["unit_id"].isin(spec["unit_ids"]).to_numpy())
    k = min(int(spec.get("units", 0)), len(cand))
    return np.sort(rng.choice(cand, k, replace=False)) if k else np.zeros(0, dtype=np.int64)


def population_size(plan: pd.DataFrame) -> int:
    """Invented residents and companies that evaluate: about 0.8 per case of the planned period."""
    return max(500, int(0.8 * (plan["cases"].sum() + plan["unlinked"].sum())))


# --- generate --------------------------------------------------------------------------------------


def generate(
    ref: CityReference | str | Path,
    period: Period | str,
    scale: float = 1.0,
    seed: int = 0,
    scenario: str | Path | dict = DEFAULT_SCENARIO,
) -> SynthResult:
    """Generate one period's canonical tables and their ground truth.

    Args:
        ref: the city's reference data (or its name).
        period: the statistical period.
        scale: every planned count × scale (1: the published figures exactly, when targets exist).
        seed: random seed; the same arguments always give the same records.
        scenario: a scenario name under haocha_analysis/scenarios/, a YAML path or a dict.
    """
    started = time.perf_counter()
    ref, period, scen = _as_ref(ref), _as_period(period), load_scenario(scenario)
    if scen.get("model") == "realistic":
        return generate_realistic(ref, period, scale, seed, scen)
    plan = build_plan(ref, period, scale, seed, scen)
    rec_rng = _rng(seed, ref.key, period.label, "records")
    catalogue = catalogue_arrays(ref, plan["unit_id"].tolist())
    rates = {"bad": plan["bad_rate"].to_numpy()}
    base = scen.get("baseline") or {}
    rec = generate_records(plan, period, catalogue, rec_rng, base, population_size(plan), rates)

    cal = Calendar.build(period)
    inj = Injector(rec, plan, cal, _rng(seed, ref.key, period.label, "inject"), scale)
    anomalies = scen.get("anomalies") or {}
    missing = {}
    for kind in (
        "low_onsite",
        "backfill",
        "late_aggregation",
        "duplicates",
        "staff_reentry",
        "eval_before_case",
    ):
        if anomalies.get(kind):
            getattr(inj, kind)(anomalies[kind])
    if anomalies.get("missing_reported_at"):
        missing = inj.missing_reported_at(anomalies["missing_reported_at"])
    for kind in ("late_reporting", "agent"):  # after the others: their picks stay as they were
        if anomalies.get(kind):
            getattr(inj, kind)(anomalies[kind])
    valid_share = float(base.get("valid_bad_share", 0.0))
    valid_rng = _rng(seed, ref.key, period.label, "verdicts")
    rec.bad_valid = (rec.evals["sat"] <= 2) & (valid_rng.random(len(rec.evals["sat"])) < valid_share)

    city_region = str(ref.meta.get("region_code", "")) or _city_region(plan)
    rect = {"seed": int(valid_rng.integers(2**31)), "city_region": city_region}
    tables, order = to_frames(rec, plan, period, catalogue, f"{ref.key}-person", rect)
    truth = build_truth(ref, period, scale, seed, scen, plan, rec, inj.out, tables, order, missing)
    if scen.get("bad_reviews"):  # the 差评 closed loop with known truth (synth/bad_reviews.py)
        rng = _rng(seed, ref.key, period.label, "bad_reviews")
        extracted = synthetic_extraction_date(period.label)
        add_bad_reviews(ref, period, tables, truth, scen["bad_reviews"], rng, extracted)
    return SynthResult(
        tables=tables, truth=truth, plan=plan, period=period, seconds=time.perf_counter() - started
    )


def _city_region(plan: pd.DataFrame) -> str:
    city = plan.loc[plan["kind"].isin([KIND_CITY, KIND_CITY_PUBLIC]), "region_code"]
    city = city[city != ""]
    return str(city.iloc[0]) if len(city) else "000000"


# --- truth -----------------------------------------------------------------------------------------


def build_truth(
    ref, period, scale, seed, scen, plan, rec, injected: list[Injected], tables, order, missing
) -> dict:
    """truth.json: the anomalies (unit, kind, record ids) and exact record-level counts."""
    unit_ids = plan["unit_id"].to_numpy()
    entries = build_truth_entries(plan, injected, tables, order)
    eval_ids = tables["evaluations"]["eval_id"].to_numpy()
    eval_pos = np.empty(len(order["eval_order"]), dtype=np.int64)
    eval_pos[order["eval_order"]] = np.arange(len(eval_pos))
    volume = plan["cases"] + plan["unlinked"]
    level_table = np.where(plan["kind"].isin([KIND_CITY, KIND_CITY_PUBLIC]), "cases", "evaluations")
    for i in np.flatnonzero((volume == 0).to_numpy() & plan["had_history"].to_numpy()):
        entries.append(
            truth_entry(
                "zero_data",
                unit_ids[i],
                level_table[i],
                [],
                0,
                {
                    "expected_per_quarter": round(float(plan.at[i, "base_volume"]), 1),
                    "published_zero": bool(plan.at[i, "target_zero"]),
                },
            )
        )
    for i in np.flatnonzero(plan["injected_low_volume"].to_numpy() & (volume > 0).to_numpy()):
        entries.append(
            truth_entry(
                "low_volume",
                unit_ids[i],
                level_table[i],
                [],
                int(volume.iat[i]),
                {
                    "expected": round(float(plan.at[i, "base_volume"]), 1),
                    "ratio": round(float(volume.iat[i] / max(plan.at[i, "base_volume"], 1)), 3),
                },
            )
        )
    # low_active: every unit whose planned 主动评价率 is under the detector's limit and whose case
    # count makes that observable (low_active_truth); injected ones and those the published figures
    # force (source "reference"). Units the figures put in the ambiguous band are listed as unscored.
    unscored = []
    for i, scored in low_active_truth(plan):
        injected_here = bool(plan.at[i, "_low_active"])
        entry = truth_entry(
            "low_active",
            unit_ids[i],
            level_table[i],
            [],
            int(plan.at[i, "active"]),
            {
                "cases": int(plan.at[i, "cases"]),
                "active_share": round(float(plan.at[i, "active"] / max(plan.at[i, "cases"], 1)), 4),
                "band": "clearly_low" if scored else "ambiguous",
            },
            "injected" if injected_here else "reference",
        )
        (entries if scored else unscored).append(entry)
    first_sat = rec.evals["sat"]
    units_e = rec.evals["unit"]
    for i in np.flatnonzero(plan["injected_too_perfect"].to_numpy()):
        raw = int(((units_e == i) & (first_sat <= 2)).sum())
        entries.append(
            truth_entry(
                "too_perfect",
                unit_ids[i],
                "evaluations",
                [],
                int(plan.at[i, "citizen_evaluations"]),
                {
                    "expected_raw_bad_at_peer_rate": round(float(plan.at[i, "expected_bad_at_peer_rate"]), 2),
                    "p_zero_at_peer_rate": float(np.exp(-plan.at[i, "expected_bad_at_peer_rate"])),
                    "expected_raw_bad_at_own_rate": round(float(plan.at[i, "expected_bad"]), 2),
                    "raw_bad": raw,
                },
            )
        )
    for i in np.flatnonzero(plan["injected_high_invalid_bad"].to_numpy()):
        rows = np.flatnonzero((units_e == i) & (first_sat <= 2))
        entries.append(
            truth_entry(
                "high_invalid_bad",
                unit_ids[i],
                "evaluations",
                sorted(eval_ids[eval_pos[rows]].tolist()),
                len(rows),
                {
                    "raw_bad_rate": float(plan.at[i, "bad_rate"]),
                    "citizen_evaluations": int(plan.at[i, "citizen_evaluations"]),
                },
            )
        )
    entries.sort(key=lambda a: (list(KINDS).index(a["kind"]), a["unit_id"]))
    counts = record_level_counts(rec)
    counts["missing_reported_at"].update(missing)
    return {
        "city": ref.key,
        "city_name": ref.city_name,
        "period": period.label,
        "scale": scale,
        "seed": seed,
        "scenario": scen.get("name"),
        "generator_version": GENERATOR_VERSION,
        "targets": str(plan["targets"].iat[0]) if "targets" in plan else "",
        "anomalies": entries,
        "unscored": unscored,
        "record_level": counts,
    }


def low_active_truth(plan: pd.DataFrame) -> list[tuple[int, bool]]:
    """Plan rows of the low_active truth, each with whether it is scored.

    Listed: units whose active flag is known, whose planned share is under the detector's limit
    (anomalies.Settings.low_active_max_share, 5%) and with at least LOW_ACTIVE_TRUTH_MIN_CASES cases
    (one fixed floor: below 90 cases not even 0 active is confidently under 5%, as (1 − 5%)^n ≥ 1%).
    Scored: those planned clearly low (share ≤ ACTIVE_CLEARLY_LOW) whose planned counts pass the
    detector's documented test (P(X ≤ k | n, 5%) < 1%, Chernoff bound). The generator plans no unit
    between ACTIVE_CLEARLY_LOW and ACTIVE_NORMAL_MIN unless the published figures force it (e.g.
    市场监管局 16 of 424); those are listed unscored (truth["unscored"]): no observer can call them
    either way at these sizes, so neither a finding nor its absence is an error.
    """
    s = Settings()
    known = plan["active_known"].to_numpy()
    cases = plan["cases"].to_numpy()
    active = plan["active"].to_numpy()
    share = active / np.maximum(cases, 1)
    listed = known & (cases >= LOW_ACTIVE_TRUTH_MIN_CASES) & (share < s.low_active_max_share)
    bound = binomial_tail_bound(active, cases, np.full(len(cases), s.low_active_max_share), lower=True)
    scored = (share <= ACTIVE_CLEARLY_LOW) & (bound < s.low_active_alpha)
    return [(int(i), bool(scored[i])) for i in np.flatnonzero(listed | plan["_low_active"].to_numpy())]


# --- history ---------------------------------------------------------------------------------------


def previous_periods(period: Period, n: int) -> list[Period]:
    """The ``n`` periods before ``period`` (oldest first)."""
    out, p = [], period
    for _ in range(n):
        p = p.shifted("previous")
        out.append(p)
    return out[::-1]


def _season(p: Period) -> float:
    return SEASONALITY[(p.start.month - 1) // 3 + 1] if p.kind == "quarter" else 1.0


def history_plan(
    plan: pd.DataFrame, period: Period, q: Period, k: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Plan of the quarter ``k`` periods before ``period``.

    The period's units at their usual volume, with seasonality, growth, noise and units that start
    or stop.
    """
    h = plan.copy()
    exists = h["had_history"].to_numpy() & (
        (h["first_quarter"].to_numpy() == 0) | (k <= h["first_quarter"].to_numpy())
    )
    realized = (h["cases"] + h["unlinked"]).to_numpy().astype(float)
    injected = (h["injected_low_volume"] | h["injected_zero"]).to_numpy()
    base = np.where((realized > 0) & ~injected, realized, h["base_volume"].to_numpy())
    factor = _season(q) / _season(period) * QUARTERLY_GROWTH ** (-k) * np.exp(rng.normal(0, 0.12, len(h)))
    total = rng.poisson(np.maximum(base * factor, 0) * exists)
    ushare = np.where(realized > 0, h["unlinked"].to_numpy() / np.maximum(realized, 1), 0.05)
    ushare = np.where(h["kind"].isin([KIND_CITY, KIND_CITY_PUBLIC]).to_numpy(), 0.0, ushare)
    unlinked = rng.binomial(total, np.clip(ushare, 0, 1))
    cases = total - unlinked
    p_real = h["active"].to_numpy() / np.maximum(h["cases"].to_numpy(), 1)
    p = np.where((h["cases"].to_numpy() > 0) & ~h["_low_active"].to_numpy(), p_real, h["active_p"].to_numpy())
    p = np.clip(p + rng.normal(0, 0.03, len(h)), 0, 1)
    h["cases"], h["unlinked"], h["active"] = cases, unlinked, rng.binomial(cases, p)
    return h


def iter_history(
    ref: CityReference | str | Path,
    period: Period | str,
    quarters: int = 4,
    scale: float = 1.0,
    seed: int = 0,
    scenario: str | Path | dict = DEFAULT_SCENARIO,
) -> Iterator[tuple[str, dict[str, pd.DataFrame]]]:
    """Earlier periods one at a time (oldest first), so that only one is in memory."""
    ref, period, scen = _as_ref(ref), _as_period(period), load_scenario(scenario)
    if scen.get("model") == "realistic":
        yield from iter_history_realistic(ref, period, quarters, scale, seed, scen)
        return
    plan = build_plan(ref, period, scale, seed, scen)
    population = population_size(plan)
    catalogue = catalogue_arrays(ref, plan["unit_id"].tolist())
    base = scen.get("baseline") or {}
    usual_rate = float(base.get("bad_rate", 0.0008))
    periods = previous_periods(period, quarters)
    for k, q in zip(range(quarters, 0, -1), periods, strict=True):
        rng = _rng(seed, ref.key, q.label, "history")
        h = history_plan(plan, period, q, k, rng)
        # The period's too_perfect and high_invalid_bad units behaved normally before.
        unusual = (h["injected_too_perfect"] | h["injected_high_invalid_bad"]).to_numpy()
        rates = {"bad": np.where(unusual, usual_rate, h["bad_rate"].to_numpy())}
        rec = generate_records(h, q, catalogue, rng, base, population, rates)
        rec.bad_valid = np.zeros(len(rec.evals["sat"]), dtype=bool)
        rect = {"seed": int(rng.integers(2**31)), "city_region": _city_region(h)}
        tables, _ = to_frames(rec, h, q, catalogue, f"{ref.key}-person", rect)
        yield q.label, tables


def generate_history(
    ref: CityReference | str | Path,
    period: Period | str,
    quarters: int = 4,
    scale: float = 1.0,
    seed: int = 0,
    scenario: str | Path | dict = DEFAULT_SCENARIO,
) -> dict[str, dict[str, pd.DataFrame]]:
    """Earlier periods (label → tables), consistent with ``period``'s plan.

    Seasonality (Q1 low around 春节), growth, per-unit noise, units that start or stop; no
    injected anomaly; they match no published figure.
    """
    return dict(iter_history(ref, period, quarters, scale, seed, scenario))


# --- writing ---------------------------------------------------------------------------------------


# The reference bulletin's data were extracted 4 days after the quarter ended (2023-06-30 → 2023-07-04).
SYNTHETIC_EXTRACTION_LAG_DAYS = 4


def synthetic_extraction_date(period_label: str) -> date:
    """The 数据提取时间 recorded for synthetic data: the period's end plus the reference's lag."""
    return parse_period(period_label).end + timedelta(days=SYNTHETIC_EXTRACTION_LAG_DAYS)


def write(
    result: SynthResult, out_dir: Path, period_label: str | None = None, csv: bool = False
) -> list[Path]:
    """Write the tables (Parquet partitions, or CSV) and truth.json into ``out_dir``."""
    out_dir = Path(out_dir)
    label = period_label or result.truth["period"]
    written = write_tables(result.tables, out_dir, label, csv=csv)
    record_extraction(out_dir, label, synthetic_extraction_date(label))
    truth = atomic.write_json(out_dir / "truth.json", result.truth)
    return [*written, truth]


def write_history(
    history: dict[str, dict[str, pd.DataFrame]], out_dir: Path, csv: bool = False
) -> list[Path]:
    """Write earlier periods: Parquet partitions beside the main period, or CSV in ``history/<label>/``."""
    written = []
    for label, tables in history.items():
        target = Path(out_dir) / "history" / label if csv else Path(out_dir)
        written += write_tables(tables, target, label, csv=csv)
        record_extraction(target, label, synthetic_extraction_date(label))
    return written


def _stamp(city: str, period: str, scale: float, seed: int, scenario: str, history: int) -> dict:
    ref = load_city(city)
    digest = hashlib.sha256()
    files = [scenario_path(scenario), ref.path / "units.csv", ref.path / "matters.csv"]
    files += sorted(SCENARIOS_DIR.glob("targets-*.yml"))
    for f in files:
        if Path(f).exists():
            digest.update(Path(f).read_bytes())
    for module in ("generate", "plan", "records", "inject", "matters", "bad_reviews", "realistic"):
        digest.update((Path(__file__).parent / f"{module}.py").read_bytes())
    return {
        "generator": GENERATOR_VERSION,
        "city": city,
        "period": period,
        "scale": scale,
        "seed": seed,
        "scenario": scenario,
        "history": history,
        "inputs_sha256": digest.hexdigest(),
    }


def ensure_default_data(city: str = "zibo", period: str = "2023Q2", history: int = 4) -> Path:
    """The built-in demo data folder (SYNTHETIC_DIR/city) holding every quarter ``period`` overlaps.

    One dataset per city, always partitioned by calendar quarter: a month, a half-year, a year or a
    range is served by the quarters it overlaps (cut by date when counted), so asking for
    ``2023-05``, ``2023H1`` and ``2023Q2`` in any order never adds a second copy of any record.
    Each quarter asked for is generated as a period of its own (scale 1, seed 0, the default
    scenario) with ``history`` earlier quarters written only where missing; a stamp per partition
    (``synth-stamp.json``) records what generated it, and a partition whose generator or inputs
    changed is generated again. Nothing is ever downloaded.
    """
    for quarter in resolve_period(period).quarters():
        _ensure_quarter(city, quarter.label, history)
    return SYNTHETIC_DIR / city


def _same_generation(stamp: dict | None, current: dict) -> bool:
    """Whether a partition's stamp names the current generator, inputs and settings."""
    keys = ("generator", "city", "scale", "seed", "scenario", "inputs_sha256")
    return bool(stamp) and all(stamp.get(k) == current.get(k) for k in keys)


def _ensure_quarter(city: str, period: str, history: int) -> None:
    out = SYNTHETIC_DIR / city
    stamp = _stamp(city, period, 1.0, 0, DEFAULT_SCENARIO, history)
    stamps = _read_stamps(out / "synth-stamp.json")

    def present(label: str) -> bool:
        return _same_generation(stamps.get(label), stamp) and (out / "cases" / f"period={label}").is_dir()

    if present(period) and stamps[period].get("role", "period") == "period":
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{city}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700
    try:
        ref = load_city(city)
        result = generate(ref, period, 1.0, 0, DEFAULT_SCENARIO)
        write(result, tmp, period)
        del result
        written = {period: {**stamp, "role": "period"}}
        for label, tables in iter_history(ref, period, history, 1.0, 0, DEFAULT_SCENARIO):
            if not present(label):  # a quarter already generated (as a period or history) is kept
                write_history({label: tables}, tmp)
                written[label] = {**stamp, "period": label, "role": f"history of {period}"}
            del tables
        for label in written:
            for table in ("cases", "evaluations", "rectifications"):
                source = tmp / table / f"period={label}"
                if not source.is_dir():
                    continue
                target = out / table / f"period={label}"
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    shutil.rmtree(target)
                os.replace(source, target)
            record_extraction(out, label, synthetic_extraction_date(label))
        os.replace(tmp / "truth.json", out / f"truth-{period}.json")
        shutil.copyfile(out / f"truth-{period}.json", out / "truth.json")
        stamps.update(written)
        atomic.write_json(out / "synth-stamp.json", stamps)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read_stamps(path: Path) -> dict[str, dict]:
    """Stamps by period (an older single-period stamp is read as one entry)."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    if "generator" in loaded:
        return {loaded.get("period", ""): loaded}
    return loaded


# --- measurement -----------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_generation(
    city: str = "zibo",
    period: str = "2023Q2",
    scale: float = 1.0,
    seed: int = 0,
    scenario: str = DEFAULT_SCENARIO,
) -> dict:
    """Time and peak memory of ``generate`` in a fresh process (for ``make bench``)."""
    code = (
        "import json,time,sys;from haocha_analysis import synth as s;"
        f"r=s.generate({city!r},{period!r},{scale!r},{seed!r},{scenario!r});"
        "print(json.dumps({'seconds':round(r.seconds,2),'peak_rss_mb':round(s.peak_rss_mb(),1),"
        "'cases':len(r.tables['cases']),'evaluations':len(r.tables['evaluations'])}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update({"city": city, "period": period, "scale": scale, "seed": seed, "scenario": scenario})
    return result


# --- command line ----------------------------------------------------------------------------------
