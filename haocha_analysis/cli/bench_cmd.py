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
@click.option(
    "--engines",
    is_flag=True,
    help="只做 pandas 与 Dask 引擎对比（tables、quality、anomalies，单市另有 bulletin；"
    "整个进程树的 CPU 与峰值内存），写到 --out 下的 engines/",
)
@click.option("--engine-scales", default="1,4", show_default=True, help="引擎对比的单市规模（逗号分隔）")
@click.option(
    "--engine-province", type=int, default=16, show_default=True, help="引擎对比中省级的城市数；0 跳过"
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=2, show_default=True, help="引擎对比的 Dask 工作进程数"
)
@user_errors
def bench_command(
    out_dir: Path,
    scales: str,
    province_scale: float,
    city: str,
    period: str,
    engines: bool,
    engine_scales: str,
    engine_province: int,
    workers: int,
) -> None:
    """基准测试：各阶段在不同规模下的耗时与内存，并与 DuckDB 对比。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    from haocha_analysis.bench.run import run_bench, run_engine_bench
    from haocha_analysis.cli import VERBS
    from haocha_analysis.core import outputs

    if engines:
        scale_list = [float(s) for s in engine_scales.split(",") if s]
        with outputs.claim(out_dir / "engines", "bench") as out:
            results = run_engine_bench(out, scale_list, city, period, workers, engine_province)
        click.echo((out_dir / "engines" / "engines.md").read_text(encoding="utf-8"))
        sys.exit(0 if all(r.get("ok") for r in results) else 1)
    scale_list = [float(s) for s in scales.split(",") if s]
    with outputs.claim(out_dir, "bench") as out:
        results = run_bench(out, scale_list, province_scale or None, city, period, verbs=list(VERBS))
    # run_bench has printed the table (bench.md) into the run log (stderr).
    if not all(r.get("ok") for r in results):
        sys.exit(1)


def _seeds(text: str) -> list[int]:
    """'0-4' or '0,1,2' as a list of seeds."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out += list(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


@click.command("evaluate-detectors")
@click.option("--city", required=True, help="城市：data/reference/ 下的名称（如 zibo）或参考数据目录路径")
@click.option("--period", required=True, help="统计期，如 2023Q2")
@click.option(
    "--scenario", default="default", show_default=True, help="场景：default（另跑 clean）或 realistic"
)
@click.option("--scales", default="0.1,1", show_default=True, help="逗号分隔的规模（default 场景）")
@click.option("--seed", default=0, show_default=True, help="随机种子（default 场景）")
@click.option("--seeds", default="0-4", show_default=True, help="种子（realistic 等场景，如 0-4 或 0,1,2）")
@click.option(
    "--history", "history_quarters", default=4, show_default=True, help="生成的历史季度数（default 场景）"
)
def evaluate_detectors_command(
    city: str, period: str, scenario: str, scales: str, seed: int, seeds: str, history_quarters: int
) -> None:
    """异常检测效果评估：各类异常在单位层面的召回率、精确率，以及正常单位每百个的误报数。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    import sys

    from haocha_analysis.core.errors import EXIT_INPUT_ERROR
    from haocha_analysis.core.reference import load_city

    try:
        ref = load_city(city)
        if scenario == "default":
            _evaluate_default(
                ref, period, [float(x) for x in scales.split(",") if x.strip()], seed, history_quarters
            )
        else:
            _evaluate_seeds(ref, period, scenario, _seeds(seeds))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        click.echo(f"\n进程峰值内存 {peak:,.0f} MB")
    except HaochaInputError as err:
        click.echo(err.message(), err=True)
        sys.exit(EXIT_INPUT_ERROR)


def _evaluate_default(ref, period: str, scale_list: list[float], seed: int, history_quarters: int) -> None:
    from haocha_analysis.bench import scoring
    from haocha_analysis.bench.detectors import _fmt, run_scenario

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
            click.echo(wrong[["error", "kind", "unit_id", "description"]].fillna("").to_string(index=False))


def _evaluate_seeds(ref, period: str, scenario: str, seeds: list[int]) -> None:
    from haocha_analysis.bench.detectors import _fmt, evaluate_seeds

    result = evaluate_seeds(ref, period, seeds, scenario)
    click.echo(f"\n== 场景 {scenario}，种子 {'、'.join(map(str, seeds))}（各季度合计）==")
    click.echo(_fmt(result["table"]))
    click.echo(
        f"\n正常单位 {result['clean_units']:,} 个（各种子合计），误报 {result['false_alarms']} 条，"
        f"每百个正常单位误报 {result['false_alarms_per_100']:.2f} 条（目标 ≤ 0.5）"
    )
    for run in result["per_seed"]:
        t = run["table"].set_index("kind").loc["all"]
        click.echo(
            f"  种子 {run['seed']}：TP {int(t['tp'])} FP {int(t['fp'])} FN {int(t['fn'])}，"
            f"误报 {run['false_alarms']}，历史期 {run['history_periods']} 个，"
            f"生成 {run['seconds_generate']:.1f} 秒，检测 {run['seconds_detect']:.1f} 秒"
        )
    wrong = result["mismatches"]
    if len(wrong):
        click.echo("\n漏报（FN）与误报（FP），附检测器给出的说明：")
        show = wrong[["seed", "error", "kind", "unit_id", "role", "description"]].fillna("")
        click.echo(show.to_string(index=False))
    else:
        click.echo("\n无漏报、无误报。")


COMMANDS = [bench_command, evaluate_detectors_command]
