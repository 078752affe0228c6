"""The bulletin (通报): HTML fragments for the notebook, then HTML and PDF for readers.

``notebooks/bulletin.ipynb`` calls one function of this module per part of the bulletin (title,
paragraphs, problems, next steps, annexes); :mod:`haocha_analysis.pipeline.run` executes it with papermill
and :func:`notebook_to_html` / :func:`html_to_pdf` render it without code, prompts or any external
reference (government intranets reach nothing outside).

The CLI verbs ``bulletin`` and ``run`` are defined at the end of this module (cli.py registers the
module named ``render``); the staged work they call lives in :mod:`haocha_analysis.pipeline.run`.
"""

from __future__ import annotations

import logging
import re
import string
from dataclasses import dataclass, field
from datetime import date
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from haocha_analysis.analysis.annexes import ANNEXES, HEADER_GROUPS, TITLES, comparison_sentence
from haocha_analysis.core.config import PROJ_ROOT, TEMPLATES_DIR
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.text import NOT_APPLICABLE

ANNEX_NAMES = ANNEXES
ANNEX_LABELS = {name: f"附件{i}" for i, name in enumerate(ANNEX_NAMES, start=1)}
# The annexes' titles, with the template placeholder bulletin.yml uses for the period.
DEFAULT_ANNEX_TITLES = {name: title.replace("{short}", "{period_short}") for name, title in TITLES.items()}
# 附件3 has one column per district: printed on a landscape page.
WIDE_ANNEXES = frozenset({"annex3_district_departments"})
NAME_COLUMNS = frozenset({"区县", "部门", "单位"})
TOTAL_ROW_LABELS = frozenset({"汇总", "总数", "合计", "总计"})
NO_CATALOGUE = "（未提供事项目录）"  # {matters_catalogued} when the city has no matters.csv
NARRATIVE_FILE = "bulletin.yml"
DEFAULT_NARRATIVE = TEMPLATES_DIR / "bulletin_default.yml"
REQUIRED_NARRATIVE_KEYS = ("work_progress", "headline", "next_steps")
PLAIN_NARRATIVE_KEYS = ("addressees", "issuer")  # printed as written, no placeholders
# The computed values a narrative text may name ({city_name} …): the keys of placeholder_values.
PLACEHOLDERS = (
    "city_name",
    "period_title",
    "period_name",
    "period_short",
    "period_range",
    "systems",
    "systems_count",
    "systems_sentence",
    "matters_catalogued",
    "matters_sentence",
    "quality_sentence",
    "total_cases",
    "total_evaluations",
    "evaluation_rate",
    "valid_bad_reviews",
    "bad_review_text",
    "district_cases",
    "city_department_cases",
)
CSS_FILE = TEMPLATES_DIR / "bulletin.css"
JS_FILE = TEMPLATES_DIR / "interactive.js"  # sortable tables, chart values on hover (HTML only)
NBCONVERT_TEMPLATE = "bulletin"
CN_DIGITS = "零一二三四五六七八九"

log = logging.getLogger("haocha.render")


# --- context ----------------------------------------------------------------------------------


@dataclass
class StageResults:
    """What the analysis stages hand to the bulletin: tables, quality, findings (picklable)."""

    tables: Any  # tables.TablesResult
    quality: Any  # quality.QualityReport
    findings: pd.DataFrame
    problems: str
    extracted_on: str | None = None
    coverage: Any = None  # core.coverage.Coverage: a partial period is said in the headline paragraph
    rectification: Any = None  # analysis.rectification.Ledger: the 差评 ledger as of the extraction date


@dataclass
class BulletinContext:
    """Everything the bulletin notebook shows, computed once."""

    city_key: str
    city_name: str
    period: Period
    addressees: str
    issuer: str
    issued_on: date
    texts: dict[str, str]  # title, work_progress, headline, next_steps: placeholders filled
    annex_titles: dict[str, str]
    annexes: dict[str, pd.DataFrame]
    notes: dict[str, str]
    headline: dict[str, Any]
    values: dict[str, str]
    problems: str
    findings: pd.DataFrame
    counts: pd.DataFrame
    units: pd.DataFrame
    run_id: str = ""
    narrative_file: str = ""
    doc_number: str = ""  # 发文字号, e.g. 淄审批字〔2023〕12号
    extra: dict[str, Any] = field(default_factory=dict)
    rectification: Any = None  # analysis.rectification.Ledger (None: not computed)


def cn_count(n: int) -> str:
    """A small count as the bulletin writes it (四个系统); large ones stay in digits."""
    if 0 <= n < 10:
        return CN_DIGITS[n]
    if 10 <= n < 20:
        return "十" + (CN_DIGITS[n - 10] if n > 10 else "")
    if 20 <= n < 100:
        return CN_DIGITS[n // 10] + "十" + (CN_DIGITS[n % 10] if n % 10 else "")
    return str(n)


def period_name(period: Period) -> str:
    """How the body text names the period: 二季度, 4月, 上半年, 2023年 …."""
    short = period.short_cn()
    if period.kind == "quarter":
        return short.removeprefix("第")
    if period.kind in ("year", "range"):
        return period.title_cn()
    return short


def narrative_path(ref: CityReference, narrative_file: str | Path | None = None) -> Path:
    """The narrative template: the one given, else the city's ``bulletin.yml``, else the default."""
    if narrative_file:
        path = Path(narrative_file)
        if not path.is_absolute() and not path.exists():
            path = PROJ_ROOT / path
        if not path.exists():
            raise HaochaInputError(
                "找不到通报文字模板",
                file=str(narrative_file),
                fix="给出存在的 bulletin.yml 路径，或留空使用城市默认模板",
            )
        return path
    city_file = Path(ref.path) / NARRATIVE_FILE
    return city_file if city_file.exists() else DEFAULT_NARRATIVE


def _join_lines(text: str) -> str:
    # Chinese prose: lines of a YAML block join without spaces.
    return "".join(line.strip() for line in str(text).splitlines())


def load_narrative(path: Path) -> dict[str, Any]:
    """Read a narrative template (``bulletin.yml``) and check it completely, before any work is done.

    The required texts must be there; every text must be a string whose placeholders are all known
    (:data:`PLACEHOLDERS`) and well formed, so that a bad template is an input error at the start of
    the run, never a failure inside the notebook.

    Raises:
        HaochaInputError: unreadable, not YAML, not a mapping, a missing text or a bad placeholder.
    """
    file = str(path)
    fix = f"模板是 UTF-8 的 YAML 映射，键见 docs/bulletin.md（可参考 {DEFAULT_NARRATIVE.name}）"
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise HaochaInputError("通报文字模板不是 UTF-8 编码", file=file, fix=fix) from None
    except OSError as err:
        raise HaochaInputError(
            f"无法读取通报文字模板（{err.strerror or type(err).__name__}）", file=file, fix=fix
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise HaochaInputError(
            "通报文字模板不是合法的 YAML" + (f"（第 {mark.line + 1} 行附近）" if mark else ""),
            file=file,
            rows=[mark.line + 1] if mark else None,
            fix="检查缩进与引号；" + fix,
        ) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise HaochaInputError(
            f"通报文字模板应是“键: 文字”的映射，而不是{type(data).__name__}", file=file, fix=fix
        )
    missing = [k for k in REQUIRED_NARRATIVE_KEYS if not str(data.get(k) or "").strip()]
    if missing:
        raise HaochaInputError(
            f"通报文字模板缺少：{'、'.join(missing)}",
            file=file,
            column="、".join(missing),
            fix=f"在模板中填写 {'、'.join(REQUIRED_NARRATIVE_KEYS)}（可参考 {DEFAULT_NARRATIVE.name}）",
        )
    texts = {
        k: data[k]
        for k in ("title", *REQUIRED_NARRATIVE_KEYS, *PLAIN_NARRATIVE_KEYS)
        if data.get(k) is not None
    }
    titles = data.get("annex_titles") or {}
    if not isinstance(titles, dict):
        raise HaochaInputError(
            "通报文字模板的 annex_titles 应是“附件名: 标题”的映射", file=file, column="annex_titles", fix=fix
        )
    unknown = sorted(str(k) for k in titles if k not in ANNEX_NAMES)
    if unknown:
        raise HaochaInputError(
            f"通报文字模板的 annex_titles 有未知的附件：{'、'.join(unknown)}",
            file=file,
            column="annex_titles",
            fix="附件名取 " + "、".join(ANNEX_NAMES),
        )
    texts.update({f"annex_titles.{k}": v for k, v in titles.items()})
    sample = dict.fromkeys(PLACEHOLDERS, "0")
    for key, value in texts.items():
        if not isinstance(value, str):
            raise HaochaInputError(
                f"通报文字模板的“{key}”应是一段文字，而不是{type(value).__name__}",
                file=file,
                column=key,
                fix="写成一段文字（多行用 |- 块）",
            )
        if key not in PLAIN_NARRATIVE_KEYS:
            fill(value, sample, file=file, key=key)  # unknown or malformed placeholders, before any work
    return data


def fill(template: str, values: dict[str, str], *, file: str = "", key: str = "") -> str:
    """Replace ``{placeholder}`` in a narrative text; an unknown or malformed placeholder is a clear error."""
    text = _join_lines(template)
    available = "可用占位符：" + "、".join("{" + n + "}" for n in sorted(values)) + "（见 docs/bulletin.md）"

    def refuse(problem: str, fix: str) -> HaochaInputError:
        return HaochaInputError(
            f"通报文字模板的“{key}”{problem}", file=file or None, column=key or None, fix=fix + available
        )

    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError:
        raise refuse("有不成对的花括号", "占位符写成 {名称}；原样出现的花括号写成 {{ 或 }}。") from None
    unknown = sorted({n for n in names if n not in values})
    if unknown:
        raise refuse(f"使用了未知占位符：{'、'.join('{' + n + '}' for n in unknown)}", "")
    try:
        return text.format_map(values)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise refuse(
            "有无法填写的占位符格式（如 {名称:格式} 或 {名称!转换}）", "占位符只写 {名称}。"
        ) from None


def _int_text(value: Any) -> str:
    return str(int(value)) if value is not None and not pd.isna(value) else NOT_APPLICABLE


def placeholder_values(
    ref: CityReference, period: Period, headline: dict[str, Any], quality_sentence: str
) -> dict:
    """The computed values a narrative template may use, as the text shows them."""
    systems = headline.get("business_systems_connected") or []
    if isinstance(systems, str):
        systems = [systems]
    district_cases = headline.get("district_cases")
    city_cases = headline.get("city_department_cases")
    total_cases = headline.get("total_cases")
    if total_cases is None and district_cases is not None and city_cases is not None:
        total_cases = int(district_cases) + int(city_cases)
    bad = headline.get("valid_bad_reviews")
    bad_text = "无有效差评件" if bad is not None and int(bad) == 0 else f"有效差评{_int_text(bad)}件"
    values = {
        "city_name": ref.city_name,
        "period_title": period.title_cn(),
        "period_name": period_name(period),
        "period_short": period.short_cn(),
        "period_range": period.range_cn(),
        "systems": "、".join(map(str, systems)),
        "systems_count": cn_count(len(systems)),
        "systems_sentence": systems_sentence([str(s) for s in systems]),
        "matters_catalogued": str(headline.get("matters_catalogued") or NO_CATALOGUE),
        "matters_sentence": (
            f"累计梳理事项{headline['matters_catalogued']}，" if headline.get("matters_catalogued") else ""
        ),
        "quality_sentence": quality_sentence,
        "total_cases": _int_text(total_cases),
        "total_evaluations": _int_text(headline.get("total_evaluations")),
        "evaluation_rate": str(headline.get("evaluation_rate", NOT_APPLICABLE)),
        "valid_bad_reviews": _int_text(bad),
        "bad_review_text": bad_text,
        "district_cases": _int_text(district_cases),
        "city_department_cases": _int_text(city_cases),
    }
    # The template check (load_narrative) knows exactly these names.
    assert set(values) == set(PLACEHOLDERS), set(values) ^ set(PLACEHOLDERS)
    return values


def systems_sentence(systems: list[str]) -> str:
    """目前，…已完成与“好差评”系统对接，— worded for one system or several, empty for none."""
    if not systems:
        return ""
    if len(systems) == 1:
        return f"目前，{systems[0]}已完成与“好差评”系统对接，"
    return f"目前，{'、'.join(systems)}等{cn_count(len(systems))}个业务系统已完成与“好差评”系统对接，"


def quality_sentence(quality: Any, headline: dict[str, Any]) -> str:
    """The 数据生产、提交、质检、关联度入库率 sentence: from the quality report, else the headline."""
    figures = getattr(quality, "figures", None) or {}
    for key in ("sentence", "bulletin_sentence", "quality_sentence", "quality_rates"):
        if isinstance(figures.get(key), str) and figures[key]:
            return figures[key].rstrip("。")
    text = headline.get("quality_rates")
    if text:
        return str(text).rstrip("。")
    raise HaochaInputError(
        "质检结果中没有通报所需的入库率表述", fix="检查 quality.run_quality 的 figures 输出"
    )


def build_context(
    ref: CityReference,
    period: Period,
    results: StageResults,
    *,
    narrative_file: str | Path | None = None,
    run_id: str = "",
    issued_on: date | None = None,
    doc_number: str = "",
) -> BulletinContext:
    """Assemble the bulletin's texts and tables from the stage results and the narrative template."""
    path = narrative_path(ref, narrative_file)
    narrative = load_narrative(path)
    headline = dict(results.tables.headline)
    values = placeholder_values(ref, period, headline, quality_sentence(results.quality, headline))
    texts = {
        "title": fill(
            narrative.get("title") or "关于{period_title}政务服务“好差评”工作情况的通报",
            values,
            file=str(path),
            key="title",
        ),
    }
    for key in REQUIRED_NARRATIVE_KEYS:
        texts[key] = fill(narrative[key], values, file=str(path), key=key)
    if results.coverage is not None and results.coverage.partial:
        texts["headline"] += results.coverage.sentence()
    texts["headline"] += comparison_sentence(headline)  # 环比/同比 when asked for
    titles = {**DEFAULT_ANNEX_TITLES, **(narrative.get("annex_titles") or {})}
    annex_titles = {
        name: fill(titles[name], values, file=str(path), key=f"annex_titles.{name}") for name in ANNEX_NAMES
    }
    annexes = {name: results.tables.annexes[name] for name in ANNEX_NAMES}
    return BulletinContext(
        city_key=ref.key,
        city_name=ref.city_name,
        period=period,
        addressees=str(narrative.get("addressees") or ref.meta.get("addressees") or ""),
        issuer=str(narrative.get("issuer") or ref.meta.get("issuer") or ""),
        issued_on=issued_on or date.today(),
        texts=texts,
        annex_titles=annex_titles,
        annexes=annexes,
        notes=dict(results.tables.notes),
        headline=headline,
        values=values,
        problems=_join_lines(results.problems),
        findings=results.findings,
        counts=results.tables.counts,
        units=ref.units[["unit_id", "unit_name", "level", "district"]].copy(),
        run_id=run_id,
        narrative_file=str(path),
        doc_number=doc_number.strip(),
        rectification=getattr(results, "rectification", None),
    )


# --- HTML fragments (one per part of the bulletin) --------------------------------------------


def _paragraph(text: str, cls: str = "body-text") -> str:
    return f'<p class="{cls}">{escape(text)}</p>'


TITLE_BREAK_BEFORE = "政务服务"  # the reference breaks its title as 关于2023年第二季度 / 政务服务…的通报


def title_lines(title: str) -> str:
    """The title as escaped HTML, broken into two lines where the reference breaks it."""
    head, sep, tail = title.partition(TITLE_BREAK_BEFORE)
    if not sep or not head:
        return escape(title)
    return f"{escape(head)}<br/>{escape(sep + tail)}"


def title_html(ctx: BulletinContext) -> str:
    """发文字号 (when given), title and addressees (主送机关)."""
    out = f'<p class="doc-number">{escape(ctx.doc_number)}</p>' if ctx.doc_number else ""
    out += f'<h1 class="bulletin-title">{title_lines(ctx.texts["title"])}</h1>'
    if ctx.addressees:
        out += _paragraph(f"{ctx.addressees}：", "addressees")
    return out


def paragraph_html(ctx: BulletinContext, key: str) -> str:
    """One narrative paragraph with its computed figures: ``work_progress``, ``headline``, ``next_steps``."""
    return _paragraph(ctx.texts[key])


def problems_html(ctx: BulletinContext) -> str:
    """The problems paragraph, written from the anomaly findings."""
    return _paragraph(ctx.problems)


def signature_html(ctx: BulletinContext) -> str:
    """落款: issuing office and date (omitted when the template and city.yml name no issuer)."""
    if not ctx.issuer:
        return ""
    d = ctx.issued_on
    return f'<div class="signature"><p>{escape(ctx.issuer)}</p><p>{d.year}年{d.month}月{d.day}日</p></div>'


def charts_header_html(ctx: BulletinContext) -> str:
    """Heading of the charts page (附图)."""
    return f'<div class="charts"><h2>附图：{escape(ctx.period.title_cn())}评价情况</h2></div>'


def _cell_class(column: str, value: str, first_name_col: bool) -> str:
    if first_name_col:
        return "name"
    if value == NOT_APPLICABLE:
        return "na"
    if re.fullmatch(r"-?\d[\d,]*(\.\d+)?%?", value or ""):
        return "num"
    return ""


def _header_html(columns: list[str], groups: dict[str, str] | None) -> str:
    if not groups:
        return "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"
    top, bottom = [], []
    i = 0
    while i < len(columns):
        col = columns[i]
        prefix = next((p for p in groups if col.startswith(p)), None)
        if prefix is None:
            top.append(f'<th rowspan="2">{escape(col)}</th>')
            i += 1
            continue
        span = 0
        while i + span < len(columns) and columns[i + span].startswith(prefix):
            bottom.append(f"<th>{escape(columns[i + span][len(prefix) :])}</th>")
            span += 1
        top.append(f'<th colspan="{span}">{escape(groups[prefix])}</th>')
        i += span
    return "<tr>" + "".join(top) + "</tr><tr>" + "".join(bottom) + "</tr>"


def annex_table_html(frame: pd.DataFrame, name: str, label: str, title: str, note: str) -> str:
    """One annex as a bulletin table: 序号 column, official row order, "/" kept, 汇总/总数 rows bold.

    An empty ``label``, ``title`` or ``note`` is left out (the unit reports' tables have none).

    The cells are the library's string table unchanged (tests compare them cell for cell).
    """
    columns = [str(c) for c in frame.columns]
    name_cols = [c for c in columns if c in NAME_COLUMNS]
    first_name = name_cols[0] if name_cols else None
    rows = []
    for values in frame.astype("str").itertuples(index=False, name=None):
        values = ["" if v in ("nan", "<NA>", "None") else v for v in values]
        total = any(v in TOTAL_ROW_LABELS for v in values[:2])
        cells = "".join(
            f'<td class="{_cell_class(c, v, c == first_name and not total)}">{escape(v)}</td>'
            for c, v in zip(columns, values, strict=True)
        )
        rows.append(f'<tr class="total">{cells}</tr>' if total else f"<tr>{cells}</tr>")
    wide = " wide" if name in WIDE_ANNEXES else ""
    label_html = f'<p class="annex-label">{escape(label)}：</p>' if label else ""
    title_html = f'<h3 class="annex-title">{escape(title)}</h3>' if title else ""
    note_html = f'<p class="annex-note">{escape(note)}</p>' if note else ""
    return (
        f'<section class="annex{wide}" id="{escape(name)}">{label_html}{title_html}'
        f'<table class="annex" data-annex="{escape(name)}">'
        f"<thead>{_header_html(columns, HEADER_GROUPS.get(name))}</thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{note_html}</section>"
    )


def annex_html(ctx: BulletinContext, name: str) -> str:
    """附件 ``name`` of the bulletin with its title and 备注 line."""
    return annex_table_html(
        ctx.annexes[name], name, ANNEX_LABELS[name], ctx.annex_titles[name], ctx.notes[name]
    )


RECTIFICATION_ANNEX = "rectification_overdue"
RECTIFICATION_ANNEX_TITLE = "{period_short}差评整改超期清单"


def rectification_html(ctx: BulletinContext) -> str:
    """The 差评整改 paragraph (counts, rates, overdue units named); empty when no 差评 is valid."""
    from haocha_analysis.analysis.rectification_report import paragraph

    ledger = ctx.rectification
    if ledger is None or not ledger.has_valid:
        return ""
    return _paragraph(paragraph(ledger))


def rectification_annex_html(ctx: BulletinContext) -> str:
    """The ledger's overdue list as the last annex; empty when no 差评 is valid or none is overdue."""
    from haocha_analysis.analysis.rectification_report import note_line, overdue_display

    ledger = ctx.rectification
    if ledger is None or not ledger.has_valid or ledger.overdue.empty:
        return ""
    label = f"附件{len(ANNEX_NAMES) + 1}"
    title = RECTIFICATION_ANNEX_TITLE.format(period_short=ctx.period.short_cn())
    return annex_table_html(overdue_display(ledger), RECTIFICATION_ANNEX, label, title, note_line(ledger))


def annex_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """An annex's printed cells as numbers (``"/"`` → NaN, ``"74%"`` → 0.74), total rows dropped.

    Charts draw from this, so a chart never shows a number the annex does not print.
    """
    body = frame[~frame.astype("str").isin(TOTAL_ROW_LABELS).any(axis=1)].copy()
    for col in body.columns:
        if str(col) in NAME_COLUMNS or str(col) == "序号":
            continue
        text = body[col].astype("str").str.strip()
        pct = text.str.endswith("%")
        nums = pd.to_numeric(text.str.rstrip("%").str.replace(",", ""), errors="coerce")
        body[col] = nums.where(~pct, nums / 100.0)
    return body.reset_index(drop=True)


# --- HTML and PDF -----------------------------------------------------------------------------


class _ExternalRefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if (
                key in ("src", "href", "srcset", "data-src")
                and value
                and not value.startswith(("data:", "#"))
            ):
                self.found.append(f"<{tag} {key}={value[:80]}>")


def external_references(html: str) -> list[str]:
    """Every ``src``/``href`` that points outside the document (data: URIs and #anchors are inside)."""
    parser = _ExternalRefs()
    parser.feed(html)
    css_urls = re.findall(r"url\(\s*['\"]?(?!data:)([^'\")]+)", html)
    imports = re.findall(r"@import\s+['\"]([^'\"]+)", html)
    return parser.found + [f"url({u})" for u in css_urls] + [f"@import {u}" for u in imports]


def font_css() -> str:
    """Font-family rules from the installed CJK fonts: serif title and body (宋体/仿宋-like).

    The root element gets the family too, so the page-number margin boxes (which inherit from
    ``html``, not ``body``) use the same font instead of fontconfig's default: one family per role,
    one font fewer to embed and subset.
    """
    from haocha_analysis.core.fonts import css_font_stack

    serif = '"Noto Serif CJK SC", "Source Han Serif SC", "SimSun", "FangSong", "STSong"'
    sans = css_font_stack()
    return (
        f"html, body, main.bulletin {{ font-family: {serif}, {sans}; }}\n"
        f"h1.bulletin-title, h3.annex-title {{ font-family: {serif}, {sans}; }}\n"
        f"table.annex {{ font-family: {serif}, {sans}; }}\n"
    )


def bulletin_css() -> str:
    """The bulletin's whole stylesheet (inlined into the page)."""
    return font_css() + CSS_FILE.read_text(encoding="utf-8")


def notebook_to_html(notebook: Path, *, title: str = "", run_id: str = "") -> tuple[str, list[str]]:
    """Render an executed notebook as the bulletin page: no code, no prompts, nothing external.

    Stream outputs (warnings a library printed) are not part of the bulletin: they are returned for
    the run log instead.

    Returns:
        The HTML text and the stream texts removed.
    """
    import nbformat
    from nbconvert import HTMLExporter

    from haocha_analysis import __version__ as haocha_version

    nb = nbformat.read(notebook, as_version=4)
    streams = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                streams.append(output.get("text", ""))
            elif output.get("output_type") == "error":
                raise RuntimeError(f"notebook {notebook} carries an error output: {output.get('ename')}")
            else:
                kept.append(output)
        cell["outputs"] = kept
    exporter = HTMLExporter(
        template_name=NBCONVERT_TEMPLATE,
        extra_template_basedirs=[str(TEMPLATES_DIR)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        exclude_markdown=True,
        exclude_raw=True,
    )
    resources = {
        "bulletin_css": bulletin_css(),
        "bulletin_js": JS_FILE.read_text(encoding="utf-8"),
        "bulletin_title": title,
        "run_id": run_id,
        "haocha_version": haocha_version,
    }
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    leftovers = external_references(html)
    if leftovers:
        raise RuntimeError("rendered HTML still references external resources: " + "; ".join(leftovers[:5]))
    return html, streams


def _offline_fetcher() -> Any:
    """A WeasyPrint URL fetcher that serves inline ``data:`` URIs and refuses everything else."""
    try:
        from weasyprint.urls import FatalURLFetchingError, URLFetcher
    except ImportError:  # WeasyPrint < 66: fetchers are plain functions
        from weasyprint.urls import default_url_fetcher

        def fetch(url: str, *args: Any, **kwargs: Any) -> dict:
            if not url.startswith("data:"):
                raise ValueError(f"external resource refused: {url[:80]}")
            return default_url_fetcher(url, *args, **kwargs)

        return fetch

    class OfflineFetcher(URLFetcher):
        def fetch(self, url: str, headers: dict | None = None) -> Any:
            if not url.startswith("data:"):
                raise FatalURLFetchingError(f"external resource refused: {url[:80]}")
            return super().fetch(url, headers)

    return OfflineFetcher(allowed_protocols={"data"})


PDF_SUBSET_HINT = (
    "PDF 字体子集化未使用 HarfBuzz（缺少 libharfbuzz-subset0 或 WeasyPrint 低于 63），"
    "改用 fontTools：中文字体嵌入会很慢（淄博通报约 12 秒，而非约 1 秒）。"
    "请安装：apt-get install -y libharfbuzz-subset0（或以 root 运行 make system-deps），"
    "并使用 WeasyPrint 63 及以上版本"
)


def pdf_font_subsetter() -> str:
    """Which library WeasyPrint subsets embedded fonts with: ``"harfbuzz"`` or ``"fonttools"``.

    The Noto CJK fonts are CFF collections of 65,535 glyphs: fontTools spends ~12 s on them for one
    bulletin (charstring bounds, hint removal, CFF compile), HarfBuzz's hb-subset ~0.05 s.
    WeasyPrint >= 63 uses hb-subset when the shared library libharfbuzz-subset (Debian:
    libharfbuzz-subset0) is installed and HarfBuzz is at least 4.1.0.
    """
    try:
        from weasyprint.pdf import fonts as pdf_fonts
        from weasyprint.text.ffi import harfbuzz
    except ImportError:
        return "fonttools"
    if getattr(pdf_fonts, "harfbuzz_subset", None) is None or not hasattr(pdf_fonts.Font, "_harfbuzz_subset"):
        return "fonttools"
    return "harfbuzz" if harfbuzz.hb_version_atleast(4, 1, 0) else "fonttools"


def html_to_pdf(html: str, pdf: Path, base_dir: Path, *, logger: logging.Logger | None = None) -> Path:
    """Print the bulletin page to an A4 PDF with WeasyPrint (fonts embedded as subsets), offline.

    Fonts are subset with HarfBuzz when available (see :func:`pdf_font_subsetter`); otherwise a
    warning says what to install. Hints are kept in the embedded subsets (``hinting=True``): with
    HarfBuzz this costs no time and ~4% of the file size, and with the fontTools fallback it skips
    the hint removal pass (~25% of that slow path).

    Args:
        html: the bulletin page (everything inline: external references are refused).
        pdf: the PDF file to write.
        base_dir: base URL for relative references.
        logger: where the slow-subsetting warning goes (the pipeline passes its run log).
    """
    from weasyprint import HTML

    if pdf_font_subsetter() != "harfbuzz":
        (logger or log).warning(PDF_SUBSET_HINT)
    try:
        HTML(string=html, base_url=str(base_dir), url_fetcher=_offline_fetcher()).write_pdf(pdf, hinting=True)
    except BaseException as err:
        if type(err).__name__ == "FatalURLFetchingError":  # a BaseException in WeasyPrint: make it ordinary
            raise RuntimeError(str(err)) from err
        raise
    return pdf
