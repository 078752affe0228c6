"""The quality notebook's charts: timeliness by day, linkage by source system."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

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
    ax.set_ylabel("及时率（%）")
    ax.set_title(f"{report.city}{report.period} 按日上报及时率（{_limit_cn(report.figures)}规则）")
    ax.set_ylim(
        bottom=max(0, min(90.0, float(np.nanmin(day["timely_rate"].to_numpy(dtype=float) * 100)) - 2))
        if len(day) and day["timely_rate"].notna().any()
        else 0,
        top=100.5,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.figure.autofmt_xdate()
    return ax.figure


def plot_linkage_by_system(report: QualityReport, ax: Axes | None = None) -> Figure:
    """Horizontal bars per source system: 质检通过率 and 关联度入库率 (all its records).

    The axis starts just below the lowest rate so that differences of a fraction of a percent show;
    each bar carries its rate as the tables print it.
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
    lowest = float(np.nanmin([v.min() for v in values])) if len(rows) else 100.0
    floor = 0.0 if np.isnan(lowest) else max(0.0, np.floor(lowest) - 1)
    y = np.arange(len(rows))
    for k, ((label, num, den), share) in enumerate(zip(bars, values, strict=True)):
        offset = (k - 0.5) * 0.4
        ax.barh(y + offset, (share - floor).fillna(0), left=floor, height=0.38, label=label)
        for i in range(len(rows)):
            text = format_ratio(num.iat[i], den.iat[i])
            ax.text(floor + (share.iat[i] - floor if pd.notna(share.iat[i]) else 0) + 0.02, y[i] + offset,
                    text, va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, rows["system"])
    ax.invert_yaxis()
    ax.set_xlim(floor, 100 + (100 - floor) * 0.12)
    ax.set_xlabel("%")
    ax.set_title(f"{report.city}{report.period} 各来源系统质检通过率与关联度入库率")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    ax.figure.tight_layout()
    return ax.figure
