"""The quality notebook's charts: timeliness by day, linkage by source system."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from haocha_analysis.core import display
from haocha_analysis.core.periods import period_label
from haocha_analysis.core.text import format_ratio
from haocha_analysis.quality.report import QualityReport, _limit_cn
from haocha_analysis.quality.settings import _ratio

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# --- charts (quality_charts) -------------------------------------------------------------------


def plot_timeliness_by_day(report: QualityReport, ax: Axes | None = None) -> Figure:
    """Line chart: share of records reported within the limit, per day, for cases and evaluations."""
    import matplotlib.pyplot as plt

    from haocha_analysis.core.fonts import use_cjk_font

    use_cjk_font()
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.8))
    day = report.series["by_day"]
    for table, style in (("办件", "-"), ("评价", "--")):
        rows = day[day["table"] == table]
        ax.plot(rows["day"], rows["timely_rate"] * 100, style, label=f"{table}及时率", linewidth=1.4)
    ax.set_ylabel("及时率")
    limit = _limit_cn(report.figures)
    ax.set_title(f"{report.city}{period_label(report.period)} 按日上报及时率（{limit}规则）")
    display.share_axis(ax, scale=100)
    display.date_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.figure.autofmt_xdate()
    return ax.figure


def plot_linkage_by_system(report: QualityReport, ax: Axes | None = None) -> Figure:
    """Horizontal bars per source system: 质检通过率 and 关联度入库率 (all its records).

    The rate axis runs from 0 to 100 %; each bar carries its rate as the tables print it, so that
    differences of a fraction of a percent still read.
    """
    import matplotlib.pyplot as plt

    from haocha_analysis.core.fonts import use_cjk_font

    use_cjk_font()
    systems = report.series["by_system"]
    rows = systems[systems["table"] == "合计"].reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.7 * max(len(rows), 2) + 1.8))
    bars = (
        ("质检通过率", rows["passed"], rows["submitted"]),
        ("关联度入库率", rows["stored"], rows["passed"]),
    )
    values = [_ratio(num, den) * 100 for _, num, den in bars]
    y = np.arange(len(rows))
    for k, ((label, num, den), share) in enumerate(zip(bars, values, strict=True)):
        offset = (k - 0.5) * 0.4
        ax.barh(y + offset, share.fillna(0), height=0.38, label=label)
        for i in range(len(rows)):
            text = format_ratio(num.iat[i], den.iat[i])
            ax.text((share.iat[i] if pd.notna(share.iat[i]) else 0) + 0.5, y[i] + offset, text,
                    va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, rows["system"])
    ax.invert_yaxis()
    display.share_axis(ax, axis="x", scale=100, headroom=0.14)
    ax.set_title(f"{report.city}{period_label(report.period)} 各来源系统质检通过率与关联度入库率")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    ax.figure.tight_layout()
    return ax.figure
