"""The documents people pass around: unit reports (papermill per unit, in parallel) and reports/index.html.

One module-scoped ``haocha run``-like build of 青禾市 2023Q2 with district unit reports; the index
built over it; every link of the index followed; nothing in any page refers to the network.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
from click.testing import CliRunner
from test_bulletin import qinghe_quarter

from haocha_analysis.bulletin import index, render
from haocha_analysis.core import outputs
from haocha_analysis.core.display import format_count
from haocha_analysis.ingest.storage import write_tables
from haocha_analysis.pipeline import run as pipeline
from haocha_analysis.pipeline import units


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.links.append(value)


def links_of(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.links


def earlier_quarter(tables: dict) -> dict:
    """The same kind of quarter 91 days earlier (2023Q1), with its own record ids."""
    out = {}
    for name, frame in tables.items():
        frame = frame.copy()
        for col in frame.columns:
            if str(frame[col].dtype).startswith("datetime"):
                frame[col] = frame[col] - pd.Timedelta(days=91)
            elif col in ("case_id", "eval_id"):
                frame[col] = "P" + frame[col].astype(str)
        out[name] = frame
    return out


@pytest.fixture(scope="module")
def qinghe_units_run(tmp_path_factory, qinghe):
    base = tmp_path_factory.mktemp("qinghe-docs")
    data_dir = base / "data"
    write_tables(earlier_quarter(qinghe_quarter(qinghe.units, seed=5)), data_dir, "2023Q1")
    write_tables(qinghe_quarter(qinghe.units), data_dir, "2023Q2")
    out = base / "reports" / "qinghe" / "2023Q2"
    result = pipeline.build_bulletin(
        qinghe.path,
        "2023Q2",
        data_dir,
        out,
        extracted_on="2023-07-04",
        unit_level="district",
        issued_on="2023-07-10",
    )
    return result, data_dir, base / "reports"


def test_district_reports_beside_the_bulletin(qinghe_units_run, qinghe):
    result, _data_dir, _root = qinghe_units_run
    folder = result.out_dir / units.UNITS_SUBDIR
    districts = qinghe.level("district")
    summary = json.loads((folder / units.SUMMARY).read_text(encoding="utf-8"))
    assert [u["unit_id"] for u in summary["units"]] == districts["unit_id"].tolist()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [units.SUMMARY] + [f"{u}.{ext}" for u in districts["unit_id"] for ext in ("html", "pdf")]
    )
    manifest = json.loads((result.out_dir / "manifest.json").read_text(encoding="utf-8"))
    assert "units" in {s["name"] for s in manifest["stages"]}
    hidden = [p for p in result.out_dir.rglob(".*") if p.name != outputs.MARKER]  # haocha's own marker only
    assert not list(result.out_dir.rglob("*.pkl")) and not hidden
    from pypdf import PdfReader

    headline = json.loads((result.out_dir / "headline.json").read_text(encoding="utf-8"))
    for unit in districts.itertuples():
        html = (folder / f"{unit.unit_id}.html").read_text(encoding="utf-8")
        assert render.external_references(html) == [] and "http" not in html.replace("http-equiv", ""), (
            unit.unit_id
        )
        assert f"{unit.unit_name}2023年第二季度政务服务“好差评”情况" in html
        for part in (
            "一、主要指标与同级排名",
            "二、近期走势",
            "三、异常发现",
            "四、数据质量",
            "五、差评与整改",
        ):
            assert part in html
        assert f"第1名/共{len(districts)}个" in html or f"第2名/共{len(districts)}个" in html
        # the city's figure beside the unit's, written as counts are (thousands separators)
        assert f">{format_count(headline['total_evaluations'])}<" in html
        # the trend reaches the earlier quarter
        assert ">2023年第一季度<" in html and ">2023年第二季度<" in html
        assert 'class="self"' in html and html.count("data-tips=") == 1
        pages = len(PdfReader(folder / f"{unit.unit_id}.pdf").pages)
        assert 1 <= pages <= 2, (unit.unit_id, pages)


def test_issued_on_is_the_date_of_the_word_and_html_bulletins(qinghe_units_run):
    from docx import Document

    result, _data_dir, _root = qinghe_units_run
    doc = Document(str(result.out_dir / "bulletin.docx"))
    assert "2023年7月10日" in [p.text for p in doc.paragraphs]
    assert "2023年7月10日" in (result.out_dir / "bulletin.html").read_text(encoding="utf-8")


def test_unit_figures_match_annex1(qinghe_units_run, qinghe):
    result, _data_dir, _root = qinghe_units_run
    annex1 = result.out_dir / "annex1_districts.csv"
    rows = pd.read_csv(annex1, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    for unit, row in zip(qinghe.level("district").itertuples(), rows.itertuples(), strict=True):
        html = (result.out_dir / "units" / f"{unit.unit_id}.html").read_text(encoding="utf-8")
        figures = re.search(r'data-annex="unit_figures">(.*?)</table>', html, re.S).group(1)
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", figures)
        table = [cells[i : i + 5] for i in range(0, len(cells), 5)]
        mine = {r[0]: r[1] for r in table}
        assert mine["办件数"] == row.办件数 and mine["评价数"] == row.评价数 and mine["评价率"] == row.评价率


def test_index_links_resolve_and_stay_offline(qinghe_units_run):
    result, _data_dir, root = qinghe_units_run
    path = index.write_index(root)
    html = path.read_text(encoding="utf-8")
    links = links_of(html)
    assert "qinghe/2023Q2/bulletin.docx" in links and "qinghe/2023Q2/bulletin.pdf" in links
    assert sum(link.startswith("qinghe/2023Q2/units/") for link in links) == 4  # 2 districts × HTML, PDF
    for link in links:
        assert not re.match(r"^[a-z]+:|^//", link), link
        assert (root / unquote(link)).is_file(), link
    assert "http" not in html and "url(" not in html and "@import" not in html  # links stay inside
    assert "<svg" in html and "<title>2023年第二季度：" in html  # the trend chart, values on hover
    headline = json.loads((result.out_dir / "headline.json").read_text(encoding="utf-8"))
    assert f"{headline['total_evaluations']:,}" in html


def test_index_lists_only_finished_periods(tmp_path):
    (tmp_path / "c1" / ".2023Q3.tmp-x").mkdir(parents=True)
    (tmp_path / "c1" / ".2023Q3.tmp-x" / "manifest.json").write_text("{}", encoding="utf-8")
    (tmp_path / "c1" / "2023Q1").mkdir()
    (tmp_path / "c1" / "2023Q1" / "bulletin.html").write_text("x", encoding="utf-8")  # no manifest
    for label, total in (("2023Q2", 10), ("2022Q4", 7)):
        folder = tmp_path / "c1" / label
        folder.mkdir()
        manifest = {"period": label, "city_name": "甲市"}
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        (folder / "headline.json").write_text(json.dumps({"total_evaluations": total}), encoding="utf-8")
        (folder / "bulletin.pdf").write_bytes(b"%PDF")
    cities = index.scan(tmp_path)
    assert [(c.name, [p.label for p in c.periods]) for c in cities] == [("甲市", ["2022Q4", "2023Q2"])]
    html = index.render_index(cities)
    assert links_of(html) == ["c1/2023Q2/bulletin.pdf", "c1/2022Q4/bulletin.pdf"]
    assert "<title>2022年第四季度：7</title>" in html and "<title>2023年第二季度：10</title>" in html
    assert "还没有已完成的统计期" in index.render_index([])


def test_unit_reports_command(qinghe_units_run, qinghe, tmp_path):
    from haocha_analysis.cli import cli

    _result, data_dir, _root = qinghe_units_run
    dept = qinghe.level("city_dept")["unit_id"].iloc[0]
    out = tmp_path / "units"
    args = ["unit-reports", "--city", str(qinghe.path), "--period", "2023Q2", "--data", str(data_dir)]
    run = CliRunner().invoke(cli, [*args, "--units", dept, "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{dept}.html", f"{dept}.pdf", units.SUMMARY, units.UNITS_LOG]
    )
    assert "单位报告已生成：1 个" in run.output
    bad = CliRunner().invoke(cli, [*args, "--units", "no-such-unit", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "no-such-unit" in bad.output and "units.csv" in bad.output
    assert not (tmp_path / "bad").exists()
    bad = CliRunner().invoke(cli, [*args, "--level", "town", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()


def test_unit_notebook_parameters():
    import papermill as pm

    params = pm.inspect_notebook(str(units.UNIT_NOTEBOOK))
    assert set(params) == {"city", "period", "unit_id", "inputs_file", "data_dir", "run_id"}
    assert all(p["inferred_type_name"] == "str" for p in params.values())


def test_select_units(qinghe):
    districts = units.select_units(qinghe, "district", None)
    assert districts["unit_id"].tolist() == qinghe.level("district")["unit_id"].tolist()
    one = qinghe.level("district_dept")["unit_id"].iloc[0]
    assert units.select_units(qinghe, "district", [one, one])["unit_id"].tolist() == [one]
    town = qinghe.level("town")["unit_id"].iloc[0]
    from haocha_analysis.core.errors import HaochaInputError

    with pytest.raises(HaochaInputError):
        units.select_units(qinghe, None, [town])
    assert Path(units.UNIT_NOTEBOOK).exists()


@pytest.mark.slow
def test_zibo_district_reports_at_full_scale(tmp_path):
    """`haocha unit-reports --city zibo --period 2023Q2 --level district`: 11 HTML + 11 PDF of 1–2 pages."""
    from pypdf import PdfReader

    from haocha_analysis.cli import cli

    out = tmp_path / "units"
    args = ["unit-reports", "--city", "zibo", "--period", "2023Q2", "--level", "district", "--out", str(out)]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    assert len(list(out.glob("*.html"))) == 11 and len(list(out.glob("*.pdf"))) == 11
    for pdf in out.glob("*.pdf"):
        assert 1 <= len(PdfReader(pdf).pages) <= 2, pdf.name
    summary = json.loads((out / units.SUMMARY).read_text(encoding="utf-8"))
    assert all(u["seconds"] > 0 for u in summary["units"]) and summary["seconds"] > 0
