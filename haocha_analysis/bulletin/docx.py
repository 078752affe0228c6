"""The bulletin as a Word 公文 (``bulletin.docx``), laid out after GB/T 9704-2012.

Built from the same :class:`~haocha_analysis.bulletin.render.BulletinContext` as the HTML bulletin, so
the texts, figures and annex cells are the same. What GB/T 9704-2012 fixes, and where it is set here:

* A4; 天头 37 mm, 订口 28 mm, 版心 156 × 225 mm (:data:`PAGE`), mirrored for double-sided printing;
  22 lines of 28 characters per page (a line grid and exact line spacing of 225 mm / 22; characters
  condensed to 156 mm / 28, :func:`_character_spacing`).
* Title 2号 小标宋, body 3号 仿宋_GB2312, 一级标题 黑体, 二级标题 楷体_GB2312 (:data:`FONTS`): the East-Asian
  font is set on every run, so Word and WPS show the intended faces; each face's fallbacks are named in
  the font table (``w:altName``) for machines without it.
* Page numbers 4号 "— 1 —", outside-aligned (odd pages right, even pages left, one character in).
* 附件 tables are real Word tables: header rows repeated on every page, rows never split across pages,
  numbers right-aligned; 附件3 (a column per district) on a landscape page.
* Charts as PNG images drawn from the same figures as the HTML; 落款 and 成文日期 right-aligned.

A city can supply its own ``bulletin.docx`` template in its reference folder (e.g. one with its 红头 and
its own styles): its content is kept and the bulletin is appended; styles it defines under the names
of :data:`STYLES` are used as they are, the others are added.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from docx import Document
from docx.enum.section import WD_ORIENT, WD_SECTION
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK, WD_LINE_SPACING
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Mm, Pt

from haocha_analysis.bulletin import charts
from haocha_analysis.bulletin.render import (
    ANNEX_LABELS,
    ANNEX_NAMES,
    HEADER_GROUPS,
    NAME_COLUMNS,
    TITLE_BREAK_BEFORE,
    TOTAL_ROW_LABELS,
    WIDE_ANNEXES,
    BulletinContext,
)
from haocha_analysis.core.atomic import PUBLISHED_MODE, temp_path
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.text import NOT_APPLICABLE

DOCX_NAME = "bulletin.docx"
TEMPLATE_NAME = "bulletin.docx"  # optional, in the city's reference folder


@dataclass(frozen=True)
class Page:
    """GB/T 9704-2012 §5.2: paper, margins (天头 top, 订口 inner) and the 版心 (text block)."""

    width_mm: float = 210.0
    height_mm: float = 297.0
    top_mm: float = 37.0  # 天头
    inner_mm: float = 28.0  # 订口
    text_width_mm: float = 156.0
    text_height_mm: float = 225.0
    lines: int = 22
    chars: int = 28

    @property
    def outer_mm(self) -> float:
        """切口 margin: what the 版心 leaves of the width."""
        return self.width_mm - self.inner_mm - self.text_width_mm

    @property
    def bottom_mm(self) -> float:
        """Bottom margin: what the 版心 leaves of the height."""
        return self.height_mm - self.top_mm - self.text_height_mm

    @property
    def line_pitch_pt(self) -> float:
        """Distance between lines: the 版心 height over 22 lines, down to Word's twips (22 must fit)."""
        return math.floor(self.text_height_mm / self.lines * 72 / 25.4 * 20) / 20

    @property
    def char_pitch_pt(self) -> float:
        """Width of one character cell: the 版心 width over 28 characters."""
        return self.text_width_mm / self.chars * 72 / 25.4


PAGE = Page()
TWIPS_PER_PT = 20
EMU_PER_MM = 36000
# Chinese type sizes (字号) in points.
SIZE_2 = 22.0  # 二号: title, annex titles
SIZE_3 = 16.0  # 三号: body, headings
SIZE_4 = 14.0  # 四号: page numbers
SIZE_TABLE = 12.0  # 小四: annex tables
SIZE_TABLE_WIDE = 10.5  # 五号: the landscape annex with a column per district
LATIN_FONT = "Times New Roman"
# Condense 三号 characters so that exactly 28 fit the 版心 width: 156 mm / 28 = 15.79 pt a character.
CHAR_SPACING_TWIPS = math.floor((PAGE.char_pitch_pt - SIZE_3) * TWIPS_PER_PT)


@dataclass(frozen=True)
class Face:
    """A font as a run names it: the East-Asian face, its fallbacks (font table), the Latin face."""

    east_asia: str
    fallbacks: tuple[str, ...]
    latin: str = LATIN_FONT


FONTS = {
    "title": Face("方正小标宋简体", ("小标宋", "华文中宋", "宋体", "Noto Serif CJK SC")),
    "body": Face("仿宋_GB2312", ("仿宋", "FangSong", "Noto Serif CJK SC")),
    "heading1": Face("黑体", ("SimHei", "Noto Sans CJK SC")),
    "heading2": Face("楷体_GB2312", ("楷体", "KaiTi", "Noto Serif CJK SC")),
    "page_number": Face("宋体", ("SimSun", "Noto Serif CJK SC")),
}
TABLE_STYLE = "公文表格"  # paragraph style of table cells and notes
# Paragraph styles the document uses: name → (face, size in pt, bold). A template may define them.
STYLES = {
    "公文标题": ("title", SIZE_2, False),
    "公文正文": ("body", SIZE_3, False),
    "公文一级标题": ("heading1", SIZE_3, False),
    "公文二级标题": ("heading2", SIZE_3, False),
    "公文表格": ("body", SIZE_TABLE, False),
    "公文页码": ("page_number", SIZE_4, False),
}
MIN_COLUMN_CHARS = 2.0
MAX_COLUMN_CHARS = 10.0
DIGIT_WIDTH = 0.62  # of a character: the widest common Latin faces' digits
CELL_MARGIN_MM = 1.0  # left and right inside each cell (Word's default is 1.9 mm)
CELL_SLACK_CHARS = 0.6  # bold headers and rounding: what keeps a fitting text from wrapping
NUMBER_CELL = re.compile(r"-?\d[\d,]*(\.\d+)?%?")


def template_path(ref: CityReference) -> Path | None:
    """The city's Word template (``<reference folder>/bulletin.docx``), or None to use the built-in layout."""
    path = Path(ref.path) / TEMPLATE_NAME
    return path if path.is_file() else None


# --- low-level helpers ---------------------------------------------------------------------------


def _set_fonts(rpr_parent, face: Face) -> None:
    """Set every font slot of a run (or style) properties: Latin, East-Asian and complex script."""
    rpr = rpr_parent.get_or_add_rPr()
    fonts = rpr.find(qn("w:rFonts"))
    if fonts is None:
        fonts = OxmlElement("w:rFonts")
        rpr.insert(0, fonts)
    for attr in ("w:ascii", "w:hAnsi", "w:cs"):
        fonts.set(qn(attr), face.latin)
    fonts.set(qn("w:eastAsia"), face.east_asia)
    fonts.set(qn("w:hint"), "eastAsia")


def _run(paragraph, text: str, face: str, size: float, *, bold: bool = False):
    """Append a run with its fonts (East-Asian included) and size set explicitly."""
    run = paragraph.add_run(text)
    _set_fonts(run._r, FONTS[face])
    run.font.size = Pt(size)
    run.font.bold = bold
    return run


def _line_spacing(paragraph, pitch_pt: float = PAGE.line_pitch_pt) -> None:
    fmt = paragraph.paragraph_format
    fmt.line_spacing_rule = WD_LINE_SPACING.EXACTLY
    fmt.line_spacing = Pt(pitch_pt)
    fmt.space_before = Pt(0)
    fmt.space_after = Pt(0)


def _paragraph(doc, style: str, text: str = "", *, align=None, first_line_chars: float = 0.0):
    face, size, bold = STYLES[style]
    paragraph = doc.add_paragraph(style=style)
    if align is not None:
        paragraph.alignment = align
    if first_line_chars:
        paragraph.paragraph_format.first_line_indent = Pt(size * first_line_chars)
    if text:
        _run(paragraph, text, face, size, bold=bold)
    return paragraph


def _text_width_chars(text: str, ascii_width: float = 0.5) -> float:
    """Width of a text in character cells: an ASCII character counts ``ascii_width``."""
    return sum(ascii_width if ord(ch) < 128 else 1.0 for ch in text)


# --- document set-up -------------------------------------------------------------------------------


def _ensure_styles(doc) -> None:
    """Add the paragraph styles a template does not define (a template's own are kept)."""
    existing = {s.name for s in doc.styles}
    for name, (face, size, bold) in STYLES.items():
        if name in existing:
            continue
        style = doc.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
        style.base_style = doc.styles["Normal"]
        style.quick_style = True
        style.font.size = Pt(size)
        style.font.bold = bold
        _set_fonts(style.element, FONTS[face])
        fmt = style.paragraph_format
        fmt.space_before = Pt(0)
        fmt.space_after = Pt(0)
        if name != "公文表格":
            fmt.line_spacing_rule = WD_LINE_SPACING.EXACTLY
            fmt.line_spacing = Pt(PAGE.line_pitch_pt)
        if size == SIZE_3:
            _character_spacing(style)
        if name == "公文表格":  # table cells and notes keep single spacing, off the 22-line grid
            snap = OxmlElement("w:snapToGrid")
            snap.set(qn("w:val"), "0")
            style.element.get_or_add_pPr().append(snap)
    # The document grid counts characters of the default size: 三号, in the defaults and in Normal.
    defaults = doc.styles.element.find(qn("w:docDefaults"))
    rpr = defaults.find(qn("w:rPrDefault")).find(qn("w:rPr")) if defaults is not None else None
    if rpr is not None:
        size = rpr.find(qn("w:sz"))
        if size is None:
            size = OxmlElement("w:sz")
            rpr.append(size)
        size.set(qn("w:val"), str(int(SIZE_3 * 2)))
    normal = doc.styles["Normal"]
    normal.font.size = Pt(SIZE_3)
    _set_fonts(normal.element, FONTS["body"])


def _font_table_fallbacks(doc) -> None:
    """Name each face's fallbacks in the font table (``w:altName``), where Word and WPS look for them."""
    font_part = None
    for rel in doc.part.rels.values():
        if rel.reltype.endswith("/fontTable"):
            font_part = rel.target_part
    if font_part is None:
        return
    from lxml import etree

    root = etree.fromstring(font_part.blob)
    known = {f.get(qn("w:name")) for f in root.findall(qn("w:font"))}
    for face in FONTS.values():
        if face.east_asia in known:
            continue
        font = etree.SubElement(root, qn("w:font"))
        font.set(qn("w:name"), face.east_asia)
        alt = etree.SubElement(font, qn("w:altName"))
        alt.set(qn("w:val"), ",".join(face.fallbacks))
        charset = etree.SubElement(font, qn("w:charset"))
        charset.set(qn("w:val"), "86")  # GB2312
        family = etree.SubElement(font, qn("w:family"))
        family.set(qn("w:val"), "modern" if face.east_asia in ("黑体",) else "roman")
        known.add(face.east_asia)
    font_part._blob = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def _doc_grid(section) -> None:
    """22 lines per page: the section's line grid (the styles' exact line spacing keeps to it)."""
    sect = section._sectPr
    grid = sect.find(qn("w:docGrid"))
    if grid is None:
        grid = OxmlElement("w:docGrid")
        sect.append(grid)
    grid.set(qn("w:type"), "lines")
    grid.set(qn("w:linePitch"), str(round(PAGE.line_pitch_pt * TWIPS_PER_PT)))  # exact: whole twips
    grid.attrib.pop(qn("w:charSpace"), None)


def _character_spacing(style) -> None:
    """28 characters of 三号 per line: each character condensed to the 版心 width over 28.

    Word and WPS honour a character grid, LibreOffice lays it out differently; a condensed spacing
    (``w:spacing``, in twentieths of a point) gives 28 characters a line in all three.
    """
    rpr = style.element.get_or_add_rPr()
    spacing = rpr.find(qn("w:spacing"))
    if spacing is None:
        spacing = OxmlElement("w:spacing")
        rpr.append(spacing)
    spacing.set(qn("w:val"), str(CHAR_SPACING_TWIPS))


def _mirror_margins(doc) -> None:
    """Double-sided printing: the 订口 (inner margin) alternates sides, as a bound 公文 needs."""
    settings = doc.settings.element
    if settings.find(qn("w:mirrorMargins")) is None:
        settings.insert(0, OxmlElement("w:mirrorMargins"))


def _page_setup(section, *, landscape: bool = False) -> None:
    if landscape:
        section.orientation = WD_ORIENT.LANDSCAPE
        section.page_width, section.page_height = Mm(PAGE.height_mm), Mm(PAGE.width_mm)
        # The portrait page turned: 订口 at the top, 天头 on the left.
        section.top_margin, section.bottom_margin = Mm(PAGE.inner_mm), Mm(PAGE.outer_mm)
        section.left_margin, section.right_margin = Mm(PAGE.top_mm), Mm(PAGE.bottom_mm)
    else:
        section.orientation = WD_ORIENT.PORTRAIT
        section.page_width, section.page_height = Mm(PAGE.width_mm), Mm(PAGE.height_mm)
        section.top_margin, section.bottom_margin = Mm(PAGE.top_mm), Mm(PAGE.bottom_mm)
        section.left_margin, section.right_margin = Mm(PAGE.inner_mm), Mm(PAGE.outer_mm)
    section.header_distance = Mm(15)
    # The page number's line sits 7 mm below the 版心 (GB/T 9704-2012 §7.5).
    section.footer_distance = Mm(max(PAGE.bottom_mm - 7 - SIZE_4 * 25.4 / 72, 10))
    _doc_grid(section)


def _field(paragraph, instruction: str, shown: str, face: str, size: float) -> None:
    """A Word field (e.g. PAGE) as begin / instruction / separate / shown text / end runs."""
    for kind, text in (
        ("begin", None),
        ("instr", instruction),
        ("separate", None),
        ("text", shown),
        ("end", None),
    ):
        run = paragraph.add_run()
        _set_fonts(run._r, FONTS[face])
        run.font.size = Pt(size)
        if kind == "instr":
            instr = OxmlElement("w:instrText")
            instr.set(qn("xml:space"), "preserve")
            instr.text = text
            run._r.append(instr)
        elif kind == "text":
            run.text = text
        else:
            char = OxmlElement("w:fldChar")
            char.set(qn("w:fldCharType"), kind)
            run._r.append(char)


def _page_numbers(doc, section) -> None:
    """4号 "— n —": odd pages right-aligned, even pages left-aligned, one character in from the edge."""
    doc.settings.odd_and_even_pages_header_footer = True
    indent = Pt(SIZE_4)
    for footer, align in (
        (section.footer, WD_ALIGN_PARAGRAPH.RIGHT),
        (section.even_page_footer, WD_ALIGN_PARAGRAPH.LEFT),
    ):
        footer.is_linked_to_previous = False
        paragraph = footer.paragraphs[0] if footer.paragraphs else footer.add_paragraph()
        paragraph.style = doc.styles["公文页码"]
        paragraph.alignment = align
        if align == WD_ALIGN_PARAGRAPH.RIGHT:
            paragraph.paragraph_format.right_indent = indent
        else:
            paragraph.paragraph_format.left_indent = indent
        _run(paragraph, "— ", "page_number", SIZE_4)
        _field(paragraph, " PAGE ", "1", "page_number", SIZE_4)
        _run(paragraph, " —", "page_number", SIZE_4)


# --- content ---------------------------------------------------------------------------------------


def _title(doc, title: str) -> None:
    head, sep, tail = title.partition(TITLE_BREAK_BEFORE)
    paragraph = _paragraph(doc, "公文标题", align=WD_ALIGN_PARAGRAPH.CENTER)
    face, size, _ = STYLES["公文标题"]
    if sep and head:  # broken where the reference breaks it: 关于2023年第二季度 / 政务服务…的通报
        _run(paragraph, head, face, size)
        _run(paragraph, "", face, size).add_break(WD_BREAK.LINE)
        _run(paragraph, sep + tail, face, size)
    else:
        _run(paragraph, title, face, size)
    _paragraph(doc, "公文正文")  # a blank line below the title


def _signature(doc, ctx: BulletinContext) -> None:
    """落款: the issuer centred over the date, the date (成文日期) right-aligned four characters in."""
    d = ctx.issued_on
    date_text = f"{d.year}年{d.month}月{d.day}日"
    _paragraph(doc, "公文正文")
    _paragraph(doc, "公文正文")
    if ctx.issuer:
        shift = max(0.0, (_text_width_chars(date_text) - _text_width_chars(ctx.issuer)) / 2)
        issuer = _paragraph(doc, "公文正文", ctx.issuer, align=WD_ALIGN_PARAGRAPH.RIGHT)
        issuer.paragraph_format.right_indent = Pt(SIZE_3 * (4 + shift))
    dated = _paragraph(doc, "公文正文", date_text, align=WD_ALIGN_PARAGRAPH.RIGHT)
    dated.paragraph_format.right_indent = Pt(SIZE_3 * 4)


def _annex_list(doc, ctx: BulletinContext) -> None:
    """附件说明 below the body: 附件：1．… numbered; wrapped lines align with the first title's text."""
    _paragraph(doc, "公文正文")
    for i, name in enumerate(ANNEX_NAMES, start=1):
        lead = "附件：" if i == 1 else ""
        paragraph = _paragraph(doc, "公文正文", f"{lead}{i}．{ctx.annex_titles[name]}")
        fmt = paragraph.paragraph_format
        fmt.left_indent = Pt(SIZE_3 * 7)  # 2 characters in, 附件：(3) and the number (2)
        fmt.first_line_indent = Pt(SIZE_3 * (-5 if i == 1 else -2))


def _chart_images(doc, ctx: BulletinContext) -> None:
    heading = _paragraph(doc, "公文一级标题", f"附图：{ctx.period.title_cn()}评价情况")
    heading.paragraph_format.page_break_before = True
    for name in charts.BULLETIN_CHARTS:
        fig, caption = charts.bulletin_chart(ctx, name)
        png = charts.to_png(fig)
        paragraph = doc.add_paragraph(style="公文表格")
        paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
        run = paragraph.add_run()
        _set_fonts(run._r, FONTS["body"])
        run.add_picture(io.BytesIO(png), width=Mm(PAGE.text_width_mm))
        _paragraph(doc, "公文二级标题", caption, align=WD_ALIGN_PARAGRAPH.CENTER)


def _cell_text(value: object) -> str:
    text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
    return "" if text in ("nan", "<NA>", "None") else text


def _cell_alignment(column: str, text: str, name_column: str | None, total: bool):
    if column == name_column and not total:
        return WD_ALIGN_PARAGRAPH.LEFT
    if text == NOT_APPLICABLE or column == "序号" or (total and column == name_column):
        return WD_ALIGN_PARAGRAPH.CENTER
    if NUMBER_CELL.fullmatch(text):
        return WD_ALIGN_PARAGRAPH.RIGHT
    return WD_ALIGN_PARAGRAPH.CENTER


def _row_flags(row, *, header: bool) -> None:
    """A row never splits across pages; header rows repeat at the top of every page."""
    tr_pr = row._tr.get_or_add_trPr()
    tr_pr.append(OxmlElement("w:cantSplit"))
    if header:
        tr_pr.append(OxmlElement("w:tblHeader"))


def _borders(table) -> None:
    tbl_pr = table._tbl.tblPr
    margins = OxmlElement("w:tblCellMar")
    for side in ("left", "right"):
        margin = OxmlElement(f"w:{side}")
        margin.set(qn("w:w"), str(round(CELL_MARGIN_MM / 25.4 * 1440)))
        margin.set(qn("w:type"), "dxa")
        margins.append(margin)
    tbl_pr.append(margins)
    borders = OxmlElement("w:tblBorders")
    for edge in ("top", "left", "bottom", "right", "insideH", "insideV"):
        line = OxmlElement(f"w:{edge}")
        line.set(qn("w:val"), "single")
        line.set(qn("w:sz"), "4")
        line.set(qn("w:space"), "0")
        line.set(qn("w:color"), "000000")
        borders.append(line)
    tbl_pr.append(borders)


def header_rows(columns: list[str], groups: dict[str, str] | None) -> list[list[tuple[str, int]]]:
    """The annex header as rows of (text, span); two rows when columns are grouped (附件4).

    In the second row a cell spanning both rows is written as ("", 1) under its top cell.
    """
    if not groups:
        return [[(c, 1) for c in columns]]
    top: list[tuple[str, int]] = []
    bottom: list[tuple[str, int]] = []
    i = 0
    while i < len(columns):
        prefix = next((p for p in groups if columns[i].startswith(p)), None)
        if prefix is None:
            top.append((columns[i], 1))
            bottom.append(("", 1))
            i += 1
            continue
        span = 0
        while i + span < len(columns) and columns[i + span].startswith(prefix):
            bottom.append((columns[i + span][len(prefix) :], 1))
            span += 1
        top.append((groups[prefix], span))
        i += span
    return [top, bottom]


def column_widths(columns: list[str], body: list[list[str]], width_mm: float, size_pt: float) -> list[float]:
    """Share the table width by what each column must show on one line (mm).

    A column needs its longest cell (digits counted at :data:`DIGIT_WIDTH` of a character, as wide
    Latin faces set them) or the first four characters of its header, plus the cell padding; a name
    column wraps beyond :data:`MAX_COLUMN_CHARS`. The needs are then scaled to the table width.
    """
    char_mm = size_pt * 25.4 / 72
    needs = []
    for j, column in enumerate(columns):
        longest = max([_text_width_chars(row[j], DIGIT_WIDTH) for row in body] + [min(len(column), 4)])
        chars = min(max(longest, MIN_COLUMN_CHARS), MAX_COLUMN_CHARS) + CELL_SLACK_CHARS
        needs.append(chars * char_mm + 2 * CELL_MARGIN_MM)
    total = sum(needs)
    return [width_mm * need / total for need in needs]


def _fill_cell(cell, text: str, align, size: float, *, bold: bool = False, style=TABLE_STYLE) -> None:
    paragraph = cell.paragraphs[0]
    paragraph.style = style
    paragraph.alignment = align
    fmt = paragraph.paragraph_format
    fmt.space_before = fmt.space_after = Pt(0)
    _run(paragraph, text, "body", size, bold=bold)


def _annex_table(doc, frame: pd.DataFrame, name: str, width_mm: float) -> None:
    columns = [str(c) for c in frame.columns]
    size = SIZE_TABLE_WIDE if name in WIDE_ANNEXES else SIZE_TABLE
    style = doc.styles[TABLE_STYLE]  # looked up by name once, not once per cell
    heads = header_rows(columns, HEADER_GROUPS.get(name))
    body = [[_cell_text(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    table = doc.add_table(rows=len(heads) + len(body), cols=len(columns))
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    _borders(table)
    name_column = next((c for c in columns if c in NAME_COLUMNS), None)
    widths = [Mm(w) for w in column_widths(columns, body, width_mm, size)]
    for r in range(len(heads)):
        _row_flags(table.rows[r], header=True)
    col = 0
    for text, span in heads[0]:
        cell = table.cell(0, col)
        if span > 1:
            cell = cell.merge(table.cell(0, col + span - 1))
        elif len(heads) == 2:  # an ungrouped column spans both header rows
            cell = cell.merge(table.cell(1, col))
        _fill_cell(cell, text, WD_ALIGN_PARAGRAPH.CENTER, size, bold=True, style=style)
        col += span
    if len(heads) == 2:
        for col, (text, _span) in enumerate(heads[1]):
            if text:
                _fill_cell(table.cell(1, col), text, WD_ALIGN_PARAGRAPH.CENTER, size, bold=True, style=style)
    for i, values in enumerate(body):
        row = table.rows[len(heads) + i]
        _row_flags(row, header=False)
        total = any(v in TOTAL_ROW_LABELS for v in values[:2])
        cells = row.cells  # computed from the whole table on each access: once per row
        for c, (column, text) in enumerate(zip(columns, values, strict=True)):
            alignment = _cell_alignment(column, text, name_column, total)
            _fill_cell(cells[c], text, alignment, size, bold=total, style=style)
    _fixed_widths(table, widths)


def _fixed_widths(table, widths: list) -> None:
    """Column widths that Word, WPS and LibreOffice all keep: fixed layout, grid, cells, table width."""
    table.autofit = False
    tbl_pr = table._tbl.tblPr
    layout = OxmlElement("w:tblLayout")
    layout.set(qn("w:type"), "fixed")
    tbl_pr.append(layout)
    total = OxmlElement("w:tblW")
    total.set(qn("w:w"), str(sum(int(w.twips) for w in widths)))
    total.set(qn("w:type"), "dxa")
    for old in tbl_pr.findall(qn("w:tblW")):
        tbl_pr.remove(old)
    tbl_pr.append(total)
    for column, width in zip(table.columns, widths, strict=True):
        column.width = width
    for row in table.rows:
        for cell, width in zip(row.cells, widths, strict=True):
            cell.width = width


def _annex(doc, ctx: BulletinContext, name: str) -> None:
    wide = name in WIDE_ANNEXES
    section = doc.add_section(WD_SECTION.NEW_PAGE)
    _page_setup(section, landscape=wide)
    _paragraph(doc, "公文一级标题", ANNEX_LABELS[name])
    _paragraph(doc, "公文标题", ctx.annex_titles[name], align=WD_ALIGN_PARAGRAPH.CENTER)
    width = PAGE.text_height_mm if wide else PAGE.text_width_mm
    _annex_table(doc, ctx.annexes[name], name, width)
    note = _paragraph(doc, "公文表格", ctx.notes[name])
    note.paragraph_format.space_before = Pt(6)


def build_document(ctx: BulletinContext, template: Path | None = None):
    """The bulletin as a python-docx ``Document`` (a template's content kept, the bulletin appended)."""
    doc = Document(str(template)) if template else Document()
    _ensure_styles(doc)
    _font_table_fallbacks(doc)
    first = doc.sections[0]
    if template is None:
        # python-docx's blank document starts with nothing: no paragraph to keep.
        for paragraph in list(doc.paragraphs):
            paragraph._p.getparent().remove(paragraph._p)
        _page_setup(first)
        _mirror_margins(doc)
    if template is None or not any(p.text.strip() for p in first.footer.paragraphs):
        _page_numbers(doc, first)  # a template's own footer (its page numbers) is kept
    if ctx.doc_number:  # 发文字号, centred above the title (GB/T 9704-2012 7.2.3)
        _paragraph(doc, "公文正文", ctx.doc_number, align=WD_ALIGN_PARAGRAPH.CENTER)
    _title(doc, ctx.texts["title"])
    if ctx.addressees:
        _paragraph(doc, "公文正文", f"{ctx.addressees}：")
    for text in (ctx.texts["work_progress"], ctx.texts["headline"], ctx.problems, ctx.texts["next_steps"]):
        _paragraph(doc, "公文正文", text, first_line_chars=2, align=WD_ALIGN_PARAGRAPH.JUSTIFY)
    _annex_list(doc, ctx)
    _signature(doc, ctx)
    _chart_images(doc, ctx)
    for name in ANNEX_NAMES:
        _annex(doc, ctx, name)
    props = doc.core_properties
    props.title = ctx.texts["title"]
    props.author = ctx.issuer or ctx.city_name
    props.comments = f"haocha {ctx.run_id}".strip()
    return doc


def write_docx(ctx: BulletinContext, path: Path, template: Path | None = None) -> Path:
    """Write ``bulletin.docx`` (to a temporary name first, renamed when complete)."""
    path = Path(path)
    tmp = temp_path(path.parent, path.name)
    try:
        build_document(ctx, template).save(str(tmp))
        tmp.chmod(PUBLISHED_MODE)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
