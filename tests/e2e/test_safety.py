"""Every verb that writes obeys the output rule; a killed bulletin run leaves nothing behind (issue 13).

The refusals happen before any work, so the data folder here is a stand-in: the verbs never read it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from haocha_analysis.cli import cli
from haocha_analysis.core import outputs
from haocha_analysis.core.config import PROJ_ROOT

QINGHE = PROJ_ROOT / "tests" / "data" / "reference" / "qinghe"
PROFILE = PROJ_ROOT / "data" / "profiles" / "canonical.yml"
VERBS = ("ingest", "synth", "quality", "tables", "anomalies", "bulletin", "run")


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    (folder / "cases" / "period=2023Q2").mkdir(parents=True)
    (folder / "cases" / "period=2023Q2" / "part-0.parquet").write_bytes(b"PAR1 stand-in")
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "cases.csv").write_text("case_id\n1\n", encoding="utf-8")  # for ingest
    return folder


def invoke(verb: str, out: Path, data: Path, tmp_path: Path) -> object:
    args = [verb, "--city", str(QINGHE), "--period", "2023Q2", "--out", str(out)]
    if verb == "ingest":
        args = ["ingest", "--profile", str(PROFILE), str(tmp_path / "exports" / "cases.csv"), *args[1:]]
    elif verb != "synth":
        args += ["--data", str(data)]
    return CliRunner().invoke(cli, args)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert "输入错误" in result.output and "修正方法" in result.output, result.output
    for word in words:
        assert word in result.output, result.output


@pytest.mark.parametrize("verb", VERBS)
def test_out_that_is_a_file(tmp_path, data_dir, verb):
    out = tmp_path / "report.pdf"
    out.write_bytes(b"%PDF mine")
    assert_refused(invoke(verb, out, data_dir, tmp_path), "文件", str(out))
    assert out.read_bytes() == b"%PDF mine"


@pytest.mark.parametrize("verb", VERBS)
def test_out_that_holds_someone_elses_files(tmp_path, data_dir, verb):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "薪资.xlsx").write_bytes(b"precious")
    before = snapshot(tmp_path)
    assert_refused(invoke(verb, out, data_dir, tmp_path), "不是 haocha 的", str(out))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("verb", ["quality", "tables", "anomalies", "bulletin", "run"])
@pytest.mark.parametrize("where", ["same", "inside", "holding"])
def test_out_and_data_overlap(tmp_path, data_dir, verb, where):
    out = {"same": data_dir, "inside": data_dir / "reports", "holding": tmp_path}[where]
    before = snapshot(tmp_path)
    assert_refused(invoke(verb, out, data_dir, tmp_path), "--data", "输出与输入必须分开")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="needs a place nobody may write")
@pytest.mark.parametrize("verb", VERBS)
def test_out_in_a_read_only_place(tmp_path, data_dir, verb):
    assert_refused(invoke(verb, Path("/proc/sys/haocha-out"), data_dir, tmp_path), "不可写")


def test_out_inside_the_city_reference_folder(tmp_path, data_dir):
    assert_refused(invoke("tables", QINGHE / "out", data_dir, tmp_path), "--city")
    assert not (QINGHE / "out").exists()


def test_run_does_not_ingest_into_a_foreign_data_folder(tmp_path):
    data, inbox = tmp_path / "mine", tmp_path / "inbox"
    data.mkdir()
    (data / "notes.txt").write_text("mine", encoding="utf-8")
    inbox.mkdir()
    (inbox / "cases.csv").write_text("case_id\n1\n", encoding="utf-8")
    args = ["run", "--city", str(QINGHE), "--period", "2023Q2", "--data", str(data)]
    args += ["--inbox", str(inbox), "--profile", str(PROFILE), "--out", str(tmp_path / "out")]
    assert_refused(CliRunner().invoke(cli, args), "--data", "不是 haocha 的规范表目录")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox", "mine"]
    assert [p.name for p in data.iterdir()] == ["notes.txt"]


# --- a killed run -----------------------------------------------------------------------------


def test_a_killed_bulletin_leaves_the_old_folder_and_its_staging_is_cleaned(tmp_path, qinghe):
    """Kill ``haocha bulletin`` while the notebook runs: old outputs intact, the next run cleans up."""
    from test_bulletin import qinghe_quarter

    from haocha_analysis.ingest.storage import write_tables

    data = tmp_path / "data"
    write_tables(qinghe_quarter(qinghe.units), data, "2023Q2")
    out = tmp_path / "reports" / "2023Q2"
    outputs.mark(out, "bulletin")
    (out / "bulletin.html").write_text("the previous bulletin", encoding="utf-8")
    args = ["bulletin", "--city", str(QINGHE), "--period", "2023Q2", "--data", str(data), "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from haocha_analysis.cli import main; main()", *args],
        cwd=PROJ_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        connection = None
        while connection is None and time.monotonic() < deadline and proc.poll() is None:
            found = list(out.parent.glob(".2023Q2.tmp-*/.kernel-*.json"))
            connection = found[0] if found else None
            time.sleep(0.05)
        assert connection is not None, "the kernel never started in the staging folder"
        json.loads(connection.read_text(encoding="utf-8"))  # a real connection file, beside the run
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    staging = connection.parent
    assert staging.exists()  # what the killed run left
    assert (out / "bulletin.html").read_text(encoding="utf-8") == "the previous bulletin"
    # the next run's start removes it (its owner is gone), the kernel's connection file with it
    removed = outputs.clean_stale(out)
    assert staging in removed and not staging.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["2023Q2", "logs"]  # logs: the cron log
