"""The bulletin end to end: papermill runs the notebook, nbconvert and WeasyPrint render it.

Two runs per session (module-scoped): a tiny literal quarter of the made-up city 青禾市 and, when the
synthetic generator is installed, 淄博市 2023Q2 at scale 0.01. Every annex cell of the HTML is compared
with the library's table; the PDF's text and fonts are checked; a failing cell leaves the previous
outputs intact.
"""

from __future__ import annotations

import json
import re
from datetime import date
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from docx_checks import assert_annexes_equal_csvs, runs_without_east_asian_font

from haocha_analysis.analysis import rectification, rectification_report
from haocha_analysis.bulletin import render
from haocha_analysis.core.periods import parse_period
from haocha_analysis.ingest.storage import write_tables
from haocha_analysis.pipeline import run as pipeline
from tests.bulletin.test_render import parse_annexes

SMALL_SCALE = 0.02  # 0.01 hits a synth bug (read-only array in synth_plan.mark_low_active)


def qinghe_quarter(units: pd.DataFrame, seed: int = 7) -> dict[str, pd.DataFrame]:
    """A small, literal-rule quarter for 青禾市: every unit with cases has evaluations; a few bad ones."""
    rng = np.random.default_rng(seed)
    case_units = units[units["level"].isin(["city_dept", "district_dept", "town", "village"])][
        "unit_id"
    ].tolist()
    n = 240
    unit = rng.choice(case_units, n)
    finished = pd.Timestamp("2023-04-03 09:00") + pd.to_timedelta(rng.integers(0, 85, n), unit="D")
    finished = finished + pd.to_timedelta(rng.integers(0, 7 * 3600, n), unit="s")
    cases = pd.DataFrame(
        {
            "case_id": [f"QH{i:05d}" for i in range(n)],
            "unit_id": unit,
            "matter_code": "",
            "finished_at": finished,
            "reported_at": finished + pd.Timedelta(minutes=2),
            "source_system": rng.choice(["政务服务平台", "不动产登记"], n),
        }
    )
    channels = rng.choice(["hall_tablet", "qr_code", "mobile", "system_default"], n, p=[0.4, 0.3, 0.1, 0.2])
    satisfaction = np.where(rng.random(n) < 0.03, 1, 5).astype("int8")
    evaluations = pd.DataFrame(
        {
            "eval_id": [f"QE{i:05d}" for i in range(n)],
            "case_id": cases["case_id"],
            "unit_id": unit,
            "channel": channels,
            "satisfaction": satisfaction,
            "evaluated_at": finished + pd.Timedelta(minutes=10),
            "reported_at": finished + pd.Timedelta(minutes=11),
            "attempt": np.int8(1),
            "active": channels != "system_default",
            "evaluator_key": [f"{i:016x}" for i in range(n)],
        }
    )
    bad = evaluations.loc[evaluations["satisfaction"] <= 2, ["eval_id", "evaluated_at"]]
    rectifications = pd.DataFrame({"eval_id": bad["eval_id"], "verdict": "invalid", "invalid_reason": "误评"})
    rectifications["approved_at"] = bad["evaluated_at"] + pd.Timedelta(hours=3)
    # two valid 差评: one rectified and followed up, one never rectified (overdue by the extraction date)
    first, second = rectifications.index[:2]
    rectifications.loc[[first, second], ["verdict", "invalid_reason", "approved_at"]] = ["valid", None, None]
    rectifications.loc[first, "rectified_at"] = bad.at[first, "evaluated_at"] + pd.Timedelta(days=2)
    rectifications.loc[first, "revisited_at"] = bad.at[first, "evaluated_at"] + pd.Timedelta(days=3)
    rectifications.loc[first, "follow_up"] = "满意"
    return {"cases": cases, "evaluations": evaluations, "rectifications": rectifications}


@pytest.fixture(scope="module")
def qinghe_run(tmp_path_factory, qinghe):
    base = tmp_path_factory.mktemp("qinghe")
    data_dir = base / "data"
    write_tables(qinghe_quarter(qinghe.units), data_dir, "2023Q2")
    out = base / "reports" / "2023Q2"
    result = pipeline.build_bulletin(qinghe.path, "2023Q2", data_dir, out, extracted_on="2023-07-04")
    return result, data_dir, qinghe


@pytest.fixture(scope="module")
def zibo_run(tmp_path_factory, zibo):
    synth = pytest.importorskip("haocha_analysis.synth.generate")
    base = tmp_path_factory.mktemp("zibo")
    period = parse_period("2023Q2")
    generated = synth.generate(zibo, period, scale=SMALL_SCALE, seed=1)
    data_dir = base / "data"
    synth.write(generated, data_dir, period.label)
    out = base / "reports" / "2023Q2"
    result = pipeline.build_bulletin("zibo", "2023Q2", data_dir, out, extracted_on="2023-07-04")
    return result, data_dir, zibo


def library_tables(ref, data_dir: Path, period: str):
    from haocha_analysis.analysis import annexes as tables

    per = parse_period(period)
    return tables.build_tables(
        ref, pipeline.load_data(data_dir, per), per, extracted_on=pd.Timestamp("2023-07-04").date()
    )


def pdf_text_and_fonts(pdf: Path) -> tuple[str, set[str], int]:
    from pypdf import PdfReader

    reader = PdfReader(pdf)
    text = "\n".join(page.extract_text() for page in reader.pages)
    fonts = {str(f["/BaseFont"]) for page in reader.pages for f in page["/Resources"]["/Font"].values()}
    return text, fonts, len(reader.pages)


def check_run(result, data_dir, ref, period="2023Q2"):
    out = result.out_dir
    html = (out / "bulletin.html").read_text(encoding="utf-8")
    # nothing external, no code, no prompts
    assert render.external_references(html) == []
    assert "render." not in html and "import " not in html and "In&nbsp;[" not in html
    # every annex cell equals the library's table
    expected = library_tables(ref, data_dir, period)
    parsed = parse_annexes(html)
    assert set(parsed) - {render.RECTIFICATION_ANNEX} == set(render.ANNEX_NAMES)
    for name in render.ANNEX_NAMES:
        assert parsed[name]["tbody"] == expected.annexes[name].values.tolist(), name
        assert expected.notes[name] in html
    # title, addressees, paragraphs with computed figures, problems paragraph, charts
    per = parse_period(period)
    assert f"关于{per.title_cn()}<br/>政务服务“好差评”工作情况的通报" in html.replace("<br>", "<br/>")
    assert f"评价数据{expected.headline['total_evaluations']}件" in html
    assert f"通过对{render.period_name(per)}评价数据综合分析" in html
    assert html.count('<figure class="chart"') == 3
    # the 差评整改 paragraph and the overdue annex: only when the period has valid 差评
    ledger = rectification.build_ledger(ref, pipeline.load_data(data_dir, per), per, date(2023, 7, 4))
    if ledger.has_valid:
        assert escape(rectification_report.paragraph(ledger)) in html
        overdue = rectification_report.overdue_display(ledger)
        assert parsed[render.RECTIFICATION_ANNEX]["tbody"] == overdue.astype("str").values.tolist()
    else:
        assert "差评整改超期清单" not in html and render.RECTIFICATION_ANNEX not in parsed
    assert (out / "rectification" / "rectification_ledger.csv").exists()
    # PDF: headline figures, district names, CJK fonts
    text, fonts, pages = pdf_text_and_fonts(out / "bulletin.pdf")
    flat = re.sub(r"\s+", "", text)
    assert str(expected.headline["total_evaluations"]) in flat
    assert str(expected.headline["district_cases"]) in flat
    for district in ref.districts:
        assert district in flat
    assert fonts and all("CJK" in f for f in fonts), fonts
    # the Word 公文: every annex cell equals the CSV beside it; headline figures; fonts on every run
    from docx import Document

    assert_annexes_equal_csvs(out / "bulletin.docx", out)
    doc = Document(str(out / "bulletin.docx"))
    assert f"评价数据{expected.headline['total_evaluations']}件" in "".join(p.text for p in doc.paragraphs)
    assert runs_without_east_asian_font(doc) == []
    # interactive HTML: the annex tables sort, the charts carry their values for hovering
    assert html.count("data-tips=") == 3 and "makeSortable" in html
    # outputs beside the notebook, and the manifest
    for name in (
        "bulletin.ipynb",
        "bulletin.docx",
        "annexes.xlsx",
        "headline.json",
        "manifest.json",
        "run.log",
    ):
        assert (out / name).exists(), name
    assert all((out / f"{name}.csv").exists() for name in render.ANNEX_NAMES)
    assert any((out / "quality").iterdir()) and any((out / "anomalies").iterdir())
    assert not (out / pipeline.RESULTS_PICKLE).exists()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["run_id"] == result.run_id and manifest["period"] == period
    assert {s["name"] for s in manifest["stages"]} >= {
        "load",
        "quality",
        "tables",
        "anomalies",
        "notebook",
        "html",
        "pdf",
        "docx",
    }
    assert all(s["status"] == "ok" for s in manifest["stages"])
    assert any("cases/period=2023Q2" in k for k in manifest["inputs"])
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in manifest["inputs"].values())
    assert manifest["packages"]["papermill"] and manifest["pdf_pages"] == pages
    assert "bulletin.docx" in manifest["outputs"]
    # the executed notebook records its parameters
    nb = json.loads((out / "bulletin.ipynb").read_text(encoding="utf-8"))
    assert nb["metadata"]["papermill"]["parameters"]["run_id"] == result.run_id
    # no identity or phone number anywhere
    for f in out.rglob("*"):
        if f.suffix in (".html", ".csv", ".json", ".log"):
            content = f.read_text(encoding="utf-8-sig")
            assert not re.search(r"(?<![\d.])\d{17}[\dXx](?![\d.])", content), f
            assert not re.search(r"(?<![\d.])1[3-9]\d{9}(?![\d.])", content), f


def test_qinghe_bulletin(qinghe_run):
    check_run(*qinghe_run)


def test_zibo_small_bulletin(zibo_run):
    check_run(*zibo_run)


def failing_notebook(folder: Path) -> Path:
    """The bulletin notebook with a cell that fails right after the parameters."""
    import nbformat

    nb = nbformat.read(pipeline.NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell('raise RuntimeError("故意失败的单元")'))
    path = folder / "bulletin.ipynb"
    nbformat.write(nb, path)
    return path


def test_failed_cell_keeps_previous_outputs(qinghe_run, tmp_path, monkeypatch):
    result, data_dir, ref = qinghe_run
    before = {p.name: p.stat().st_mtime_ns for p in result.out_dir.iterdir()}
    monkeypatch.setattr(pipeline, "NOTEBOOK", failing_notebook(tmp_path))
    with pytest.raises(pipeline.BulletinFailed) as err:
        pipeline.build_bulletin(ref.path, "2023Q2", data_dir, result.out_dir)
    message = str(err.value)
    assert "RuntimeError" in message and "故意失败的单元" in message
    assert {p.name: p.stat().st_mtime_ns for p in result.out_dir.iterdir()} == before
    leftovers = [p for p in result.out_dir.parent.iterdir() if p.name != result.out_dir.name]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".2023Q2.failed-")
    # the failed folder is for diagnosis: no hand-over pickle (records) and no kernel connection file
    kept = {p.name for p in leftovers[0].iterdir()}
    assert pipeline.RESULTS_PICKLE not in kept and not any(n.startswith(".kernel-") for n in kept)


def test_bad_placeholder_is_an_input_error_before_any_work(qinghe_run, tmp_path, monkeypatch):
    """A bad placeholder in bulletin.yml: exit 2 at the start, not a failed notebook cell after the stages."""
    result, data_dir, ref = qinghe_run
    before = {p.name: p.stat().st_mtime_ns for p in result.out_dir.iterdir()}
    beside = sorted(p.name for p in result.out_dir.parent.iterdir())

    def no_work(*args, **kwargs):
        raise AssertionError("the stages ran before the template was checked")

    monkeypatch.setattr(pipeline, "compute", no_work)
    monkeypatch.setattr(pipeline, "execute_notebook", no_work)
    bad = tmp_path / "bulletin.yml"
    bad.write_text("work_progress: 甲\nheadline: 共{no_such_figure}件\nnext_steps: 乙\n", encoding="utf-8")
    with pytest.raises(pipeline.HaochaInputError) as err:
        pipeline.build_bulletin(ref.path, "2023Q2", data_dir, result.out_dir, narrative_file=bad)
    assert "{no_such_figure}" in str(err.value) and "headline" in str(err.value)
    assert {p.name: p.stat().st_mtime_ns for p in result.out_dir.iterdir()} == before
    assert sorted(p.name for p in result.out_dir.parent.iterdir()) == beside  # no staging, nothing new


def test_cli_exit_status_and_message(qinghe_run, tmp_path):
    from haocha_analysis.cli import cli

    _result, data_dir, ref = qinghe_run
    bad = tmp_path / "bulletin.yml"
    bad.write_text("work_progress: 甲\nheadline: 共{nope}件\nnext_steps: 乙\n", encoding="utf-8")
    out = tmp_path / "out"
    run = CliRunner().invoke(
        cli,
        [
            "bulletin",
            "--city",
            str(ref.path),
            "--period",
            "2023Q2",
            "--data",
            str(data_dir),
            "--out",
            str(out),
            "--narrative",
            str(bad),
        ],
    )
    assert run.exit_code == 2, run.output
    assert "{nope}" in run.output and "Traceback" not in run.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bulletin.yml"]
    run = CliRunner().invoke(
        cli,
        ["run", "--city", str(ref.path), "--period", "2023Q3", "--data", str(data_dir), "--out", str(out)],
    )
    assert run.exit_code == 2 and "2023年第三季度" in run.output and not out.exists()


@pytest.mark.slow
def test_zibo_full_scale_bulletin(tmp_path):
    """Scale 1: the default synthetic quarter end to end, within the 60 s target (bench reports it)."""
    result = pipeline.build_bulletin("zibo", "2023Q2", None, tmp_path / "2023Q2", extracted_on="2023-07-04")
    headline = json.loads((result.out_dir / "headline.json").read_text(encoding="utf-8"))
    assert headline["total_evaluations"] == 1428423
    text, _fonts, pages = pdf_text_and_fonts(result.pdf)
    assert "1428423" in re.sub(r"\s+", "", text) and pages >= 8
    assert_annexes_equal_csvs(result.out_dir / "bulletin.docx", result.out_dir)  # all 879 cells


def test_run_ingests_when_the_period_is_missing(qinghe, tmp_path):
    """`haocha run`: the period is not in --data, so the inbox's exports are ingested first."""
    from haocha_analysis.cli import cli

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for table, frame in qinghe_quarter(qinghe.units, seed=3).items():
        frame.to_csv(
            inbox / f"{table}.csv", index=False, encoding="utf-8-sig", date_format="%Y-%m-%d %H:%M:%S"
        )
    data_dir, out = tmp_path / "canonical", tmp_path / "out"
    args = [
        "run",
        "--city",
        str(qinghe.path),
        "--period",
        "2023Q2",
        "--data",
        str(data_dir),
        "--out",
        str(out),
    ]
    profile = Path(__file__).resolve().parents[2] / "data" / "profiles" / "canonical.yml"
    run = CliRunner().invoke(cli, [*args, "--inbox", str(inbox), "--profile", str(profile)])
    assert run.exit_code == 0, run.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["ingest"].startswith("已导入 3 个文件")
    assert manifest["stages"][0]["name"] == "ingest"
    assert (data_dir / "cases" / "period=2023Q2").is_dir()
    assert json.loads((data_dir / ".haocha-output.json").read_text(encoding="utf-8"))["kind"] == "data"
    # Not a terminal: plain lines, one per stage, then where it wrote (no terminal marks).
    assert "执行通报 notebook：" in run.output and f"通报已生成：{out}" in run.output
    assert "✓" not in run.output and "…" not in run.output
    assert "运行" in (out.parent / "logs" / "haocha.log").read_text(encoding="utf-8")


def test_empty_partial_and_latest_periods(qinghe, tmp_path):
    """An empty period exits 2; a partial one warns and says so; latest follows the data."""
    from haocha_analysis.cli import cli

    quarter = qinghe_quarter(qinghe.units)
    early = quarter["cases"]["finished_at"] < pd.Timestamp("2023-05-20")
    kept_cases = quarter["cases"][early]
    partial = {
        "cases": kept_cases,
        "evaluations": quarter["evaluations"][quarter["evaluations"]["case_id"].isin(kept_cases["case_id"])],
        "rectifications": quarter["rectifications"].iloc[:0],
    }
    data_dir = tmp_path / "data"
    write_tables(partial, data_dir, "2023Q2")
    city = ["--city", str(qinghe.path), "--data", str(data_dir)]

    empty = CliRunner().invoke(cli, ["bulletin", *city, "--period", "2023Q3", "--out", str(tmp_path / "q3")])
    assert empty.exit_code == 2, empty.output
    assert "没有任何办件或评价记录" in empty.output and "2023年第二季度" in empty.output
    assert not (tmp_path / "q3").exists()
    for verb in ("tables", "quality", "anomalies"):
        run = CliRunner().invoke(cli, [verb, *city, "--period", "2023Q3", "--out", str(tmp_path / verb)])
        assert run.exit_code == 2 and "没有任何办件或评价记录" in run.output, (verb, run.output)

    out = tmp_path / "latest"
    run = CliRunner().invoke(cli, ["bulletin", *city, "--period", "latest", "--out", str(out)])
    assert run.exit_code == 0, run.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["period"] == "2023Q2"  # the data's last quarter, not today's
    assert manifest["data_coverage"]["partial"] and manifest["data_coverage"]["last_record"] < "2023-05-20"
    html = (out / "bulletin.html").read_text(encoding="utf-8")
    assert "本期数据仅覆盖2023年4月" in html and "以上数字仅反映已覆盖时段" in html
    headline = json.loads((out / "headline.json").read_text(encoding="utf-8"))
    assert headline["data_coverage"] == manifest["data_coverage"]


def test_compare_settings_issue_date_and_doc_number(qinghe, tmp_path):
    """--compare writes 环比 columns and a sentence; --settings changes a threshold; 成文日期 and 文号."""
    from haocha_analysis.cli import cli

    data_dir = tmp_path / "data"
    quarter = qinghe_quarter(qinghe.units)
    write_tables(quarter, data_dir, "2023Q2")
    earlier = qinghe_quarter(qinghe.units, seed=8)
    months = pd.DateOffset(months=3)
    for table, column in (
        ("cases", "finished_at"),
        ("cases", "reported_at"),
        ("evaluations", "evaluated_at"),
    ):
        earlier[table][column] = earlier[table][column] - months
    earlier["evaluations"]["reported_at"] = earlier["evaluations"]["evaluated_at"]
    for table, key in (("cases", "case_id"), ("evaluations", "eval_id")):
        earlier[table][key] = "Q1" + earlier[table][key]
    earlier["evaluations"]["case_id"] = "Q1" + earlier["evaluations"]["case_id"]
    earlier["rectifications"]["eval_id"] = "Q1" + earlier["rectifications"]["eval_id"]
    write_tables(earlier, data_dir, "2023Q1")
    settings = tmp_path / "settings.yml"
    settings.write_text(
        "timing:\n  report_delay_limit: 1分钟\nquality:\n  worst_units_top: 3\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    args = ["bulletin", "--city", str(qinghe.path), "--period", "2023Q2", "--data", str(data_dir)]
    run = CliRunner().invoke(
        cli,
        [
            *args,
            *("--out", str(out), "--compare", "--settings", str(settings)),
            *("--extracted-on", "2023-07-04", "--doc-number", "青审批字〔2023〕12号"),
        ],
    )
    assert run.exit_code == 0, run.output
    assert f"通报已生成：{out}" in run.output  # the summary is printed even off a terminal
    annex1 = pd.read_csv(out / "annex1_districts.csv", dtype=str, encoding="utf-8-sig")
    assert "评价数环比" in annex1.columns and "评价数同比" not in annex1.columns  # no 2022Q2 data
    html = (out / "bulletin.html").read_text(encoding="utf-8")
    assert "与上期（2023年第一季度）相比，汇聚办件数据" in html
    assert "青审批字〔2023〕12号" in html
    assert "2023年7月11日" in html  # 2023-07-04 plus 5 working days (city default lag)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["timing"]["report_delay_limit"] == "0:01:00"
    assert manifest["settings"]["anomalies"]["timing"]["report_delay_limit"] == "0:01:00"  # one clock
    assert manifest["settings"]["file"] == str(settings)
    figures = json.loads((out / "quality" / "quality_figures.json").read_text(encoding="utf-8"))
    assert figures["late_reports"]["cases"] > 0  # cases are reported 2 minutes after: late at 1 minute

    bad = tmp_path / "bad.yml"
    bad.write_text("timing:\n  report_delay_limt: 60\n", encoding="utf-8")
    run = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "o2"), "--settings", str(bad)])
    assert run.exit_code == 2 and "report_delay_limit" in run.output and not (tmp_path / "o2").exists()
    run = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "o3"), "--issued-on", "2023-13-01"])
    assert run.exit_code == 2 and "成文日期" in run.output


def test_the_three_charts_share_one_page(zibo_run):
    from pypdf import PdfReader

    result, _data_dir, _ref = zibo_run
    pages = [page.extract_text() for page in PdfReader(result.out_dir / "bulletin.pdf").pages]
    chart_pages = [i for i, text in enumerate(pages) for n in "123" if f"图{n}" in text]
    assert len(set(chart_pages)) == 1, chart_pages  # no chart left alone on a mostly empty page
