"""The haocha quality command."""

from __future__ import annotations

import time
from pathlib import Path

import click

from haocha_analysis.cli import city_option, out_option, read_period_option, user_errors
from haocha_analysis.cli.engine_opts import data_url_option, engine_options, local_folder


@click.command("quality")
@city_option
@read_period_option
@data_url_option
@out_option
@engine_options
@user_errors
def quality_command(city: str, period: str, data_dir: str, out_dir: Path, engine: object) -> None:
    """数据质检：关联度、5分钟及时性、完整性、重复与孤立记录，按来源系统、单位和日期输出。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    from haocha_analysis.analysis.province import is_province
    from haocha_analysis.core import outputs
    from haocha_analysis.core.reference import load_city
    from haocha_analysis.ingest.storage import resolve_period_in

    started = time.perf_counter()
    # A bad period is refused before the output folder is touched.
    stat_period = resolve_period_in(period, data_dir or None)
    local = local_folder(data_dir, engine)
    if is_province(city):
        _province(Path(city), stat_period, data_dir, local, out_dir, engine)
        click.echo(f"已写出各市质检表格到 {out_dir}（用时 {time.perf_counter() - started:.1f} 秒）")
        return
    ref = load_city(city)
    with outputs.claim(out_dir, "quality", {"--data": local, "--city": ref.path}) as out:
        if engine.engine == "pandas":
            from haocha_analysis.quality.run import run_from_folder

            report = run_from_folder(city, period, local, out)
        else:
            report = _on_engine(ref, stat_period, data_dir, out, engine)
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


def _on_engine(ref: object, period: object, data: str, out: Path, engine: object) -> object:
    """Records → counts on the engine, then the report every engine shares (counts → report)."""
    from haocha_analysis.core.coverage import require_records
    from haocha_analysis.core.settings import for_city as settings_for_city
    from haocha_analysis.engine.api import quality_counts, session
    from haocha_analysis.ingest.storage import available_periods
    from haocha_analysis.quality.outputs import write_outputs
    from haocha_analysis.quality.report import quality_report
    from haocha_analysis.quality.settings import QualitySettings

    settings = settings_for_city(QualitySettings, ref.path, "quality")  # as run_from_folder
    with session(engine):
        counts, cov = quality_counts(data, period, ref, settings, engine)
    require_records(cov, data, available_periods(Path(data)))
    report = quality_report(ref, counts, period, settings)
    report.figures["data_coverage"] = cov.as_dict()
    write_outputs(report, out)
    return report


def _province(
    folder: Path, period: object, data: str, local: Path | None, out_dir: Path, engine: object
) -> None:
    """A province folder: each city's quality report in ``<out>/<city key>/``."""
    from haocha_analysis.analysis.province import city_data, city_result, load_province
    from haocha_analysis.core import outputs
    from haocha_analysis.core.coverage import require_records
    from haocha_analysis.core.settings import for_city as settings_for_city
    from haocha_analysis.quality.outputs import write_outputs
    from haocha_analysis.quality.report import quality_report
    from haocha_analysis.quality.run import run_from_folder
    from haocha_analysis.quality.settings import QualitySettings

    province = load_province(folder)

    def settings(key: str) -> QualitySettings:  # each city's own settings.yml, as run_from_folder
        return settings_for_city(QualitySettings, province.cities[key].path, "quality")

    with outputs.claim(out_dir, "quality", {"--data": local, "--city": province.path}) as out:
        reports = {}
        if engine.engine == "pandas":
            for key, ref in province.cities.items():
                reports[key] = run_from_folder(str(ref.path), period.label, city_data(data, key), out / key)
        else:
            # Every city is a locality group: counted in parallel, one task per city.
            from haocha_analysis.engine.api import quality_counts_by_group, session

            with session(engine):
                counted = quality_counts_by_group(
                    data, period, engine, lambda key: province.cities[key], settings
                )
            for key, ref in province.cities.items():
                counts, cov = city_result(counted, key, data)
                require_records(cov, city_data(data, key))
                reports[key] = quality_report(ref, counts, period, settings(key))
                reports[key].figures["data_coverage"] = cov.as_dict()
                write_outputs(reports[key], out / key)
    for key, report in reports.items():
        figures = report.figures
        click.echo(
            f"{key} {figures['city']}：生产 {figures['produced']['total']} 条，"
            f"质检通过 {figures['passed']['total']}，关联入库 {figures['stored']['total']}"
        )


COMMANDS = [quality_command]
