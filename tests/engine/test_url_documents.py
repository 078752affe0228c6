"""``haocha bulletin``, ``run`` and ``unit-reports`` with ``--engine dask --data <URL>``.

The same records read from a folder (pandas) and from an fsspec URL (``memory://`` or ``file://``,
read by the 2-worker LocalCluster) give the same documents, file for file
(``tests/engine/same_outputs.py``); the manifest records the URL's files with their size and the
filesystem's stamp; ``--period latest`` and the extraction date follow the data at the URL. A URL on
the pandas engine, and ``haocha run --inbox`` into a URL, are exit 2 with nothing written.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from haocha_analysis.cli import cli
from haocha_analysis.core.config import local_path
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.outputs import check_out
from haocha_analysis.core.periods import parse_period
from haocha_analysis.ingest.storage import (
    available_periods,
    extraction_date,
    record_extraction,
    resolve_period_in,
)
from haocha_analysis.pipeline.stages import has_period
from tests.engine.same_outputs import assert_same_outputs
from tests.engine.test_tables_engine import _edge_folder

fsspec = pytest.importorskip("fsspec")

Q2 = parse_period("2023Q2")
EXTRACTED = date(2023, 7, 6)


@pytest.fixture
def edge_data(tmp_path):
    """The linkage edge cases in Q1 and Q2 partitions, with Q2's extraction date recorded."""
    folder = _edge_folder(tmp_path / "data", split=True)
    record_extraction(folder, "2023Q2", EXTRACTED)
    return folder


@pytest.fixture
def in_memory(edge_data):
    """The same folder copied file for file to ``memory://<name>`` (removed afterwards)."""
    memory = fsspec.filesystem("memory")
    name = f"haocha-url-{edge_data.parent.parent.name}"
    for path in edge_data.rglob("*"):
        if path.is_file():
            memory.pipe(f"/{name}/{path.relative_to(edge_data).as_posix()}", path.read_bytes())
    yield f"memory://{name}"
    memory.rm(f"/{name}", recursive=True)


def _invoke(args: list[str], client=None) -> object:
    env = {"DASK_SCHEDULER_ADDRESS": client.scheduler.address} if client is not None else {}
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def _url_agrees(tmp_path, client, verb: str, city: str, folder: Path, url: str, *extra: str) -> list[str]:
    """``haocha <verb>`` from the folder (pandas) and from the URL (dask): every output file the same."""
    for name, data, engine in (("folder", folder, "pandas"), ("url", url, "dask")):
        args = [verb, "--city", city, "--data", str(data), "--out", str(tmp_path / name), *extra]
        result = _invoke([*args, "--engine", engine], client)
        assert result.exit_code == 0, result.output
        assert str(Path(url)) not in result.output  # never the mangled form (memory:/x, file:/x)
    return assert_same_outputs(tmp_path / "folder", tmp_path / "url", same_data=False)


def _assert_manifest_records_the_url(tmp_path, folder: Path, url: str, stamp: str) -> None:
    """The URL as given; each data file by its URL with its size and stamp, no hash; the rest hashed."""
    local = json.loads((tmp_path / "folder" / "manifest.json").read_text(encoding="utf-8"))
    remote = json.loads((tmp_path / "url" / "manifest.json").read_text(encoding="utf-8"))
    assert remote["data_dir"] == remote["parameters"]["data_dir"] == url
    data_files = {k: v for k, v in remote["inputs"].items() if k.startswith(url + "/")}
    expected = sorted(f"{url}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*.parquet"))
    assert sorted(data_files) == expected
    for key, record in data_files.items():
        path = folder / key.removeprefix(url + "/")
        assert record["size"] == path.stat().st_size
        assert set(record) == {"size", stamp} and record[stamp]
    others = {k: v for k, v in remote["inputs"].items() if k not in data_files}
    assert others == {k: v for k, v in local["inputs"].items() if not k.endswith(".parquet")}
    assert others  # the reference files, template and notebook, hashed as for a folder


def _log_lines(tmp_path) -> str:
    return (tmp_path / "url" / "run.log").read_text(encoding="utf-8")


# --- the verbs, end to end --------------------------------------------------------------------------


def test_bulletin_from_a_memory_url_equals_the_folder(tmp_path, dask_client, qinghe, edge_data, in_memory):
    compared = _url_agrees(
        tmp_path, dask_client, "bulletin", str(qinghe.path), edge_data, in_memory, "--period", "2023Q2"
    )
    assert {"bulletin.html", "bulletin.pdf", "bulletin.docx", "manifest.json"} <= set(compared)
    _assert_manifest_records_the_url(tmp_path, edge_data, in_memory, "created")
    manifest = json.loads((tmp_path / "url" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["engine"] == "dask"
    assert manifest["parameters"]["extracted_on"] == EXTRACTED.isoformat()  # extractions.json at the URL
    assert f"规范表：{in_memory}" in _log_lines(tmp_path)
    assert str(Path(in_memory)) not in _log_lines(tmp_path)


@pytest.mark.slow
def test_run_latest_from_a_memory_url_equals_the_folder(tmp_path, dask_client, qinghe, edge_data, in_memory):
    compared = _url_agrees(
        tmp_path, dask_client, "run", str(qinghe.path), edge_data, in_memory, "--period", "latest"
    )
    assert {"bulletin.html", "units/qh-d1.html", "units/units.json"} <= set(compared)
    manifest = json.loads((tmp_path / "url" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["period"] == "2023Q2"  # the last quarter at the URL, not the calendar's
    assert manifest["ingest"] == "已有规范表，无需导入"


def test_unit_reports_from_a_file_url_equal_the_folder(tmp_path, dask_client, qinghe, edge_data):
    url = f"file://{edge_data}"
    compared = _url_agrees(
        tmp_path, dask_client, "unit-reports", str(qinghe.path), edge_data, url, "--period", "latest"
    )
    assert {"qh-d1.html", "qh-d1.pdf", "qh-d2.html", "units.json"} <= set(compared)


# --- refusals: exit 2, nothing written --------------------------------------------------------------


@pytest.mark.parametrize("verb", ["bulletin", "run", "unit-reports"])
def test_a_url_on_the_pandas_engine_is_exit_2(tmp_path, verb, qinghe, in_memory):
    args = [verb, "--city", str(qinghe.path), "--period", "2023Q2", "--data", in_memory]
    result = _invoke([*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "pandas 引擎只读取本地目录" in result.output and "--engine dask" in result.output
    assert in_memory in result.output
    assert not (tmp_path / "out").exists()


def test_run_inbox_into_a_url_is_exit_2(tmp_path, qinghe, in_memory):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "export.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    args = ["run", "--city", str(qinghe.path), "--period", "2023Q3", "--data", in_memory]
    args += [
        "--inbox",
        str(inbox),
        "--profile",
        "gbt39046",
        "--out",
        str(tmp_path / "out"),
        "--engine",
        "dask",
    ]
    result = _invoke(args)
    assert result.exit_code == 2, result.output
    assert "不能把 --inbox" in result.output and "haocha ingest" in result.output
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert fsspec.filesystem("memory").ls(in_memory.removeprefix("memory://"), detail=False)  # untouched
    assert not fsspec.filesystem("memory").exists(
        f"{in_memory.removeprefix('memory://')}/cases/period=2023Q3"
    )


def test_a_url_that_does_not_exist_is_exit_2(tmp_path, qinghe):
    args = ["bulletin", "--city", str(qinghe.path), "--period", "2023Q2", "--data", "memory://haocha-nowhere"]
    result = _invoke([*args, "--out", str(tmp_path / "out"), "--engine", "dask"])
    assert result.exit_code == 2, result.output
    assert "规范表地址不存在" in result.output and "memory://haocha-nowhere" in result.output
    assert not (tmp_path / "out").exists()


def test_out_inside_a_file_url_is_refused(tmp_path, qinghe, edge_data):
    args = ["bulletin", "--city", str(qinghe.path), "--period", "2023Q2", "--data", f"file://{edge_data}"]
    result = _invoke([*args, "--out", str(edge_data / "reports"), "--engine", "dask"])
    assert result.exit_code == 2, result.output
    assert "--data" in result.output
    assert not (edge_data / "reports").exists()


# --- the pieces ---------------------------------------------------------------------------------------


def test_a_remote_url_is_never_inside_a_local_out_but_a_file_url_is_a_folder(tmp_path):
    assert local_path("s3://bucket/zibo") is None
    assert local_path("memory://zibo") is None
    assert local_path(f"file://{tmp_path}") == tmp_path
    assert local_path(tmp_path) == tmp_path
    out = tmp_path / "out"
    assert check_out(out, "bulletin", {"--data": "s3://bucket/zibo"}) == out.resolve()
    with pytest.raises(HaochaInputError, match="--data"):
        check_out(out, "bulletin", {"--data": f"file://{out.parent}"})


def test_periods_latest_and_extraction_date_are_read_at_the_url(in_memory):
    assert available_periods(in_memory) == ["2023Q1", "2023Q2"]
    assert resolve_period_in("latest", in_memory) == Q2
    assert resolve_period_in("latest", in_memory, follow_data=False) != Q2  # the calendar's
    assert extraction_date(in_memory, Q2) == EXTRACTED
    assert extraction_date(in_memory, parse_period("2023Q1")) is None
    assert has_period(in_memory, Q2)
    assert not has_period(in_memory, parse_period("2023Q3"))


def test_a_url_without_partitions_or_extractions_gives_none_and_the_calendar():
    memory = fsspec.filesystem("memory")
    memory.mkdir("/haocha-empty")
    try:
        assert available_periods("memory://haocha-empty") == []
        assert extraction_date("memory://haocha-empty", Q2) is None
        assert resolve_period_in("latest", "memory://haocha-empty") != Q2
        assert not has_period("memory://haocha-empty", Q2)
    finally:
        memory.rm("/haocha-empty", recursive=True)


def test_the_pipeline_refuses_a_url_on_pandas_when_called_from_python(tmp_path, qinghe, in_memory):
    from haocha_analysis.pipeline import units
    from haocha_analysis.pipeline.run import build_bulletin

    for call in (
        lambda: build_bulletin(str(qinghe.path), "2023Q2", in_memory, tmp_path / "out"),
        lambda: units.cli_entry(str(qinghe.path), "2023Q2", in_memory, tmp_path / "out", "district", None),
    ):
        with pytest.raises(HaochaInputError, match="pandas 引擎只读取本地目录"):
            call()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", ["bulletin", "run", "unit-reports"])
def test_a_url_of_an_unknown_scheme_is_exit_2_naming_the_driver(tmp_path, qinghe, verb):
    args = [verb, "--city", str(qinghe.path), "--period", "latest", "--data", "nosuchfs://bucket/zibo"]
    result = _invoke([*args, "--out", str(tmp_path / "out"), "--engine", "dask"])
    assert result.exit_code == 2, result.output
    assert "无法读取地址" in result.output and "nosuchfs://bucket/zibo" in result.output
    assert "pip install s3fs" in result.output
    assert not (tmp_path / "out").exists()
