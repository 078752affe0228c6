"""``haocha anomalies`` on Dask (one task per city) finds what it finds on pandas, file for file."""

from __future__ import annotations

import fsspec
import pandas as pd
import pytest

from tests.engine.test_quality_engine import _run, engines_agree, same_every_file
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


def test_anomalies_dask_reads_an_fsspec_url(tmp_path, dask_client, small_zibo):
    memory = fsspec.filesystem("memory")
    for path in small_zibo.rglob("*.parquet"):
        memory.pipe(f"/zibo-anomalies/{path.relative_to(small_zibo).as_posix()}", path.read_bytes())
    env = {"DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    try:
        said = _run("anomalies", "zibo", str(small_zibo), tmp_path / "pandas")
        said_url = _run(
            "anomalies", "zibo", "memory://zibo-anomalies", tmp_path / "dask", "--engine", "dask", env=env
        )
    finally:
        memory.rm("/zibo-anomalies", recursive=True)
    same_every_file(tmp_path / "pandas", tmp_path / "dask")
    assert len(pd.read_csv(tmp_path / "dask" / "anomalies.csv", dtype=str)) > 0
    # The same history (2023Q1 copied with the window) and the same findings were reported.
    assert said.split("用时")[0] == said_url.split("用时")[0]
