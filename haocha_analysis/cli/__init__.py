"""The ``haocha`` command line: one click group, one verb per stage.

Every verb that reads data takes ``--city``, ``--period`` and ``--data``. Bad input exits with status 2
and a message naming file, column, rows and fix; nothing partial is written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

from haocha_analysis.cli import zh
from haocha_analysis.core.errors import EXIT_INPUT_ERROR, HaochaInputError
from haocha_analysis.core.periods import LATEST_HELP, PERIOD_HELP

zh.install()  # before any option is declared: help texts are translated when they are made

CITY_HELP = "城市：data/reference/ 下的名称（如 zibo）或参考数据目录路径"
DATA_HELP = "规范表目录（Parquet 分区，或 cases/evaluations/rectifications 的 .parquet/.csv）"


def city_option(f: Callable) -> Callable:
    """--city."""
    return click.option("--city", required=True, help=CITY_HELP)(f)


def period_option(f: Callable) -> Callable:
    """--period (a verb that writes data: no ``latest``)."""
    return click.option("--period", required=True, help=PERIOD_HELP)(f)


def read_period_option(f: Callable) -> Callable:
    """--period of a verb that reads data: ``latest`` allowed."""
    return click.option("--period", required=True, help=PERIOD_HELP + LATEST_HELP)(f)


def data_option(f: Callable) -> Callable:
    """--data."""
    return click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help=DATA_HELP)(
        f
    )


def out_option(f: Callable) -> Callable:
    """--out."""
    return click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="输出目录")(
        f
    )


def user_errors(f: Callable) -> Callable:
    """Turn HaochaInputError into a clear message and exit status 2."""

    @wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except HaochaInputError as err:
            click.echo(err.message(), err=True)
            sys.exit(EXIT_INPUT_ERROR)

    return wrapper


def check_coverage(data: dict, period: object, data_dir: Path) -> None:
    """Refuse a period without records (exit 2); warn on stderr when records cover only part of it."""
    from haocha_analysis.core.coverage import coverage

    report_coverage(coverage(data, period), data_dir)


def report_coverage(cov: object, data_dir: Path) -> None:
    """Refuse a Coverage without records (exit 2); warn on stderr when it is partial."""
    from haocha_analysis.core.coverage import require_records
    from haocha_analysis.ingest.storage import available_periods

    require_records(cov, data_dir, available_periods(Path(data_dir)))
    if cov.partial:
        click.echo("警告：" + cov.sentence().removeprefix("需要说明的是，"), err=True)


# verb → (module under haocha_analysis.cli, short help). The table is static so that ``haocha --help``
# lists every verb without importing pandas and the stages; a verb's module is imported when it runs.
VERBS: dict[str, tuple[str, str]] = {
    "ingest": ("ingest_cmd", "导入导出文件（CSV/XLSX/Parquet），写出规范表与 ingest_log.json。"),
    "quality": ("quality_cmd", "数据质检：关联度、5分钟及时性、完整性、重复与孤立记录。"),
    "tables": ("tables_cmd", "生成通报附件1–5（CSV、XLSX）、标题段数字与跨附件核对。"),
    "anomalies": ("anomalies_cmd", "异常发现：写出按严重程度排序的异常清单。"),
    "rectification": ("rectification_cmd", "差评核实整改台账：阶段、工作日时限、超期清单与整改指标。"),
    "bulletin": ("bulletin_cmd", "生成季度通报：HTML、PDF、附件表格与运行清单。"),
    "run": ("bulletin_cmd", "定时任务入口：按需导入 → 质检 → 附件表格 → 异常发现 → 通报。"),
    "unit-reports": ("unit_reports_cmd", "单位报告：每个区县或部门一份 HTML 与 PDF（并行生成）。"),
    "synth": ("synth_cmd", "生成合成“好差评”数据（规范表与 truth.json）。"),
    "bench": ("bench_cmd", "基准测试：各阶段在不同规模下的耗时与内存。"),
    "evaluate-detectors": ("bench_cmd", "异常检测效果评估：精确率、召回率与误报数。"),
}


class LazyGroup(click.Group):
    """A group whose verbs live in ``haocha_analysis.cli.<module>`` and are imported on use.

    A verb whose module is missing or does not define it is an error, never silently skipped.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: D102
        return list(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: D102
        if cmd_name not in VERBS:
            return None
        import importlib

        module = importlib.import_module(f"haocha_analysis.cli.{VERBS[cmd_name][0]}")
        for command in module.COMMANDS:
            if command.name == cmd_name:
                return command
        raise RuntimeError(f"haocha_analysis.cli.{VERBS[cmd_name][0]} does not define the verb {cmd_name}")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:  # noqa: D102
        with formatter.section("命令"):
            formatter.write_dl([(name, help_text) for name, (_, help_text) in VERBS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="haocha")
def cli() -> None:
    """haocha：政务服务“好差评”数据的导入、质检、通报表格、异常发现与季度通报。"""


def main() -> None:
    """Entry point of the ``haocha`` script."""
    cli()
