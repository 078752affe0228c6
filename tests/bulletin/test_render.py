"""Fast tests of the bulletin pieces: HTML fragments, narrative templates, offline HTML, charts."""

from __future__ import annotations

import json
import os
import re
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from haocha_analysis.bulletin import charts, render
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period
from haocha_analysis.pipeline import run as pipeline

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "zibo-2023Q2"
NOTEBOOK = ROOT / "notebooks" / "bulletin.ipynb"


def golden(name: str) -> pd.DataFrame:
    return pd.read_csv(GOLDEN / f"{name}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")


class AnnexTables(HTMLParser):
    """Collect each ``table.annex``: header rows and body rows of cell texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, dict[str, list[list[str]]]] = {}
        self._table = self._part = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "annex" in (attrs.get("class") or ""):
            self._table = attrs["data-annex"]
            self.tables[self._table] = {"thead": [], "tbody": []}
        elif self._table and tag in ("thead", "tbody"):
            self._part = tag
        elif self._table and tag == "tr":
            self._row = []
        elif self._row is not None and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table][self._part].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse_annexes(html: str) -> dict[str, dict[str, list[list[str]]]]:
    parser = AnnexTables()
    parser.feed(html)
    return parser.tables


# --- annex tables -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", render.ANNEX_NAMES)
def test_annex_table_cells_equal_the_frame(name):
    frame = golden(name)
    html = render.annex_table_html(frame, name, "附件X", "标题", "备注：数据来源……")
    table = parse_annexes(html)[name]
    assert table["tbody"] == frame.values.tolist()
    assert "备注：数据来源……" in html
    assert render.external_references(html) == []


def test_annex_headers_single_and_grouped():
    annex1 = parse_annexes(
        render.annex_table_html(golden("annex1_districts"), "annex1_districts", "附件1", "t", "n")
    )
    assert annex1["annex1_districts"]["thead"] == [list(golden("annex1_districts").columns)]
    annex4 = parse_annexes(
        render.annex_table_html(golden("annex4_towns_villages"), "annex4_towns_villages", "附件4", "t", "n")
    )["annex4_towns_villages"]
    assert annex4["thead"][0] == ["序号", "区县", "镇 级", "村 级"]
    assert annex4["thead"][1] == ["评价总数", "差评数量", "按时整改数量"] * 2


def test_total_rows_are_marked_and_slash_kept():
    html = render.annex_table_html(
        golden("annex3_district_departments"), "annex3_district_departments", "a", "t", "n"
    )
    assert html.count('<tr class="total">') == 1
    assert 'class="annex wide"' in html  # 附件3 prints on a landscape page
    html2 = render.annex_table_html(
        golden("annex2_city_departments"), "annex2_city_departments", "a", "t", "n"
    )
    assert '<td class="na">/</td>' in html2
    assert '<td class="name">市残联</td>' in html2


def test_annex_numbers_parses_printed_cells():
    nums = render.annex_numbers(golden("annex5_public_services"))
    assert "总数" not in nums["区县"].tolist()
    assert nums.loc[nums["区县"] == "淄川区", "总量占比"].item() == pytest.approx(0.74)
    a2 = render.annex_numbers(golden("annex2_city_departments"))
    assert pd.isna(a2.loc[a2["部门"] == "张店区税务局", "主动评价数"].item())


# --- narrative ----------------------------------------------------------------------------------


def test_fill_joins_lines_and_rejects_unknown_placeholders(tmp_path):
    assert render.fill("共{n}件，\n  评价率{r}。", {"n": "5", "r": "100%"}) == "共5件，评价率100%。"
    with pytest.raises(HaochaInputError) as err:
        render.fill("共{unknown}件", {"n": "5"}, file="x.yml", key="headline")
    assert "{unknown}" in err.value.message() and "{n}" in err.value.message()


def test_narrative_requires_its_texts(tmp_path, zibo):
    bad = tmp_path / "bulletin.yml"
    bad.write_text("work_progress: 有\nheadline: ''\n", encoding="utf-8")
    with pytest.raises(HaochaInputError) as err:
        render.load_narrative(bad)
    assert "headline" in err.value.message() and "next_steps" in err.value.message()
    assert render.narrative_path(zibo) == ROOT / "data" / "reference" / "zibo" / "bulletin.yml"


def test_every_template_uses_only_known_placeholders(zibo, qinghe):
    headline = json.loads((GOLDEN / "headline.json").read_text(encoding="utf-8"))
    values = render.placeholder_values(
        zibo, parse_period("2023Q2"), headline, "数据生产、提交、质检关联度入库率均达100%"
    )
    for path in (render.narrative_path(zibo), render.narrative_path(qinghe), render.DEFAULT_NARRATIVE):
        narrative = render.load_narrative(path)
        for key in ("title", *render.REQUIRED_NARRATIVE_KEYS):
            text = render.fill(
                narrative.get("title") or "x" if key == "title" else narrative[key], values, key=key
            )
            assert "{" not in text and " " not in text
    text = render.fill(render.load_narrative(render.narrative_path(zibo))["headline"], values)
    assert "评价数据1428423件" in text and "无有效差评件" in text and "947735" in text and "480688" in text
    title = render.fill(render.load_narrative(render.narrative_path(zibo))["title"], values)
    assert title == "关于2023年第二季度政务服务“好差评”工作情况的通报"
    work = render.fill(render.load_narrative(render.narrative_path(zibo))["work_progress"], values)
    assert "等四个市级业务系统" in work and "1.5万余件" in work
    assert tuple(values) == render.PLACEHOLDERS  # what load_narrative checks is what fill gets


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("headline: 共{no_such_figure}件", "{no_such_figure}"),
        ("headline: 共{total_cases件", "不成对的花括号"),
        ("headline: 共{total_cases:d}件", "无法填写"),
        ("headline: 共{0}件", "{0}"),
        ("headline: [一, 二]", "应是一段文字"),
        ("title: 关于{period}的通报\nheadline: 乙", "{period}"),
        ("headline: 乙\nannex_titles: [甲]", "annex_titles"),
        ("headline: 乙\nannex_titles:\n  annex9: 甲", "annex9"),
        ("headline: 乙\nannex_titles:\n  annex1_districts: 各区县{quarter}表", "{quarter}"),
    ],
)
def test_a_bad_template_is_refused_when_loaded(tmp_path, text, words):
    path = tmp_path / "bulletin.yml"
    path.write_text(f"work_progress: 甲\nnext_steps: 丙\n{text}\n", encoding="utf-8")
    with pytest.raises(HaochaInputError) as err:
        render.load_narrative(path)
    assert words in err.value.message() and err.value.fix


@pytest.mark.parametrize(
    "content", [b"- a\n- b\n", "work_progress: [甲\n".encode(), "工作: 甲".encode("gb18030")]
)
def test_a_template_that_is_not_a_yaml_mapping_is_refused(tmp_path, content):
    path = tmp_path / "bulletin.yml"
    path.write_bytes(content)
    with pytest.raises(HaochaInputError):
        render.load_narrative(path)
    with pytest.raises(HaochaInputError):
        render.load_narrative(tmp_path)  # a folder, not a file


def test_title_breaks_like_the_reference():
    assert render.title_lines("关于2023年第二季度政务服务“好差评”工作情况的通报") == (
        "关于2023年第二季度<br/>政务服务“好差评”工作情况的通报"
    )
    assert render.title_lines("季度通报<x>") == "季度通报&lt;x&gt;"


def test_counts_and_period_names():
    assert [render.cn_count(n) for n in (0, 4, 10, 12, 20, 36, 120)] == [
        "零",
        "四",
        "十",
        "十二",
        "二十",
        "三十六",
        "120",
    ]
    assert render.period_name(parse_period("2023Q2")) == "二季度"
    assert render.period_name(parse_period("2023-04")) == "4月"
    assert render.period_name(parse_period("2023H1")) == "上半年"
    assert render.period_name(parse_period("2023")) == "2023年"


# --- offline HTML and PDF ---------------------------------------------------------------------


def test_external_references_found_and_data_uris_allowed():
    html = (
        '<script src="https://cdn.example/require.js"></script><link href="//fonts.example/x.css">'
        '<img src="data:image/png;base64,AAA"><a href="#annex1">x</a><style>@import "x.css"; '
        "b{background:url(http://x/y.png)}</style>"
    )
    found = render.external_references(html)
    assert len(found) == 4
    assert render.external_references('<img src="data:image/svg+xml;base64,AAA"><a href="#top">t</a>') == []


def _executed_notebook(path: Path, html_parts: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    for i, part in enumerate(html_parts, start=1):
        cell = nbformat.v4.new_code_cell(f"HTML({part!r})")
        cell.execution_count = i
        cell.outputs = [
            nbformat.v4.new_output(
                "execute_result", data={"text/html": part, "text/plain": "<HTML>"}, execution_count=i
            )
        ]
        cell.outputs.insert(0, nbformat.v4.new_output("stream", name="stderr", text="UserWarning: noise\n"))
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def test_notebook_to_html_has_no_code_prompts_or_external_refs(tmp_path):
    annex = render.annex_table_html(
        golden("annex1_districts"), "annex1_districts", "附件1", "各区县", "备注：x"
    )
    nb = _executed_notebook(tmp_path / "b.ipynb", ['<h1 class="bulletin-title">关于通报</h1>', annex])
    html, streams = render.notebook_to_html(nb, title="标题", run_id="r1")
    assert "HTML(" not in html and "In&nbsp;[" not in html and "Out[" not in html
    assert "noise" not in html and streams == ["UserWarning: noise\n", "UserWarning: noise\n"]
    assert render.external_references(html) == []
    # one inline script (sortable tables, chart values on hover), nothing loaded from anywhere
    assert re.findall(r"<script\b[^>]*>", html) == ["<script>"]
    assert "sortable" in html and "http" not in html.split("<script>", 1)[1]
    assert parse_annexes(html)["annex1_districts"]["tbody"] == golden("annex1_districts").values.tolist()
    assert re.search(r"<meta[^>]*content=\"r1\"[^>]*name=\"haocha-run-id\"", html)


def test_pdf_is_a4_with_embedded_cjk_fonts(tmp_path):
    from pypdf import PdfReader

    annex = render.annex_table_html(
        golden("annex2_city_departments"), "annex2_city_departments", "附件2", "市直", "备注"
    )
    nb = _executed_notebook(tmp_path / "b.ipynb", ['<h1 class="bulletin-title">关于通报</h1>', annex])
    html, _ = render.notebook_to_html(nb)
    pdf = render.html_to_pdf(html, tmp_path / "b.pdf", tmp_path)
    reader = PdfReader(pdf)
    box = reader.pages[0].mediabox
    assert (round(float(box.width) / 72 * 25.4), round(float(box.height) / 72 * 25.4)) == (210, 297)
    assert len(reader.pages) >= 2  # 36 rows of 附件2 do not fit one page: the header repeats
    text = "".join(page.extract_text() for page in reader.pages)
    assert "市住房公积金" in text and "省通信行业协会淄博办事处" in text
    assert text.count("评价率") >= 2  # thead repeated on the next page
    fonts = {str(f["/BaseFont"]) for page in reader.pages for f in page["/Resources"]["/Font"].values()}
    assert fonts and all("CJK" in f for f in fonts), fonts
    descendant = [f.get_object() for page in reader.pages for f in page["/Resources"]["/Font"].values()]
    assert all("/DescendantFonts" in d or "/FontDescriptor" in d for d in descendant)


def test_pdf_refuses_external_resources(tmp_path):
    with pytest.raises(RuntimeError, match="external resource refused"):
        render.html_to_pdf('<img src="http://example.invalid/x.png">', tmp_path / "x.pdf", tmp_path)


# --- charts -------------------------------------------------------------------------------------


def test_chart_is_inline_svg_in_cjk_font():
    fig = charts.evaluations_by_district(["张店区", "淄川区"], [100, 50], [60, float("nan")])
    html = charts.figure_html(fig, "图1 各区县评价数")
    assert 'src="data:image/svg+xml;base64,' in html and "<figcaption>图1 各区县评价数</figcaption>" in html
    assert render.external_references(html) == []


def test_missing_glyph_is_an_error():
    fig = charts.composition_by_district(["张店区"], {"\U0001fab7": [1]})  # a character no CJK font has
    with pytest.raises(charts.MissingGlyphError):
        charts.to_svg(fig)


def test_channel_mix_by_level(qinghe):
    counts = pd.DataFrame(
        {
            "unit_id": ["qh-c1", "qh-d1-k1", "qh-d1-t1"],
            "ch_hall_tablet": [5, 0, 3],
            "ch_qr_code": [5, 2, 0],
            "ch_system_default": [0, 2, 1],
        }
    )
    fig = charts.channel_mix(counts, qinghe.units)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["市直部门\n（10件）", "区直部门\n（4件）", "镇（街道）\n（4件）"]
    charts.to_svg(fig)
    with pytest.raises(ValueError):
        charts.channel_mix(counts[["unit_id"]], qinghe.units)


# --- the committed notebook -------------------------------------------------------------------


def test_committed_notebook_is_thin_and_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert not any(re.search(r"^\s*(def|class)\s", c.source, re.M) for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    assert nb.metadata["kernelspec"]["name"] == "haocha"


def test_notebook_parameters_are_typed():
    import papermill as pm

    params = pm.inspect_notebook(str(NOTEBOOK))
    expected = {
        "city": "zibo",
        "period": "2023Q2",
        "data_dir": "",
        "extracted_on": "",
        "narrative_file": "",
        "results_file": "",
        "run_id": "",
        "issued_on": "",
        "doc_number": "",
    }
    assert set(params) == set(expected)
    for name, default in expected.items():
        assert params[name]["inferred_type_name"] == "str"
        assert params[name]["default"] == repr(default).replace("'", '"')
        assert params[name]["help"], f"parameter {name} has no comment"


# --- atomic publishing ------------------------------------------------------------------------


def test_publish_swaps_whole_folders(tmp_path):
    target = tmp_path / "2023Q2"
    target.mkdir()
    (target / "bulletin.html").write_text("old", encoding="utf-8")
    staging = tmp_path / ".2023Q2.tmp-r2"
    staging.mkdir()
    (staging / "bulletin.html").write_text("new", encoding="utf-8")
    pipeline._publish(staging, target)
    assert (target / "bulletin.html").read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2023Q2"]


def test_failed_staging_is_kept_apart(tmp_path):
    target = tmp_path / "2023Q2"
    target.mkdir()
    (target / "bulletin.pdf").write_bytes(b"previous")
    for run in ("r1", "r2"):
        staging = tmp_path / f".2023Q2.tmp-{run}"
        staging.mkdir()
        pipeline._keep_failed(staging, target, run)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".2023Q2.failed-r2", "2023Q2"]
    assert (target / "bulletin.pdf").read_bytes() == b"previous"


def test_stage_recorder_measures(capsys):
    rec = pipeline.Recorder(interactive=True)
    with rec.stage("tables"):
        _ = [0] * 1_000_000
    with pytest.raises(RuntimeError), rec.stage("pdf"):
        raise RuntimeError("x")
    stages = rec.as_list()
    assert [s["status"] for s in stages] == ["ok", "failed"]
    assert stages[0]["peak_rss_mb"] > 10 and stages[0]["seconds"] >= 0
    assert "附件表格" in capsys.readouterr().err


def test_sha256_and_versions(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"abc")
    assert pipeline.sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    versions = pipeline.package_versions()
    assert versions["pandas"] == pd.__version__ and "weasyprint" in versions


def test_latest_is_the_last_complete_quarter():
    from haocha_analysis.core.periods import resolve_period

    assert resolve_period("latest", today=date(2024, 2, 10)).label == "2023Q4"
    assert os.fspath(pipeline.NOTEBOOK).endswith("notebooks/bulletin.ipynb")


# --- the 差评整改 paragraph and annex -------------------------------------------------------------


def test_rectification_parts_appear_only_with_valid_bad_reviews(qinghe):
    from datetime import date
    from types import SimpleNamespace

    from haocha_analysis.analysis.rectification import build_ledger
    from haocha_analysis.core.periods import parse_period
    from haocha_analysis.core.schemas import coerce

    period = parse_period("2023Q4")
    cases = coerce(
        pd.DataFrame(
            {"case_id": ["c1", "c2"], "unit_id": "qh-d1-t1", "finished_at": pd.Timestamp("2023-10-09")}
        ),
        "cases",
    )
    evals = coerce(
        pd.DataFrame(
            {
                "eval_id": ["e1", "e2"],
                "case_id": ["c1", "c2"],
                "unit_id": "qh-d1-t1",
                "channel": "pc",
                "satisfaction": [1, 2],
                "evaluated_at": pd.to_datetime(["2023-10-09 10:00", "2023-10-09 11:00"]),
            }
        ),
        "evaluations",
    )
    ctx = SimpleNamespace(rectification=None, period=period)
    assert render.rectification_html(ctx) == "" and render.rectification_annex_html(ctx) == ""
    invalid = coerce(pd.DataFrame({"eval_id": ["e1", "e2"], "verdict": "invalid"}), "rectifications")
    data = {"cases": cases, "evaluations": evals, "rectifications": invalid}
    ctx.rectification = build_ledger(qinghe, data, period, date(2023, 12, 29))
    assert render.rectification_html(ctx) == "" and render.rectification_annex_html(ctx) == ""
    valid = coerce(pd.DataFrame({"eval_id": ["e1", "e2"], "verdict": "valid"}), "rectifications")
    ctx.rectification = build_ledger(qinghe, {**data, "rectifications": valid}, period, date(2023, 12, 29))
    paragraph = render.rectification_html(ctx)
    assert "有效差评2件" in paragraph and "东湖区湖滨街道便民服务中心（2件）" in paragraph
    annex = render.rectification_annex_html(ctx)
    table = parse_annexes(annex)[render.RECTIFICATION_ANNEX]
    assert "附件6" in annex and "第四季度差评整改超期清单" in annex
    assert [row[3] for row in table["tbody"]] == ["e1", "e2"] and table["tbody"][0][6] == "整改"
