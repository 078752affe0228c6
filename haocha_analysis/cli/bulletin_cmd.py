"""The haocha bulletin and haocha run commands."""

from __future__ import annotations

from pathlib import Path

import click

from haocha_analysis.cli import CITY_HELP, user_errors

# --- CLI --------------------------------------------------------------------------------------


def _commands() -> list[click.Command]:
    from haocha_analysis.core.periods import PERIOD_HELP

    city_help = CITY_HELP
    data_help = "规范表目录；省略时使用内置合成数据（首次运行时生成）"
    out_help = "输出目录；省略时为 reports/<城市>/<统计期>/"

    @click.command("bulletin")
    @click.option("--city", required=True, help=city_help)
    @click.option("--period", required=True, help=PERIOD_HELP)
    @click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None, help=data_help)
    @click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help=out_help)
    @click.option(
        "--extracted-on", default=None, help="数据提取时间 YYYY-MM-DD（附件备注）；省略时由数据决定"
    )
    @click.option(
        "--narrative",
        "narrative_file",
        type=click.Path(path_type=Path),
        default=None,
        help="通报文字模板 bulletin.yml；省略时用城市参考目录中的模板",
    )
    @click.option("--issued-on", default=None, help="成文日期 YYYY-MM-DD（落款）；省略时为运行当天")
    @user_errors
    def bulletin(
        city: str,
        period: str,
        data_dir: Path | None,
        out_dir: Path | None,
        extracted_on: str | None,
        narrative_file: Path | None,
        issued_on: str | None,
    ) -> None:
        """生成季度通报：执行 notebook，输出无代码的 HTML、PDF 与 Word 公文、附件表格与运行清单。"""
        from haocha_analysis.pipeline import run as pipeline

        pipeline.cli_entry(
            city, period, data_dir, out_dir, extracted_on, narrative_file, ingest=False, issued_on=issued_on
        )

    @click.command("run")
    @click.option("--city", required=True, help=city_help)
    @click.option(
        "--period", default="latest", show_default=True, help=PERIOD_HELP + "，或 latest（上一个完整季度）"
    )
    @click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None, help=data_help)
    @click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help=out_help)
    @click.option(
        "--inbox",
        type=click.Path(path_type=Path),
        default=None,
        help="待导入的原始导出文件目录（该统计期尚无规范表时导入）",
    )
    @click.option(
        "--profile", type=click.Path(path_type=Path), default=None, help="原始导出的数据来源配置 YAML"
    )
    @click.option("--extracted-on", default=None, help="数据提取时间 YYYY-MM-DD；省略时由数据决定")
    @click.option(
        "--narrative",
        "narrative_file",
        type=click.Path(path_type=Path),
        default=None,
        help="通报文字模板 bulletin.yml",
    )
    @click.option("--issued-on", default=None, help="成文日期 YYYY-MM-DD（落款）；省略时为运行当天")
    @click.option(
        "--unit-level",
        type=click.Choice(["district", "city_dept", "district_dept", "none"]),
        default="district",
        show_default=True,
        help="同时生成单位报告的层级（units/<单位编码>.html、.pdf）；none 表示不生成",
    )
    @user_errors
    def run(
        city: str,
        period: str,
        data_dir: Path | None,
        out_dir: Path | None,
        inbox: Path | None,
        profile: Path | None,
        extracted_on: str | None,
        narrative_file: Path | None,
        issued_on: str | None,
        unit_level: str,
    ) -> None:
        """定时任务入口：按需导入 → 质检 → 附件表格 → 异常发现 → 通报 → 单位报告。"""
        from haocha_analysis.pipeline import run as pipeline

        pipeline.cli_entry(
            city,
            period,
            data_dir,
            out_dir,
            extracted_on,
            narrative_file,
            ingest=True,
            inbox=inbox,
            profile=profile,
            unit_level=None if unit_level == "none" else unit_level,
            issued_on=issued_on,
        )

    return [bulletin, run]


COMMANDS = _commands()
