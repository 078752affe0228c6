"""Coverage: an empty period is refused, a partial one is said, a whole one is silent."""

from __future__ import annotations

import pandas as pd
import pytest

from haocha_analysis.core.coverage import coverage, require_records
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period

Q2 = parse_period("2023Q2")


def _data(case_days, eval_days=()):
    return {
        "cases": pd.DataFrame({"finished_at": pd.to_datetime(list(case_days))}),
        "evaluations": pd.DataFrame({"evaluated_at": pd.to_datetime(list(eval_days))}),
    }


def test_empty_period_is_refused_and_names_what_the_data_hold():
    cov = coverage(_data(["2023-03-31 10:00"], ["2023-07-01 09:00"]), Q2)  # around the period only
    assert cov.empty and not cov.partial
    with pytest.raises(HaochaInputError, match="没有任何办件或评价记录") as err:
        require_records(cov, "data/x", ["2023Q1", "2023Q3"])
    assert "2023年第一季度、2023年第三季度" in err.value.message()


def test_whole_period_tolerates_quiet_first_and_last_working_days():
    # 2023-04-03 is the first working day after the weekend; 2023-06-26 leaves four (27-30 June).
    cov = coverage(_data(["2023-04-04 10:00", "2023-06-26 10:00"]), Q2)
    assert cov.missing_before == 1 and cov.missing_after == 4
    assert not cov.partial and cov.sentence() == ""


def test_data_ending_in_june_is_partial_and_said():
    cov = coverage(_data(["2023-04-03 10:00"], ["2023-06-12 18:00"]), Q2)
    # 13 .. 30 June: 13 working days (端午 22-23 June off, Sunday 25 June a 调休 working day).
    assert cov.partial and cov.missing_after == 13 and cov.missing_before == 0
    assert cov.sentence() == (
        "需要说明的是，本期数据仅覆盖2023年4月3日至2023年6月12日，统计期内此后13个工作日无数据，"
        "以上数字仅反映已覆盖时段。"
    )
    assert cov.as_dict()["last_record"] == "2023-06-12"
