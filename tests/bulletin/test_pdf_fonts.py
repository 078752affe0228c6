"""PDF printing stays fast: fonts are subset by HarfBuzz, one CJK family is embedded per role."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from haocha_analysis.bulletin import render
from haocha_analysis.core.config import PROJ_ROOT

# Many distinct characters, as a bulletin page has: the subsetter's cost shows on every glyph kept.
CJK_TEXT = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 1500))


def _page(body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<style>{render.bulletin_css()}</style></head>"
        f'<body><main class="bulletin">{body}</main></body></html>'
    )


def _fonts(pdf: Path) -> set[str]:
    from pypdf import PdfReader

    reader = PdfReader(pdf)
    return {str(f["/BaseFont"]) for page in reader.pages for f in page["/Resources"]["/Font"].values()}


def test_system_deps_install_harfbuzz_subset_on_their_own():
    script = (PROJ_ROOT / "scripts" / "system-deps.sh").read_text(encoding="utf-8")
    # Its own check: a machine that has Pango but not the subsetter still gets it.
    assert re.search(r"libharfbuzz-subset\.so\.0'; then\n\s+need\+=\(libharfbuzz-subset0\)", script)


def test_fonts_are_subset_by_harfbuzz():
    assert render.pdf_font_subsetter() == "harfbuzz", render.PDF_SUBSET_HINT


def test_cjk_page_embeds_one_family_with_searchable_text(tmp_path):
    html = _page(
        '<h1 class="bulletin-title">关于通报</h1>'
        f'<p class="body-text">{CJK_TEXT}</p><p class="body-text">数据质检通过率100%</p>'
    )
    # The time is measured by `make bench` (stage "bulletin"), not here.
    pdf = render.html_to_pdf(html, tmp_path / "p.pdf", tmp_path)
    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "关于通报" in text and "数据质检通过率" in text and CJK_TEXT[:50] in text.replace("\n", "")
    assert pdf.stat().st_size < 2_000_000  # subsets, not whole collections
    fonts = _fonts(pdf)
    # Title (bold) and body (regular) of one family; the page numbers use it too.
    families = {re.sub(r"^[A-Z]{6}\+|-Bold$", "", f.lstrip("/")) for f in fonts}
    assert len(fonts) <= 2 and len(families) == 1, fonts


def test_font_css_sets_the_root_family_for_page_margins():
    first_rule = render.font_css().splitlines()[0]
    assert first_rule.startswith("html, body") and "font-family" in first_rule


def test_slow_subsetter_is_a_clear_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(render, "pdf_font_subsetter", lambda: "fonttools")
    logger = logging.getLogger("haocha.test")
    with caplog.at_level(logging.WARNING, logger="haocha.test"):
        render.html_to_pdf(_page("<p>123</p>"), tmp_path / "w.pdf", tmp_path, logger=logger)
    assert any("libharfbuzz-subset0" in r.getMessage() and "很慢" in r.getMessage() for r in caplog.records)


def test_missing_subset_library_means_fonttools(monkeypatch):
    import weasyprint.pdf.fonts as pdf_fonts

    monkeypatch.setattr(pdf_fonts, "harfbuzz_subset", None)
    assert render.pdf_font_subsetter() == "fonttools"
