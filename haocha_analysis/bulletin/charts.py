"""Charts of the bulletin, drawn with matplotlib in the installed CJK font.

Each chart function takes plain frames and returns a matplotlib Figure; :func:`figure_html` turns a
figure into a self-contained ``<figure>`` fragment (inline SVG data URI, no external reference).
A glyph missing from the font is an error here, not a silent tofu box in a published bulletin.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Sequence
from html import escape

import matplotlib

matplotlib.use("Agg")  # headless: the bulletin is rendered by papermill/cron, never on a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

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


def _thousands(value: float, _pos: int) -> str:
    return f"{value:,.0f}"


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
    ax.bar(x, evaluations, color=BAR_COLOR, width=0.6, label="评价数（件）")
    ax.set_xticks(x, list(districts), rotation=0 if len(districts) <= 12 else 45)
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_ylabel("评价数（件）")
    ax2 = ax.twinx()
    ax2.plot(x, share, color=LINE_COLOR, marker="o", markersize=4, linewidth=1.5, label="主动评价占比")
    ax2.set_ylim(0, 1.05)
    ax2.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
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
        ax.barh(
            y,
            values,
            left=left,
            color=CHANNEL_COLORS.get(code, "#7f7f7f"),
            height=0.6,
            label=CHANNELS[code][0],
        )
        for yi, v, lft in zip(y, values, left, strict=True):
            if v >= 0.08:
                ax.text(lft + v / 2, yi, f"{v:.0%}", ha="center", va="center", fontsize=7.5, color="#000")
        left += values
    ax.set_yticks(y, [f"{LEVEL_LABELS[lv]}\n（{int(totals[lv]):,}件）" for lv in order])
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
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
        ax.bar(x, values, bottom=bottom, width=0.6, color=palette[i % len(palette)], label=label)
        bottom += values
    ax.set_xticks(x, list(districts), rotation=0 if len(districts) <= 12 else 45)
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_ylabel(title_unit)
    fig.legend(loc="outside upper center", frameon=False, ncols=len(parts))
    ax.set_ylim(0, max(float(bottom.max()) if len(bottom) else 1.0, 1.0) * 1.05)
    return fig


def to_svg(fig: Figure) -> str:
    """The figure as SVG text; raises :class:`MissingGlyphError` when a character has no glyph."""
    buffer = io.StringIO()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=MISSING_GLYPH_PATTERN, category=UserWarning)
            fig.savefig(buffer, format="svg", metadata={"Date": None})  # no date: same input, same file
    except UserWarning as warning:
        raise MissingGlyphError(
            f"图表字体缺少字符，图中文字会显示为方框：{warning}。{INSTALL_HINT}"
        ) from warning
    finally:
        plt.close(fig)
    return buffer.getvalue()


def figure_html(fig: Figure, caption: str) -> str:
    """A ``<figure>`` fragment holding the chart as an inline SVG data URI and its caption."""
    svg = to_svg(fig)
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (
        f'<figure class="chart"><img alt="{escape(caption)}" src="data:image/svg+xml;base64,{data}"/>'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )
