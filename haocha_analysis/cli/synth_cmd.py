"""The haocha synth command."""

from __future__ import annotations

import time
from pathlib import Path

import click

from haocha_analysis.cli import city_option, out_option, period_option, user_errors
from haocha_analysis.core.config import DEFAULT_SCENARIO
from haocha_analysis.core.periods import parse_period, period_label


@click.command("synth")
@city_option
@period_option
@click.option("--scale", type=float, default=1.0, show_default=True, help="计数缩放比例（1 = 通报原数）")
@click.option("--seed", type=int, default=0, show_default=True, help="随机种子")
@click.option("--scenario", default=DEFAULT_SCENARIO, show_default=True, help="场景名称或 YAML 文件")
@click.option("--history", type=int, default=0, show_default=True, help="同时生成此前若干个统计期")
@click.option("--csv", "as_csv", is_flag=True, help="写 CSV 而非 Parquet")
@click.option(
    "--province",
    type=click.IntRange(min=1),
    default=None,
    help="生成一个省：N 个城市（以 --city 为模板，各自的名称、单位编码与种子），"
    "逐市写出参考数据与按统计期分区的规范表",
)
@out_option
@user_errors
def synth_command(city, period, scale, seed, scenario, history, as_csv, province, out_dir) -> None:
    """生成合成“好差评”数据（规范表与 truth.json），默认场景在 scale 1 时逐格复现通报附件。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    from haocha_analysis.core import outputs
    from haocha_analysis.core.reference import load_city
    from haocha_analysis.synth.generate import (
        generate,
        iter_history,
        peak_rss_mb,
        write,
        write_history,
    )

    started = time.perf_counter()
    ref = load_city(city)
    p = parse_period(period)
    scenario_file = scenario if Path(scenario).is_file() else None
    if province:
        _province(ref, p, province, scale, seed, scenario, out_dir, started)
        return
    with outputs.claim(out_dir, "data", {"--city": ref.path, "--scenario": scenario_file}) as out:
        result = generate(ref, p, scale, seed, scenario)
        write(result, out, p.label, csv=as_csv)
        gen_s = result.seconds
        lines = [
            f"{p.title_cn()}：办件 {len(result.tables['cases'])}，评价 {len(result.tables['evaluations'])}，"
            f"异常 {len(result.truth['anomalies'])} 项（生成 {gen_s:.1f} 秒）"
        ]
        del result
        if history:
            for label, tables in iter_history(ref, p, history, scale, seed, scenario):
                write_history({label: tables}, out, csv=as_csv)
                lines.append(
                    f"{period_label(label)}：办件 {len(tables['cases'])}，评价 {len(tables['evaluations'])}"
                )
    click.echo("\n".join(lines))
    click.echo(
        f"写入 {out_dir}；总耗时 {time.perf_counter() - started:.1f} 秒，峰值内存 {peak_rss_mb():.0f} MB"
    )


def _province(ref, p, n: int, scale: float, seed: int, scenario: str, out_dir: Path, started: float) -> None:
    """``--province N``: N cities written one by one (only one city's records in memory)."""
    from haocha_analysis.core import outputs
    from haocha_analysis.synth.generate import peak_rss_mb
    from haocha_analysis.synth.province import write_province

    scenario_file = scenario if Path(scenario).is_file() else None
    with outputs.claim(out_dir, "data", {"--city": ref.path, "--scenario": scenario_file}) as out:
        made = write_province(ref, p, n, out, scale=scale, seed=seed, scenario=scenario)
    for city, cases, evaluations in made:
        click.echo(f"{city.key} {city.name}：办件 {cases}，评价 {evaluations}")
    click.echo(
        f"写入 {out_dir}（{n} 个城市：reference/<城市>/ 参考数据，city=<城市>/ 规范表）；"
        f"总耗时 {time.perf_counter() - started:.1f} 秒，峰值内存 {peak_rss_mb():.0f} MB"
    )


COMMANDS = [synth_command]
