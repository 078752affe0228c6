"""The Dask engine on the golden quarter (slow) and with a worker killed mid-run."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from haocha_analysis.analysis.annexes import tables_from_counts
from haocha_analysis.core.periods import parse_period
from haocha_analysis.engine import EngineOptions
from haocha_analysis.engine.api import session, tables_counts
from haocha_analysis.ingest.storage import write_tables
from haocha_analysis.synth.generate import generate
from tests.e2e.test_golden import ANNEXES, expected_annex

Q2 = parse_period("2023Q2")


@pytest.mark.slow
def test_golden_quarter_on_dask(tmp_path, dask_client, zibo):
    """879/879 cells: the published annexes from the Dask engine's counts."""
    write_tables(generate(zibo, "2023Q2", scale=1.0, seed=0, scenario="default").tables, tmp_path, "2023Q2")
    counts = tables_counts(tmp_path, Q2, EngineOptions(engine="dask", partitions=8))
    built = tables_from_counts(zibo, counts.units, counts.systems, Q2, date(2023, 7, 4))
    cells = 0
    for name in ANNEXES:
        expected = expected_annex(name)
        got = built.annexes[name].astype(str).reset_index(drop=True).fillna("")
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
        cells += expected.size
    assert cells == 879
    assert built.headline["total_evaluations"] == 1428423


@pytest.mark.parametrize(
    ("task", "group_rows"), [("_run_group", 10**9), ("_tables_partition", 0)], ids=["locality", "shuffle"]
)
def test_a_worker_killed_mid_run_does_not_change_the_result(tmp_path, small_zibo, task, group_rows):
    distributed = pytest.importorskip("distributed")
    data = small_zibo
    expected = tables_counts(data, Q2)

    class DieOnce(distributed.WorkerPlugin):
        """The first worker to start a partition's reduction dies (the marker file: only once).

        Defined here so that it is pickled by value to the worker processes.
        """

        def __init__(self, marker: str, task: str) -> None:
            self.marker = marker
            self.task = task

        def transition(self, key, start, finish, **kwargs) -> None:
            name = key[0] if isinstance(key, tuple) else key
            if finish == "executing" and self.task in str(name):
                try:
                    fd = os.open(self.marker, os.O_CREAT | os.O_EXCL)
                except FileExistsError:
                    return
                os.close(fd)
                os._exit(1)

    marker = Path(tmp_path / "died")
    options = EngineOptions(engine="dask", workers=2, memory_limit="1GB", partitions=4, group_rows=group_rows)
    with session(options):
        client = distributed.get_client()
        client.register_plugin(DieOnce(str(marker), task), name="die-once")
        actual = tables_counts(data, Q2, options)
    assert marker.exists(), "no worker died: the test proved nothing"
    pd.testing.assert_frame_equal(expected.units, actual.units)
    pd.testing.assert_series_equal(expected.systems, actual.systems)
