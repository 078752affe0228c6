"""Reading a bulletin.docx back with python-docx: annex tables, fonts, paragraphs (shared by tests)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from docx import Document
from docx.oxml.ns import qn

from haocha_analysis.bulletin import render


def annex_tables(doc) -> dict[str, dict[str, list[list[str]]]]:
    """The five annex tables in document order: header rows and body rows of cell texts."""
    tables = {}
    for name, table in zip(render.ANNEX_NAMES, doc.tables, strict=True):
        head, body = [], []
        for row in table.rows:
            flags = row._tr.trPr
            is_header = flags is not None and flags.find(qn("w:tblHeader")) is not None
            cells = []
            for tc in row._tr.tc_lst:  # one entry per grid cell span (merged cells once)
                cells.append("".join(t.text or "" for t in tc.iter(qn("w:t"))))
            (head if is_header else body).append(cells)
        tables[name] = {"thead": head, "tbody": body}
    return tables


def csv_cells(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")


def assert_annexes_equal_csvs(docx_path: Path, folder: Path) -> None:
    """Every annex cell of the Word document equals the annex CSV beside it, headers included."""
    doc = Document(str(docx_path))
    tables = annex_tables(doc)
    for name in render.ANNEX_NAMES:
        expected = csv_cells(folder, name)
        assert tables[name]["tbody"] == expected.values.tolist(), name
        head = tables[name]["thead"]
        columns = list(expected.columns)
        if len(head) == 1:
            assert head[0] == columns, name
        else:  # 附件4: 镇 级 / 村 级 over their three columns each
            groups = render.HEADER_GROUPS[name]
            top, bottom = head
            rebuilt, b = [], 0
            for text in top:
                prefix = next((p for p, shown in groups.items() if shown == text), None)
                if prefix is None:
                    rebuilt.append(text)
                    b += 1
                    continue
                span = sum(1 for c in columns if c.startswith(prefix))
                rebuilt.extend(prefix + cell for cell in bottom[b : b + span])
                b += span
            assert rebuilt == columns, name


def body_text(doc) -> str:
    return "".join(p.text for p in doc.paragraphs)


def runs_without_east_asian_font(doc) -> list[str]:
    """Runs (body, tables, footers) whose properties do not name an East-Asian font."""
    roots = [doc.element.body]
    for section in doc.sections:
        roots += [section.footer._element, section.even_page_footer._element]
    missing = []
    for root in roots:
        for run in root.iter(qn("w:r")):
            fonts = run.find(qn("w:rPr") + "/" + qn("w:rFonts"))
            if fonts is None or not fonts.get(qn("w:eastAsia")):
                missing.append("".join(t.text or "" for t in run.iter(qn("w:t")))[:20])
    return missing
