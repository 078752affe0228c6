"""``reports/index.html``: one offline page listing every city and period found under ``reports/``.

For each ``reports/<city>/<period>/`` that holds a finished run (its ``manifest.json``): the headline
figures (``headline.json``), links to the bulletin (HTML, PDF, DOCX), the annex workbook, the quality
and anomaly outputs and the unit reports, and per city a small trend chart of the evaluations (inline
SVG). Only files that exist are linked, with relative links, so the folder can be copied or zipped
and opened anywhere; nothing on the page refers outside it. Rebuilt by every ``haocha run``,
``haocha bulletin`` and ``haocha unit-reports``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path

from haocha_analysis.core.atomic import write_text
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period, period_label

INDEX_NAME = "index.html"
MANIFEST = "manifest.json"
HEADLINE = "headline.json"
# What a period's folder may hold, in the order the index lists it: (relative path, label).
DOCUMENTS = (
    ("bulletin.html", "通报（网页）"),
    ("bulletin.pdf", "通报（PDF）"),
    ("bulletin.docx", "通报（Word 公文）"),
    ("annexes.xlsx", "附件表格（XLSX）"),
    ("quality/quality.xlsx", "数据质检（XLSX）"),
    ("anomalies/anomalies.xlsx", "异常清单（XLSX）"),
    ("anomalies/anomalies.csv", "异常清单（CSV）"),
)
UNITS_DIR = "units"
UNITS_SUMMARY = "units.json"
HEADLINE_FIGURES = (
    ("total_cases", "办件数"),
    ("total_evaluations", "评价数"),
    ("evaluation_rate", "评价率"),
    ("active_rate", "主动评价率"),
    ("valid_bad_reviews", "有效差评"),
)
# Trend chart size (px) and colour, as the bulletin's charts.
CHART_W, CHART_H, CHART_PAD = 360, 120, 24
BAR_COLOR = "#2f5597"
MAX_BAR_PX = 40


@dataclass
class PeriodEntry:
    """One finished period of one city."""

    label: str
    folder: Path
    headline: dict
    documents: list[tuple[str, str]] = field(default_factory=list)  # (relative link, label)
    units: list[tuple[str, str, str]] = field(default_factory=list)  # (name, html link, pdf link)
    finished: str = ""


@dataclass
class CityEntry:
    """One city's periods, oldest first."""

    key: str
    name: str
    periods: list[PeriodEntry] = field(default_factory=list)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _period_key(label: str) -> tuple:
    try:
        p = parse_period(label)
    except HaochaInputError:
        return (1, label)
    return (0, p.start.isoformat(), p.end.isoformat())


def _shown(label: str) -> str:
    """A period folder's name as readers see it (2023年第二季度); a folder that is no period as it is."""
    try:
        return period_label(label)
    except HaochaInputError:
        return label


def _units(folder: Path, root: Path) -> list[tuple[str, str, str]]:
    units_dir = folder / UNITS_DIR
    summary = _read_json(units_dir / UNITS_SUMMARY)
    out = []
    for unit in summary.get("units", []):
        html = units_dir / str(unit.get("html", ""))
        pdf = units_dir / str(unit.get("pdf", ""))
        if unit.get("html") and html.is_file():
            pdf_link = pdf.relative_to(root).as_posix() if unit.get("pdf") and pdf.is_file() else ""
            out.append(
                (
                    str(unit.get("unit_name", unit.get("unit_id", ""))),
                    html.relative_to(root).as_posix(),
                    pdf_link,
                )
            )
    return out


def scan(root: Path) -> list[CityEntry]:
    """Every ``<city>/<period>/`` under ``root`` with a manifest (hidden and temporary folders skipped)."""
    root = Path(root)
    cities = []
    if not root.is_dir():
        return cities
    for city_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entry = CityEntry(key=city_dir.name, name=city_dir.name)
        for folder in city_dir.iterdir():
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            manifest = _read_json(folder / MANIFEST)
            if not manifest:
                continue
            entry.name = str(manifest.get("city_name") or entry.name)
            period = PeriodEntry(
                label=str(manifest.get("period") or folder.name),
                folder=folder,
                headline=_read_json(folder / HEADLINE),
                finished=str(manifest.get("started_at", "")),
            )
            period.documents = [
                ((folder / rel).relative_to(root).as_posix(), label)
                for rel, label in DOCUMENTS
                if (folder / rel).is_file()
            ]
            period.units = _units(folder, root)
            entry.periods.append(period)
        if entry.periods:
            entry.periods.sort(key=lambda p: _period_key(p.label))
            cities.append(entry)
    return cities


def trend_svg(labels: list[str], values: list[float | None], title: str) -> str:
    """A small bar chart as inline SVG (each bar's value in its ``<title>``: shown on hover)."""
    known = [v for v in values if v is not None]
    top = max(known) if known else 0
    n = max(len(labels), 1)
    step = (CHART_W - 2 * CHART_PAD) / n
    bars = []
    bar = min(step * 0.7, MAX_BAR_PX)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = CHART_PAD + i * step + (step - bar) / 2
        h = 0.0 if not value or not top else (CHART_H - 2 * CHART_PAD) * value / top
        y = CHART_H - CHART_PAD - h
        shown = "/" if value is None else f"{value:,.0f}"
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{BAR_COLOR}">'
            f"<title>{escape(label)}：{escape(shown)}</title></rect>"
            f'<text x="{x + bar / 2:.1f}" y="{CHART_H - CHART_PAD + 14}" text-anchor="middle" '
            f'font-size="10">{escape(label)}</text>'
        )
    return (
        f'<svg class="trend" width="{CHART_W}" height="{CHART_H}" '
        f'viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{escape(title)}">'
        f'<text x="{CHART_PAD}" y="14" font-size="11">{escape(title)}</text>'
        f'<line x1="{CHART_PAD}" y1="{CHART_H - CHART_PAD}" x2="{CHART_W - CHART_PAD}" '
        f'y2="{CHART_H - CHART_PAD}" stroke="#999"/>' + "".join(bars) + "</svg>"
    )


def _figure(headline: dict, key: str) -> str:
    value = headline.get(key)
    if value is None:
        return "/"
    return f"{value:,}" if isinstance(value, int) else escape(str(value))


def _period_html(period: PeriodEntry) -> str:
    docs = " ".join(f'<a href="{escape(link)}">{escape(label)}</a>' for link, label in period.documents)
    figures = "".join(f'<td class="num">{_figure(period.headline, key)}</td>' for key, _ in HEADLINE_FIGURES)
    units = ""
    if period.units:
        items = "".join(
            f'<li><a href="{escape(html)}">{escape(name)}</a>'
            + (f' <a class="pdf" href="{escape(pdf)}">PDF</a>' if pdf else "")
            + "</li>"
            for name, html, pdf in period.units
        )
        units = f"<details><summary>单位报告（{len(period.units)} 个）</summary><ul>{items}</ul></details>"
    head = f'<th scope="row">{escape(_shown(period.label))}</th>'
    return f'<tr>{head}{figures}<td class="docs">{docs}{units}</td></tr>'


def render_index(cities: list[CityEntry], generated: datetime | None = None) -> str:
    """The index page (HTML text, self-contained)."""
    generated = generated or datetime.now()
    parts = []
    for city in cities:
        labels = [_shown(p.label) for p in city.periods]
        values = [p.headline.get("total_evaluations") for p in city.periods]
        chart = trend_svg(labels, values, f"{city.name}各统计期评价数")
        head = "".join(f"<th>{escape(label)}</th>" for _, label in HEADLINE_FIGURES)
        rows = "".join(_period_html(p) for p in reversed(city.periods))
        parts.append(
            f'<section class="city" id="{escape(city.key)}"><h2>{escape(city.name)}</h2>{chart}'
            f'<table class="annex index"><thead><tr><th>统计期</th>{head}<th>文件</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>"
        )
    body = "".join(parts) or '<p class="body-text">reports/ 下还没有已完成的统计期。</p>'
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"/>'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">'
        f"<title>好差评报告索引</title><style>{INDEX_CSS}</style></head><body><main>"
        f'<h1>政务服务“好差评”报告索引</h1><p class="meta">生成时间：{generated:%Y-%m-%d %H:%M}</p>'
        f"{body}</main></body></html>\n"
    )


def write_index(root: Path) -> Path:
    """Rebuild ``<root>/index.html`` from what is under ``root`` (written atomically)."""
    return write_text(Path(root) / INDEX_NAME, render_index(scan(root)))


INDEX_CSS = """
body { margin: 0; font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", sans-serif;
  color: #000; background: #fff; }
main { max-width: 72rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.5rem; margin: 0 0 .2rem 0; }
p.meta { color: #555; margin: 0 0 1.5rem 0; }
section.city { margin-bottom: 2.5rem; }
h2 { font-size: 1.25rem; border-bottom: 2px solid #2f5597; padding-bottom: .2rem; }
svg.trend { display: block; margin: .5rem 0 1rem 0; }
table.index { border-collapse: collapse; width: 100%; font-size: .95rem; }
table.index th, table.index td { border: 1px solid #bbb; padding: .3rem .5rem; vertical-align: top; }
table.index thead th { background: #eef2f8; }
td.num { text-align: right; white-space: nowrap; }
td.docs a { margin-right: .8rem; white-space: nowrap; }
details ul { columns: 3; margin: .3rem 0; }
"""
