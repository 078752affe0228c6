"""The one place for display formats: literal values, every rule and its edges spelled out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from haocha_analysis.core import display


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.038674, "3.86%"),  # truncated as the bulletin writes rates: never rounded up
        (1.0, "100%"),
        (0.99996, "99.99%"),
        (0.0005, "0.05%"),
        (0.0, "0%"),
        (float("nan"), "/"),
        (None, "/"),
    ],
)
def test_shares_are_percentages(value, text):
    assert display.format_share(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (8.689017e-14, "< 0.0001"),
        (0.0000999, "< 0.0001"),
        (0.0001, "0.0001"),
        (0.012345, "0.0123"),
        (0.5, "0.5"),
        (1.0, "1"),
        (float("nan"), "/"),
    ],
)
def test_p_values_follow_one_rule(value, text):
    assert display.format_p_value(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(1428423, "1,428,423"), (0, "0"), (999, "999"), (1000.0, "1,000"), (np.int64(12345), "12,345")],
)
def test_counts_have_thousands_separators(value, text):
    assert display.format_count(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.69992e-13, "0"), (1234.5678, "1,234.57"), (2.0, "2"), (0.5, "0.5"), (math.inf, "∞"), (None, "/")],
)
def test_decimals_never_show_an_exponent(value, text):
    assert display.format_decimal(value) == text


def test_scores_have_three_decimals():
    assert [display.format_score(v) for v in (0.795, 1.0, 0.0, None)] == ["0.795", "1.000", "0.000", "/"]


def test_settings_values_read_as_text():
    from haocha_analysis.core.rules import RecordTiming

    settings = pd.DataFrame(
        {"参数": ["alpha", "timing"], "取值": pd.Series([0.0001, RecordTiming()], dtype=object)}
    )
    html = display.show(settings).to_html()
    assert ">0.0001<" in html and "上报时限 5 分钟，时钟误差容忍 0 秒" in html and "timedelta" not in html


def test_column_units_from_dtype_and_header():
    frame = pd.DataFrame(
        {
            "记录数": [1, 2],
            "及时率": [0.5, 0.25],
            "占比": [0.1, 0.2],
            "概率": [1e-9, 0.3],
            "期望": [1.0, 2.0],  # whole floats read as counts
            "均值": [1.5, 2.25],
            "单位": ["甲", "乙"],
            "超期": [True, False],
        }
    )
    units = {c: display.column_unit(c, frame[c]) for c in frame}
    assert units == {
        "记录数": display.COUNT,
        "及时率": display.SHARE,
        "占比": display.SHARE,
        "概率": display.P_VALUE,
        "期望": display.COUNT,
        "均值": display.DECIMAL,
        "单位": None,
        "超期": None,
    }


def test_show_writes_every_column_and_row_without_exponents():
    display.setup_notebook()
    wide = pd.DataFrame({f"列{i}": [12345, 67890] for i in range(40)})
    wide["占比"] = [0.038674, 1.0]
    wide["测量值"] = [1.69992e-13, 2.5]
    wide["时间"] = pd.to_datetime(["2023-04-03 09:05:59", "2023-04-04 10:00:00"])
    wide["日期"] = pd.to_datetime(["2023-04-03", "2023-04-04"])
    wide["设置"] = pd.Series([0.0001, "文字"], dtype=object)
    html = display.show(wide).to_html()
    assert all(f">列{i}<" in html for i in range(40))
    assert "..." not in html and "…" not in html
    assert "12,345" in html and "3.86%" in html and "100%" in html
    assert "0.038674" not in html and "e-" not in html and "0.0001<" in html
    assert "2023-04-03 09:05<" in html and "2023-04-03<" in html and "00:00:00" not in html
    # the frame itself is unchanged: numbers stay numbers
    assert wide["占比"].dtype == float
    # the DataFrame repr after setup_notebook shows every column too
    assert "..." not in wide.to_html()


def test_show_keeps_a_meaningful_index_when_asked():
    table = pd.DataFrame({"待核实": [1, 0]}, index=pd.Index(["0–3", "31及以上"], name="已用工作日"))
    assert "31及以上" in display.show(table, index=True).to_html()
    assert "31及以上" not in display.show(table).to_html()


def test_axes_start_at_zero_and_read_as_people_write():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(pd.to_datetime(["2023-04-03", "2023-04-20"]), [9600, 9900])
    display.count_axis(ax)
    display.date_axis(ax)
    fig.canvas.draw()
    assert ax.get_ylim()[0] == 0
    assert all("-" in t.get_text() and len(t.get_text()) == 5 for t in ax.get_xticklabels() if t.get_text())
    assert any("," in t.get_text() for t in ax.get_yticklabels())

    fig, ax = plt.subplots()
    ax.plot([0, 1], [96.5, 99.0])
    display.share_axis(ax, scale=100)
    assert ax.get_ylim() == (0, pytest.approx(102))

    fig, ax = plt.subplots()
    starts = pd.Series(pd.to_datetime(["2023-04-03 09:30", "2023-04-03 22:10"]))
    ax.scatter([0, 1], display.hour_of_day(starts))
    display.hour_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert ax.get_ylim() == (0, 24) and labels[:3] == ["00:00", "03:00", "06:00"] and labels[-1] == "24:00"
    plt.close("all")
