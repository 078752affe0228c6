"""The verbs that make documents on Dask (2-worker LocalCluster): every output file as on pandas.

``haocha rectification`` (the 差评 ledger from the records Dask filters), the run's stages
(``pipeline.stages.compute``: quality, annexes with 环比/同比, ledger, findings), and end to end
``haocha bulletin``, ``haocha run`` and ``haocha unit-reports`` (HTML, notebook, Word and PDF as text
with run ids and times masked; ``tests/engine/same_outputs.py``).
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from haocha_analysis.analysis.rectification import build_ledger
from haocha_analysis.cli import cli
from haocha_analysis.core.coverage import coverage
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.schemas import coerce
from haocha_analysis.engine import EngineOptions
from haocha_analysis.engine.api import ledger_records
from haocha_analysis.ingest.storage import load_window, record_extraction, write_tables
from haocha_analysis.pipeline.stages import compute
from tests.engine.same_outputs import assert_same_outputs
from tests.engine.test_quality_engine import engines_agree
from tests.engine.test_tables_engine import _edge_folder

Q2 = parse_period("2023Q2")
DASK = EngineOptions(engine="dask")
AS_OF = "2023-07-10"


@pytest.fixture
def on_cluster(monkeypatch, dask_client):
    """Verbs and stages started here use the test cluster (as ``--scheduler`` would)."""
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_client.scheduler.address)
    return dask_client


# --- the ledger ------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True], ids=["one-partition", "q1-and-q2"])
def test_ledger_records_give_the_ledger_of_the_whole_window(tmp_path, dask_client, qinghe, split):
    folder = _edge_folder(tmp_path, split)
    records, cov = ledger_records(folder, Q2, DASK)
    whole = load_window(folder, Q2)
    assert cov == coverage(whole, Q2)
    # Only what the 差评 need left the cluster: fewer evaluations than the window holds.
    assert 0 < len(records["evaluations"]) < len(whole["evaluations"])
    day = pd.Timestamp(AS_OF).date()
    expected = build_ledger(qinghe, whole, Q2, day)
    actual = build_ledger(qinghe, records, Q2, day)
    assert len(expected.rows) > 0
    for name in ("rows", "by_unit", "by_district"):
        pd.testing.assert_frame_equal(getattr(expected, name), getattr(actual, name))


def _linked_bad_reviews(tmp_path):
    """A case evaluated three times: the first attempt-1 (good), a later attempt-1 差评 (a duplicate,
    no 差评), a follow-up 差评 (counted); an eval id stored twice (the second row a repeat)."""
    cases = coerce(
        pd.DataFrame(
            {"case_id": ["k1", "k2"], "unit_id": "qh-c1", "finished_at": pd.Timestamp("2023-04-03 09:00")}
        ),
        "cases",
    )
    evaluations = coerce(
        pd.DataFrame(
            {
                "eval_id": ["v1", "v2", "v3", "v4", "v4", "v5"],
                "case_id": ["k1", "k1", "k1", "k2", "k2", "k2"],
                "unit_id": "qh-c1",
                "channel": "hall_tablet",
                "satisfaction": [5, 1, 2, 1, 1, 5],
                "evaluated_at": pd.to_datetime(
                    [
                        "2023-04-03 10:00",
                        "2023-04-04 10:00",
                        "2023-04-05 10:00",
                        "2023-04-06 10:00",
                        "2023-04-06 10:00",
                        "2023-04-07 10:00",
                    ]
                ),
                "attempt": [1, 1, 2, 1, 1, 2],
            }
        ),
        "evaluations",
    )
    rect = coerce(pd.DataFrame({"eval_id": ["v3"], "verdict": ["valid"]}), "rectifications")
    write_tables({"cases": cases, "evaluations": evaluations, "rectifications": rect}, tmp_path, "2023Q2")
    return tmp_path


def test_the_linkage_rule_judges_the_ledgers_bad_reviews_on_dask(tmp_path, dask_client, qinghe):
    folder = _linked_bad_reviews(tmp_path)
    records, _ = ledger_records(folder, Q2, DASK)
    assert sorted(records["evaluations"]["eval_id"]) == ["v1", "v2", "v3", "v4", "v4", "v5"]
    ledger = build_ledger(qinghe, records, Q2, pd.Timestamp(AS_OF).date())
    assert ledger.rows["eval_id"].tolist() == ["v3", "v4"]  # v2 a later first attempt, v4's repeat
    expected = build_ledger(qinghe, load_window(folder, Q2), Q2, pd.Timestamp(AS_OF).date())
    pd.testing.assert_frame_equal(expected.rows, ledger.rows)


@pytest.mark.parametrize("split", [False, True], ids=["one-partition", "q1-and-q2"])
def test_rectification_cli_dask_equals_pandas_on_edge_cases(tmp_path, dask_client, qinghe, split):
    folder = _edge_folder(tmp_path, split)
    said, said_dask = engines_agree(
        "rectification", str(qinghe.path), folder, tmp_path, dask_client, "--as-of", AS_OF
    )
    assert said.replace("pandas", "dask") == said_dask
    ledger = pd.read_csv(tmp_path / "dask" / "rectification_ledger.csv", dtype=str)
    assert len(ledger) > 0


def test_rectification_cli_dask_equals_pandas_on_a_small_city(tmp_path, dask_client, small_zibo):
    said, said_dask = engines_agree(
        "rectification", "zibo", small_zibo, tmp_path, dask_client, "--as-of", AS_OF
    )
    assert said.replace("pandas", "dask") == said_dask and "差评" in said


def test_a_bad_rectification_row_is_named_alike_on_dask(tmp_path, dask_client, qinghe):
    folder = _linked_bad_reviews(tmp_path / "data")
    bad = coerce(pd.DataFrame({"eval_id": ["v3", "nope"], "verdict": ["valid", "valid"]}), "rectifications")
    write_tables({"rectifications": bad}, folder, "2023Q2")
    env = {"DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    said = {}
    for engine in ("pandas", "dask"):
        args = ["rectification", "--city", str(qinghe.path), "--period", "2023Q2", "--data", str(folder)]
        args += ["--out", str(tmp_path / engine), "--engine", engine]
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 2, result.output
        assert not (tmp_path / engine).exists()
        said[engine] = result.output
    assert said["pandas"] == said["dask"]
    assert "不存在" in said["dask"] and "2" in said["dask"]


# --- the run's stages ------------------------------------------------------------------------------


def _stages_agree(tmp_path, ref, folder, compare: bool) -> None:
    results = {}
    for name, engine in (("pandas", None), ("dask", DASK)):
        results[name] = compute(
            ref, Q2, folder, AS_OF, out_dir=tmp_path / name, compare=compare, engine=engine
        )
    compared = assert_same_outputs(tmp_path / "pandas", tmp_path / "dask")
    assert any(n.startswith("rectification/") for n in compared)
    assert any(n.startswith("anomalies/") for n in compared)
    assert any(n.startswith("quality/") for n in compared)
    pandas, dask = results["pandas"], results["dask"]
    assert pandas.problems == dask.problems
    assert pandas.tables.headline == dask.tables.headline
    assert pandas.coverage == dask.coverage
    pd.testing.assert_frame_equal(pandas.findings, dask.findings)
    pd.testing.assert_frame_equal(pandas.rectification.rows, dask.rectification.rows)


@pytest.mark.parametrize("split", [False, True], ids=["one-partition", "q1-and-q2"])
def test_stages_dask_equal_pandas_on_edge_cases(tmp_path, on_cluster, qinghe, split):
    _stages_agree(tmp_path, qinghe, _edge_folder(tmp_path / "data", split), compare=split)


def test_stages_dask_equal_pandas_on_a_small_city_with_comparisons(tmp_path, on_cluster, zibo, small_zibo):
    _stages_agree(tmp_path, zibo, small_zibo, compare=True)
    headline = pd.read_json(tmp_path / "dask" / "headline.json", typ="series")
    assert "环比" in headline["comparisons"]  # 2023Q1 is stored: the 环比 was computed, not skipped


# --- the documents, end to end (papermill, nbconvert, WeasyPrint; over 20 s: slow) -------------------


def _verb_agrees(tmp_path, client, verb: str, city: str, data, *extra: str) -> list[str]:
    """``haocha <verb>`` on pandas and on Dask (the test cluster); every output file the same."""
    from distributed import get_task_stream

    env = {"DASK_SCHEDULER_ADDRESS": client.scheduler.address}
    tasks = {}
    for engine in ("pandas", "dask"):
        args = [verb, "--city", city, "--period", "2023Q2", "--data", str(data)]
        args += ["--out", str(tmp_path / engine), *extra, "--engine", engine]
        with get_task_stream(client) as stream:
            result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        tasks[engine] = {str(task["key"]).split("-")[0].strip("('") for task in stream.data}
    # pandas used no cluster; on dask the tables, quality, anomalies and ledger tasks ran on it.
    assert not tasks["pandas"]
    assert {"_run_group", "anomaly_findings", "_near_rows"} <= tasks["dask"], tasks["dask"]
    return assert_same_outputs(tmp_path / "pandas", tmp_path / "dask")


DOCUMENTS = {"bulletin.html", "bulletin.pdf", "bulletin.docx", "bulletin.ipynb", "manifest.json"}


def test_bulletin_dask_equals_pandas_on_edge_cases(tmp_path, dask_client, qinghe):
    folder = _edge_folder(tmp_path / "data", split=True)
    compared = _verb_agrees(
        tmp_path, dask_client, "bulletin", str(qinghe.path), folder, "--extracted-on", AS_OF, "--compare"
    )
    assert DOCUMENTS <= set(compared)
    assert {"quality/quality_figures.json", "anomalies/anomalies.csv"} <= set(compared)
    stages = {}
    for engine in ("pandas", "dask"):
        manifest = json.loads((tmp_path / engine / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["engine"] == engine
        stages[engine] = {s["name"]: s["label"] for s in manifest["stages"]}
    assert "load" in stages["pandas"] and "engine" not in stages["pandas"]
    assert "load" not in stages["dask"] and stages["dask"]["engine"].startswith("Dask 集群计算")


@pytest.mark.slow
def test_bulletin_dask_equals_pandas_on_a_small_city(tmp_path, dask_client, small_zibo):
    compared = _verb_agrees(tmp_path, dask_client, "bulletin", "zibo", small_zibo, "--compare")
    assert DOCUMENTS <= set(compared)
    html = (tmp_path / "dask" / "bulletin.html").read_text(encoding="utf-8")
    assert "环比" in html  # the comparison period was counted on Dask too


@pytest.mark.slow
def test_run_with_unit_reports_dask_equals_pandas(tmp_path, dask_client, qinghe):
    folder = _edge_folder(tmp_path / "data", split=True)
    compared = _verb_agrees(tmp_path, dask_client, "run", str(qinghe.path), folder, "--extracted-on", AS_OF)
    assert DOCUMENTS <= set(compared)
    assert {"units/qh-d1.html", "units/qh-d1.pdf", "units/units.json"} <= set(compared)


@pytest.mark.slow
def test_unit_reports_dask_equal_pandas_on_a_small_city(tmp_path, dask_client, small_zibo):
    compared = _verb_agrees(
        tmp_path, dask_client, "unit-reports", "zibo", small_zibo, "--units", "zb-d01,zb-d02"
    )
    assert {"zb-d01.html", "zb-d01.pdf", "zb-d02.html", "units.json"} <= set(compared)


@pytest.mark.slow
def test_golden_quarter_bulletin_on_dask(tmp_path, dask_client, zibo):
    """879/879 cells: the annexes ``haocha bulletin --engine dask`` writes are the published ones."""
    from haocha_analysis.synth.generate import generate
    from tests.e2e.test_golden import ANNEXES, expected_annex

    data = tmp_path / "data"
    write_tables(generate(zibo, "2023Q2", scale=1.0, seed=0, scenario="default").tables, data, "2023Q2")
    args = ["bulletin", "--city", "zibo", "--period", "2023Q2", "--data", str(data)]
    args += ["--out", str(tmp_path / "out"), "--extracted-on", "2023-07-04", "--engine", "dask"]
    env = {"DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cells = 0
    for name in ANNEXES:
        expected = expected_annex(name)
        written = pd.read_csv(
            tmp_path / "out" / f"{name}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig"
        )
        pd.testing.assert_frame_equal(written, expected)
        cells += expected.size
    assert cells == 879


def test_rectification_dask_reads_an_fsspec_url(tmp_path, dask_client, small_zibo):
    """The ledger from a URL, its date the extraction date recorded at the URL (as for a folder)."""
    import fsspec

    folder = tmp_path / "data"
    shutil.copytree(small_zibo, folder)
    record_extraction(folder, "2023Q2", pd.Timestamp(AS_OF).date())
    memory = fsspec.filesystem("memory")
    for path in folder.rglob("*"):
        if path.is_file():
            memory.pipe(f"/zibo-ledger/{path.relative_to(folder).as_posix()}", path.read_bytes())
    env = {"DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    outputs = {}
    try:
        for name, data, engine in (
            ("pandas", str(folder), "pandas"),
            ("url", "memory://zibo-ledger", "dask"),
        ):
            args = ["rectification", "--city", "zibo", "--period", "2023Q2", "--data", data]
            args += ["--out", str(tmp_path / name), "--engine", engine]
            result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            outputs[name] = result.output
    finally:
        memory.rm("/zibo-ledger", recursive=True)
    assert_same_outputs(tmp_path / "pandas", tmp_path / "url")
    assert outputs["pandas"].replace(str(tmp_path / "pandas"), "") == outputs["url"].replace(
        str(tmp_path / "url"), ""
    )
    assert f"截至 {AS_OF}" in outputs["url"]  # the recorded extraction date, not today


def test_bulletin_on_dask_refuses_an_empty_period_and_writes_nothing(tmp_path, dask_client, small_zibo):
    env = {"DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    args = ["bulletin", "--city", "zibo", "--period", "2023Q3", "--data", str(small_zibo)]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out"), "--engine", "dask"], env=env)
    assert result.exit_code == 2, result.output
    assert "没有任何办件或评价记录" in result.output
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging left behind


@pytest.mark.slow
def test_run_dask_equals_pandas_on_a_small_city(tmp_path, dask_client, small_zibo):
    compared = _verb_agrees(tmp_path, dask_client, "run", "zibo", small_zibo, "--unit-level", "none")
    assert DOCUMENTS <= set(compared)


@pytest.mark.slow
def test_unit_reports_dask_equal_pandas_on_edge_cases(tmp_path, dask_client, qinghe):
    folder = _edge_folder(tmp_path / "data", split=True)
    compared = _verb_agrees(tmp_path, dask_client, "unit-reports", str(qinghe.path), folder)
    assert {"qh-d1.html", "qh-d1.pdf", "qh-d2.html", "units.json"} <= set(compared)


# --- records stored twice (consecutive quarters ingested from one export) ----------------------------


def _stored_twice(split, out):
    """The split edge cases with every Q1 record stored again, identical, after Q2's own records."""
    import pyarrow.parquet as pq

    frames = {}
    for table in ("cases", "evaluations"):
        q1, q2 = (pq.read_table(split / table / f"period={p}").to_pandas() for p in ("2023Q1", "2023Q2"))
        frames[table] = {"2023Q1": q1, "2023Q2": pd.concat([q2, q1], ignore_index=True)}
    rect = pq.read_table(split / "rectifications" / "period=2023Q2").to_pandas()
    for label in ("2023Q1", "2023Q2"):
        tables = {t: coerce(frames[t][label], t) for t in frames}
        write_tables(tables | {"rectifications": coerce(rect, "rectifications")}, out, label)
    return out


def test_records_stored_twice_are_read_once_by_every_reader(tmp_path, on_cluster, qinghe):
    """Whatever columns a reader loads and whichever engine reads, a record stored identically in two
    period partitions counts once: the figures are those of the data stored once."""
    from haocha_analysis.analysis.annexes import build_tables, load_period_data
    from haocha_analysis.analysis.rectification import load_ledger_data
    from haocha_analysis.quality.report import run_quality
    from haocha_analysis.quality.run import load_quality_data

    split = _edge_folder(tmp_path / "once", split=True)
    twice = _stored_twice(split, tmp_path / "twice")
    loaded = load_window(twice, Q2)
    assert loaded["evaluations"].attrs["stored_twice"] > 0 and loaded["cases"].attrs["stored_twice"] > 0
    assert len(loaded["evaluations"]) == len(load_window(split, Q2)["evaluations"])
    expected = compute(qinghe, Q2, split, AS_OF)
    for engine in (None, DASK):
        got = compute(qinghe, Q2, twice, AS_OF, engine=engine)
        assert got.tables.headline == expected.tables.headline, engine
        assert got.quality.figures == expected.quality.figures, engine
        pd.testing.assert_frame_equal(got.findings, expected.findings)
        pd.testing.assert_frame_equal(got.rectification.rows, expected.rectification.rows)
    # The verbs' own loads read some columns only (haocha quality, tables, rectification).
    for loader in (load_quality_data, load_period_data, load_ledger_data):
        for table, frame in loader(twice, Q2).items():
            once = loader(split, Q2)[table]
            assert len(frame) == len(once), (loader.__name__, table)
    figures = run_quality(qinghe, load_quality_data(twice, Q2), Q2).figures
    assert figures == {k: v for k, v in expected.quality.figures.items() if k != "data_coverage"}
    day = pd.Timestamp(AS_OF).date()
    assert build_tables(qinghe, load_period_data(twice, Q2), Q2, extracted_on=day).headline == (
        build_tables(qinghe, load_period_data(split, Q2), Q2, extracted_on=day).headline
    )


@pytest.mark.parametrize("partitions", [0, 3], ids=["locality", "shuffle-3"])
def test_stored_twice_counts_once_on_both_dask_paths(tmp_path, dask_client, qinghe, partitions):
    """The tables' and quality's counts of twice-stored data equal those of the data stored once."""
    from haocha_analysis.engine.api import quality_counts, tables_counts
    from haocha_analysis.quality.report import quality_report
    from haocha_analysis.quality.settings import QualitySettings
    from tests.engine.test_tables_engine import _assert_same_counts

    split = _edge_folder(tmp_path / "once", split=True)
    twice = _stored_twice(split, tmp_path / "twice")
    options = EngineOptions(engine="dask", partitions=partitions, group_rows=0 if partitions else None)
    _assert_same_counts(tables_counts(split, Q2), tables_counts(twice, Q2, options))
    settings = QualitySettings()
    expected, _ = quality_counts(split, Q2, qinghe, settings)
    actual, _ = quality_counts(twice, Q2, qinghe, settings, options)
    left, right = quality_report(qinghe, expected, Q2, settings), quality_report(qinghe, actual, Q2, settings)
    assert left.figures == right.figures
    assert left.figures["produced"]["total"] > 0
