"""``haocha anomalies`` on Dask (one task per city) finds what it finds on pandas, file for file."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from haocha_analysis.cli import cli
from tests.engine.test_quality_engine import engines_agree
from tests.engine.test_tables_engine import _edge_folder


def test_anomalies_dask_equals_pandas_on_a_small_city(tmp_path, dask_client, small_zibo):
    said, said_dask = engines_agree("anomalies", "zibo", small_zibo, tmp_path, dask_client)
    findings = pd.read_csv(tmp_path / "dask" / "anomalies.csv", dtype=str)
    assert len(findings) > 0  # findings were compared, not two empty lists
    # The summary line (findings, units, history periods) is the same, bar the time taken.
    assert said.split("用时")[0] == said_dask.split("用时")[0]


@pytest.mark.parametrize("split", [False, True], ids=["one-partition", "q1-and-q2"])
def test_anomalies_dask_equals_pandas_on_edge_cases(tmp_path, dask_client, qinghe, split):
    engines_agree("anomalies", str(qinghe.path), _edge_folder(tmp_path, split), tmp_path, dask_client)


def test_anomalies_dask_refuses_a_url_it_cannot_read_as_a_path(tmp_path):
    args = ["anomalies", "--city", "zibo", "--period", "2023Q2", "--data", "memory://x"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "x"), "--engine", "dask"])
    assert result.exit_code == 2, result.output
    assert "共享盘" in result.output
    assert not (tmp_path / "x").exists()
