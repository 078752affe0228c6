"""The bulletin end to end: papermill runs the notebook, nbconvert and WeasyPrint render it.

Two runs per session (module-scoped): a tiny literal quarter of the made-up city 青禾市 and, when the
synthetic generator is installed, 淄博市 2023Q2 at scale 0.01. Every annex cell of the HTML is compared
with the library's table; the PDF's text and fonts are checked; a failing cell leaves the previous
outputs intact.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_render import parse_annexes

from haocha_analysis.bulletin import render
from haocha_analysis.core.periods import parse_period
from haocha_analysis.ingest.storage import write_tables
from haocha_analysis.pipeline import run as pipeline

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
    bad = evaluations.loc[evaluations["satisfaction"] <= 2, "eval_id"]
    rectifications = pd.DataFrame({"eval_id": bad, "verdict": "invalid", "invalid_reason": "误评"})
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
    assert set(parsed) == set(render.ANNEX_NAMES)
    for name in render.ANNEX_NAMES:
        assert parsed[name]["tbody"] == expected.annexes[name].values.tolist(), name
        assert expected.notes[name] in html
    # title, addressees, paragraphs with computed figures, problems paragraph, charts
    per = parse_period(period)
    assert f"关于{per.title_cn()}<br/>政务服务“好差评”工作情况的通报" in html.replace("<br>", "<br/>")
    assert f"评价数据{expected.headline['total_evaluations']}件" in html
    assert f"通过对{render.period_name(per)}评价数据综合分析" in html
    assert html.count('<figure class="chart">') == 3
    # PDF: headline figures, district names, CJK fonts
    text, fonts, pages = pdf_text_and_fonts(out / "bulletin.pdf")
    flat = re.sub(r"\s+", "", text)
    assert str(expected.headline["total_evaluations"]) in flat
    assert str(expected.headline["district_cases"]) in flat
    for district in ref.districts:
        assert district in flat
    assert fonts and all("CJK" in f for f in fonts), fonts
    # outputs beside the notebook, and the manifest
    for name in ("bulletin.ipynb", "annexes.xlsx", "headline.json", "manifest.json", "run.log"):
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
    }
    assert all(s["status"] == "ok" for s in manifest["stages"])
    assert any("cases/period=2023Q2" in k for k in manifest["inputs"])
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in manifest["inputs"].values())
    assert manifest["packages"]["papermill"] and manifest["pdf_pages"] == pages
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
    assert pipeline.RESULTS_PICKLE not in kept and pipeline.KERNEL_CONNECTION_FILE not in kept


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
    assert run.exit_code == 2 and "2023Q3" in run.output and not out.exists()


@pytest.mark.slow
def test_zibo_full_scale_bulletin(tmp_path):
    """Scale 1: the default synthetic quarter end to end, within the 60 s target (bench reports it)."""
    result = pipeline.build_bulletin("zibo", "2023Q2", None, tmp_path / "2023Q2", extracted_on="2023-07-04")
    headline = json.loads((result.out_dir / "headline.json").read_text(encoding="utf-8"))
    assert headline["total_evaluations"] == 1428423
    text, _fonts, pages = pdf_text_and_fonts(result.pdf)
    assert "1428423" in re.sub(r"\s+", "", text) and pages >= 8


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
    assert run.output == ""  # not a terminal: quiet
    assert "运行" in (out.parent / "logs" / "haocha.log").read_text(encoding="utf-8")
