"""The loading window: one record stored in two partitions is read once; real repeats stay."""

from __future__ import annotations

import pandas as pd

from haocha_analysis.core.periods import parse_period
from haocha_analysis.ingest.storage import load_window, write_tables


def evaluations(rows: list[tuple]) -> dict[str, pd.DataFrame]:
    """Evaluation tables of (eval_id, case_id, satisfaction, evaluated_at) rows."""
    frame = pd.DataFrame(rows, columns=["eval_id", "case_id", "satisfaction", "evaluated_at"])
    frame["unit_id"] = "U1"
    frame["channel"] = "pc"
    frame["attempt"] = 1
    frame["evaluated_at"] = pd.to_datetime(frame["evaluated_at"])
    cases = pd.DataFrame(
        {"case_id": ["C0"], "unit_id": ["U1"], "finished_at": pd.to_datetime(["2023-05-01"])}
    )
    return {"cases": cases.iloc[:0], "evaluations": frame}


def test_a_record_identical_in_two_partitions_is_read_once_and_counted(tmp_path):
    write_tables(
        evaluations([("E1", "C6", 5, "2023-07-02 09:00"), ("E3", "C8", 4, "2023-06-01 09:00")]),
        tmp_path,
        "2023Q2",
    )
    write_tables(
        evaluations(
            [
                ("E1", "C6", 5, "2023-07-02 09:00"),  # the same record, stored again: read once
                ("E3", "C8", 1, "2023-06-01 09:00"),  # same key, another grade: a real repeat, kept
                ("E4", "C9", 5, "2023-07-05 09:00"),
                ("E4", "C9", 5, "2023-07-05 09:00"),  # repeated inside one partition: kept for quality
            ]
        ),
        tmp_path,
        "2023Q3",
    )
    loaded = load_window(tmp_path, parse_period("2023Q3"))["evaluations"]
    assert list(loaded["eval_id"]) == ["E1", "E3", "E3", "E4", "E4"]
    assert list(loaded["satisfaction"]) == [5, 4, 1, 5, 5]
    assert loaded.attrs["stored_twice"] == 1
    assert loaded.attrs["repeated_keys"] == 2
