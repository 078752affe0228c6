"""The haocha anomalies command."""

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


@click.command("anomalies")
@city_option
@read_period_option
@data_url_option
@out_option
@click.option("--history", "history_n", default=4, show_default=True, help="用作历史比较的此前统计期个数")
@engine_options
@user_errors
def anomalies_command(
    city: str, period: str, data_dir: str, out_dir: Path, history_n: int, engine: object
) -> None:
    """异常发现：写出按严重程度排序的异常清单（anomalies.csv / anomalies.xlsx）。"""
    # Imported when the verb runs: `haocha --help` and `haocha <verb> --help` stay fast.
    import time

    from haocha_analysis.analysis.anomalies.findings import detect, write_outputs
    from haocha_analysis.analysis.anomalies.run import load_history, load_period
    from haocha_analysis.analysis.province import is_province
    from haocha_analysis.core import outputs
    from haocha_analysis.core.reference import load_city
    from haocha_analysis.ingest.storage import resolve_period_in

    t0 = time.perf_counter()
    p = resolve_period_in(period, data_dir or None)
    local = local_folder(data_dir, engine)
    if is_province(city):
        _province(Path(city), p, data_dir, local, out_dir, history_n, engine)
        click.echo(f"用时 {time.perf_counter() - t0:.1f} 秒")
        return
    ref = load_city(city)
    with outputs.claim(out_dir, "anomalies", {"--data": local, "--city": ref.path}) as out:
        if engine.engine == "pandas":
            data = load_period(local, p)
            check_coverage(data, p, local)
            history = load_history(local, p, history_n)
            findings = detect(ref, data, p, history)
        else:
            # Partitioned by city: a city's screening is one task (engine/dask_backend.py says why).
            from haocha_analysis.engine.api import anomaly_findings, session

            with session(engine):
                findings, cov, history_found = anomaly_findings(data_dir, p, ref, history_n, engine)
            report_coverage(cov, Path(data_dir))
            history = range(history_found)
        paths = write_outputs(findings, out)
    counts = findings["kind_cn"].value_counts()
    click.echo(
        f"{ref.city_name} {p.title_cn()}：发现 {len(findings)} 条异常"
        f"（{findings['unit_id'].nunique()} 个单位），"
        f"历史期 {len(history)} 个，用时 {time.perf_counter() - t0:.1f} 秒"
    )
    click.echo(findings.attrs.get("history_note", ""))
    for name, c in counts.items():
        click.echo(f"  {name}：{c}")
    for path in paths:
        click.echo(f"已写出 {path}")


def _province(
    folder: Path, p: object, data: str, local: Path | None, out_dir: Path, history_n: int, engine: object
) -> None:
    """A province folder: each city's findings in ``<out>/<city key>/`` (a city is one partition)."""
    from haocha_analysis.analysis.anomalies.findings import write_outputs
    from haocha_analysis.analysis.province import city_data, city_result, load_province
    from haocha_analysis.core import outputs
    from haocha_analysis.core.coverage import require_records

    province = load_province(folder)
    with outputs.claim(out_dir, "anomalies", {"--data": local, "--city": province.path}) as out:
        if engine.engine == "pandas":
            from haocha_analysis.engine.pandas_backend import anomaly_findings

            found = {
                key: anomaly_findings(city_data(data, key), ref, p, history_n)
                for key, ref in province.cities.items()
            }
        else:
            from haocha_analysis.engine.api import anomalies_by_group, session

            with session(engine):
                found = anomalies_by_group(data, p, engine, lambda key: province.cities[key], history_n)
        for key, ref in province.cities.items():
            findings, cov, _ = city_result(found, key, data)
            require_records(cov, city_data(data, key))
            write_outputs(findings, out / key)
            click.echo(f"{key} {ref.city_name}：发现 {len(findings)} 条异常")


COMMANDS = [anomalies_command]
