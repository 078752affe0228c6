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

from .errors import EXIT_INPUT_ERROR, HaochaInputError
from .periods import PERIOD_HELP

CITY_HELP = "城市：data/reference/ 下的名称（如 zibo）或参考数据目录路径"
DATA_HELP = "规范表目录（Parquet 分区，或 cases/evaluations/rectifications 的 .parquet/.csv）"


def city_option(f: Callable) -> Callable:
    """--city."""
    return click.option("--city", required=True, help=CITY_HELP)(f)


def period_option(f: Callable) -> Callable:
    """--period."""
    return click.option("--period", required=True, help=PERIOD_HELP)(f)


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


STAGE_MODULES = ("ingest", "synth", "tables", "quality", "anomalies", "render", "bench")


class StageGroup(click.Group):
    """A group whose verbs come from the stage modules, loaded when the CLI is first used.

    Loading lazily (not at import time) means a stage module may import the option helpers above
    without the circular import hiding its commands, whichever module is imported first.
    """

    _loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        import importlib

        for module in STAGE_MODULES:
            try:
                mod = importlib.import_module(f"haocha_analysis.{module}")
            except ModuleNotFoundError as err:
                if err.name == f"haocha_analysis.{module}":
                    continue
                raise
            for command in getattr(mod, "COMMANDS", []):
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: D102
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: D102
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=StageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="haocha")
def cli() -> None:
    """haocha：政务服务“好差评”数据的导入、质检、通报表格、异常发现与季度通报。"""


def main() -> None:
    """Entry point of the ``haocha`` script."""
    cli()
