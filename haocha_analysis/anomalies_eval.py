"""Measured quality of the anomaly detectors against the synthetic ground truth (truth.json).

``haocha evaluate-detectors`` generates a scenario with ``haocha_analysis.synth`` at each scale, runs
:func:`anomalies.detect` on it (with generated earlier quarters as history) and prints unit-level
precision and recall per kind, then the false findings per 100 units on the "clean" scenario.
"""

from __future__ import annotations

import resource
import time

import click
import pandas as pd

from .errors import HaochaInputError
from .periods import parse_period
from .reference import CityReference, load_city


def _synth():
    try:
        from . import synth
    except ModuleNotFoundError as err:  # pragma: no cover - only before the generator exists
        raise HaochaInputError(
            "合成数据模块 haocha_analysis.synth 不可用，无法评估检测效果",
            fix="先完成 issue 3 的合成数据生成器",
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
    from . import anomalies  # imported here: anomalies registers this module's command at its end

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
    table = anomalies.evaluate(findings, result.truth)
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


@click.command("evaluate-detectors")
@click.option("--city", required=True, help="城市：data/reference/ 下的名称（如 zibo）或参考数据目录路径")
@click.option("--period", required=True, help="统计期，如 2023Q2")
@click.option("--scales", default="0.1,1", show_default=True, help="逗号分隔的规模")
@click.option("--seed", default=0, show_default=True, help="随机种子")
@click.option("--history", "history_quarters", default=4, show_default=True, help="生成的历史季度数")
def evaluate_detectors_command(city: str, period: str, scales: str, seed: int, history_quarters: int) -> None:
    """异常检测效果评估：各类异常在单位层面的精确率、召回率，以及 clean 场景每百个单位的误报数。"""
    import sys

    from . import anomalies
    from .errors import EXIT_INPUT_ERROR

    try:
        ref = load_city(city)
        scale_list = [float(x) for x in scales.split(",") if x.strip()]
        for scale in scale_list:
            table, info = run_scenario(ref, period, scale, seed, "default", history_quarters)
            click.echo(
                f"\n== 场景 default，规模 {scale:g}：检测用时 {info['seconds_detect']:.1f} 秒，"
                f"发现 {len(info['findings'])} 条 =="
            )
            click.echo(_fmt(table))
        for scale in sorted({min(scale_list), max(scale_list)}):
            table, info = run_scenario(ref, period, scale, seed, "clean", history_quarters)
            fp = int(table.set_index("kind").loc["all", "fp"])
            click.echo(
                f"\n== 场景 clean，规模 {scale:g}：发现 {len(info['findings'])} 条，"
                f"真值未列出的（误报）{fp} 条，"
                f"每百个单位误报 {100 * fp / info['units']:.2f} 条（目标 < 1；共 {info['units']} 个单位）=="
            )
            click.echo(_fmt(table[(table["truth"] > 0) | (table["found"] > 0)]))
            wrong = anomalies.mismatches(info["findings"], info["truth"])
            if len(wrong):
                click.echo(
                    wrong[["error", "kind", "unit_id", "description"]].fillna("").to_string(index=False)
                )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        click.echo(f"\n进程峰值内存 {peak:,.0f} MB")
    except HaochaInputError as err:
        click.echo(err.message(), err=True)
        sys.exit(EXIT_INPUT_ERROR)
