"""docs/new-city.md followed to the letter: its files written, its commands run, a bulletin made."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from click.testing import CliRunner

from haocha_analysis.cli import cli
from haocha_analysis.core.config import PROJ_ROOT

DOC = PROJ_ROOT / "docs" / "new-city.md"
FILE_BLOCK = re.compile(r"```\w+ file=(?P<name>\S+)\n(?P<body>.*?)```", re.S)
COMMAND_BLOCK = re.compile(r"```bash\n(?P<body>.*?)```", re.S)


def test_the_new_city_guide_works(tmp_path, monkeypatch):
    text = DOC.read_text(encoding="utf-8")
    city = tmp_path / "示例市"
    city.mkdir()
    files = {m["name"]: m["body"] for m in FILE_BLOCK.finditer(text)}
    expected = {"units.csv", "city.yml", "settings.yml", "exports/cases.csv", "exports/evaluations.csv"}
    assert expected <= set(files)
    for name, body in files.items():
        target = (tmp_path if name.startswith("exports/") else city) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    commands = [shlex.split(m["body"].strip()) for m in COMMAND_BLOCK.finditer(text)]
    assert [c[:2] for c in commands] == [["haocha", "ingest"], ["haocha", "bulletin"]]
    monkeypatch.chdir(tmp_path)
    for command in commands:
        result = CliRunner().invoke(cli, command[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
    out = tmp_path / "reports" / "2023Q2"
    log = json.loads((tmp_path / "canonical" / "ingest_log.json").read_text(encoding="utf-8"))
    assert log["totals"]["evaluations"]["kept"] == 6 and log["totals"]["cases"]["kept"] == 6
    html = (out / "bulletin.html").read_text(encoding="utf-8")
    assert "示例市" in html and "示审批字〔2023〕1号" in html and "示例市行政审批服务局" in html
    # No catalogue and one business system: no awkward default sentences.
    assert "累计梳理事项（未提供事项目录）" not in html and "等一个业务系统" not in html
    assert "目前，政务服务平台已完成与“好差评”系统对接" in html
    assert "数据生产、提交、质检关联度入库率均达100%" in html
    assert "2023年7月11日" in html  # 2023-07-04 + 5 working days (issue_lag_working_days)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["file"].endswith("settings.yml")
    assert manifest["settings"]["quality"]["worst_units_top"] == 10
    assert not manifest["data_coverage"]["partial"]


@pytest.mark.parametrize("broken", ["quality:\n  worst_units_tpo: 3\n", "quality: [1, 2]\n", "- a\n"])
def test_a_mistyped_settings_file_names_the_fix(tmp_path, broken):
    from haocha_analysis.core.errors import HaochaInputError
    from haocha_analysis.core.settings import load_settings

    path = tmp_path / "settings.yml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(HaochaInputError) as err:
        from haocha_analysis.core.settings import apply
        from haocha_analysis.quality import QualitySettings

        apply(QualitySettings, load_settings(path)["quality"], file=path, section="quality")
    message = err.value.message()
    assert str(path) in message
    if "tpo" in broken:
        assert "worst_units_top" in message
