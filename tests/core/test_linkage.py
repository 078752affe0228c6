"""The one linkage rule on a fixture holding every edge case; the three centres agree on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from haocha_analysis.analysis.anomalies import prepare
from haocha_analysis.analysis.anomalies.detectors import duplicate_evaluations
from haocha_analysis.analysis.metrics import unit_counts
from haocha_analysis.core import linkage
from haocha_analysis.core.arrays import ARROW_WHITESPACE, blank_strings, may_need_trim
from haocha_analysis.core.linkage import _codes, distinct_ids, forget, link, link_some
from haocha_analysis.core.periods import parse_period
from haocha_analysis.core.schemas import coerce
from haocha_analysis.quality.checks import check_cases, check_evaluations

Q2 = parse_period("2023Q2")
A, B, C = "qh-d1-k1", "qh-d1-k2", "qh-c1"


def edge_cases() -> dict[str, pd.DataFrame]:
    cases = coerce(
        pd.DataFrame(
            [
                ("c_prev", A, "2023-03-30 10:00"),  # previous period: links, not counted
                ("c1", A, "2023-04-10 10:00"),
                ("c1", B, "2023-04-11 10:00"),  # repeated case_id: the first row is the case
                ("c2", B, "2023-05-01 10:00"),
                ("c3", A, "2023-05-05 10:00"),  # never evaluated
                ("c4", C, "2023-06-01 10:00"),
            ],
            columns=["case_id", "unit_id", "finished_at"],
        ),
        "cases",
    )
    evals = coerce(
        pd.DataFrame(
            [
                # (eval_id, case_id, unit_id, evaluated_at, attempt)
                ("e0", "c_prev", A, "2023-03-31 09:00", 1),  # first of c_prev, made in Q1
                ("e1", "c_prev", A, "2023-04-02 09:00", 1),  # later attempt 1 across the boundary: dup
                ("e2", "c1", B, "2023-04-10 11:00", 1),  # unit conflict: the case's unit A wins
                ("e3", " c1 ", A, "2023-04-12 11:00", 1),  # padded id is the same case: duplicate
                ("e4", "c1", A, "2023-04-13 11:00", 2),  # follow-up
                ("e2", "c1", A, "2023-04-14 11:00", 1),  # repeated eval_id: a repeated row
                ("e5", "c2", B, "2023-04-30 09:59", 1),  # before its case finished: still linked, first
                ("e6", "c2", B, "2023-04-30 09:59", 1),  # same time: the smaller eval_id (e5) wins
                ("e7", "gone", C, "2023-05-02 10:00", 1),  # orphan: unlinked first
                ("e8", "gone", C, "2023-05-03 10:00", 1),  # same orphan case id: duplicate
                ("e9", None, C, "2023-05-04 10:00", 1),  # no case id: unlinked first
                ("e10", "  ", C, "2023-05-04 11:00", 1),  # blank case id: unlinked first
                ("e11", "c4", C, "2023-07-01 10:00", 1),  # made after the period: not counted in P
            ],
            columns=["eval_id", "case_id", "unit_id", "evaluated_at", "attempt"],
        ).assign(channel="pc", satisfaction=5, active=True),
        "evaluations",
    )
    return {"cases": cases, "evaluations": evals}


def test_the_rule_on_every_edge_case():
    data = edge_cases()
    links = link(data["cases"], data["evaluations"])
    ids = data["evaluations"]["eval_id"].tolist()

    def flagged(mask):
        return [i for i, m in zip(ids, mask, strict=True) if m]

    assert links.repeated_case.tolist() == [False, False, True, False, False, False]
    assert flagged(links.repeated_eval) == ["e2"]  # the second e2 row
    assert flagged(links.linked) == ["e0", "e1", "e2", "e3", "e4", "e2", "e5", "e6", "e11"]
    assert links.case_pos[2] == 1  # c1's first row
    assert flagged(links.first) == ["e0", "e2", "e5", "e7", "e11"]
    assert flagged(links.duplicate_attempt) == ["e1", "e3", "e6", "e8"]
    assert flagged(links.unlinked_first) == ["e7", "e9", "e10"]


def test_linking_some_rows_gives_what_the_full_linkage_gives():
    data = edge_cases()
    # e7 first names the orphan case, then c1 (earlier than c1's first evaluation): a repeated row,
    # so never c1's first evaluation — linking c1's rows alone would make it so
    extra = data["evaluations"].iloc[[8]].assign(case_id="c1", evaluated_at=pd.Timestamp("2023-04-01 08:00"))
    evaluations = pd.concat([data["evaluations"], extra], ignore_index=True)
    full = link(data["cases"], evaluations)
    every = np.arange(len(evaluations))
    for rows in [every, *([i] for i in every), [2, 5, 13]]:
        rows = np.asarray(rows)
        for cached in (True, False):  # the run's linkage read, or the rows' own records linked
            if not cached:
                forget()
            case_pos, duplicate = link_some(data["cases"], evaluations, rows)
            assert case_pos.tolist() == full.case_pos[rows].tolist(), (rows, cached)
            assert duplicate.tolist() == full.duplicate[rows].tolist(), (rows, cached)
            link(data["cases"], evaluations)
    assert not full.duplicate[2] and full.duplicate[13]  # e2 stays c1's first; the late e7 row repeats


def _flags(links) -> dict[str, list]:
    return {name: np.asarray(value).tolist() for name, value in vars(links).items()}


def _in_chunks(frame: pd.DataFrame, size: int) -> pd.DataFrame:
    """The frame with its string columns held in Arrow chunks of ``size`` rows (as a load leaves them)."""
    out = frame.copy()
    for col in frame.columns:
        if frame[col].dtype == "str":
            values = pa.array(frame[col], type=pa.large_string(), from_pandas=True)
            chunks = [values.slice(i, size) for i in range(0, len(values), size)] or [values]
            out[col] = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array(chunks)), index=frame.index)
    return out


def test_ids_in_many_chunks_link_as_in_one():
    data = edge_cases()
    forget()
    whole = _flags(link(data["cases"], data["evaluations"]))
    for size in (1, 2, 3):
        cases, evals = _in_chunks(data["cases"], size), _in_chunks(data["evaluations"], size)
        assert cases["case_id"].array._pa_array.num_chunks > 1
        forget()
        assert _flags(link(cases, evals)) == whole
        forget()
        ids = _in_chunks(pd.DataFrame({"id": pd.Series([*SHORT_IDS, None], dtype="str")}), size)["id"]
        found = _codes(ids, pd.Series(["12", "y", None], dtype="str"))
        assert _by_first_appearance(found) == [[*SHORT_CODES, -1], [1, 5, -1]]
    forget()


def test_the_ids_are_hashed_once_and_a_changed_frame_is_linked_anew():
    data = edge_cases()
    cases, evals = data["cases"], data["evaluations"]
    forget()
    links = link(cases, evals)
    # A copy or a column selection holds the same Arrow buffers: the same linkage, not recomputed.
    assert link(cases.copy(), evals[["eval_id", "case_id", "evaluated_at", "attempt"]].copy()) is links
    with pytest.raises(ValueError):
        links.first[0] = not links.first[0]  # shared by every caller: read-only
    expected = _flags(links)
    # Any input the rule reads changed: linked anew (a later time, another attempt, other ids).
    later = evals.assign(
        evaluated_at=evals["evaluated_at"].where(evals["eval_id"] != "e5", pd.Timestamp("2023-05-09"))
    )
    assert _flags(link(cases, later))["first"] != expected["first"]
    follow_up = evals.assign(attempt=evals["attempt"].where(evals["eval_id"] != "e0", 2))
    assert _flags(link(cases, follow_up))["first"] != expected["first"]
    renamed = cases.assign(case_id=cases["case_id"].replace({"c2": "c9"}))
    assert _flags(link(renamed, evals))["case_pos"] != expected["case_pos"]
    # Columns held as Python objects are linked correctly, without the cache.
    as_objects = link(cases.astype({"case_id": object}), evals.astype({"eval_id": object, "case_id": object}))
    assert _flags(as_objects) == expected
    assert _flags(link(cases, evals)) == expected


def _by_first_appearance(columns: list[np.ndarray]) -> list[list[int]]:
    """The same codes renumbered 0, 1, … in order of first appearance (-1 kept): the partition they make."""
    joined = np.concatenate(columns)
    number: dict[int, int] = {}
    renumbered = [-1 if c < 0 else number.setdefault(int(c), len(number)) for c in joined]
    out, at = [], 0
    for column in columns:
        out.append(renumbered[at : at + len(column)])
        at += len(column)
    return out


def test_codes_unified_per_column_equal_exactly_for_equal_trimmed_ids():
    first = pd.Series(["b", " a", None, "b", ""], dtype="str")
    second = pd.Series(["c", "a", "b", "  ", "c"], dtype="str")
    expected = [[0, 1, -1, 0, -1], [2, 1, 0, -1, 2]]
    forget()
    assert _by_first_appearance(_codes(first, second)) == expected  # both columns encoded together
    assert distinct_ids(first) == (3, 2)  # 3 non-blank ids, 2 distinct (trimmed, as the rule does)
    assert _by_first_appearance(_codes(first, second)) == expected  # the first column's ids reused


# Ids of mixed lengths (one byte to past a hashed word), Chinese, a prefix of another, one too long
# to hash (Arrow encodes that column): every equal pair and only those share a code.
SHORT_IDS = ["1", "12", "1", "办件-001", "办件-001 ", "a" * 17, "a" * 16, "a" * 17]
SHORT_CODES = [0, 1, 0, 2, 2, 3, 4, 3]


@pytest.mark.parametrize(
    ("ids", "codes", "y_code"),
    [
        ([*SHORT_IDS, "x" * 300, "x" * 300, None], [*SHORT_CODES, 5, 5, -1], 6),
        ([*SHORT_IDS, None], [*SHORT_CODES, -1], 5),
    ],
)
def test_codes_are_exact_for_ids_of_any_length_and_script(ids, codes, y_code):
    forget()
    found = _codes(pd.Series(ids, dtype="str"), pd.Series(["12", "y", None], dtype="str"))
    assert _by_first_appearance(found) == [codes, [1, y_code, -1]]


def test_a_hash_collision_is_caught_and_the_ids_encoded_exactly(monkeypatch):
    # Every id hashed to the same number: the string comparison finds the groups wrong and the column
    # is encoded by Arrow instead, with the same result.
    monkeypatch.setattr(linkage, "_hash64", lambda keys: np.zeros(len(keys), dtype=np.uint64))
    forget()
    first = pd.Series(["b", " a", None, "b", ""], dtype="str")
    second = pd.Series(["c", "a", "b", "  ", "c"], dtype="str")
    assert _by_first_appearance(_codes(first, second)) == [[0, 1, -1, 0, -1], [2, 1, 0, -1, 2]]
    assert distinct_ids(second) == (4, 3)
    data = edge_cases()
    collided = _flags(link(data["cases"], data["evaluations"]))
    monkeypatch.undo()
    forget()
    hashed = _flags(link(data["cases"], data["evaluations"]))
    for flags in (collided, hashed):
        flags["case_code"] = _by_first_appearance([np.asarray(flags["case_code"])])  # numbering is free
    assert collided == hashed
    forget()


def test_a_hash_shared_by_an_id_and_a_different_case_id_is_caught(monkeypatch):
    # Hashes by length: the case ids' hashes are distinct, "xx" has the hash of case id "bb". The
    # byte comparison of the looked-up ids finds it, and both columns are encoded together, exactly.
    monkeypatch.setattr(
        linkage, "_hash64", lambda keys: np.array([len(k or "") for k in keys.to_pylist()], dtype=np.uint64)
    )
    forget()
    cases = pd.Series(["a", "bb", "ccc", "bb"], dtype="str")
    evaluations = pd.Series(["bb", "xx", "ccc", None, "xx", "dddd"], dtype="str")
    assert _by_first_appearance(_codes(cases, evaluations)) == [[0, 1, 2, 1], [1, 3, 2, -1, 3, 4]]
    forget()


# Every ASCII character, each of Arrow's whitespace characters, and characters sharing a first byte
# with them (U+00A1, U+2010, U+3001) or none (办, é), at either end of an id: the ids needing no trim
# are kept as they are, the others trimmed, and both agree with Arrow's trim of every id.
EDGE_CHARACTERS = [
    *(chr(c) for c in range(1, 128)),
    *(chr(c) for c in ARROW_WHITESPACE),
    *("办", "é", "\u00a1", "\u2010", "\u3001"),
]


@pytest.mark.parametrize("side", ["start", "end"])
def test_trimming_skipped_only_when_no_id_has_whitespace_at_an_end(side):
    for char in EDGE_CHARACTERS:
        ids = [char + "id" if side == "start" else "id" + char, "plain", "", None]
        found = linkage._keys(pd.Series(ids, dtype="str")).to_pylist()
        trimmed = pc.utf8_trim_whitespace(pa.array(ids, type=pa.large_string())).to_pylist()
        assert found == [t or None for t in trimmed], repr(char)
    clean = linkage._keys(pd.Series(["a1", "b2"], dtype="str"))
    assert not may_need_trim(clean) and not linkage._has_empty(clean)


def test_the_whitespace_the_byte_tests_assume_is_arrows():
    code_points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    spaces = pc.utf8_is_space(pa.array([chr(c) for c in code_points])).to_numpy(zero_copy_only=False)
    assert tuple(np.asarray(code_points)[spaces].tolist()) == ARROW_WHITESPACE


def test_blank_strings_agree_with_arrow_on_every_edge_character():
    values = [None, "", "x", "办件"]
    for char in EDGE_CHARACTERS:
        values += [char, char * 3, char + "x", "x" + char, " " + char]
    text = pa.array(values, type=pa.large_string())
    expected = pc.or_(pc.equal(pc.utf8_length(text), 0), pc.utf8_is_space(text)).fill_null(True)
    assert blank_strings(text).tolist() == expected.to_pylist()
    chunked = pa.chunked_array([text.slice(0, 7), text.slice(7)])  # chunks, one of them sliced
    assert blank_strings(chunked).tolist() == expected.to_pylist()


def _per_unit(values: pd.Series) -> dict[str, int]:
    counts = values.astype("str").value_counts()
    return {k: int(v) for k, v in counts.items() if v}


def test_the_three_centres_report_the_same_counts():
    data = edge_cases()
    cases, evals = data["cases"], data["evaluations"]

    # Evaluation tables (metrics).
    counts = unit_counts(cases, evals, None, Q2).set_index("unit_id")
    metric_first = {u: int(v) for u, v in counts["eval_first"].items() if v}
    metric_dups = {u: int(v) for u, v in counts["eval_duplicates"].items() if v}
    metric_cases = {u: int(v) for u, v in counts["cases"].items() if v}

    # Quality: record-level checks of the period.
    from haocha_analysis.core.reference import load_city
    from tests.conftest import TEST_DATA

    ref = load_city(TEST_DATA / "reference" / "qinghe")
    eval_records = check_evaluations(evals, cases, Q2)
    case_records = check_cases(cases, Q2, ref)
    attempt_one = evals.loc[eval_records.index, "attempt"].to_numpy() == 1
    quality_first = _per_unit(eval_records.loc[attempt_one & ~eval_records["fail_duplicate"], "unit_id"])
    quality_dups = _per_unit(eval_records.loc[eval_records["fail_duplicate"], "unit_id"])
    quality_cases = _per_unit(case_records.loc[~case_records["fail_duplicate"], "unit_id"])

    # Anomalies: the shared per-unit statistics and the duplicate detector's records.
    ctx = prepare(ref, {"cases": cases.copy(), "evaluations": evals.copy()}, Q2)
    anomaly_first = {u: int(v) for u, v in ctx.stats["n_first"].items() if v}
    anomaly_dups = _per_unit(duplicate_evaluations(ctx)["unit_id"])
    anomaly_cases = {u: int(v) for u, v in ctx.stats["n_cases"].items() if v}

    assert metric_first == quality_first == anomaly_first == {A: 1, B: 1, C: 3}
    assert metric_dups == quality_dups == anomaly_dups == {A: 3, B: 1, C: 1}
    assert metric_cases == quality_cases == anomaly_cases == {A: 2, B: 1, C: 1}
    assert np.array_equal(
        eval_records["linked"].to_numpy(), link(cases, evals).linked[eval_records.index.to_numpy()]
    )
