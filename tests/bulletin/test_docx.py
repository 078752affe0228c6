"""The Word 公文: page setup, styles and fonts, page numbers, annex tables cell for cell, a city template."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Mm, Pt
from docx_checks import annex_tables, assert_annexes_equal_csvs, body_text, runs_without_east_asian_font

from haocha_analysis.bulletin import docx, render
from haocha_analysis.core.periods import parse_period

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "zibo-2023Q2"


def golden(name: str) -> pd.DataFrame:
    return pd.read_csv(GOLDEN / f"{name}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")


@pytest.fixture(scope="module")
def ctx(zibo):
    """The golden 淄博 2023Q2 annexes in a bulletin context; channel counts for two units only."""
    headline = json.loads((GOLDEN / "headline.json").read_text(encoding="utf-8"))
    headline.setdefault("quality_rates", "数据生产、提交、质检关联度入库率均达100%")
    counts = pd.DataFrame({"unit_id": ["zb-d01", "zb-c001"], "ch_hall_tablet": [3, 0], "ch_mobile": [1, 2]})
    counts["unit_id"] = [zibo.units["unit_id"].iloc[0], zibo.level("city_dept")["unit_id"].iloc[0]]
    tables = SimpleNamespace(
        headline=headline,
        annexes={name: golden(name) for name in render.ANNEX_NAMES},
        notes=dict.fromkeys(render.ANNEX_NAMES, "备注：数据来源淄博市政务服务好差评系统。"),
        counts=counts,
    )
    results = render.StageResults(
        tables=tables,
        quality=SimpleNamespace(figures={}),
        findings=pd.DataFrame(),
        problems="通过分析，问题甲。",
    )
    return render.build_context(zibo, parse_period("2023Q2"), results, issued_on=date(2023, 7, 10))


@pytest.fixture(scope="module")
def written(ctx, tmp_path_factory):
    folder = tmp_path_factory.mktemp("docx")
    path = docx.write_docx(ctx, folder / docx.DOCX_NAME)
    for name in render.ANNEX_NAMES:
        ctx.annexes[name].to_csv(folder / f"{name}.csv", index=False, encoding="utf-8-sig")
    return path, Document(str(path))


def test_page_setup_after_gbt9704(written):
    _path, doc = written
    first = doc.sections[0]

    def mm(length):  # Word stores twips: compare to 0.1 mm
        return round(length / 36000, 1)

    assert (mm(first.page_width), mm(first.page_height)) == (210, 297)
    assert mm(first.top_margin) == 37 and mm(first.left_margin) == 28  # 天头, 订口
    assert mm(first.page_width - first.left_margin - first.right_margin) == 156  # 版心 width
    assert mm(first.page_height - first.top_margin - first.bottom_margin) == 225  # 版心 height
    assert doc.settings.element.find(qn("w:mirrorMargins")) is not None
    grid = first._sectPr.find(qn("w:docGrid"))
    pitch_pt = int(grid.get(qn("w:linePitch"))) / 20
    assert math.floor(225 / 25.4 * 72 / pitch_pt + 1e-6) == 22  # 22 lines a page
    body = doc.styles["公文正文"]
    assert body.paragraph_format.line_spacing == Pt(pitch_pt)
    spacing = int(body.element.rPr.find(qn("w:spacing")).get(qn("w:val"))) / 20
    per_char = 16 + spacing
    assert math.floor(156 / 25.4 * 72 / per_char) == 28  # 28 characters a line
    # 附件3 on a landscape page, the others portrait
    orientations = [s.orientation for s in doc.sections]
    assert orientations.count(WD_ORIENT.LANDSCAPE) == 1


def test_styles_fonts_and_fallbacks(written):
    _path, doc = written

    def east_asia(style_name):
        return doc.styles[style_name].element.rPr.find(qn("w:rFonts")).get(qn("w:eastAsia"))

    assert east_asia("公文标题") == "方正小标宋简体" and doc.styles["公文标题"].font.size == Pt(22)
    assert east_asia("公文正文") == "仿宋_GB2312" and doc.styles["公文正文"].font.size == Pt(16)
    assert east_asia("公文一级标题") == "黑体" and east_asia("公文二级标题") == "楷体_GB2312"
    assert runs_without_east_asian_font(doc) == []
    title = doc.paragraphs[0]
    assert title.style.name == "公文标题" and title.alignment == WD_ALIGN_PARAGRAPH.CENTER
    assert title.text == "关于2023年第二季度\n政务服务“好差评”工作情况的通报"
    # fallbacks named in the font table
    font_part = next(r.target_part for r in doc.part.rels.values() if r.reltype.endswith("/fontTable"))
    table = font_part.blob.decode("utf-8")
    for face in docx.FONTS.values():
        assert f'w:name="{face.east_asia}"' in table and face.fallbacks[0] in table


def test_page_numbers_outside_aligned(written):
    _, doc = written
    assert doc.settings.odd_and_even_pages_header_footer
    odd, even = doc.sections[0].footer.paragraphs[0], doc.sections[0].even_page_footer.paragraphs[0]
    assert odd.alignment == WD_ALIGN_PARAGRAPH.RIGHT and even.alignment == WD_ALIGN_PARAGRAPH.LEFT
    for paragraph in (odd, even):
        assert paragraph.text == "— 1 —"
        instr = [i.text for i in paragraph._p.iter(qn("w:instrText"))]
        assert instr == [" PAGE "]
        assert all(r.font.size == Pt(14) for r in paragraph.runs)


def test_headline_signature_and_charts(written, ctx):
    _, doc = written
    text = body_text(doc)
    assert f"评价数据{ctx.headline['total_evaluations']}件" in text
    assert f"各区县汇聚办件数据{ctx.headline['district_cases']}件" in text
    assert "通过分析，问题甲。" in text and ctx.addressees + "：" in text
    dated = next(p for p in doc.paragraphs if p.text == "2023年7月10日")
    issuer = next(p for p in doc.paragraphs if p.text == "淄博市行政审批服务局")
    assert dated.alignment == issuer.alignment == WD_ALIGN_PARAGRAPH.RIGHT
    assert dated.paragraph_format.right_indent == Pt(16 * 4)
    assert len(doc.inline_shapes) == 3
    assert all(abs(s.width - Mm(156)) < Mm(1) for s in doc.inline_shapes)


def test_annex_tables_equal_the_csvs(written):
    path, doc = written
    assert_annexes_equal_csvs(path, path.parent)
    for table in doc.tables:
        rows = table.rows
        assert all(r._tr.trPr.find(qn("w:cantSplit")) is not None for r in rows)
        headers = [i for i, r in enumerate(rows) if r._tr.trPr.find(qn("w:tblHeader")) is not None]
        assert headers in ([0], [0, 1])  # the header rows, and only they, repeat on every page
    annex1 = doc.tables[0]
    cell = annex1.rows[1].cells[2]  # 张店区 办件数
    assert cell.text == "108908" and cell.paragraphs[0].alignment == WD_ALIGN_PARAGRAPH.RIGHT
    assert annex1.rows[1].cells[1].paragraphs[0].alignment == WD_ALIGN_PARAGRAPH.LEFT
    assert annex1.rows[1].cells[7].text == "/"
    assert len(annex_tables(doc)["annex4_towns_villages"]["thead"]) == 2


def test_annex_check_catches_a_changed_cell(written, tmp_path):
    path, _ = written
    for name in render.ANNEX_NAMES:
        golden(name).to_csv(tmp_path / f"{name}.csv", index=False, encoding="utf-8-sig")
    changed = golden("annex5_public_services")
    changed.iloc[0, 2] = "1"
    changed.to_csv(tmp_path / "annex5_public_services.csv", index=False, encoding="utf-8-sig")
    with pytest.raises(AssertionError):
        assert_annexes_equal_csvs(path, tmp_path)


def test_city_template_keeps_its_content_and_styles(ctx, tmp_path):
    template = Document()
    red = template.add_paragraph("淄博市行政审批服务局文件")
    style = template.styles.add_style("公文正文", 1)
    style.font.size = Pt(15)
    template.save(str(tmp_path / "bulletin.docx"))
    out = docx.write_docx(ctx, tmp_path / "out.docx", template=tmp_path / "bulletin.docx")
    doc = Document(str(out))
    assert doc.paragraphs[0].text == red.text  # the 红头 stays first
    assert doc.styles["公文正文"].font.size == Pt(15)  # the city's own style is used as it is
    assert "公文标题" in [s.name for s in doc.styles]
    assert_annexes_equal_csvs(out, _csvs(ctx, tmp_path))
    assert doc.sections[0].footer.paragraphs[0].text == "— 1 —"  # the template has no footer: ours


def test_city_template_footer_is_kept(ctx, tmp_path):
    template = Document()
    template.sections[0].footer.paragraphs[0].text = "第 页"
    template.save(str(tmp_path / "bulletin.docx"))
    doc = Document(str(docx.write_docx(ctx, tmp_path / "out.docx", template=tmp_path / "bulletin.docx")))
    assert doc.sections[0].footer.paragraphs[0].text == "第 页"


def _csvs(ctx, folder: Path) -> Path:
    for name in render.ANNEX_NAMES:
        ctx.annexes[name].to_csv(folder / f"{name}.csv", index=False, encoding="utf-8-sig")
    return folder


def test_template_path_is_the_citys_file(qinghe, tmp_path):
    assert docx.template_path(qinghe) is None


@pytest.mark.parametrize(
    ("columns", "body", "width"),
    [
        (["序号", "区县", "办件数"], [["1", "张店区", "108908"], ["2", "区", "1"]], 156.0),
        (["序号", "区县", "评价率"], [["1", "张店区", "100%"]], 60.0),
        (["序号", "部门"], [["1", "山东省通信行业协会淄博办事处山东省通信行业协会"]], 100.0),
    ],
)
def test_column_widths_fill_the_table(columns, body, width):
    widths = docx.column_widths(columns, body, width, 12.0)
    assert abs(sum(widths) - width) < 1e-6 and all(w > 0 for w in widths)
    assert widths[0] == min(widths)  # 序号 needs least
    assert widths[1] < width * 0.8  # a long name wraps rather than squeezing the other columns
