"""The output rule (a run owns only the folder it creates), crash-safe swaps and stale staging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haocha_analysis.core import outputs
from haocha_analysis.core.config import PROJ_ROOT, REPORTS_DIR
from haocha_analysis.core.errors import HaochaInputError

# --- the rule ---------------------------------------------------------------------------------


def refused(out, kind="tables", inputs=None, **kw) -> str:
    with pytest.raises(HaochaInputError) as err:
        outputs.check_out(out, kind, inputs, **kw)
    message = err.value.message()
    assert str(out) in message and "修正方法" in message, message
    return message


def test_absent_and_empty_folders_are_accepted(tmp_path):
    assert outputs.check_out(tmp_path / "new" / "deeper", "tables") == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    assert outputs.check_out(tmp_path / "empty", "bulletin") == tmp_path / "empty"
    assert not (tmp_path / "new").exists()  # checking writes nothing


def test_a_previous_output_of_the_same_kind_is_accepted(tmp_path):
    for kind in outputs.KINDS:
        folder = tmp_path / kind
        outputs.mark(folder, kind)
        (folder / "something.csv").write_text("x", encoding="utf-8")
        assert outputs.check_out(folder, kind) == folder
    # the bulletin folder holds the annexes: tables may write there, and a bulletin may replace tables
    assert outputs.check_out(tmp_path / "bulletin", "tables")
    assert outputs.check_out(tmp_path / "tables", "bulletin")


@pytest.mark.parametrize(
    ("kind", "files"),
    [
        ("bulletin", {"manifest.json": '{"run_id": "r1", "period": "2023Q2"}'}),
        ("tables", {"headline.json": "{}"}),
        ("quality", {"quality_figures.json": "{}"}),
        ("anomalies", {"anomalies.csv": "x"}),
        ("data", {"ingest_log.json": "{}"}),
        ("data", {"cases/period=2023Q2/part-0.parquet": "x"}),
    ],
)
def test_outputs_written_before_markers_are_recognised(tmp_path, kind, files):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert outputs.kind_of(tmp_path) == kind
    assert outputs.check_out(tmp_path, kind) == tmp_path


def test_a_foreign_folder_is_refused_and_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    (tmp_path / "manifest.json").write_text('{"name": "a web app"}', encoding="utf-8")  # not a run's
    for kind in ("bulletin", "tables", "quality", "anomalies", "data"):
        assert "不是 haocha 的" in refused(tmp_path, kind)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "notes.txt"]


def test_hidden_user_files_make_a_folder_foreign(tmp_path):
    (tmp_path / ".git").mkdir()
    assert "不是 haocha 的" in refused(tmp_path, "data")


def test_another_kind_of_output_is_refused(tmp_path):
    outputs.mark(tmp_path, "anomalies")
    (tmp_path / "anomalies.csv").write_text("x", encoding="utf-8")
    assert "异常清单输出" in refused(tmp_path, "quality")
    assert "异常清单输出" in refused(tmp_path, "bulletin")


def test_a_file_is_refused(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("x", encoding="utf-8")
    assert "文件" in refused(target, "bulletin")
    assert "是文件" in refused(target / "sub", "tables")
    assert target.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize("where", ["same", "inside", "holding"])
def test_out_and_data_are_kept_apart(tmp_path, where):
    data = tmp_path / "data"
    (data / "cases" / "period=2023Q2").mkdir(parents=True)
    out = {"same": data, "inside": data / "reports", "holding": tmp_path}[where]
    message = refused(out, "bulletin", {"--data": data})
    assert "--data" in message and "输出与输入必须分开" in message


def test_inputs_of_every_option_are_protected(tmp_path):
    city = tmp_path / "city"
    city.mkdir()
    template = tmp_path / "t" / "bulletin.yml"
    template.parent.mkdir()
    template.write_text("x", encoding="utf-8")
    assert "--city" in refused(city, "tables", {"--city": city})
    assert "--narrative" in refused(template.parent, "tables", {"--narrative": template})
    assert outputs.check_out(
        tmp_path / "out", "tables", {"--city": city, "--narrative": template, "--data": None}
    )


def test_project_root_working_directory_and_reports_root_are_refused(tmp_path, monkeypatch):
    assert "项目根目录" in refused(PROJ_ROOT, "bulletin")
    assert "项目根目录" in refused(PROJ_ROOT.parent, "tables")
    assert "报告根目录" in refused(REPORTS_DIR, "tables")
    monkeypatch.chdir(tmp_path)
    assert "当前工作目录" in refused(Path("."), "bulletin")


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="needs a place nobody may write")
def test_a_read_only_place_is_refused():
    message = refused(Path("/proc/sys/haocha-out"), "quality")
    assert "不可写" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        assert "不可写" in refused(locked / "out", "tables")
    finally:
        locked.chmod(0o755)


def test_claim_creates_marks_and_undoes_on_failure(tmp_path):
    target = tmp_path / "a" / "b"
    with outputs.claim(target, "anomalies") as out:
        assert out == target and outputs.kind_of(out) == "anomalies"
    with pytest.raises(HaochaInputError), outputs.claim(tmp_path / "x" / "y", "tables"):
        raise HaochaInputError("bad data")
    assert not (tmp_path / "x").exists()  # the folders the failed run created are gone
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError), outputs.claim(empty, "tables"):
        raise RuntimeError("boom")
    assert list(empty.iterdir()) == []


# --- stale staging ----------------------------------------------------------------------------


def dead_owner() -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return {"pid": int(proc.stdout), "started": time.time() - 5, "host": os.uname().nodename}


def test_clean_stale_removes_what_killed_runs_left(tmp_path):
    target = tmp_path / "2023Q2"
    outputs.mark(target, "bulletin")
    killed = outputs.make_staging(tmp_path / ".2023Q2.tmp-r1")
    (killed / "_results.pkl").write_bytes(b"records")
    (killed / outputs.OWNER).write_text(json.dumps(dead_owner()), encoding="utf-8")
    running = outputs.make_staging(tmp_path / ".2023Q2.tmp-r2")  # this process: alive
    failed = tmp_path / ".2023Q2.failed-r0"
    failed.mkdir()
    old_tmp = tmp_path / ".2023Q2.ingest-abcd1234"
    old_tmp.mkdir()
    os.utime(old_tmp, (1, 1))
    fresh_tmp = tmp_path / ".2023Q2.ingest-efgh5678"
    fresh_tmp.mkdir()
    inner = target / ".annex1_districts-k2j4h5g6.csv"
    inner.write_text("half", encoding="utf-8")
    os.utime(inner, (1, 1))
    (target / ".git").mkdir()  # a user's own hidden folder is never touched
    os.utime(target / ".git", (1, 1))
    other = tmp_path / ".2023Q3.tmp-r9"  # another period's staging: not this output's
    other.mkdir()
    removed = outputs.clean_stale(target)
    assert sorted(p.name for p in removed) == sorted([killed.name, failed.name, old_tmp.name, inner.name])
    assert running.exists() and fresh_tmp.exists() and other.exists() and (target / ".git").exists()


# --- crash-safe swaps -------------------------------------------------------------------------

CRASH = """
import os, sys
from pathlib import Path
mode, folder, step = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
from haocha_analysis.core import outputs
outputs._crash_point = lambda s: os._exit(77) if s == step else None
if mode == "publish":
    from haocha_analysis.pipeline import run as pipeline
    pipeline._publish(folder / ".2023Q2.tmp-r2", folder / "2023Q2")
else:
    from haocha_analysis.ingest import storage
    moves = [(folder / "staged" / t, folder / "data" / t / "period=2023Q2") for t in ("cases", "evaluations")]
    storage.swap_in(moves + [(folder / "staged" / "log.json", folder / "data" / "log.json")])
"""


def tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def crash_at(mode: str, folder: Path, step: str) -> int:
    return subprocess.run(
        [sys.executable, "-c", CRASH, mode, str(folder), step], cwd=PROJ_ROOT, capture_output=True
    ).returncode


PUBLISH_STEPS = ["journal", "aside-0", "in-0", "done", "cleanup"]


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_publish_killed_at_each_step_leaves_old_or_new_complete(tmp_path, step):
    target, staging = tmp_path / "2023Q2", tmp_path / ".2023Q2.tmp-r2"
    old = {"bulletin.html": "old", "quality/quality.xlsx": "old q"}
    new = {"bulletin.html": "new", "quality/quality.xlsx": "new q", "manifest.json": "{}"}
    for folder, files in ((target, old), (staging, new)):
        outputs.mark(folder, "bulletin")
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
    assert crash_at("publish", tmp_path, step) == 77
    # the next run recovers before it looks at the folder
    outputs.check_out(target, "bulletin")
    assert tree(target) in (old, new)
    if step in ("journal", "aside-0", "in-0"):
        assert tree(target) == old  # the run did not finish: its outputs are not published
    assert not list(tmp_path.glob(".haocha-swap-*")) and not list(tmp_path.glob(".2023Q2.old-*"))


SET_STEPS = ["journal", "aside-0", "in-0", "aside-1", "in-1", "aside-2", "in-2", "done", "cleanup"]


@pytest.mark.parametrize("step", SET_STEPS)
def test_a_period_set_killed_at_each_step_is_all_old_or_all_new(tmp_path, step):
    data, staged = tmp_path / "data", tmp_path / "staged"
    old, new = {}, {}
    for table in ("cases", "evaluations"):
        old[f"{table}/period=2023Q2/part-0.parquet"] = f"old {table}"
        new[f"{table}/period=2023Q2/part-0.parquet"] = f"new {table}"
        (data / table / "period=2023Q2").mkdir(parents=True)
        (data / table / "period=2023Q2" / "part-0.parquet").write_text(f"old {table}", encoding="utf-8")
        (staged / table).mkdir(parents=True)
        (staged / table / "part-0.parquet").write_text(f"new {table}", encoding="utf-8")
    (data / "log.json").write_text("old log", encoding="utf-8")
    (staged / "log.json").write_text("new log", encoding="utf-8")
    old["log.json"], new["log.json"] = "old log", "new log"
    (data / "cases" / "period=2023Q1").mkdir()  # another period: never touched
    (data / "cases" / "period=2023Q1" / "part-0.parquet").write_text("q1", encoding="utf-8")
    assert crash_at("set", tmp_path, step) == 77
    assert outputs.recover(data)  # the journal is found and resolved
    after = tree(data)
    assert after.pop("cases/period=2023Q1/part-0.parquet") == "q1"
    assert after in (old, new)
    assert after == (new if step in ("done", "cleanup") else old)
    assert not [p for p in data.rglob(".*")]


def test_a_live_swap_is_not_recovered(tmp_path):
    journal = tmp_path / f"{outputs.JOURNAL_PREFIX}x.json"
    me = {"pid": os.getpid(), "started": outputs._process_start(os.getpid()), "host": os.uname().nodename}
    journal.write_text(json.dumps({"owner": me, "state": "moving", "moves": []}), encoding="utf-8")
    assert outputs.recover(tmp_path) == [] and journal.exists()
    journal.write_text(json.dumps({"owner": dead_owner(), "state": "moving", "moves": []}), encoding="utf-8")
    assert outputs.recover(tmp_path) == [journal] and not journal.exists()


def test_staging_of_another_host_is_kept_until_it_is_older_than_a_run(tmp_path):
    target = tmp_path / "2023Q2"
    outputs.mark(target, "bulletin")
    elsewhere = {"pid": os.getpid(), "started": 0, "host": "another-host"}
    young, old = tmp_path / ".2023Q2.tmp-a", tmp_path / ".2023Q2.tmp-b"
    for folder in (young, old):
        folder.mkdir()
        (folder / outputs.OWNER).write_text(json.dumps(elsewhere), encoding="utf-8")
    os.utime(old, (1, 1))
    assert outputs.clean_stale(target) == [old] and young.exists()
