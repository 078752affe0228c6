"""The haocha unit-reports command."""

from __future__ import annotations

from pathlib import Path

import click

from haocha_analysis.cli import CITY_HELP, user_errors
from haocha_analysis.cli.engine_opts import URL_HELP, data_location, engine_options


def _commands() -> list[click.Command]:
    from haocha_analysis.core.periods import LATEST_HELP, PERIOD_HELP

    @click.command("unit-reports")
    @click.option("--city", required=True, help=CITY_HELP)
    @click.option("--period", required=True, help=PERIOD_HELP + LATEST_HELP)
    @click.option("--data", "data_dir", default=None, help="规范表目录；省略时使用内置合成数据" + URL_HELP)
    @click.option(
        "--level",
        type=click.Choice(["district", "city_dept", "district_dept"]),
        default="district",
        show_default=True,
        help="单位层级：district 区县、city_dept 市直部门、district_dept 区直部门",
    )
    @click.option(
        "--units", "unit_ids", default=None, help="只为这些单位生成（unit_id，逗号分隔；忽略 --level）"
    )
    @click.option(
        "--out",
        "out_dir",
        type=click.Path(path_type=Path),
        default=None,
        help="输出目录；省略时为 reports/<城市>/<统计期>/units/",
    )
    @engine_options
    @user_errors
    def unit_reports(
        city: str,
        period: str,
        data_dir: str | None,
        level: str,
        unit_ids: str | None,
        out_dir: Path | None,
        engine: object,
    ) -> None:
        """单位报告：每个单位一份 HTML 与 PDF（本单位与同级、全市对比，近四期走势，异常、质检、差评）。"""
        import sys

        from haocha_analysis.pipeline import units
        from haocha_analysis.pipeline.run import BulletinFailed

        data = data_location(data_dir, engine)
        ids = [u.strip() for u in (unit_ids or "").split(",") if u.strip()]
        if out_dir is not None:  # the folder is swapped in whole: it must be ours (or absent, or empty)
            from haocha_analysis.core import outputs
            from haocha_analysis.core.reference import load_city

            inputs = {"--data": data, "--city": load_city(city).path}
            out_dir = outputs.check_out(out_dir, "units", inputs)
        try:
            units.cli_entry(city, period, data, out_dir, level, ids or None, engine)
        except BulletinFailed as err:
            click.echo(f"错误：{err}", err=True)
            sys.exit(1)

    return [unit_reports]


COMMANDS = _commands()
