"""``haocha quality`` on Dask writes what it writes on pandas, file for file."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from haocha_analysis.cli import cli
from haocha_analysis.core.periods import parse_period
from haocha_analysis.engine import EngineOptions
from haocha_analysis.engine.api import quality_counts
from haocha_analysis.quality.report import quality_report, run_quality
from haocha_analysis.quality.run import load_quality_data
from haocha_analysis.quality.settings import QualitySettings
from tests.engine.test_cli_engine import _same_files
from tests.engine.test_tables_engine import _edge_folder

Q2 = parse_period("2023Q2")


def _run(verb: str, city: str, data: str, out, *extra: str, env=None) -> str:
    args = [verb, "--city", city, "--period", "2023Q2", "--data", data, "--out", str(out), *extra]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def same_every_file(left, right) -> None:
    """CSV, JSON and XLSX cell for cell (``_same_files``), every other file byte for byte; folders too."""
    assert sorted(p.name for p in left.iterdir()) == sorted(p.name for p in right.iterdir()), left
    if any(p.suffix == ".csv" for p in left.iterdir()):
        _same_files(left, right)
    for path in left.iterdir():
        if path.is_dir():
            same_every_file(path, right / path.name)
        elif path.suffix not in (".csv", ".json", ".xlsx"):
            assert path.read_bytes() == (right / path.name).read_bytes(), path.name


def engines_agree(verb: str, city: str, data, tmp_path, client, *extra: str) -> tuple[str, str]:
    """Run ``haocha <verb>`` on pandas and on Dask (``client``'s cluster); every file equal.

    Returns:
        What each engine's run printed (pandas, dask); the outputs are in ``tmp_path/pandas|dask``.
    """
    env = {"DASK_SCHEDULER_ADDRESS": client.scheduler.address}
    said = _run(verb, city, str(data), tmp_path / "pandas", *extra)
    said_dask = _run(verb, city, str(data), tmp_path / "dask", *extra, "--engine", "dask", env=env)
    same_every_file(tmp_path / "pandas", tmp_path / "dask")
    return said, said_dask


@pytest.mark.parametrize("split", [False, True], ids=["one-partition", "q1-and-q2"])
def test_quality_cli_dask_equals_pandas_on_edge_cases(tmp_path, dask_client, qinghe, split):
    engines_agree("quality", str(qinghe.path), _edge_folder(tmp_path, split), tmp_path, dask_client)
    issues = pd.read_csv(tmp_path / "dask" / "quality_issues.csv", dtype=str)
    assert len(issues) > 0  # the edge cases have listed problems: the issues list was compared


def test_quality_cli_dask_equals_pandas_on_a_small_city(tmp_path, dask_client, small_zibo):
    engines_agree("quality", "zibo", small_zibo, tmp_path, dask_client)


@pytest.mark.parametrize("partitions", [1, 3, 8])
def test_quality_on_the_shuffle_fallback_equals_pandas(tmp_path, dask_client, qinghe, partitions):
    """A city larger than a worker (group_rows=0): records shuffled by case, counts summed."""
    folder = _edge_folder(tmp_path, split=True)
    settings = QualitySettings(max_issue_rows=3)  # the cap applies across partitions
    expected = run_quality(qinghe, load_quality_data(folder, Q2), Q2, settings)
    options = EngineOptions(engine="dask", partitions=partitions, group_rows=0)
    counts, cov = quality_counts(folder, Q2, qinghe, settings, options)
    actual = quality_report(qinghe, counts, Q2, settings)
    assert actual.figures == expected.figures
    assert expected.tables.keys() == actual.tables.keys()
    for name, table in expected.tables.items():
        pd.testing.assert_frame_equal(table, actual.tables[name], check_dtype=False, obj=name)
    for name, series in expected.series.items():
        pd.testing.assert_frame_equal(series, actual.series[name], check_dtype=False, obj=name)
    assert len(actual.tables["issues"]) == 3
    assert not cov.empty
