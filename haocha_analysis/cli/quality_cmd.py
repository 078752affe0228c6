"""The haocha quality command."""

from __future__ import annotations

import time
from pathlib import Path

import click

from haocha_analysis.cli import city_option, data_option, out_option, period_option, user_errors


@click.command("quality")
@city_option
@period_option
@data_option
@out_option
@user_errors
def quality_command(city: str, period: str, data_dir: Path, out_dir: Path) -> None:
    """数据质检：关联度、5分钟及时性、完整性、重复与孤立记录，按来源系统、单位和日期输出。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    from haocha_analysis.core import outputs
    from haocha_analysis.core.periods import resolve_period
    from haocha_analysis.core.reference import load_city
    from haocha_analysis.quality.run import run_from_folder

    started = time.perf_counter()
    ref = load_city(city)
    resolve_period(period)  # a bad period is refused before the output folder is touched
    with outputs.claim(out_dir, "quality", {"--data": data_dir, "--city": ref.path}) as out:
        report = run_from_folder(city, period, data_dir, out)
    figures = report.figures
    click.echo(
        f"{figures['city']} {figures['period_label']} 数据质检：生产 {figures['produced']['total']} 条，"
        f"提交 {figures['submitted']['total']}，质检通过 {figures['passed']['total']}，"
        f"关联入库 {figures['stored']['total']}。"
    )
    click.echo(figures["sentence"])
    cov = figures.get("data_coverage") or {}
    if cov.get("partial"):
        click.echo(
            f"警告：数据仅覆盖 {cov['first_record']} 至 {cov['last_record']}，统计期其余时段无数据",
            err=True,
        )
    click.echo(f"已写出质检表格到 {out_dir}（用时 {time.perf_counter() - started:.1f} 秒）")


COMMANDS = [quality_command]
