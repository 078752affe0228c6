import re
import subprocess
import sys
import tomllib
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from haocha_analysis.core.config import PROJ_ROOT
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import latest_complete_quarter, parse_period
from haocha_analysis.core.reference import load_city
from haocha_analysis.core.schemas import coerce, empty, validate
from haocha_analysis.ingest.storage import load_tables, write_tables


def _requirement_map(reqs):
    out = {}
    for r in reqs:
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", r.strip())
        out[m[1].lower()] = m[2].replace(" ", "")
    return out


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirement_map(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((PROJ_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = _requirement_map([p for p in pip if not p.startswith("-e")])
    assert have == wanted


@pytest.mark.parametrize(
    "text,start,end,kind",
    [
        ("2023Q2", date(2023, 4, 1), date(2023, 6, 30), "quarter"),
        ("2023q4", date(2023, 10, 1), date(2023, 12, 31), "quarter"),
        ("2023-04", date(2023, 4, 1), date(2023, 4, 30), "month"),
        ("2024-02", date(2024, 2, 1), date(2024, 2, 29), "month"),
        ("2023H1", date(2023, 1, 1), date(2023, 6, 30), "half"),
        ("2023H2", date(2023, 7, 1), date(2023, 12, 31), "half"),
        ("2023", date(2023, 1, 1), date(2023, 12, 31), "year"),
        ("2023-04-01..2023-05-15", date(2023, 4, 1), date(2023, 5, 15), "range"),
    ],
)
def test_periods_parse(text, start, end, kind):
    p = parse_period(text)
    assert (p.start, p.end, p.kind) == (start, end, kind)


@pytest.mark.parametrize("bad", ["2023Q5", "2023-13", "23Q1", "2023-05-15..2023-04-01", "", "latest"])
def test_bad_periods_are_clear_errors(bad):
    with pytest.raises(HaochaInputError, match="统计期"):
        parse_period(bad)


def test_period_shifts_and_labels():
    q2 = parse_period("2023Q2")
    assert q2.shifted("previous").label == "2023Q1"
    assert q2.shifted("year").label == "2022Q2"
    assert parse_period("2023Q1").shifted("previous").label == "2022Q4"
    assert q2.title_cn() == "2023年第二季度"
    assert q2.range_cn() == "2023年4月1日至6月30日"
    assert [p.label for p in parse_period("2023H1").quarters()] == ["2023Q1", "2023Q2"]
    window = q2.with_previous()
    assert (window.start, window.end) == (date(2023, 1, 1), date(2023, 6, 30))
    ts = pd.Series(
        pd.to_datetime(
            ["2023-03-31 23:59:59", "2023-04-01 00:00:00", "2023-06-30 23:59:59", "2023-07-01 00:00:00", None]
        )
    )
    assert q2.contains(ts).tolist() == [False, True, True, False, False]


def test_latest_complete_quarter():
    assert latest_complete_quarter(date(2026, 11, 27)).label == "2026Q3"
    assert latest_complete_quarter(date(2026, 1, 5)).label == "2025Q4"


def test_zibo_reference_matches_the_bulletin(zibo):
    golden = Path(__file__).parents[1] / "golden" / "zibo-2023Q2"
    a1 = pd.read_csv(golden / "annex1_districts.csv", dtype=str)
    a2 = pd.read_csv(golden / "annex2_city_departments.csv", dtype=str)
    a3 = pd.read_csv(golden / "annex3_district_departments.csv", dtype=str)
    assert zibo.districts == a1["区县"].tolist()
    assert zibo.level("city_dept")["unit_name"].tolist() == a2["部门"].tolist()
    assert zibo.categories == a3["部门"].dropna().tolist()[:-1] or zibo.categories == a3["部门"].tolist()[:30]
    assert len(zibo.categories) == 30


def test_second_city_loads(qinghe):
    assert qinghe.districts == ["东湖区", "西山县"]
    assert qinghe.city_name == "青禾市"


def test_unknown_city_is_a_clear_error():
    with pytest.raises(HaochaInputError, match="找不到城市"):
        load_city("atlantis")


def test_storage_roundtrip_partitioned_and_csv(tmp_path):
    cases = coerce(
        pd.DataFrame(
            {
                "case_id": ["a", "b"],
                "unit_id": ["u1", "u2"],
                "finished_at": ["2023-04-01 10:00:00", "2023-05-02 11:00:00"],
            }
        ),
        "cases",
    )
    evals = empty("evaluations")
    write_tables({"cases": cases, "evaluations": evals}, tmp_path / "p", "2023Q2")
    write_tables({"cases": cases, "evaluations": evals}, tmp_path / "c", "2023Q2", csv=True)
    for sub in ("p", "c"):
        got = load_tables(
            tmp_path / sub, parse_period("2023Q2"), tables=("cases", "evaluations", "rectifications")
        )
        pd.testing.assert_frame_equal(got["cases"], cases)
        assert len(got["rectifications"]) == 0
    assert load_tables(tmp_path / "p", parse_period("2023Q3"), tables=("cases",))["cases"].empty
    validate(cases, "cases")


def test_extraction_dates_are_recorded_per_period(tmp_path):
    from haocha_analysis.ingest.storage import extraction_date, record_extraction

    assert extraction_date(tmp_path, parse_period("2023Q2")) is None
    record_extraction(tmp_path, "2023Q2", date(2023, 7, 4))
    record_extraction(tmp_path, "2023Q1", date(2023, 4, 6))
    assert extraction_date(tmp_path, parse_period("2023Q2")) == date(2023, 7, 4)
    assert extraction_date(tmp_path, parse_period("2023-05")) == date(2023, 7, 4)
    assert extraction_date(tmp_path, parse_period("2023H1")) == date(2023, 7, 4)
    assert extraction_date(tmp_path, parse_period("2023Q3")) is None


def test_canonical_csv_with_only_required_columns(tmp_path):
    pd.DataFrame({"case_id": ["c1"], "unit_id": ["u1"], "finished_at": ["2023-04-03 10:00:00"]}).to_csv(
        tmp_path / "cases.csv", index=False
    )
    pd.DataFrame(
        {
            "eval_id": ["e1", "e2"],
            "case_id": ["c1", ""],
            "unit_id": ["u1", "u1"],
            "channel": ["system_default", "qr_code"],
            "satisfaction": ["5", "4"],
            "evaluated_at": ["2023-04-03 10:01:00", "2023-04-04 09:00:00"],
        }
    ).to_csv(tmp_path / "evaluations.csv", index=False)
    cols = {"cases": ["case_id", "unit_id", "finished_at", "reported_at"],
            "evaluations": ["eval_id", "case_id", "attempt", "active", "channel"]}  # fmt: skip
    got = load_tables(tmp_path, parse_period("2023Q2"), tables=("cases", "evaluations"), columns=cols)
    assert got["cases"]["reported_at"].isna().all()
    assert got["evaluations"]["attempt"].tolist() == [1, 1]  # contract default
    assert got["evaluations"]["active"].tolist() == [False, True]  # derived from the channel
    assert got["evaluations"]["case_id"].isna().tolist() == [False, True]
    full = load_tables(tmp_path, parse_period("2023Q2"), tables=("cases", "evaluations"))
    assert full["evaluations"]["active"].tolist() == [False, True]


def test_canonical_file_missing_a_required_column_is_a_clear_error(tmp_path):
    pd.DataFrame({"case_id": ["c1"], "finished_at": ["2023-04-03 10:00:00"]}).to_csv(
        tmp_path / "cases.csv", index=False
    )
    with pytest.raises(HaochaInputError, match="unit_id") as err:
        load_tables(
            tmp_path, parse_period("2023Q2"), tables=("cases",), columns={"cases": ["case_id", "unit_id"]}
        )
    assert "cases.csv" in err.value.message()


def test_notebook_rules_catch_outputs_definitions_and_parameters(tmp_path):
    import json
    import subprocess
    import sys

    def nb(cells):
        return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}

    def code(src, tags=(), outputs=()):
        meta = {"tags": list(tags)}
        return {
            "cell_type": "code",
            "source": src,
            "metadata": meta,
            "outputs": list(outputs),
            "execution_count": None,
        }

    good = nb([code("period: str = '2023Q2'", tags=["parameters"]), code("x = 1")])
    bad = nb([code("def f():\n    pass"), code("1", outputs=[{"output_type": "stream", "text": "1"}])])
    (tmp_path / "good.ipynb").write_text(json.dumps(good), encoding="utf-8")
    script = str(PROJ_ROOT / "scripts" / "check_notebooks.py")
    assert subprocess.run([sys.executable, script, str(tmp_path)]).returncode == 0
    (tmp_path / "bad.ipynb").write_text(json.dumps(bad), encoding="utf-8")
    run = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "outputs" in run.stdout and "def" in run.stdout and "0 cells tagged" in run.stdout
    # The project's own notebooks pass.
    assert subprocess.run([sys.executable, script, str(PROJ_ROOT / "notebooks")]).returncode == 0


def _canonical_csv(tmp_path, **changes):
    evals = {
        "eval_id": ["e1", "e2", "e3"],
        "case_id": ["c1", "c1", ""],
        "unit_id": ["u1", "u1", "u1"],
        "channel": ["hall_tablet", "sms", "qr_code"],
        "satisfaction": ["5", "4", "5"],
        "evaluated_at": ["2023-04-03 10:01:00", "2023-04-03 10:02:00.123456", "2023-04-04 09:00:00"],
        "evaluator_key": ["ab" * 16, "cd" * 16, ""],
    }
    for col, (row, value) in changes.items():
        evals[col][row] = value
    pd.DataFrame(evals).to_csv(tmp_path / "evaluations.csv", index=False)
    pd.DataFrame({"case_id": ["c1"], "unit_id": ["u1"], "finished_at": ["2023-04-03 10:00:00"]}).to_csv(
        tmp_path / "cases.csv", index=False
    )


@pytest.mark.parametrize(
    "column,row,value,words",
    [
        ("channel", 1, "电话", "渠道代码"),
        ("satisfaction", 2, "7", "1–5"),
        ("satisfaction", 0, "满意", "非数字"),
        ("satisfaction", 1, "", "必填"),
        ("evaluated_at", 2, "2023年4月4日 9点", "时间"),
    ],
)
def test_invalid_canonical_values_are_clear_errors(tmp_path, column, row, value, words):
    _canonical_csv(tmp_path, **{column: (row, value)})
    cols = {"evaluations": ["eval_id", "case_id", "unit_id", "channel", "satisfaction", "evaluated_at"]}
    for columns in (cols, None):
        with pytest.raises(HaochaInputError, match=words) as err:
            load_tables(tmp_path, parse_period("2023Q2"), tables=("evaluations",), columns=columns)
        assert err.value.column == column and err.value.rows == [row + 2]
        assert "evaluations.csv" in err.value.message()


def test_schema_failures_never_print_the_values(tmp_path):
    _canonical_csv(tmp_path, evaluator_key=(2, "13812345678"))
    with pytest.raises(HaochaInputError) as err:
        load_tables(tmp_path, parse_period("2023Q2"), tables=("cases", "evaluations"))
    assert "evaluator_key" in err.value.message() and "13812345678" not in err.value.message()
    ok = load_tables(tmp_path, parse_period("2023Q2"), tables=("evaluations",),
                     columns={"evaluations": ["eval_id", "evaluated_at"]})  # fmt: skip
    assert ok["evaluations"]["evaluated_at"].dt.microsecond.tolist() == [0, 123456, 0]


def test_swap_in_is_all_or_nothing(tmp_path):
    from haocha_analysis.ingest.storage import swap_in

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text("old")
        (tmp_path / f"new-{name}").mkdir()
        (tmp_path / f"new-{name}" / "x").write_text("new")
    moves = [(tmp_path / "new-a", tmp_path / "a"), (tmp_path / "missing", tmp_path / "b")]
    with pytest.raises(FileNotFoundError):
        swap_in(moves)
    assert (tmp_path / "a" / "x").read_text() == "old" and (tmp_path / "b" / "x").read_text() == "old"
    (tmp_path / "new-a").mkdir()
    (tmp_path / "new-a" / "x").write_text("new")
    swap_in([(tmp_path / "new-a", tmp_path / "a"), (tmp_path / "new-b", tmp_path / "b")])
    assert (tmp_path / "a" / "x").read_text() == "new" and (tmp_path / "b" / "x").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_import_layers_contract_holds():
    """The import-linter contracts (pyproject.toml): centres as layers, click only in cli."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=PROJ_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_overlapping_partitions_are_refused(tmp_path):
    cases = coerce(
        pd.DataFrame({"case_id": ["c1"], "unit_id": ["u1"], "finished_at": ["2023-05-02 10:00"]}), "cases"
    )
    write_tables({"cases": cases}, tmp_path, "2023Q2")
    write_tables({"cases": cases}, tmp_path, "2023-05")  # the same records again, as a month
    with pytest.raises(HaochaInputError, match="重叠") as err:
        load_tables(tmp_path, parse_period("2023Q2"), tables=("cases",))
    assert "period=2023Q2" in err.value.message() and "make clean-data" in err.value.message()
    # A period that touches only one of them reads it.
    assert len(load_tables(tmp_path, parse_period("2023-04"), tables=("cases",))["cases"]) == 1


def test_a_unit_by_code_or_any_spelling_of_its_name(qinghe):
    assert qinghe.find_unit("qh-c1") == "qh-c1"
    assert qinghe.find_unit("青禾市人力资源和社会保障局") == "qh-c1"  # an alias
    assert qinghe.find_unit("东湖区人社") == "qh-d1-k1"  # a unique part of a name
    with pytest.raises(HaochaInputError, match="没有单位") as err:
        qinghe.find_unit("东湖区人设局")
    assert "东湖区人社局" in err.value.message()  # the nearest name is suggested
