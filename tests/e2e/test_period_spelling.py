"""One way to write a period (haocha bulletin, tables, quality, anomalies, rectification): the Chinese
label in everything a user reads, the code only in paths and as a machine key in JSON (with
``period_label`` beside it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from haocha_analysis.cli import cli
from haocha_analysis.core.periods import parse_period, period_label
from haocha_analysis.ingest.storage import write_tables
from tests.e2e.test_entry_points import _two_quarters

# A period code standing as a word of text: not part of a path (/2023Q2/, period=2023Q2), a file name
# (2023Q2.xlsx) or an identifier (PJ2023Q2000123).
CODE = re.compile(r"(?<![\w/=.\\-])(?:20\d\dQ[1-4]|20\d\dH[12]|20\d\d-\d\d(?!-\d))(?![\w/.\\-])")


def _text_of(path: Path) -> str:
    if path.suffix == ".html":
        html = path.read_text(encoding="utf-8")
        html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
        return re.sub(r"<[^>]+>", " ", html)  # attributes (links) are not read as text
    if path.suffix == ".xlsx":
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True)
        return "\n".join(
            str(v) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for v in row if v
        )
    if path.suffix in (".csv", ".log", ".md", ".txt"):
        return path.read_text(encoding="utf-8-sig", errors="replace")
    return ""


@pytest.mark.parametrize("period", ["2023Q2", "2023-05"])
def test_period_code_not_in_user_read_text_of_any_verb(period, qinghe, tmp_path):
    q1, q2 = _two_quarters(qinghe.units)
    data = tmp_path / "data"
    write_tables(q1, data, "2023Q1")
    write_tables(q2, data, "2023Q2")
    common = ["--city", str(qinghe.path), "--period", period, "--data", str(data)]
    label = period_label(period)
    offenders: list[str] = []
    for verb in ("bulletin", "tables", "quality", "anomalies", "rectification"):
        out = tmp_path / verb
        extra = ["--extracted-on", "2023-07-04"] if verb in ("bulletin", "tables") else []
        result = CliRunner().invoke(cli, [verb, *common, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        offenders += [f"{verb} 屏幕输出: {m}" for m in CODE.findall(result.output)]
        for path in sorted(out.rglob("*")):
            offenders += [f"{path.relative_to(tmp_path)}: {m}" for m in CODE.findall(_text_of(path))]
            if path.suffix == ".json":
                doc = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(doc, dict) and doc.get("period") == period:
                    if doc.get("period_label") != label:
                        offenders.append(f"{path.relative_to(tmp_path)}: period_label 缺失")
    assert not offenders, "\n".join(offenders)
    assert label in _text_of(tmp_path / "bulletin" / "bulletin.html")


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("2023Q2", "2023年第二季度"),
        ("2023-05", "2023年5月"),
        ("2023H1", "2023年上半年"),
        ("2023H2", "2023年下半年"),
        ("2023", "2023年"),
        ("2023-04-01..2023-05-31", "2023年4月1日至2023年5月31日"),
        ("2023-12-01..2024-01-15", "2023年12月1日至2024年1月15日"),
    ],
)
def test_the_one_label(code, label):
    assert period_label(code) == label == parse_period(code).title_cn()
    assert period_label(parse_period(code)) == label


def test_the_pattern_tells_codes_in_text_from_paths_and_ids():
    assert CODE.findall("统计期 2023Q2 的通报；2023-05 月报") == ["2023Q2", "2023-05"]
    assert not CODE.findall("reports/zibo/2023Q2/bulletin.html period=2023Q2 PJ2023Q2000123 2023Q2.xlsx")
    assert not CODE.findall("数据统计范围2023-04-01至2023-06-30")
