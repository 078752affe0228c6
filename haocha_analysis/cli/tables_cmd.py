"""The haocha tables command."""

from __future__ import annotations

from pathlib import Path

import click

from haocha_analysis.cli import (
    check_coverage,
    city_option,
    out_option,
    read_period_option,
    report_coverage,
    user_errors,
)
from haocha_analysis.cli.engine_opts import data_url_option, engine_options, local_folder
from haocha_analysis.core.errors import HaochaInputError


@click.command("tables")
@city_option
@read_period_option
@data_url_option
@out_option
@click.option(
    "--extracted-on", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="数据提取日期（备注行）"
)
@click.option("--compare", is_flag=True, help="增加环比、同比列（需有上期、上年同期数据）")
@engine_options
@user_errors
def tables_command(
    city: str,
    period: str,
    data_dir: str,
    out_dir: Path,
    extracted_on: object,
    compare: bool,
    engine: object,
) -> None:
    """生成通报附件1–5（CSV、XLSX）、标题段数字 headline.json 与跨附件核对 reconciliation.csv。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    from haocha_analysis.analysis.annexes import build_tables, load_comparison_data, load_period_data
    from haocha_analysis.analysis.province import is_province
    from haocha_analysis.core import outputs
    from haocha_analysis.core.reference import load_city
    from haocha_analysis.ingest.storage import resolve_period_in

    p = resolve_period_in(period, data_dir or None)
    local = local_folder(data_dir, engine)
    if is_province(city):
        if compare:
            raise HaochaInputError("--compare 暂不支持省级目录", fix="去掉 --compare，或逐市运行")
        _province(Path(city), p, data_dir, local, out_dir, extracted_on, engine)
        return
    ref = load_city(city)
    with outputs.claim(out_dir, "tables", {"--data": local, "--city": ref.path}) as out:
        if engine.engine != "pandas":  # the comparison periods are counted by the same engine
            from haocha_analysis.engine.api import session, tables_result

            with session(engine):
                extracted = extracted_on.date() if extracted_on else None
                result, cov = tables_result(data_dir, p, ref, engine, extracted, compare)
            report_coverage(cov, Path(data_dir))
        else:
            data = load_period_data(local, p)
            check_coverage(data, p, local)
            history = load_comparison_data(local, p) if compare else None
            result = build_tables(
                ref,
                data,
                p,
                extracted_on=extracted_on.date() if extracted_on else None,
                compare=compare,
                history=history,
            )
        _report(ref, p, result, out)


def _report(ref: object, p: object, result: object, out_dir: Path) -> None:
    """Write the outputs and say what was written."""
    from haocha_analysis.analysis.annexes import write_outputs

    paths = write_outputs(result, out_dir)
    gaps = int((result.reconciliation["difference"] != 0).sum())
    click.echo(
        f"{ref.city_name} {p.title_cn()}：总评价数 {result.headline['total_evaluations']}，"
        f"评价率 {result.headline['evaluation_rate']}，有效差评 {result.headline['valid_bad_reviews']}；"
        f"跨附件核对 {len(result.reconciliation)} 项，有差额 {gaps} 项（见 reconciliation.csv）"
    )
    for path in paths:
        click.echo(f"  {path}")


def _province(
    folder: Path,
    p: object,
    data: str,
    local: Path | None,
    out_dir: Path,
    extracted_on: object,
    engine: object,
) -> None:
    """A province: each city's annexes in ``<out>/<city key>/``, and the 各市 roll-up in ``<out>/``."""
    from haocha_analysis.analysis.annexes import build_tables, load_period_data, tables_from_counts
    from haocha_analysis.analysis.province import city_data, city_result, load_province, rollup, write_rollup
    from haocha_analysis.core import outputs

    province = load_province(folder)
    extracted = extracted_on.date() if extracted_on else None
    results = {}
    with outputs.claim(out_dir, "tables", {"--data": local, "--city": province.path}) as out:
        if engine.engine == "pandas":
            for key, ref in province.cities.items():
                source = Path(city_data(data, key))
                tables = load_period_data(source, p)
                check_coverage(tables, p, source)
                results[key] = build_tables(ref, tables, p, extracted_on=extracted)
        else:
            # Every city is a locality group: reduced in parallel, one task per city, no shuffle.
            from haocha_analysis.engine.api import session, tables_counts_by_group

            with session(engine):
                counts = tables_counts_by_group(data, p, engine, lambda key: province.cities[key].limits)
            for key, ref in province.cities.items():
                c = city_result(counts, key, data)
                report_coverage(c.coverage, Path(city_data(data, key)))
                results[key] = tables_from_counts(ref, c.units, c.systems, p, extracted)
        for key, ref in province.cities.items():
            _report(ref, p, results[key], out / key)
        frame = rollup(province, results)
        paths = write_rollup(province, frame, p.title_cn(), out)
    total = frame.iloc[-1]
    click.echo(
        f"{province.name} {p.title_cn()} 各市汇总：{len(frame) - 1} 个城市，办件 {total['办件数']}，"
        f"评价 {total['评价数']}，有效差评 {total['差评数']}"
    )
    for path in paths:
        click.echo(f"  {path}")


COMMANDS = [tables_command]
