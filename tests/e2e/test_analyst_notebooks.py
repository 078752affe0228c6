"""The analysts' notebooks as an analyst reads them: executed with papermill on small demo data, every
rendered table checked for raw shares, exponents, unseparated counts and "…" truncation; the library's
chart functions checked for axes that start at zero and readable time axes."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from haocha_analysis.core.config import KERNEL_NAME, NOTEBOOKS_DIR
from haocha_analysis.core.periods import parse_period
from haocha_analysis.ingest.storage import write_tables

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHARE_HEADER = re.compile(r"(率|占比|比例)$")
ID_HEADER = re.compile(r"(编号|编码|序号|排名|批次|参数)")
PERCENT_OR_NA = re.compile(r"^(\d{1,3}(\.\d{1,2})?%|/|)$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, zibo):
    """淄博 at scale 0.02: 2023Q1 and 2023Q2 (history for the detectors), and the bad-reviews scenario."""
    from haocha_analysis.synth.generate import generate

    root = tmp_path_factory.mktemp("analyst-demo")
    for label in ("2023Q1", "2023Q2"):
        write_tables(generate(zibo, label, scale=0.02, seed=3).tables, root / "data", label)
    write_tables(
        generate(zibo, "2023Q2", scale=0.02, seed=7, scenario="bad-reviews").tables, root / "bad", "2023Q2"
    )
    return root


def _parameters(name: str, demo: Path) -> dict:
    base = {"city": "zibo", "period": "2023Q2"}
    return {
        "quality": {**base, "data_dir": str(demo / "data"), "out_dir": str(demo / "quality-out")},
        "anomalies": {**base, "data_dir": str(demo / "data"), "unit_id": ""},
        "rectification": {**base, "data_dir": str(demo / "bad"), "as_of": "2023-09-30"},
        "unit_report": {**base, "data_dir": str(demo / "data"), "unit_id": "zb-d01"},
    }[name]


class _Tables(HTMLParser):
    """Rows of every HTML table: header cells and body cells as text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _executed(name: str, demo: Path, tmp_path: Path) -> tuple[str, str]:
    import papermill as pm

    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS_DIR / f"{name}.ipynb"),
        str(out),
        parameters=_parameters(name, demo),
        kernel_name=KERNEL_NAME,
        cwd=str(NOTEBOOKS_DIR),
        progress_bar=False,
    )
    nb = json.loads(out.read_text(encoding="utf-8"))
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for o in outputs)
    text = "".join(
        "".join(o.get("data", {}).get("text/markdown", "")) + "".join(o.get("text", "")) for o in outputs
    )
    return html, text


@pytest.mark.parametrize("name", ["quality", "anomalies", "rectification", "unit_report"])
def test_rendered_tables_read_as_analysts_write(name, demo, tmp_path):
    html, text = _executed(name, demo, tmp_path)
    parser = _Tables()
    parser.feed(html)
    assert parser.tables, "the notebook shows no table"
    for table in parser.tables:
        header = table[0] if table else []
        for row in table:
            assert "..." not in row and "…" not in row, f"truncated table: {header}"
        for row in table[1:]:
            for column, cell in zip(header, row, strict=False):
                assert not re.search(r"\d[eE][-+]?\d", cell), (column, cell)
                if SHARE_HEADER.search(column):
                    assert PERCENT_OR_NA.match(cell), (column, cell)  # 3.86%, never 0.0386
                if re.fullmatch(r"\d{4,}", cell) and not ID_HEADER.search(column):
                    pytest.fail(f"count without thousands separator: {column} = {cell}")
            if "测量指标" in header and SHARE_HEADER.search(row[header.index("测量指标")]):
                assert PERCENT_OR_NA.match(row[header.index("测量值")]), row  # a share measured: 49.59%
    visible = re.sub(r"<[^>]+>", " ", html) + text
    assert not re.search(r"\d\.\d+[eE]-\d", visible)
    # one way to write a period: the Chinese label, never the code, in what a reader sees
    assert not re.search(r"(?<![A-Za-z0-9])20\d\dQ[1-4](?![0-9A-Za-z])", visible), name
    assert parse_period("2023Q2").title_cn() in visible


# --- the library's charts ------------------------------------------------------------------------


def _lower(ax, axis="y"):
    return (ax.get_ylim() if axis == "y" else ax.get_xlim())[0]


def test_quality_charts_rate_axes_run_from_zero_to_100(demo):
    from haocha_analysis import quality

    report = quality.run_from_folder("zibo", "2023Q2", demo / "data", demo / "charts-quality")
    ax = quality.plot_timeliness_by_day(report).axes[0]
    assert _lower(ax) == 0 and ax.get_ylim()[1] >= 100
    assert "2023年第二季度" in ax.get_title() and "2023Q2" not in ax.get_title()
    ax.figure.canvas.draw()
    assert all(re.fullmatch(r"\d\d-\d\d", t.get_text()) for t in ax.get_xticklabels() if t.get_text())
    ax = quality.plot_linkage_by_system(report).axes[0]
    assert _lower(ax, "x") == 0 and ax.get_xlim()[1] >= 100


def test_anomaly_charts_count_axes_from_zero_and_bursts_by_clock_time(demo, zibo):
    from haocha_analysis.analysis import anomalies
    from haocha_analysis.analysis.anomalies import drill

    run = anomalies.analyse("zibo", "2023Q2", demo / "data", history_periods=1)
    overview = drill.plot_findings_overview(run.findings).axes[0]
    assert _lower(overview, "x") == 0
    unit = run.findings["unit_id"].iloc[0]
    d = drill.unit_drilldown(run.ref, run.data, run.period, unit, ctx=run.context)
    # bursts of one operator at 09:30 and 22:10, whatever the demo unit holds
    import pandas as pd

    d["bursts"] = pd.DataFrame(
        {"开始": pd.to_datetime(["2023-04-03 09:30", "2023-04-05 22:10"]), "条数": [12, 30]}
    )
    daily, lags, bursts, channels = (fig.axes[0] for fig in drill.drilldown_figures(d))
    assert _lower(daily) == 0 and _lower(lags) == 0
    assert bursts.get_ylim() == (0, 24)
    bursts.figure.canvas.draw()
    labels = [t.get_text() for t in bursts.get_yticklabels()]
    assert "09:00" in labels and all(re.fullmatch(r"\d\d:\d\d", t) for t in labels)
    assert _lower(channels, "x") == 0 and channels.get_xlim()[1] >= 1


def test_measured_values_are_written_as_their_kind_reads():
    import pandas as pd

    from haocha_analysis.analysis.anomalies import drill
    from haocha_analysis.analysis.anomalies.settings import KINDS

    assert set(drill.MEASURE_UNITS) == set(KINDS)
    findings = pd.DataFrame(
        {
            "kind": ["late_aggregation", "too_perfect", "duplicates", "zero_data", "low_volume"],
            "measure": [0.495968, 8.689017e-14, 1234.0, 0.0, 0.4567],
            "expected": [0.007043, 0.01, 1.5, 60.0, 0.9],
        }
    )
    assert drill.measure_text(findings).tolist() == ["49.59%", "< 0.0001", "1,234", "0", "0.46"]
    assert drill.measure_text(findings, "expected").tolist() == ["0.7%", "0.01", "1.5", "60", "0.9"]


def test_rectification_and_bulletin_charts_start_at_zero(demo):
    import pandas as pd

    from haocha_analysis.analysis import rectification, rectification_report
    from haocha_analysis.bulletin import charts

    ledger = rectification.open_ledger("zibo", "2023Q2", demo / "bad", "2023-09-30")
    ageing = rectification_report.plot_ageing(ledger).axes[0]
    assert _lower(ageing) == 0 and ageing.get_ylim()[1] >= 1

    fig = charts.evaluations_by_district(["甲区", "乙区"], [9600, 9900], [9500, 9800])
    ax, twin = fig.axes[:2]
    assert _lower(ax) == 0 and _lower(twin) == 0 and twin.get_ylim()[1] >= 1
    fig = charts.composition_by_district(["甲区", "乙区"], {"区直部门": [5, 6], "镇级": [7, 8]})
    assert _lower(fig.axes[0]) == 0
    counts = pd.DataFrame({"unit_id": ["a", "b"], "ch_pc": [96, 3], "ch_hall_tablet": [4, 97]})
    units = pd.DataFrame({"unit_id": ["a", "b"], "level": ["district_dept", "town"]})
    mix = charts.channel_mix(counts, units).axes[0]
    assert mix.get_xlim() == (0, 1)
