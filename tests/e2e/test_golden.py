"""Golden test: the synthetic 2023 Q2 quarter at scale 1 reproduces the published annexes cell for cell.

The reference CSVs in tests/golden/zibo-2023Q2/ are the bulletin's 附件1–5 as published (one blank cell,
附件2 市金融监督管理局 差评数, is "/" in our output). The tables come from the library's own table code
(``tables.build_tables``), the code that runs on real data.
"""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

from haocha_analysis.analysis import annexes as tables
from haocha_analysis.core.periods import parse_period
from haocha_analysis.synth import generate as synth
from tests.conftest import GOLDEN_DIR

GOLDEN = GOLDEN_DIR / "zibo-2023Q2"
ANNEXES = [
    "annex1_districts",
    "annex2_city_departments",
    "annex3_district_departments",
    "annex4_towns_villages",
    "annex5_public_services",
]

pytestmark = pytest.mark.slow


def expected_annex(name: str) -> pd.DataFrame:
    frame = pd.read_csv(GOLDEN / f"{name}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if name == "annex2_city_departments":
        # The reference leaves 市金融监督管理局's 差评数 blank where "/" is meant (no cases).
        blank = (frame["部门"] == "市金融监督管理局") & (frame["差评数"] == "")
        assert blank.sum() == 1
        frame.loc[blank, "差评数"] = "/"
    return frame


@pytest.fixture(scope="module")
def golden_run(zibo):
    result = synth.generate(zibo, "2023Q2", scale=1.0, seed=0, scenario="default")
    built = tables.build_tables(zibo, result.tables, parse_period("2023Q2"), extracted_on=date(2023, 7, 4))
    return result, built


@pytest.mark.parametrize("name", ANNEXES)
def test_annex_equals_reference(golden_run, name):
    _, built = golden_run
    expected = expected_annex(name)
    got = built.annexes[name].astype(str).reset_index(drop=True)
    got = got.fillna("")
    assert list(got.columns) == list(expected.columns)
    cells = expected.size
    equal = int((got.to_numpy() == expected.to_numpy()).sum()) if got.shape == expected.shape else 0
    print(f"{name}: {equal}/{cells} cells equal")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_headline_figures(golden_run):
    result, built = golden_run
    headline = built.headline
    reference = json.loads((GOLDEN / "headline.json").read_text(encoding="utf-8"))
    assert headline["total_evaluations"] == 1428423
    assert headline["district_cases"] == 947735
    assert headline["city_department_cases"] == 480688
    assert headline["evaluation_rate"] == "100%"
    assert headline["valid_bad_reviews"] == 0
    for key in ("total_evaluations", "district_cases", "city_department_cases", "evaluation_rate",
                "valid_bad_reviews", "matters_catalogued"):  # fmt: skip
        assert headline[key] == reference[key], key
    assert sorted(headline["business_systems_connected"]) == sorted(reference["business_systems_connected"])
    # The default scenario's anomalies are there, and left every cell unchanged.
    kinds = {a["kind"] for a in result.truth["anomalies"] if a["source"] == "injected"}
    assert {
        "backfill",
        "late_aggregation",
        "duplicates",
        "staff_reentry",
        "eval_before_case",
        "zero_data",
    } <= kinds


def test_cells_compared_summary(golden_run):
    """Count every compared cell (printed with -s; the closing note quotes it)."""
    _, built = golden_run
    compared = equal = 0
    for name in ANNEXES:
        expected = expected_annex(name)
        got = built.annexes[name].astype(str).fillna("").reset_index(drop=True)
        compared += expected.size
        if got.shape == expected.shape:
            equal += int((got.to_numpy() == expected.to_numpy()).sum())
    print(f"golden: {equal}/{compared} cells equal")
    assert equal == compared
