"""Evaluator keys are told from raw numbers on load, on literal edge cases."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from haocha_analysis.ingest.privacy import not_a_key

# (value, is it flagged as not a key)
CASES = [
    ("0123456789abcdef", False),  # 16 hex characters: the shortest key
    ("f" * 64, False),  # the longest key
    ("0123456789abcde", True),  # 15: too short
    ("a" * 65, True),  # too long
    ("0123456789ABCDEF", True),  # uppercase is not what the hashing writes
    ("0123456789abcdeg", True),  # one letter past f
    ("370302199001011234", True),  # 18 digits: an identity number, though hex
    ("37030219900101123", False),  # 17 digits: hex, and no identity number
    ("3703021990010112345", False),  # 19 digits: hex, and no identity number
    ("37030219900101123X", True),  # an identity number with its check letter
    ("0123456789abcdef0a", False),  # 18 hex characters, not all digits: a key
    ("１２３４５６７８９０abcdef", True),  # full-width digits: not ASCII, not a key
    ("0123456789abcdef ", True),  # a trailing space
    ("", True),  # given but empty
    (None, False),  # not given: nothing to flag
]


@pytest.mark.parametrize("dtype", ["str", object])
def test_not_a_key_on_every_edge_case(dtype):
    values = pd.Series([v for v, _ in CASES], dtype=dtype)
    assert not_a_key(values).tolist() == [flag for _, flag in CASES]


def test_not_a_key_agrees_with_the_written_rule():
    # The rule as the docstring states it, by regular expressions, on the same values (a slice too).
    values = pd.Series([v for v, _ in CASES] * 3, dtype="str").iloc[5:]
    rule = [
        isinstance(v, str) and not (re.fullmatch(r"[0-9a-f]{16,64}", v) and not re.fullmatch(r"[0-9]{18}", v))
        for v in values
    ]
    assert not_a_key(values).tolist() == rule
    assert not_a_key(pd.Series([], dtype="str")).tolist() == []
    assert not_a_key(pd.Series([None, None], dtype="str")).tolist() == [False, False]


def test_not_a_key_over_chunks_and_scan_blocks(monkeypatch):
    # Two Arrow chunks (a concatenated column) and bytes scanned 7 at a time: a bad byte at a block's
    # edge still marks its own row, and only it.
    from haocha_analysis.ingest import privacy

    monkeypatch.setattr(privacy, "_SCAN_BYTES", 7)
    first = pd.Series([v for v, _ in CASES], dtype="str")
    second = pd.Series([v for v, _ in reversed(CASES)], dtype="str")
    both = pd.concat([first, second], ignore_index=True)
    expected = [flag for _, flag in CASES] + [flag for _, flag in reversed(CASES)]
    assert not_a_key(both).tolist() == expected
