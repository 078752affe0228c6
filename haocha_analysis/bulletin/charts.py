"""Charts of the bulletin, drawn with matplotlib in the installed CJK font.

Each chart function takes plain frames and returns a matplotlib Figure; :func:`figure_html` turns a
figure into a self-contained ``<figure>`` fragment (inline SVG data URI, no external reference).
A glyph missing from the font is an error here, not a silent tofu box in a published bulletin.
"""

from __future__ import annotations

import base64
import io
import json
import warnings
from collections.abc import Sequence
from html import escape

import matplotlib

matplotlib.use("Agg")  # headless: the bulletin is rendered by papermill/cron, never on a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from haocha_analysis.bulletin.render import BulletinContext, annex_numbers
from haocha_analysis.core import display
from haocha_analysis.core.fonts import INSTALL_HINT, use_cjk_font
from haocha_analysis.core.schemas import CHANNELS, LEVEL_LABELS

# A4 portrait text width is 17 cm; charts are drawn at that width so text is printed at its size.
CHART_WIDTH_IN = 6.5
CHART_HEIGHT_IN = 3.3
BAR_COLOR = "#2f5597"
LINE_COLOR = "#c00000"
# Channel colours: on-site channels in warm tones, remote ones in cool tones, system default grey.
CHANNEL_COLORS = {
    "hall_tablet": "#c55a11",
    "hall_terminal": "#f4b183",
    "paper": "#ffd966",
    "pc": "#2f5597",
    "mobile": "#5b9bd5",
    "qr_code": "#9dc3e6",
    "phone": "#548235",
    "sms": "#a9d18e",
    "system_default": "#a6a6a6",
}
# Levels shown in the channel-mix chart, top to bottom.
CHANNEL_MIX_LEVELS = ("city_dept", "district", "district_dept", "town", "village")
MISSING_GLYPH_PATTERN = r"(?s).*[Gg]lyph.*missing from"
PNG_DPI = 200  # the Word bulletin's images: sharp when printed at the 版心 width
TIPS_ATTRIBUTE = "_haocha_tips"
MARKER_TIP_PX = 7.0  # half-size of the hover square around a line marker, in figure pixels


class MissingGlyphError(RuntimeError):
    """The chart font lacks a character the chart needs (it would print as an empty box)."""


def setup() -> str:
    """Select the CJK font for every chart; returns the family name."""
    family = use_cjk_font()
    matplotlib.rcParams.update(
        {
            "svg.fonttype": "path",  # text as outlines: the SVG needs no font where it is shown
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 9,
            "xtick.labelsize": 8.5,
            "ytick.labelsize": 8.5,
            "legend.fontsize": 8,
            "figure.dpi": 100,
        }
    )
    return family


def evaluations_by_district(
    districts: Sequence[str], evaluations: Sequence[float], active: Sequence[float]
) -> Figure:
    """Bars of evaluations per district with the active-evaluation share (主动评价占比) as a line.

    Args:
        districts: district names in official order.
        evaluations: 评价数 per district.
        active: 主动评价数 per district (NaN where the source cannot say).
    """
    setup()
    evaluations = np.asarray(evaluations, dtype=float)
    active = np.asarray(active, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(evaluations > 0, active / evaluations, np.nan)
    fig, ax = plt.subplots(figsize=(CHART_WIDTH_IN, CHART_HEIGHT_IN), layout="constrained")
    x = np.arange(len(districts))
    bars = ax.bar(x, evaluations, color=BAR_COLOR, width=0.6, label="评价数（件）")
    for bar, name, value in zip(bars, districts, evaluations, strict=True):
        add_tip(bar, f"{name}：评价数 {value:,.0f} 件")
    ax.set_xticks(x, list(districts), rotation=0 if len(districts) <= 12 else 45)
    display.count_axis(ax)
    ax.set_ylabel("评价数（件）")
    ax2 = ax.twinx()
    (line,) = ax2.plot(
        x, share, color=LINE_COLOR, marker="o", markersize=4, linewidth=1.5, label="主动评价占比"
    )
    for i, (name, value) in enumerate(zip(districts, share, strict=True)):
        if np.isfinite(value):
            add_tip(line, f"{name}：主动评价占比 {value:.2%}", point=i)
    display.share_axis(ax2, headroom=0.05)
    ax2.set_ylabel("主动评价占比")
    ax2.spines["right"].set_visible(True)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    fig.legend(handles, labels, loc="outside upper center", frameon=False, ncols=2)
    ax.set_ylim(0, max(float(np.nanmax(evaluations)) if len(evaluations) else 1.0, 1.0) * 1.05)
    return fig


def channel_mix(counts: pd.DataFrame, units: pd.DataFrame) -> Figure:
    """Share of each evaluation channel (评价渠道) by unit level, as 100% stacked bars.

    Args:
        counts: per-unit counts with ``unit_id`` and one ``ch_<channel>`` column per channel code.
        units: the city's units (``unit_id``, ``level``).
    """
    setup()
    channel_cols = [c for c in counts.columns if c.startswith("ch_") and c[3:] in CHANNELS]
    if not channel_cols:
        raise ValueError("per-unit counts carry no ch_<channel> columns; cannot draw the channel mix")
    frame = counts[["unit_id", *channel_cols]].copy()
    frame["unit_id"] = frame["unit_id"].astype("str")
    levels = units[["unit_id", "level"]].astype({"unit_id": "str"})
    frame = frame.merge(levels, on="unit_id", how="left")
    by_level = frame.groupby("level", observed=True)[channel_cols].sum()
    order = [lv for lv in CHANNEL_MIX_LEVELS if lv in by_level.index and by_level.loc[lv].sum() > 0]
    by_level = by_level.loc[order]
    totals = by_level.sum(axis=1)
    shares = by_level.div(totals.where(totals > 0), axis=0).fillna(0.0)
    used = [c for c in channel_cols if by_level[c].sum() > 0]
    fig, ax = plt.subplots(figsize=(CHART_WIDTH_IN, 0.55 * max(len(order), 1) + 1.4), layout="constrained")
    y = np.arange(len(order))[::-1]
    left = np.zeros(len(order))
    for col in used:
        code = col[3:]
        values = shares[col].to_numpy()
        bars = ax.barh(
            y,
            values,
            left=left,
            color=CHANNEL_COLORS.get(code, "#7f7f7f"),
            height=0.6,
            label=CHANNELS[code][0],
        )
        for bar, level, v in zip(bars, order, values, strict=True):
            if v > 0:
                n = int(by_level.loc[level, col])
                add_tip(bar, f"{LEVEL_LABELS[level]} · {CHANNELS[code][0]}：{n:,} 件（{v:.1%}）")
        for yi, v, lft in zip(y, values, left, strict=True):
            if v >= 0.08:
                ax.text(lft + v / 2, yi, f"{v:.0%}", ha="center", va="center", fontsize=7.5, color="#000")
        left += values
    ax.set_yticks(y, [f"{LEVEL_LABELS[lv]}\n（{int(totals[lv]):,}件）" for lv in order])
    display.share_axis(ax, axis="x", headroom=0)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=5, frameon=False)
    return fig


def composition_by_district(
    districts: Sequence[str], parts: dict[str, Sequence[float]], title_unit: str = "评价数（件）"
) -> Figure:
    """Stacked bars per district, one segment per part (e.g. 区直部门 / 镇级 / 村级 evaluations).

    Args:
        districts: district names in official order.
        parts: label → values per district, in stacking order.
        title_unit: y-axis label.
    """
    setup()
    fig, ax = plt.subplots(figsize=(CHART_WIDTH_IN, CHART_HEIGHT_IN), layout="constrained")
    x = np.arange(len(districts))
    bottom = np.zeros(len(districts))
    palette = ["#2f5597", "#9dc3e6", "#f4b183", "#a9d18e", "#a6a6a6"]
    for i, (label, values) in enumerate(parts.items()):
        values = np.nan_to_num(np.asarray(values, dtype=float))
        bars = ax.bar(x, values, bottom=bottom, width=0.6, color=palette[i % len(palette)], label=label)
        for bar, name, value in zip(bars, districts, values, strict=True):
            add_tip(bar, f"{name} · {label}：{value:,.0f} 件")
        bottom += values
    ax.set_xticks(x, list(districts), rotation=0 if len(districts) <= 12 else 45)
    display.count_axis(ax)
    ax.set_ylabel(title_unit)
    fig.legend(loc="outside upper center", frameon=False, ncols=len(parts))
    ax.set_ylim(0, max(float(bottom.max()) if len(bottom) else 1.0, 1.0) * 1.05)
    return fig


def _save(fig: Figure, fmt: str, **kwargs: object) -> bytes:
    """The figure in ``fmt`` (svg, png); raises :class:`MissingGlyphError` when a character has no glyph."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=MISSING_GLYPH_PATTERN, category=UserWarning)
            fig.savefig(buffer, format=fmt, **kwargs)
    except UserWarning as warning:
        raise MissingGlyphError(
            f"图表字体缺少字符，图中文字会显示为方框：{warning}。{INSTALL_HINT}"
        ) from warning
    return buffer.getvalue()


def to_svg(fig: Figure) -> str:
    """The figure as SVG text (closes it); raises :class:`MissingGlyphError` when a glyph is missing."""
    try:
        return _save(fig, "svg", metadata={"Date": None}).decode("utf-8")  # no date: same input, same file
    finally:
        plt.close(fig)


def to_png(fig: Figure, dpi: int = PNG_DPI) -> bytes:
    """The figure as PNG bytes (for the Word bulletin; closes it)."""
    try:
        return _save(fig, "png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)


# --- values on hover ----------------------------------------------------------------------------


def add_tip(artist: Artist, text: str, point: int | None = None) -> None:
    """Attach a hover text to a bar, or to marker ``point`` of a line (shown by the page's script only)."""
    fig = artist.get_figure()
    tips = getattr(fig, TIPS_ATTRIBUTE, None)
    if tips is None:
        tips = []
        setattr(fig, TIPS_ATTRIBUTE, tips)
    tips.append((artist, text, point))


def tip_regions(fig: Figure) -> list[dict]:
    """Where each hover text applies, as fractions of the figure (x0, y0 top-left, x1, y1), drawn layout.

    Bars give their rectangle; markers a small square around each point.
    """
    tips = getattr(fig, TIPS_ATTRIBUTE, None) or []
    if not tips:
        return []
    fig.draw_without_rendering()  # the constrained layout settles positions (nothing rasterised)
    width, height = fig.bbox.width, fig.bbox.height
    regions = []
    for artist, text, point in tips:
        if isinstance(artist, Line2D):
            x = np.asarray(artist.get_xdata(), dtype=float)[point or 0]
            y = np.asarray(artist.get_ydata(), dtype=float)[point or 0]
            px, py = artist.axes.transData.transform((x, y))
            if not (np.isfinite(px) and np.isfinite(py)):
                continue
            box = (px - MARKER_TIP_PX, py - MARKER_TIP_PX, px + MARKER_TIP_PX, py + MARKER_TIP_PX)
        else:
            extent = artist.get_window_extent()
            box = (extent.x0, extent.y0, extent.x1, max(extent.y1, extent.y0 + 2))
        regions.append(
            {
                "x0": round(box[0] / width, 4),
                "y0": round(1 - box[3] / height, 4),
                "x1": round(box[2] / width, 4),
                "y1": round(1 - box[1] / height, 4),
                "text": text,
            }
        )
    return regions


def figure_html(fig: Figure, caption: str) -> str:
    """A ``<figure>`` fragment: the chart as an inline SVG data URI, its caption and its hover texts.

    The hover texts ride in a ``data-tips`` attribute (JSON); the page's inline script shows them, the
    PDF ignores them.
    """
    regions = tip_regions(fig)
    svg = to_svg(fig)
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    tips = f' data-tips="{escape(json.dumps(regions, ensure_ascii=False))}"' if regions else ""
    return (
        f'<figure class="chart"{tips}><img alt="{escape(caption)}" src="data:image/svg+xml;base64,{data}"/>'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


# --- the bulletin's charts ----------------------------------------------------------------------


def _districts_chart(ctx: BulletinContext) -> Figure:
    districts = annex_numbers(ctx.annexes["annex1_districts"])
    return evaluations_by_district(districts["区县"], districts["评价数"], districts["主动评价数"])


def _channels_chart(ctx: BulletinContext) -> Figure:
    return channel_mix(ctx.counts, ctx.units)


def _composition_chart(ctx: BulletinContext) -> Figure:
    towns = annex_numbers(ctx.annexes["annex4_towns_villages"])
    depts = annex_numbers(ctx.annexes["annex3_district_departments"]).drop(columns=["序号", "部门"]).sum()
    return composition_by_district(
        towns["区县"],
        {"区直部门": depts[towns["区县"]], "镇级": towns["镇级评价总数"], "村级": towns["村级评价总数"]},
    )


# name → (caption, builder): the charts of the bulletin, in order; the HTML and the Word document
# draw the same figures from the same context.
BULLETIN_CHARTS = {
    "districts": ("图1 各区县评价数与主动评价占比", _districts_chart),
    "channels": ("图2 各层级评价渠道构成", _channels_chart),
    "composition": ("图3 各区县区直部门、镇级、村级评价数", _composition_chart),
}


def bulletin_chart(ctx: BulletinContext, name: str) -> tuple[Figure, str]:
    """One chart of the bulletin (a key of :data:`BULLETIN_CHARTS`) and its caption."""
    caption, build = BULLETIN_CHARTS[name]
    return build(ctx), caption
