"""The bulletin's own inputs are never inside the folder it replaces."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from haocha_analysis.cli import cli
from haocha_analysis.core.outputs import MARKER
from haocha_analysis.ingest.build import ingest_files


@pytest.mark.xfail(
    strict=True,
    reason="pipeline/run.py preflight (helper perf) does not count --settings among the run's inputs: "
    "`haocha bulletin --settings OUT/settings.yml --out OUT` on a previous bulletin folder replaces OUT "
    "and deletes the settings file it was given, exit 0",
)
def test_a_settings_file_inside_out_is_refused(tmp_path, qinghe):
    evals = tmp_path / "evals.csv"
    evals.write_text(
        "评价编号,办件编号,受理部门,评价渠道,满意度,评价时间\n"
        "E1,,东湖区人社局,PC端,满意,2023-04-10 09:00:00\n",
        encoding="utf-8",
    )
    profile = tmp_path / "p.yml"
    profile.write_text("name: p\n", encoding="utf-8")
    data = tmp_path / "data"
    ingest_files(profile, [evals], qinghe, "2023Q2", data)
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
