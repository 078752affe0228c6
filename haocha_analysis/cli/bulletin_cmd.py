"""The haocha bulletin and haocha run commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from haocha_analysis.cli import CITY_HELP, user_errors
from haocha_analysis.cli.engine_opts import URL_HELP, data_location, engine_options
from haocha_analysis.core.periods import LATEST_HELP, PERIOD_HELP

DATA_HELP = "规范表目录；省略时使用内置合成数据（首次运行时生成）"
OUT_HELP = "输出目录；省略时为 reports/<城市>/<统计期>/"


def _document_options(f: Callable) -> Callable:
    """Options both verbs share: what the document says and how it compares."""
    options = [
        click.option("--data", "data_dir", default=None, help=DATA_HELP + URL_HELP),
        click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help=OUT_HELP),
        click.option(
            "--extracted-on", default=None, help="数据提取时间 YYYY-MM-DD（附件备注）；省略时由数据决定"
        ),
        click.option(
            "--narrative",
            "narrative_file",
            type=click.Path(path_type=Path),
            default=None,
            help="通报文字模板 bulletin.yml；省略时用城市参考目录中的模板",
        ),
        click.option(
            "--issued-on",
            default=None,
            help="成文日期 YYYY-MM-DD；省略时为数据提取日期后 city.yml 的 issue_lag_working_days 个工作日",
        ),
        click.option("--doc-number", default="", help="发文字号（文号），如 淄审批字〔2023〕12号"),
        click.option(
            "--compare", is_flag=True, help="附件增加环比、同比列，总体情况逐项写出环比、同比（需有上期数据）"
        ),
        click.option(
            "--settings",
            "settings_file",
            type=click.Path(path_type=Path),
            default=None,
            help="阈值设置 settings.yml；省略时用城市参考目录中的 settings.yml（如有）",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("bulletin")
@click.option("--city", required=True, help=CITY_HELP)
@click.option("--period", required=True, help=PERIOD_HELP + LATEST_HELP)
@_document_options
@engine_options
@user_errors
def bulletin(city: str, period: str, **options: object) -> None:
    """生成季度通报：执行 notebook，输出无代码的 HTML、PDF 与 Word 公文、附件表格与运行清单。"""
    from haocha_analysis.pipeline import run as pipeline

    options["data_dir"] = data_location(options["data_dir"], options["engine"])
    pipeline.cli_entry(city, period, ingest=False, **options)


@click.command("run")
@click.option("--city", required=True, help=CITY_HELP)
@click.option(
    "--period",
    default="latest",
    show_default=True,
    help=PERIOD_HELP + LATEST_HELP,
)
@click.option(
    "--inbox",
    type=click.Path(path_type=Path),
    default=None,
    help="待导入的原始导出文件目录（该统计期尚无规范表时导入）",
)
@click.option("--profile", type=click.Path(path_type=Path), default=None, help="原始导出的数据来源配置 YAML")
@click.option(
    "--unit-level",
    type=click.Choice(["district", "city_dept", "district_dept", "none"]),
    default="district",
    show_default=True,
    help="同时生成单位报告的层级（units/<单位编码>.html、.pdf）；none 表示不生成",
)
@_document_options
@engine_options
@user_errors
def run(city: str, period: str, unit_level: str, **options: object) -> None:
    """定时任务入口：按需导入 → 质检 → 附件表格 → 异常发现 → 通报 → 单位报告。"""
    from haocha_analysis.pipeline import run as pipeline

    options["data_dir"] = data_location(options["data_dir"], options["engine"])
    pipeline.cli_entry(
        city, period, ingest=True, unit_level=None if unit_level == "none" else unit_level, **options
    )


COMMANDS = [bulletin, run]
