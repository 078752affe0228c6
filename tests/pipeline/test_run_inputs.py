"""The bulletin's own inputs are never inside the folder it replaces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from haocha_analysis.cli import cli
from haocha_analysis.core.outputs import MARKER
from haocha_analysis.ingest.build import ingest_files


def one_evaluation(path: Path, unit: str, evaluated_at: str) -> Path:
    """An export of one evaluation, not linked to a case."""
    path.write_text(
        f"评价编号,办件编号,受理部门,评价渠道,满意度,评价时间\n{path.stem},,{unit},PC端,满意,{evaluated_at}\n",
        encoding="utf-8",
    )
    return path


def stored_2023q2(tmp_path: Path, qinghe) -> Path:
    """A data folder holding one 2023Q2 evaluation (profile ``tmp_path/p.yml``)."""
    profile = tmp_path / "p.yml"
    profile.write_text("name: p\n", encoding="utf-8")
    evals = one_evaluation(tmp_path / "E1.csv", "东湖区人社局", "2023-04-10 09:00:00")
    ingest_files(profile, [evals], qinghe, "2023Q2", tmp_path / "data")
    return tmp_path / "data"


@pytest.mark.xfail(
    strict=True,
    reason="pipeline/run.py preflight (helper perf) does not count --settings among the run's inputs: "
    "`haocha bulletin --settings OUT/settings.yml --out OUT` on a previous bulletin folder replaces OUT "
    "and deletes the settings file it was given, exit 0",
)
def test_a_settings_file_inside_out_is_refused(tmp_path, qinghe):
    data = stored_2023q2(tmp_path, qinghe)
    out = tmp_path / "out"  # a previous bulletin output, holding the settings file the user edits
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"kind": "bulletin", "written_by": "haocha"}), encoding="utf-8")
    settings = out / "settings.yml"
    settings.write_text("quality:\n  worst_units_top: 5\n", encoding="utf-8")
    # 2022Q1 holds no record: a run that got past the output check stops there, quickly, with exit 2.
    args = ["bulletin", "--city", str(qinghe.path), "--period", "2022Q1", "--data", str(data)]
    result = CliRunner().invoke(cli, [*args, "--settings", str(settings), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "--settings" in result.output
    assert settings.exists()


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="pipeline/run.py (helper perf): with --data, `latest` follows the data (stages.latest_with_data), "
    "so the documented cron job `haocha run --period latest --data D --inbox I` republishes the last "
    "quarter already in D, exit 0, and never ingests the new quarter's exports waiting in the inbox; "
    "docs/bulletin.md says latest is counted from the day of the run",
)
def test_latest_with_an_inbox_is_the_last_complete_quarter_not_the_last_one_stored(tmp_path, qinghe):
    from haocha_analysis.core.periods import latest_complete_quarter

    data = stored_2023q2(tmp_path, qinghe)
    # The new quarter's export waits in the inbox; its unit is unknown, so ingesting it is exit 2 at once.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    day = latest_complete_quarter().start.isoformat()
    one_evaluation(inbox / "new.csv", "无此单位", f"{day} 09:00:00")
    args = ["run", "--city", str(qinghe.path), "--period", "latest", "--data", str(data)]
    args += ["--inbox", str(inbox), "--profile", str(tmp_path / "p.yml"), "--unit-level", "none"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "new.csv" in result.output and "无此单位" not in result.output  # never a value
