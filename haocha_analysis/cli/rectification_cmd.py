"""The haocha rectification command: the 差评 ledger (核实 → 整改 → 回访) as of a date."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from haocha_analysis.cli import (
    city_option,
    out_option,
    read_period_option,
    report_coverage,
    user_errors,
)
from haocha_analysis.cli.engine_opts import data_url_option, engine_options, local_folder


@click.command("rectification")
@city_option
@read_period_option
@data_url_option
@out_option
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="台账日期 YYYY-MM-DD：此日之后的核实、整改、回访视为尚未发生（默认：数据提取日期，未记录则为当天）",
)
@engine_options
@user_errors
def rectification_command(
    city: str, period: str, data_dir: str, out_dir: Path, as_of: datetime | None, engine: object
) -> None:
    """差评核实整改台账：每条差评的阶段、工作日时限与超期标记，按单位、区县的整改指标（CSV、XLSX）。"""
    from haocha_analysis.analysis.rectification import open_ledger
    from haocha_analysis.analysis.rectification_report import write_outputs
    from haocha_analysis.core import outputs
    from haocha_analysis.core.reference import load_city
    from haocha_analysis.engine.api import ledger_records, session

    ref = load_city(city)
    local = local_folder(data_dir, engine)
    with outputs.claim(out_dir, "rectification", {"--data": local, "--city": ref.path}) as out:
        day = as_of.date() if as_of else None
        if engine.engine == "pandas":
            ledger = open_ledger(city, period, local, day)
        else:  # only the 差评 and the records that judge them leave the cluster
            with session(engine):
                ledger = open_ledger(
                    city, period, data_dir, day, lambda p: ledger_records(data_dir, p, engine)
                )
        report_coverage(ledger.coverage, Path(data_dir))
        paths = write_outputs(ledger, out)
    total = ledger.by_district.iloc[-1]
    click.echo(
        f"{ledger.city} {ledger.period.title_cn()} 差评台账（截至 {ledger.as_of.isoformat()}）："
        f"差评 {int(total['bad'])} 件，"
        f"有效 {int(total['valid'])} 件，无效 {int(total['invalid'])} 件，"
        f"已整改 {int(total['rectified'])} 件（按时 {int(total['on_time'])} 件），"
        f"超期 {int(total['overdue'])} 件"
    )
    for path in paths:
        click.echo(f"  {path}")


COMMANDS = [rectification_command]
