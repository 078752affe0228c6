"""The haocha bench and haocha evaluate-detectors commands."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import click

from haocha_analysis.cli import user_errors
from haocha_analysis.core.errors import HaochaInputError


@click.command("bench")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("reports/bench"))
@click.option("--scales", default="0.1,1,4", help="逗号分隔的规模")
@click.option("--province", "province_scale", type=float, default=16.0, help="省级规模（只测表格）；0 跳过")
@click.option("--city", default="zibo")
@click.option("--period", default="2023Q2")
@user_errors
def bench_command(out_dir: Path, scales: str, province_scale: float, city: str, period: str) -> None:
    """基准测试：各阶段在不同规模下的耗时与内存，并与 DuckDB 对比。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    from haocha_analysis.bench.run import run_bench
    from haocha_analysis.cli import VERBS
    from haocha_analysis.core import outputs

    scale_list = [float(s) for s in scales.split(",") if s]
    with outputs.claim(out_dir, "bench") as out:
        results = run_bench(out, scale_list, province_scale or None, city, period, verbs=list(VERBS))
    click.echo((out_dir / "bench.md").read_text(encoding="utf-8"))
    if not all(r.get("ok") for r in results):
        sys.exit(1)


@click.command("evaluate-detectors")
@click.option("--city", required=True, help="城市：data/reference/ 下的名称（如 zibo）或参考数据目录路径")
@click.option("--period", required=True, help="统计期，如 2023Q2")
@click.option("--scales", default="0.1,1", show_default=True, help="逗号分隔的规模")
@click.option("--seed", default=0, show_default=True, help="随机种子")
@click.option("--history", "history_quarters", default=4, show_default=True, help="生成的历史季度数")
def evaluate_detectors_command(city: str, period: str, scales: str, seed: int, history_quarters: int) -> None:
    """异常检测效果评估：各类异常在单位层面的精确率、召回率，以及 clean 场景每百个单位的误报数。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    import sys

    from haocha_analysis.bench import scoring
    from haocha_analysis.bench.detectors import _fmt, run_scenario
    from haocha_analysis.core.errors import EXIT_INPUT_ERROR
    from haocha_analysis.core.reference import load_city

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
            wrong = scoring.mismatches(info["findings"], info["truth"])
            if len(wrong):
                click.echo(
                    wrong[["error", "kind", "unit_id", "description"]].fillna("").to_string(index=False)
                )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        click.echo(f"\n进程峰值内存 {peak:,.0f} MB")
    except HaochaInputError as err:
        click.echo(err.message(), err=True)
        sys.exit(EXIT_INPUT_ERROR)


COMMANDS = [bench_command, evaluate_detectors_command]
