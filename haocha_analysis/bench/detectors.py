"""Measured quality of the anomaly detectors against the synthetic ground truth (truth.json).

``haocha evaluate-detectors`` generates a scenario with ``haocha_analysis.synth.generate`` at each scale, runs
:func:`anomalies.detect` on it (with generated earlier quarters as history) and prints unit-level
precision and recall per kind, then the false findings per 100 units on the "clean" scenario.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from haocha_analysis.bench import scoring
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.reference import CityReference


def _synth():
    try:
        from haocha_analysis.synth import generate as synth
    except ModuleNotFoundError as err:  # pragma: no cover - only before the generator exists
        raise HaochaInputError(
            "合成数据模块 haocha_analysis.synth.generate 不可用，无法评估检测效果",
            fix="重新安装 haocha（合成数据生成器是包的一部分）",
        ) from err
    return synth


def run_scenario(
    ref: CityReference,
    period: str,
    scale: float = 1.0,
    seed: int = 0,
    scenario: str = "default",
    history_quarters: int = 4,
    synth=None,
) -> tuple[pd.DataFrame, dict]:
    """Generate one scenario, detect, and score against its truth.

    Returns:
        (the evaluate() table, {"findings", "truth", "seconds_detect", "seconds_generate", "units"}).
    """
    from haocha_analysis.analysis import anomalies

    synth = synth or _synth()
    p = parse_period(period)
    t0 = time.perf_counter()
    result = synth.generate(ref, p, scale=scale, seed=seed, scenario=scenario)
    history = (
        synth.generate_history(ref, p, quarters=history_quarters, scale=scale, seed=seed, scenario=scenario)
        if history_quarters
        else {}
    )
    t1 = time.perf_counter()
    findings = anomalies.detect(ref, result.tables, p, history=history)
    t2 = time.perf_counter()
    table = scoring.evaluate(findings, result.truth)
    info = {
        "findings": findings,
        "truth": result.truth,
        "tables": result.tables,
        "history": history,
        "seconds_generate": t1 - t0,
        "seconds_detect": t2 - t1,
        "units": len(ref.units),
    }
    return table, info


def _fmt(table: pd.DataFrame) -> str:
    show = table.copy()
    for col in ("precision", "recall"):
        show[col] = show[col].map(lambda x: "/" if pd.isna(x) else f"{x:.2f}")
    show = show.rename(
        columns={
            "kind": "类型代码",
            "kind_cn": "异常类型",
            "truth": "真值单位",
            "found": "发现单位",
            "tp": "TP",
            "fp": "FP",
            "fn": "FN",
            "precision": "精确率",
            "recall": "召回率",
        }
    )
    return show.to_string(index=False)


def _history_quarters(scenario: str, default: int) -> int:
    """A scenario's own number of quarters (``quarters: 6``: five of history), else ``default``."""
    quarters = _synth().load_scenario(scenario).get("quarters")
    return int(quarters) - 1 if quarters else default


def evaluate_seeds(
    ref: CityReference,
    period: str,
    seeds: list[int],
    scenario: str = "realistic",
    scale: float = 1.0,
    history_quarters: int | None = None,
) -> dict:
    """Score the detectors over several seeds of a scenario (held-out seeds: nothing is tuned here).

    Returns:
        {"table": per kind over all seeds (truth, found, tp, fp, fn, precision, recall),
        "per_seed": [{"seed", "table", "clean_units", "false_alarms", "seconds_detect", ...}],
        "clean_units", "false_alarms", "false_alarms_per_100", "mismatches": every FN and FP with the
        tool's description and, for a unit the scenario made tricky, its role}.
        A clean unit has records (in the period or its history) and no injected anomaly; a false
        alarm is a finding on a clean unit that the truth does not list (an agent found where the
        truth lists the agent is right).
    """
    history_quarters = _history_quarters(scenario, 4) if history_quarters is None else history_quarters
    per_seed, wrong = [], []
    for seed in seeds:
        table, info = run_scenario(ref, period, scale, seed, scenario, history_quarters)
        truth, findings = info["truth"], info["findings"]
        injected = {str(a["unit_id"]) for a in truth["anomalies"] if a.get("source") == "injected"}
        live = _units_with_records(info["tables"], info["history"])
        clean = live - injected
        listed = {(a["kind"], str(a["unit_id"])) for a in truth["anomalies"]}
        pairs = set(zip(findings["kind"], findings["unit_id"].astype(str), strict=True))
        alarms = {(k, u) for k, u in pairs if u in clean and (k, u) not in listed}
        roles = {t["unit_id"]: t["role"] for t in truth.get("tricky_clean", [])}
        miss = scoring.mismatches(findings, truth)
        miss["seed"] = seed
        miss["role"] = miss["unit_id"].map(roles).fillna("")
        miss["clean_unit"] = miss["unit_id"].isin(clean)
        wrong.append(miss)
        per_seed.append(
            {
                "seed": seed,
                "table": table,
                "clean_units": len(clean),
                "false_alarms": len(alarms),
                "seconds_detect": info["seconds_detect"],
                "seconds_generate": info["seconds_generate"],
                "history_periods": len(info["history"]),
            }
        )
        del info
    counts = ["truth", "found", "tp", "fp", "fn"]
    total = sum(s["table"].set_index("kind")[counts] for s in per_seed)
    total = total.reset_index()
    total.insert(1, "kind_cn", per_seed[0]["table"]["kind_cn"].to_numpy())
    total["precision"] = total["tp"] / (total["tp"] + total["fp"]).replace(0, np.nan)
    total["recall"] = total["tp"] / (total["tp"] + total["fn"]).replace(0, np.nan)
    clean_units = sum(s["clean_units"] for s in per_seed)
    alarms = sum(s["false_alarms"] for s in per_seed)
    return {
        "table": total,
        "per_seed": per_seed,
        "clean_units": clean_units,
        "false_alarms": alarms,
        "false_alarms_per_100": 100 * alarms / max(clean_units, 1),
        "mismatches": pd.concat(wrong, ignore_index=True) if wrong else pd.DataFrame(),
    }


def _units_with_records(tables: dict, history: dict) -> set[str]:
    """Units with any case or evaluation in the period or in its history."""
    units: set[str] = set()
    for frames in [tables, *history.values()]:
        for name in ("cases", "evaluations"):
            if name in frames and len(frames[name]):
                units |= set(frames[name]["unit_id"].astype(str).unique())
    return units
