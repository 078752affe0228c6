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


def test_latest_means_the_last_quarter_the_data_hold_for_every_verb(tmp_path, qinghe):
    """Data ending in 2023Q2: `latest` is 2023Q2 for tables, quality, anomalies and rectification."""
    from haocha_analysis.core.periods import latest_complete_quarter
    from haocha_analysis.ingest.storage import resolve_period_in

    data = stored_2023q2(tmp_path, qinghe)
    assert resolve_period_in("latest", data).label == "2023Q2"
    assert resolve_period_in("latest", data, follow_data=False) == latest_complete_quarter()
    assert resolve_period_in("latest", None) == latest_complete_quarter()
    assert resolve_period_in("2023-05", data).label == "2023-05"
    for verb in ("tables", "quality", "anomalies", "rectification"):
        out = tmp_path / f"out-{verb}"
        args = [
            verb,
            "--city",
            str(qinghe.path),
            "--period",
            "latest",
            "--data",
            str(data),
            "--out",
            str(out),
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, (verb, result.output)
        assert "2023年第二季度" in result.output, (verb, result.output)
