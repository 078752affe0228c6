"""Hostile reference data and periods (issue 13): exit 2 with a message naming what to fix, never a traceback.

Each probe is a literal file; each failed before (traceback, silent truncation or a raw pandera dump).
The last tests fuzz the loaders with hypothesis: a loader returns, or raises HaochaInputError.
"""

from __future__ import annotations

import shutil
import string
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haocha_analysis.bulletin import render
from haocha_analysis.core import config
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period, resolve_period
from haocha_analysis.core.reference import load_city

QINGHE = Path(__file__).resolve().parents[1] / "data" / "reference" / "qinghe"
HEADER = "unit_id,unit_name,level,district,category,public_service,order,aliases\n"
GOOD_ROWS = (
    "d1,东区,district,东区,,false,1,\n"
    "d2,西区,district,西区,,false,2,\n"
    "c1,市人社局,city_dept,,人社局,false,1,\n"
    "t1,东区甲镇,town,东区,,false,1,\n"
)


def city_folder(tmp_path: Path, units: str | bytes, **files: str | bytes) -> Path:
    folder = tmp_path / "city"
    folder.mkdir(exist_ok=True)
    for name, content in {"units.csv": units, **files}.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def input_error(tmp_path: Path, units: str | bytes, **files: str | bytes) -> HaochaInputError:
    folder = city_folder(tmp_path, units, **files)
    with pytest.raises(HaochaInputError) as err:
        load_city(folder)
    message = err.value.message()
    assert "修正方法" in message and "Traceback" not in message
    assert "SchemaError" not in message and "failure_case" not in message  # no pandera dump
    return err.value


def test_a_good_city_loads(tmp_path):
    ref = load_city(city_folder(tmp_path, HEADER + GOOD_ROWS))
    assert ref.key == "city" and ref.districts == ["东区", "西区"]
    assert ref.units["order"].tolist() == [1, 2, 1, 1]


# --- units.csv --------------------------------------------------------------------------------


def test_empty_units_csv(tmp_path):
    assert "空的" in input_error(tmp_path, "").problem


def test_gb18030_units_csv(tmp_path):
    err = input_error(tmp_path, (HEADER + GOOD_ROWS).encode("gb18030"))
    assert "UTF-8" in err.problem and "UTF-8" in err.fix


def test_units_csv_without_order(tmp_path):
    rows = "".join(",".join(line.split(",")[:6] + line.split(",")[7:]) for line in GOOD_ROWS.splitlines(True))
    err = input_error(tmp_path, HEADER.replace(",order", "") + rows)
    assert err.column == "order" and "缺少列" in err.problem


def test_header_only_units_csv(tmp_path):
    err = input_error(tmp_path, HEADER)
    assert "只有表头" in err.problem and "dtype" not in err.message()


def test_fractional_order_is_refused_not_truncated(tmp_path):
    err = input_error(
        tmp_path,
        HEADER
        + GOOD_ROWS.replace(
            "c1,市人社局,city_dept,,人社局,false,1", "c1,市人社局,city_dept,,人社局,false,1.5"
        ),
    )
    assert err.column == "order" and err.rows == [4] and "整数" in err.fix


def test_duplicate_unit_id_names_the_rows(tmp_path):
    err = input_error(tmp_path, HEADER + GOOD_ROWS + "c1,市公安局,city_dept,,公安局,false,2,\n")
    assert err.column == "unit_id" and err.rows == [4, 6] and "重复" in err.problem


def test_district_rows_pointing_at_each_other(tmp_path):
    rows = GOOD_ROWS.replace("d1,东区,district,东区", "d1,东区,district,西区").replace(
        "d2,西区,district,西区", "d2,西区,district,东区"
    )
    err = input_error(tmp_path, HEADER + rows)
    assert err.column == "district" and err.rows == [2, 3]


def test_bad_public_service_and_level_name_their_rows(tmp_path):
    err = input_error(
        tmp_path,
        HEADER
        + GOOD_ROWS.replace("c1,市人社局,city_dept,,人社局,false", "c1,市人社局,city_dept,,人社局,maybe"),
    )
    assert err.column == "public_service" and err.rows == [4]
    err = input_error(tmp_path, HEADER + GOOD_ROWS.replace("city_dept", "ministry"))
    assert err.column == "level" and err.rows == [4]


def test_blank_lines_keep_file_line_numbers(tmp_path):
    rows = GOOD_ROWS.replace("c1,", "\nc1,").replace(
        "c1,市人社局,city_dept,,人社局,false,1", "c1,市人社局,city_dept,,人社局,false,x"
    )
    err = input_error(tmp_path, HEADER + rows)
    assert err.rows == [5]  # line 4 is blank


def test_a_row_with_more_fields_than_the_header_is_named(tmp_path):
    """Found by the fuzz test: pandas took the extra field as the index and the loader crashed."""
    err = input_error(tmp_path, HEADER + GOOD_ROWS + "x1,某单位,town,东区,,false,2,,多余\n")
    assert err.rows == [6] and "列数" in err.problem


def test_a_district_row_may_leave_its_district_empty(tmp_path):
    ref = load_city(
        city_folder(tmp_path, HEADER + GOOD_ROWS.replace("d1,东区,district,东区", "d1,东区,district,"))
    )
    assert ref.units.loc[ref.units["unit_id"] == "d1", "district"].item() == "东区"


# --- city.yml, matters.csv ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("city_name: [淄博\n  bad: {", "不是合法的 YAML"),
        ("- 淄博市\n- 另一个\n", "映射"),
        ("just a sentence\n", "映射"),
        ("city_name:\n  nested: 1\n", "city_name"),
    ],
)
def test_malformed_or_non_mapping_city_yml(tmp_path, text, words):
    assert words in input_error(tmp_path, HEADER + GOOD_ROWS, **{"city.yml": text}).message()


def test_unreadable_matters_csv(tmp_path):
    assert (
        "UTF-8"
        in input_error(
            tmp_path, HEADER + GOOD_ROWS, **{"matters.csv": "事项编码,名称\n甲,乙\n".encode("gb18030")}
        ).problem
    )
    err = input_error(tmp_path, HEADER + GOOD_ROWS, **{"matters.csv": "code,name\nA,B\n"})
    assert "matter_code" in err.column
    (tmp_path / "city" / "matters.csv").unlink()
    (tmp_path / "city" / "matters.csv").mkdir()  # a folder where the file should be
    assert "无法读取" in input_error(tmp_path, HEADER + GOOD_ROWS).problem


# --- city keys (13.4) ---------------------------------------------------------------------------


def test_a_city_path_ending_in_dotdot_keeps_its_own_key(tmp_path):
    city = tmp_path / "qinghe"
    shutil.copytree(QINGHE, city)
    (city / "sub").mkdir()
    ref = load_city(f"{city}/sub/..")
    assert ref.key == "qinghe"
    assert config.reports_path(ref.key, "2023Q2") == config.REPORTS_DIR / "qinghe" / "2023Q2"


@pytest.mark.parametrize("key", ["..", ".", "", ".hidden", "a/b", "../x", " x"])
def test_city_keys_that_would_leave_reports_are_refused(key):
    with pytest.raises(HaochaInputError):
        config.check_name(key, "城市名称")
    if key in ("..", "../x", "a/../.."):
        with pytest.raises(HaochaInputError):
            config.reports_path(key, "2023Q2")


def test_the_default_bulletin_folder_stays_under_reports(tmp_path, monkeypatch, qinghe):
    from haocha_analysis.pipeline import run as pipeline

    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path / "reports")
    city = tmp_path / "ref" / "qinghe"
    shutil.copytree(QINGHE, city)
    (city / "sub").mkdir()
    ref = load_city(city / "sub" / "..")
    target, _ = pipeline.preflight(ref, parse_period("2023Q2"), tmp_path / "data", None, None)
    assert target == tmp_path / "reports" / "qinghe" / "2023Q2"


# --- periods ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0000", "超出范围"),
        ("9999Q4", "超出范围"),
        ("9999-12", "超出范围"),
        ("２０２３", "全角"),
        ("2023Ｑ2", "无法识别"),
        ("2023-06-30..2023-04-01", "开始晚于结束"),
        ("2023-02-30..2023-03-31", "不存在"),
        ("2023-13", "1–12"),
    ],
)
def test_hostile_periods_are_clear_errors(text, words):
    with pytest.raises(HaochaInputError) as err:
        parse_period(text)
    assert words in err.value.message() and err.value.fix


def test_the_first_and_last_years_have_no_impossible_neighbours():
    assert parse_period("1900Q1").shifted("previous") is None
    assert parse_period("1900Q1").with_previous().label == "1900Q1"
    assert parse_period("2199Q4").quarters()[-1].label == "2199Q4"


@pytest.mark.parametrize("period", ["0000", "9999Q4", "２０２３", "2023-06-30..2023-04-01"])
@pytest.mark.parametrize("verb", ["tables", "quality", "anomalies", "synth"])
def test_cli_bad_period_is_exit_2_and_writes_nothing(tmp_path, verb, period):
    from haocha_analysis.cli import cli

    args = [verb, "--city", str(QINGHE), "--period", period, "--out", str(tmp_path / "out")]
    if verb != "synth":
        (tmp_path / "data").mkdir(exist_ok=True)
        args += ["--data", str(tmp_path / "data")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "统计期" in result.output and isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out").exists()


# --- fuzz: exit 0 or exit 2, never a traceback ---------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
cells = st.text(alphabet=string.ascii_letters + string.digits + ".,-| \"'东区西镇\n1", max_size=12)
columns = st.lists(
    st.sampled_from(
        ["unit_id", "unit_name", "level", "district", "category", "public_service", "order", "aliases", "x"]
    ),
    min_size=0,
    max_size=9,
)


@st.composite
def units_files(draw) -> bytes:
    header = draw(columns)
    rows = draw(
        st.lists(
            st.lists(
                st.one_of(
                    cells, st.sampled_from(["district", "town", "city_dept", "true", "false", "1", "东区"])
                ),
                max_size=10,
            ),
            max_size=6,
        )
    )
    text = "\n".join([",".join(header), *(",".join(r) for r in rows)])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16"]))
    return text.encode(encoding, errors="replace")


@FUZZ
@given(
    units=units_files(),
    meta=st.binary(max_size=80) | st.text(max_size=80).map(str.encode),
    matters=units_files(),
)
def test_fuzz_reference_loader(tmp_path_factory, units, meta, matters):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "units.csv").write_bytes(units)
    (folder / "city.yml").write_bytes(meta)
    (folder / "matters.csv").write_bytes(matters)
    try:
        load_city(folder)
    except HaochaInputError:
        pass


@FUZZ
@given(text=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_narrative_template(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "bulletin.yml"
    path.write_bytes(text)
    try:
        render.load_narrative(path)
    except HaochaInputError:
        pass


placeholder_texts = st.lists(
    st.one_of(
        st.text(alphabet="{}!:.[]0甲", max_size=4), st.sampled_from([f"{{{n}}}" for n in render.PLACEHOLDERS])
    ),
    max_size=6,
).map("".join)


@FUZZ
@given(headline=placeholder_texts, title=placeholder_texts)
def test_fuzz_placeholders_fail_at_load_or_fill_cleanly(tmp_path_factory, headline, title):
    import yaml

    path = tmp_path_factory.mktemp("fuzz") / "bulletin.yml"
    path.write_text(
        yaml.safe_dump(
            {"title": title, "work_progress": "甲", "headline": headline or "乙", "next_steps": "丙"},
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    try:
        render.load_narrative(path)
    except HaochaInputError:
        return
    values = dict.fromkeys(render.PLACEHOLDERS, "值")
    render.fill(headline or "乙", values, key="headline")  # what loads also fills: no surprise later
    render.fill(title, values, key="title")


@FUZZ
@given(
    text=st.text(max_size=30)
    | st.from_regex(r"[0-9０-９]{4}([Qq-][0-9]{1,2}|[Hh][0-9])?", fullmatch=True)
    | st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\.\.[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True)
)
def test_fuzz_periods(text):
    try:
        period = resolve_period(text)
    except HaochaInputError:
        return
    assert period.label.isascii() and period.start <= period.end
    period.with_previous(), period.shifted("year"), period.quarters(), period.title_cn()
    assert period.start_ts < period.end_ts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(units=units_files(), meta=st.text(max_size=60).map(str.encode), period=st.text(max_size=12))
def test_fuzz_cli_exits_0_or_2(tmp_path_factory, units, meta, period):
    """Through the command line: a status of 0 or 2 and a message, never a traceback."""
    from haocha_analysis.cli import cli

    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "city").mkdir()
    (folder / "city" / "units.csv").write_bytes(units)
    (folder / "city" / "city.yml").write_bytes(meta)
    (folder / "data").mkdir()
    args = ["tables", "--city", str(folder / "city"), "--period", period or "2023Q2"]
    result = CliRunner().invoke(cli, [*args, "--data", str(folder / "data"), "--out", str(folder / "out")])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert not (folder / "out").exists()
