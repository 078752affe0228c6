"""The haocha tables command."""

from __future__ import annotations

from pathlib import Path

import click

from haocha_analysis.analysis.annexes import COMPARISONS, build_tables, load_period_data, write_outputs
from haocha_analysis.cli import city_option, data_option, out_option, period_option, user_errors
from haocha_analysis.core.periods import resolve_period


@click.command("tables")
@city_option
@period_option
@data_option
@out_option
@click.option(
    "--extracted-on", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="数据提取日期（备注行）"
)
@click.option("--compare", is_flag=True, help="增加环比、同比列（需有上期、上年同期数据）")
@user_errors
def tables_command(
    city: str, period: str, data_dir: Path, out_dir: Path, extracted_on: object, compare: bool
) -> None:
    """生成通报附件1–5（CSV、XLSX）、标题段数字 headline.json 与跨附件核对 reconciliation.csv。"""
    from haocha_analysis.core import outputs
    from haocha_analysis.core.reference import load_city

    ref = load_city(city)
    p = resolve_period(period)
    with outputs.claim(out_dir, "tables", {"--data": data_dir, "--city": ref.path}) as out:
        data = load_period_data(data_dir, p)
        history = None
        if compare:
            history = {}
            for kind in COMPARISONS:
                shifted = p.shifted(kind)
                if shifted is not None:
                    history[shifted.label] = load_period_data(data_dir, shifted)
        result = build_tables(
            ref,
            data,
            p,
            extracted_on=extracted_on.date() if extracted_on else None,
            compare=compare,
            history=history,
        )
        paths = write_outputs(result, out)
    gaps = int((result.reconciliation["difference"] != 0).sum())
    click.echo(
        f"{ref.city_name} {p.title_cn()}：总评价数 {result.headline['total_evaluations']}，"
        f"评价率 {result.headline['evaluation_rate']}，有效差评 {result.headline['valid_bad_reviews']}；"
        f"跨附件核对 {len(result.reconciliation)} 项，有差额 {gaps} 项（见 reconciliation.csv）"
    )
    for path in paths:
        click.echo(f"  {path}")


COMMANDS = [tables_command]
