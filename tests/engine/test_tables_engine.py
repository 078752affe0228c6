"""Tables on Dask equal tables on pandas, cell for cell."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from haocha_analysis.analysis.annexes import build_tables, load_period_data, tables_from_counts, write_outputs
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.schemas import coerce
from haocha_analysis.engine import EngineOptions
from haocha_analysis.engine.api import tables_counts
from haocha_analysis.ingest.storage import write_tables
from tests.core.test_linkage import edge_cases

Q1, Q2 = parse_period("2023Q1"), parse_period("2023Q2")
EXTRACTED = date(2023, 7, 10)


def _dask(partitions: int = 4) -> EngineOptions:
    """The shuffle by case (the fallback for a city larger than a worker) into ``partitions``."""
    return EngineOptions(engine="dask", partitions=partitions, group_rows=0)


LOCAL = EngineOptions(engine="dask")  # locality first: the city's folder reduced by one task


def _assert_same_counts(left, right) -> None:
    pd.testing.assert_frame_equal(left.units, right.units)
    pd.testing.assert_series_equal(left.systems, right.systems)
    assert left.coverage == right.coverage


def _assert_same_outputs(tmp_path, ref, data_dir, period, engine_counts) -> None:
    """Every file the tables write, from pandas' build_tables and from the engine's counts."""
    expected = build_tables(ref, load_period_data(data_dir, period), period, extracted_on=EXTRACTED)
    actual = tables_from_counts(ref, engine_counts.units, engine_counts.systems, period, EXTRACTED)
    paths = {}
    for name, result in (("pandas", expected), ("dask", actual)):
        paths[name] = write_outputs(result, tmp_path / name)
    assert [p.name for p in paths["pandas"]] == [p.name for p in paths["dask"]]
    for left, right in zip(paths["pandas"], paths["dask"], strict=True):
        if left.suffix == ".csv":
            pd.testing.assert_frame_equal(
                pd.read_csv(left, dtype=str, keep_default_na=False),
                pd.read_csv(right, dtype=str, keep_default_na=False),
            )
        elif left.suffix == ".json":
            assert left.read_text(encoding="utf-8") == right.read_text(encoding="utf-8"), left.name
    assert expected.headline == actual.headline


def _edge_folder(tmp_path, split: bool):
    """The linkage edge cases written as canonical Parquet: one Q2 partition, or Q1 + Q2."""
    data = edge_cases()
    cases, evals = data["cases"], data["evaluations"]
    extra = coerce(
        pd.DataFrame(
            [
                # An eval_id reused for two different cases (c3 and c4): joins their groups.
                ("e12", "c3", "qh-d1-k1", "2023-05-06 10:00", 1),
                ("e12", "c4", "qh-c1", "2023-06-02 10:00", 1),
                ("e13", "c3", "qh-d1-k1", "2023-05-07 10:00", 1),
                # A bad review with no case id.
                ("e14", None, "qh-c1", "2023-05-08 10:00", 1),
            ],
            columns=["eval_id", "case_id", "unit_id", "evaluated_at", "attempt"],
        ).assign(channel="hall_tablet", satisfaction=[5, 4, 3, 1], active=[True, False, None, True]),
        "evaluations",
    )
    evals = pd.concat([evals, extra], ignore_index=True)
    rect = coerce(pd.DataFrame({"eval_id": ["e14"], "verdict": ["valid"]}), "rectifications")
    out = tmp_path / ("split" if split else "one")
    if split:
        early_case = cases["finished_at"] < pd.Timestamp("2023-04-01")
        early_eval = evals["evaluated_at"] < pd.Timestamp("2023-04-01")
        write_tables({"cases": cases[early_case], "evaluations": evals[early_eval]}, out, "2023Q1")
        write_tables(
            {"cases": cases[~early_case], "evaluations": evals[~early_eval], "rectifications": rect},
            out,
            "2023Q2",
        )
    else:
        write_tables({"cases": cases, "evaluations": evals, "rectifications": rect}, out, "2023Q2")
    return out


@pytest.mark.parametrize("split", [False, True], ids=["one-partition", "q1-and-q2"])
@pytest.mark.parametrize("partitions", [0, 1, 3, 8], ids=["locality", "1", "3", "8"])
def test_edge_cases_equal(tmp_path, dask_client, qinghe, split, partitions):
    folder = _edge_folder(tmp_path, split)
    expected = tables_counts(folder, Q2)
    actual = tables_counts(folder, Q2, _dask(partitions) if partitions else LOCAL)
    _assert_same_counts(expected, actual)
    assert int(expected.units["eval_first"].sum()) > 0
    _assert_same_outputs(tmp_path / "out", qinghe, folder, Q2, actual)


@pytest.mark.parametrize("shuffle", [False, True], ids=["locality", "shuffle"])
def test_small_city_equal(tmp_path, dask_client, zibo, small_zibo, shuffle):
    expected = tables_counts(small_zibo, Q2)
    actual = tables_counts(small_zibo, Q2, _dask(6) if shuffle else LOCAL)
    _assert_same_counts(expected, actual)
    assert int(actual.units["cases"].sum()) > 1000
    _assert_same_outputs(tmp_path, zibo, small_zibo, Q2, actual)
