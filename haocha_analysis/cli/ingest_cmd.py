"""The haocha ingest command."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import click

from haocha_analysis.cli import city_option, out_option, period_option, user_errors
from haocha_analysis.core import outputs
from haocha_analysis.core.config import SALT_ENV, hash_salt
from haocha_analysis.core.errors import HaochaInputError


def _salt_from_env(name: str) -> str:
    if name == SALT_ENV:
        return hash_salt()
    value = os.environ.get(name)
    if not value:
        raise HaochaInputError(
            f"环境变量 {name} 未设置或为空，无法对身份证号、手机号加盐哈希",
            fix=f"export {name}=<盐>，或去掉 --salt-env 使用 {SALT_ENV} / .haocha-salt",
        )
    return value


@click.command("ingest")
@click.option("--profile", "profile", required=True, help="数据来源配置：YAML 路径或 data/profiles/ 下的名称")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@city_option
@period_option
@out_option
@click.option("--salt-env", default=SALT_ENV, show_default=True, help="存放哈希盐的环境变量名")
@click.option(
    "--extracted-on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="数据提取日期（附件备注行），默认今天",
)
@user_errors
def ingest_command(
    profile: str,
    files: tuple[Path, ...],
    city: str,
    period: str,
    out_dir: Path,
    salt_env: str,
    extracted_on: datetime | None,
) -> None:
    """导入导出文件（CSV/XLSX/Parquet），写出规范表与 ingest_log.json。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    from haocha_analysis.core.periods import parse_period, period_label
    from haocha_analysis.core.reference import load_city
    from haocha_analysis.core.schemas import TABLES
    from haocha_analysis.ingest.build import ingest_files
    from haocha_analysis.ingest.labels import TABLE_LABELS

    ref = load_city(city)
    stat_period = parse_period(period)
    salt = _salt_from_env(salt_env)
    inputs = {"--city": ref.path, "--profile": profile if Path(profile).is_file() else None}
    inputs.update({f"导入文件 {f.name}": f for f in files})
    with outputs.claim(out_dir, "data", inputs) as out:
        log = ingest_files(
            profile,
            list(files),
            ref,
            stat_period,
            out,
            salt=salt,
            extracted_on=extracted_on.date() if extracted_on else None,
        )
    for warning in log.get("warnings", []):
        click.echo(warning, err=True)
    totals = log["totals"]
    sheets = sum(1 for f in log["files"] if f.get("sheet") is not None)
    read = f"{len(files)} 个文件" + (f"（{sheets} 个工作表）" if sheets else "")
    click.echo(f"已导入 {read}到 {out_dir}（统计期 {period_label(log['period'])}）")
    for table in TABLES:
        t = totals[table]
        click.echo(
            f"  {TABLE_LABELS[table]}：保留 {t['kept']}，重复 {t['duplicates_dropped']}，"
            f"拒收 {t['rejected']}，统计期外 {t['excluded_by_period']}"
        )


COMMANDS = [ingest_command]
