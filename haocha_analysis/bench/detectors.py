"""Measured quality of the anomaly detectors against the synthetic ground truth (truth.json).

``haocha evaluate-detectors`` generates a scenario with ``haocha_analysis.synth.generate`` at each scale, runs
:func:`anomalies.detect` on it (with generated earlier quarters as history) and prints unit-level
precision and recall per kind, then the false findings per 100 units on the "clean" scenario.
"""

from __future__ import annotations

import time

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
