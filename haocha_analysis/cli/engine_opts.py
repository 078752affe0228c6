"""Options of the verbs that read records: the engine and, for Dask, the cluster."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

from haocha_analysis.cli import DATA_HELP

ENGINE_HELP = "计算引擎：pandas（单机，默认）或 dask（本机多进程或已有 Dask 集群）"
SCHEDULER_HELP = (
    "已有 Dask 集群的调度器地址（如 tcp://主机:8786）；默认取环境变量 DASK_SCHEDULER_ADDRESS，否则在本机启动"
)
URL_HELP = "；dask 引擎也接受 s3://、hdfs://、file:// 等地址"


def data_url_option(f: Callable) -> Callable:
    """--data as text: a folder, or (with --engine dask) an fsspec URL such as s3://… or memory://…."""
    return click.option("--data", "data_dir", required=True, help=DATA_HELP + URL_HELP)(f)


def engine_options(f: Callable) -> Callable:
    """--engine, --scheduler, --workers, --memory-limit, passed to the verb as ``engine`` (EngineOptions)."""

    @click.option("--engine", type=click.Choice(["pandas", "dask"]), default="pandas", help=ENGINE_HELP)
    @click.option("--scheduler", default="", help=SCHEDULER_HELP)
    @click.option("--workers", type=click.IntRange(min=1), default=2, help="本机 Dask 集群的工作进程数")
    @click.option("--memory-limit", default="auto", help="本机 Dask 集群每个工作进程的内存上限（如 4GB）")
    @wraps(f)
    def wrapper(*args, engine: str, scheduler: str, workers: int, memory_limit: str, **kwargs):
        from haocha_analysis.engine import EngineOptions

        kwargs["engine"] = EngineOptions(
            engine=engine,
            scheduler=scheduler,
            workers=workers,
            memory_limit=memory_limit,
            progress=engine == "dask" and sys.stdout.isatty(),
        )
        return f(*args, **kwargs)

    return wrapper


def local_folder(data_dir: str, engine: object) -> Path | None:
    """--data as a local folder, or None for a URL (only the dask engine reads URLs: else exit 2)."""
    from haocha_analysis.core.config import is_url
    from haocha_analysis.engine import refuse_url_on_pandas

    if not is_url(data_dir):
        return Path(data_dir)
    refuse_url_on_pandas(data_dir, engine)
    return None


def data_location(data_dir: str | None, engine: object) -> Path | str | None:
    """--data of the document verbs: None (built-in data), a folder, or (dask) the URL as given."""
    if not data_dir:
        return None
    return local_folder(data_dir, engine) or data_dir
