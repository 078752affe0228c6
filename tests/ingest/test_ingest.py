"""Ingest: readers, mapping, code tables, errors, periods, accounting, privacy.

Inputs are tiny files generated here. Every error test asserts exit status 2, a message that names
the file, the column, the rows and the fix, and that no output (not even a temporary folder) is left.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_ingest_forms import pii_in_outputs

from haocha_analysis.cli import cli
from haocha_analysis.core.config import PROFILES_DIR
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import parse_period
from haocha_analysis.ingest.build import build_tables, ingest_files
from haocha_analysis.ingest.privacy import hash_value, scrub
from haocha_analysis.ingest.profiles import (
    DEFAULT_TIMESTAMP_FORMATS,
    load_profile,
    parse_profile,
)
from haocha_analysis.ingest.storage import load_tables
from haocha_analysis.ingest.values import parse_timestamps

QINGHE = Path(__file__).resolve().parents[1] / "data" / "reference" / "qinghe"

EVAL_HEADER = "评价编号,办件编号,受理部门,评价渠道,满意度,评价时间"
EVAL_ROWS = [
    "E1,C1,东湖区人社局,PC端,非常满意,2023-04-03 10:10:00",
    "E2,C2,西山县公安局,电话,不满意,2023-05-10 16:00:00",
    "E3,,东湖区湖滨街道便民服务中心,短信,满意,2023-06-02 14:20:00",
]


def write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def bare_profile(tmp_path: Path, **codes) -> Path:
    """A profile that declares nothing but the given code tables (aliases do the mapping)."""
    text = "name: bare\nencoding: auto\ntables: auto\n"
    if codes:
        text += "codes:\n" + "".join(f"  {k}: {v}\n" for k, v in codes.items())
    path = tmp_path / "bare.yml"
    path.write_text(text, encoding="utf-8")
    return path


def run_ingest(
    profile: Path | str, files: list[Path], out: Path, city=str(QINGHE), period="2023Q2", extra=()
):
    args = [
        "ingest",
        "--profile",
        str(profile),
        *map(str, files),
        "--city",
        city,
        "--period",
        period,
        "--out",
        str(out),
        *extra,
    ]
    return CliRunner().invoke(cli, args)


def assert_input_error(result, out: Path, *fragments: str, rows: bool = True) -> str:
    """Exit 2; the message names file, column (when given), rows and fix; no output at all."""
    assert result.exit_code == 2, result.output
    message = result.output
    assert "输入错误" in message and "文件：" in message and "修正方法：" in message, message
    if rows:
        assert "行号（前10个）：" in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in\n{message}"
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.ingest-")]
    return message


# --- bad input: exit 2, clear message, no output -------------------------------------------------


def test_missing_required_column(tmp_path):
    header = "评价编号,办件编号,受理部门,评价渠道,满意度"  # no 评价时间
    f = write(tmp_path / "evals.csv", [header] + [r.rsplit(",", 1)[0] for r in EVAL_ROWS])
    out = tmp_path / "out"
    msg = assert_input_error(
        run_ingest(bare_profile(tmp_path), [f], out),
        out,
        "evals.csv",
        "列：evaluated_at",
        "评价时间",
        "columns.evaluations.evaluated_at",
    )
    assert "行号（前10个）：1" in msg  # the header row


def test_numeric_satisfaction_without_declared_table(tmp_path):
    rows = [r.replace("非常满意", "1").replace("不满意", "2").replace(",满意,", ",4,") for r in EVAL_ROWS]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(bare_profile(tmp_path), [f], out),
        out,
        "evals.csv",
        "列：满意度",
        "行号（前10个）：2, 3, 4",
        "codes.satisfaction",
        "interface",
        "gbt39046",
    )


def test_numeric_satisfaction_follows_the_declared_direction(tmp_path, qinghe):
    rows = [r.replace("非常满意", "1").replace("不满意", "2").replace(",满意,", ",4,") for r in EVAL_ROWS]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    got = {}
    for direction in ("interface", "gbt39046"):
        profile = bare_profile(tmp_path, satisfaction=direction)
        tables, _ = build_tables(profile, [f], qinghe, "2023Q2")
        got[direction] = tables["evaluations"]["satisfaction"].tolist()
    assert got["interface"] == [1, 2, 4]
    assert got["gbt39046"] == [5, 4, 2]  # GB/T 39046: 1 = 非常满意


@pytest.mark.parametrize("pf", ["6", "7"])
def test_pf_6_or_7_without_declared_table(tmp_path, pf):
    rows = [EVAL_ROWS[0].replace("PC端", "1"), EVAL_ROWS[1].replace("电话", pf), EVAL_ROWS[2]]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(bare_profile(tmp_path), [f], out),
        out,
        "evals.csv",
        "列：评价渠道",
        "行号（前10个）：3",
        "codes.channel",
        "standard",
        "zhejiang",
    )


def test_pf_tables_disagree_on_6_and_7(tmp_path, qinghe):
    rows = [
        EVAL_ROWS[0].replace("PC端", "6"),
        EVAL_ROWS[1].replace("电话", "7"),
        EVAL_ROWS[2].replace("短信", "3"),
    ]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    std, _ = build_tables(bare_profile(tmp_path, channel="standard"), [f], qinghe, "2023Q2")
    zj, _ = build_tables(bare_profile(tmp_path, channel="zhejiang"), [f], qinghe, "2023Q2")
    assert std["evaluations"]["channel"].astype(str).tolist() == ["phone", "sms", "qr_code"]
    assert zj["evaluations"]["channel"].astype(str).tolist() == ["sms", "system_default", "qr_code"]
    # 主动评价 derives from the channel: a system default evaluation is not active
    assert zj["evaluations"]["active"].tolist() == [True, False, True]


def test_unparseable_timestamp(tmp_path):
    rows = [EVAL_ROWS[0], EVAL_ROWS[1].replace("2023-05-10 16:00:00", "2023年5月10日下午"), EVAL_ROWS[2]]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(bare_profile(tmp_path), [f], out),
        out,
        "evals.csv",
        "列：评价时间",
        "行号（前10个）：3",
        "9999年9月99日下午",
        "timestamp_formats",
    )


def test_duplicate_eval_id_with_different_content(tmp_path):
    rows = [*EVAL_ROWS, EVAL_ROWS[1].replace("不满意", "非常满意")]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    out = tmp_path / "out"
    message = assert_input_error(
        run_ingest(bare_profile(tmp_path), [f], out),
        out,
        "evals.csv",
        "列：评价编号",  # the export's own header, not the canonical eval_id
        "行号（前10个）：3, 5",
        "satisfaction",
    )
    assert "“E2”" not in message  # never a value


def test_identical_duplicate_is_dropped_and_counted(tmp_path):
    rows = [*EVAL_ROWS, EVAL_ROWS[1]]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    out = tmp_path / "out"
    result = run_ingest(bare_profile(tmp_path), [f], out)
    assert result.exit_code == 0, result.output
    log = json.loads((out / "ingest_log.json").read_text(encoding="utf-8"))
    t = log["files"][0]["tables"]["evaluations"]
    assert (log["files"][0]["rows_read"], t["kept"], t["duplicates_dropped"]) == (
        4,
        3,
        {"count": 1, "rows": [5]},
    )
    assert load_tables(out)["evaluations"]["eval_id"].tolist() == ["E1", "E2", "E3"]


def test_unknown_unit_name_suggests_nearest(tmp_path):
    rows = [EVAL_ROWS[0].replace("东湖区人社局", "东湖区人社厅"), *EVAL_ROWS[1:]]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(bare_profile(tmp_path), [f], out),
        out,
        "evals.csv",
        "列：受理部门",
        "第 2 行的名称",
        "行号（前10个）：2",
        "最接近：东湖区人社局",
        "aliases",
    )


def test_unknown_unit_name_in_zibo(tmp_path, zibo):
    f = write(
        tmp_path / "evals.csv",
        [
            EVAL_HEADER,
            "E1,,张店区人力资源社会保障局,PC端,满意,2023-04-03 10:10:00",
            "E2,,张店区医疗保障局,PC端,满意,2023-04-03 10:11:00",
        ],
    )
    with pytest.raises(HaochaInputError) as err:
        build_tables(bare_profile(tmp_path), [f], zibo, "2023Q2")
    assert "张店区人力资源和社会保障局" in err.value.message()
    assert err.value.rows == [2]


@pytest.mark.parametrize(
    "content",
    [b"", "评价编号,受理部门,评价渠道,满意度,评价时间\n".encode()],
    ids=["zero-bytes", "header-only"],
)
def test_empty_file(tmp_path, content):
    f = tmp_path / "evals.csv"
    f.write_bytes(content)
    out = tmp_path / "out"
    assert_input_error(run_ingest(bare_profile(tmp_path), [f], out), out, "evals.csv", "文件为空", rows=False)


def test_undecodable_bytes(tmp_path):
    good = "\n".join([EVAL_HEADER, *EVAL_ROWS]).encode("utf-8")
    f = tmp_path / "evals.csv"
    f.write_bytes(good + b"\nE4,,\x80\xff\xfe\x81,PC\xff,1,2023\n")
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(bare_profile(tmp_path), [f], out),
        out,
        "evals.csv",
        "无法按 UTF-8 / GB18030 解码",
        "行号（前10个）：5",
        "重新导出",
    )


def test_an_error_in_the_second_file_writes_nothing(tmp_path):
    good = write(tmp_path / "good.csv", [EVAL_HEADER, *EVAL_ROWS])
    bad = write(tmp_path / "bad.csv", [EVAL_HEADER, "E9,,不存在的单位,PC端,满意,2023-04-03 10:10:00"])
    out = tmp_path / "out"
    assert_input_error(run_ingest(bare_profile(tmp_path), [good, bad], out), out, "bad.csv", "找不到")


def test_bad_salt_env_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_SALT", raising=False)
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS])
    out = tmp_path / "out"
    result = run_ingest(bare_profile(tmp_path), [f], out, extra=["--salt-env", "NO_SUCH_SALT"])
    assert result.exit_code == 2 and "NO_SUCH_SALT" in result.output
    assert not out.exists()


def test_promise_type_codes_need_a_declaration(tmp_path, qinghe):
    lines = [
        "办件编号,受理部门,办结时间,办件类型",
        "C1,东湖区人社局,2023-04-03 10:00:00,1",
        "C2,西山县公安局,2023-05-03 10:00:00,2",
    ]
    f = write(tmp_path / "cases.csv", lines)
    with pytest.raises(HaochaInputError, match=r"codes\.promise_type") as err:
        build_tables(bare_profile(tmp_path), [f], qinghe, "2023Q2")
    assert err.value.rows == [2, 3] and err.value.column == "办件类型"
    zj, _ = build_tables(bare_profile(tmp_path, promise_type="zhejiang"), [f], qinghe, "2023Q2")
    jn, _ = build_tables(bare_profile(tmp_path, promise_type="jining"), [f], qinghe, "2023Q2")
    assert zj["cases"]["promise_type"].tolist() == ["承诺件", "即办件"]
    assert jn["cases"]["promise_type"].tolist() == ["即办件", "承诺件"]


# --- accounting ----------------------------------------------------------------------------------


def test_rows_with_missing_required_values_are_rejected_and_counted(tmp_path, qinghe):
    rows = [*EVAL_ROWS, "E4,,东湖区人社局,PC端,,2023-04-05 10:00:00", "E5,,,PC端,满意,2023-04-05 10:00:00"]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    log = ingest_files(bare_profile(tmp_path), [f], qinghe, "2023Q2", tmp_path / "out")
    t = log["files"][0]["tables"]["evaluations"]
    assert log["files"][0]["rows_read"] == 5 == t["kept"] + t["rejected"]["count"]
    reasons = {r["reason"]: r["rows"] for r in t["rejected"]["reasons"]}
    assert reasons == {"必填的单位（unit_id/unit_name）为空": [6], "必填列 satisfaction（满意度）为空": [5]}


def test_flat_export_is_split_into_cases_and_evaluations(tmp_path, qinghe):
    lines = [
        "办件编号,受理部门,办结时间,评价编号,评价渠道,满意度,评价时间",
        "C1,东湖区人社局,2023-04-03 10:00:00,E1,PC端,满意,2023-04-03 10:10:00",
        "C1,东湖区人社局,2023-04-03 10:00:00,E2,电话,非常满意,2023-04-08 10:10:00",  # follow-up on C1
        "C2,西山县公安局,2023-05-03 10:00:00,,,,",  # a case with no evaluation
        ",东湖区湖滨街道便民服务中心,,E3,二维码,不满意,2023-06-01 09:00:00",  # an unlinked evaluation
    ]
    f = write(tmp_path / "flat.csv", lines)
    tables, log = build_tables(bare_profile(tmp_path), [f], qinghe, "2023Q2")
    entry = log["files"][0]
    assert set(entry["tables"]) == {"cases", "evaluations"}
    c, e = entry["tables"]["cases"], entry["tables"]["evaluations"]
    assert (c["records"], c["rows_without_record"], c["kept"], c["duplicates_dropped"]["count"]) == (
        3,
        1,
        2,
        1,
    )
    assert (e["records"], e["rows_without_record"], e["kept"]) == (3, 1, 3)
    assert tables["cases"]["case_id"].tolist() == ["C1", "C2"]
    assert tables["evaluations"]["case_id"].tolist()[:2] == ["C1", "C1"]
    assert pd.isna(tables["evaluations"]["case_id"].iloc[2])


def test_linked_case_unit_wins_and_is_logged(tmp_path, qinghe):
    cases = write(
        tmp_path / "cases.csv", ["办件编号,受理部门,办结时间", "C1,东湖区人社局,2023-04-03 10:00:00"]
    )
    evals = write(tmp_path / "evals.csv", [EVAL_HEADER, "E1,C1,东湖区公安分局,PC端,满意,2023-04-03 10:10:00"])
    tables, log = build_tables(bare_profile(tmp_path), [cases, evals], qinghe, "2023Q2")
    assert tables["evaluations"]["unit_id"].astype(str).tolist() == ["qh-d1-k1"]
    repaired = log["files"][1]["tables"]["evaluations"]["repaired"]
    assert repaired == [{"what": "评价单位与所评办件的单位不一致，按办件单位", "count": 1, "rows": [2]}]


def test_unit_aliases_and_unit_ids(tmp_path, qinghe):
    lines = [
        "评价编号,单位编码,受理部门,评价渠道,满意度,评价时间",
        "E1,,青禾市人力资源和社会保障局,PC端,满意,2023-04-03 10:10:00",  # alias
        "E2,qh-c2,,PC端,满意,2023-04-03 10:11:00",  # id only
        "E3,,东湖区人社局,PC端,满意,2023-04-03 10:12:00",
    ]  # exact name
    tables, log = build_tables(bare_profile(tmp_path), [write(tmp_path / "e.csv", lines)], qinghe, "2023Q2")
    assert tables["evaluations"]["unit_id"].astype(str).tolist() == ["qh-c1", "qh-c2", "qh-d1-k1"]
    repaired = log["files"][0]["tables"]["evaluations"]["repaired"]
    assert [r["rows"] for r in repaired if "别名" in r["what"]] == [[2]]


# --- periods -------------------------------------------------------------------------------------

PERIOD_CASES = [
    ("C1", "2023-03-31 23:59:00"),
    ("C2", "2023-04-01 00:00:00"),
    ("C3", "2023-04-30 18:00:00"),
    ("C4", "2023-05-15 23:00:00"),
    ("C5", "2023-05-16 08:00:00"),
    ("C6", "2023-06-30 23:59:59"),
    ("C7", "2023-07-01 00:00:00"),
    ("C8", "2023-12-31 12:00:00"),
    ("C9", "2024-01-01 00:00:00"),
]


@pytest.mark.parametrize(
    "period,kept",
    [
        ("2023Q2", ["C2", "C3", "C4", "C5", "C6"]),
        ("2023-04", ["C2", "C3"]),
        ("2023H1", ["C1", "C2", "C3", "C4", "C5", "C6"]),
        ("2023", ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"]),
        ("2023-04-01..2023-05-15", ["C2", "C3", "C4"]),
    ],
)
def test_period_excludes_and_counts(tmp_path, qinghe, period, kept):
    cases = write(
        tmp_path / "cases.csv",
        ["办件编号,受理部门,办结时间"] + [f"{cid},东湖区人社局,{ts}" for cid, ts in PERIOD_CASES],
    )
    # E1 is made in July on C6 (kept whenever C6 is); E2 is unlinked, made on 2023-04-10
    evals = write(
        tmp_path / "evals.csv",
        [
            EVAL_HEADER,
            "E1,C6,东湖区人社局,PC端,满意,2023-07-02 09:00:00",
            "E2,,东湖区人社局,PC端,满意,2023-04-10 09:00:00",
        ],
    )
    out = tmp_path / "out"
    log = ingest_files(bare_profile(tmp_path), [cases, evals], qinghe, period, out)
    stored = load_tables(out)
    assert stored["cases"]["case_id"].tolist() == kept
    c = log["files"][0]["tables"]["cases"]
    assert c["excluded_by_period"]["count"] == len(PERIOD_CASES) - len(kept)
    assert c["records"] == c["kept"] + c["excluded_by_period"]["count"] == len(PERIOD_CASES)
    # E2 (2023-04-10) is in every one of these periods; E1 (July) only comes with its case C6, or in 2023
    expected_evals = ["E1", "E2"] if "C6" in kept else ["E2"]
    assert sorted(stored["evaluations"]["eval_id"]) == expected_evals
    e = log["files"][1]["tables"]["evaluations"]
    assert e["excluded_by_period"]["count"] == 2 - len(expected_evals)
    assert (out / "cases" / f"period={log['period']}" / "part-0.parquet").exists()


def test_other_periods_in_the_output_folder_are_kept(tmp_path, qinghe):
    cases = write(
        tmp_path / "cases.csv",
        ["办件编号,受理部门,办结时间"] + [f"{cid},东湖区人社局,{ts}" for cid, ts in PERIOD_CASES],
    )
    out = tmp_path / "out"
    ingest_files(bare_profile(tmp_path), [cases], qinghe, "2023-04", out)
    ingest_files(bare_profile(tmp_path), [cases], qinghe, "2023-05", out)
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["period=2023-04", "period=2023-05"]
    assert sorted(load_tables(out)["cases"]["case_id"]) == ["C2", "C3", "C4", "C5"]


@pytest.mark.parametrize(
    "first,second,kept",
    [
        ("2023Q2", "2023-05", ["C2", "C3", "C4", "C5", "C6"]),
        ("2023-05", "2023Q2", ["C4", "C5"]),
        ("2023H1", "2023Q2", ["C1", "C2", "C3", "C4", "C5", "C6"]),
    ],
)
def test_a_period_overlapping_one_already_in_the_folder_is_refused_before_writing(
    tmp_path, qinghe, first, second, kept
):
    # Written beside 2023Q2, period=2023-05 would count May twice: every later verb refuses the folder.
    cases = write(
        tmp_path / "cases.csv",
        ["办件编号,受理部门,办结时间"] + [f"{cid},东湖区人社局,{ts}" for cid, ts in PERIOD_CASES],
    )
    out = tmp_path / "out"
    ingest_files(bare_profile(tmp_path), [cases], qinghe, first, out)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(HaochaInputError) as err:
        ingest_files(bare_profile(tmp_path), [cases], qinghe, second, out)
    assert f"period={first}" in str(err.value) and "重叠" in str(err.value)
    assert parse_period(second).title_cn() in str(err.value)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert sorted(load_tables(out)["cases"]["case_id"]) == kept
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no staging left


def test_consecutive_quarters_from_one_export_load_every_evaluation_once(tmp_path, qinghe):
    from haocha_analysis.ingest.storage import load_window

    cases = write(
        tmp_path / "cases.csv",
        [
            "办件编号,受理部门,办结时间",
            "C6,东湖区人社局,2023-06-30 23:59:59",
            "C7,东湖区人社局,2023-07-01 00:00:00",
        ],
    )
    # E1 is made in July on C6 (finished in June): 附件1 of 2023Q2 needs it, and it is made in 2023Q3.
    evals = write(
        tmp_path / "evals.csv",
        [
            EVAL_HEADER,
            "E1,C6,东湖区人社局,PC端,满意,2023-07-02 09:00:00",
            "E2,C7,东湖区人社局,PC端,满意,2023-07-03 09:00:00",
        ],
    )
    out = tmp_path / "out"
    ingest_files(bare_profile(tmp_path), [cases, evals], qinghe, "2023Q2", out)
    ingest_files(bare_profile(tmp_path), [cases, evals], qinghe, "2023Q3", out)
    window = load_window(out, parse_period("2023Q3"))
    assert sorted(window["evaluations"]["eval_id"]) == ["E1", "E2"]


def test_another_citys_data_folder_is_refused_before_writing(tmp_path, qinghe, zibo):
    # `--city qinghe --out <zibo's canonical folder>` used to replace zibo's 2023Q2 partition, exit 0.
    out = tmp_path / "out"
    zibo_evals = write(tmp_path / "zibo.csv", [EVAL_HEADER, "E9,,张店区人社局,PC端,满意,2023-04-10 09:00:00"])
    ingest_files(bare_profile(tmp_path), [zibo_evals], zibo, "2023Q2", out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    evals = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS])
    for period in ("2023Q2", "2023Q3"):
        with pytest.raises(HaochaInputError) as err:
            ingest_files(bare_profile(tmp_path), [evals], qinghe, period, out)
        assert "“zibo”" in str(err.value) and "青禾市" in str(err.value)
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # The same city may add and replace its own periods.
    ingest_files(bare_profile(tmp_path), [zibo_evals], zibo, "2023Q2", out)


def test_nothing_in_the_period_is_an_error(tmp_path):
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS])
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(bare_profile(tmp_path), [f], out, period="2022Q1"), out, "2022年第一季度", rows=False
    )


# --- readers -------------------------------------------------------------------------------------


def test_encodings_are_detected_and_give_the_same_tables(tmp_path, qinghe):
    lines = [EVAL_HEADER, *EVAL_ROWS]
    results = {}
    for encoding in ("utf-8", "utf-8-sig", "gb18030"):
        f = write(tmp_path / f"{encoding}.csv", lines, encoding=encoding)
        tables, log = build_tables(bare_profile(tmp_path), [f], qinghe, "2023Q2")
        assert log["files"][0]["encoding"] == encoding
        results[encoding] = tables["evaluations"]
    pd.testing.assert_frame_equal(results["utf-8"], results["gb18030"])
    pd.testing.assert_frame_equal(results["utf-8"], results["utf-8-sig"])


def test_declared_encoding_is_checked(tmp_path, qinghe):
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS], encoding="gb18030")
    profile = tmp_path / "utf8.yml"
    profile.write_text("name: utf8\nencoding: utf-8\n", encoding="utf-8")
    with pytest.raises(HaochaInputError, match="UTF-8") as err:
        build_tables(profile, [f], qinghe, "2023Q2")
    assert err.value.rows == [1]


def test_xlsx_header_below_two_title_rows_and_csv_title_row(tmp_path, qinghe):
    frame = pd.DataFrame([r.split(",") for r in EVAL_ROWS], columns=EVAL_HEADER.split(","))
    xlsx = tmp_path / "evals.xlsx"
    with pd.ExcelWriter(xlsx) as writer:
        frame.to_excel(writer, index=False, startrow=2)
        writer.sheets["Sheet1"]["A1"] = "青禾市政务服务好差评数据"
        writer.sheets["Sheet1"]["A2"] = "导出时间：2023-07-01"
    csv = write(tmp_path / "evals.csv", ["青禾市好差评评价数据,,,,,", EVAL_HEADER, *EVAL_ROWS])
    t1, log1 = build_tables(bare_profile(tmp_path), [xlsx], qinghe, "2023Q2")
    t2, log2 = build_tables(bare_profile(tmp_path), [csv], qinghe, "2023Q2")
    assert log1["files"][0]["header_row"] == 3 and log2["files"][0]["header_row"] == 2
    pd.testing.assert_frame_equal(t1["evaluations"], t2["evaluations"])
    # row numbers point at the sheet / the file
    assert log1["files"][0]["rows_read"] == 3


def test_parquet_input_keeps_types(tmp_path, qinghe):
    frame = pd.DataFrame(
        {
            "eval_id": ["E1", "E2"],
            "unit_id": ["qh-c1", "qh-c2"],
            "channel": ["pc", "paper"],
            "satisfaction": np.array([5, 2], dtype="int8"),
            "evaluated_at": pd.to_datetime(["2023-04-01 08:00", "2023-04-02 09:30"]).tz_localize("UTC"),
        }
    )
    f = tmp_path / "evals.parquet"
    frame.to_parquet(f)
    tables, _ = build_tables("canonical", [f], qinghe, "2023Q2")
    e = tables["evaluations"]
    # a time-zone-aware timestamp becomes Asia/Shanghai local time
    assert e["evaluated_at"].tolist() == [pd.Timestamp("2023-04-01 16:00"), pd.Timestamp("2023-04-02 17:30")]
    assert e["satisfaction"].tolist() == [5, 2] and e["attempt"].tolist() == [1, 1]
    assert e["active"].tolist() == [True, True]  # no active column: derived from the channel


def test_parse_timestamps_formats_and_excel_serials():
    values = pd.Series(
        ["2023-04-01 08:05:09", "2023/04/01 08:05", "20230401T080509", "45017.25", "", None, "2023-04-01"],
        dtype="str",
    )
    parsed, bad, shifted = parse_timestamps(values, DEFAULT_TIMESTAMP_FORMATS)
    assert len(bad) == 0 and len(shifted) == 0
    assert parsed.tolist()[:5] == [
        pd.Timestamp("2023-04-01 08:05:09"),
        pd.Timestamp("2023-04-01 08:05"),
        pd.Timestamp("2023-04-01 08:05:09"),
        pd.Timestamp("2023-04-01 06:00"),
        pd.NaT,
    ]
    assert pd.isna(parsed.iloc[5]) and parsed.iloc[6] == pd.Timestamp("2023-04-01")
    _, bad, _ = parse_timestamps(
        pd.Series(["20230401", "2023-02-30 10:00:00", "明天"], dtype="str"), DEFAULT_TIMESTAMP_FORMATS
    )
    assert bad.tolist() == [0, 1, 2]  # a YYYYMMDD number is not an Excel serial; Feb 30 does not exist


# --- privacy -------------------------------------------------------------------------------------


def test_identity_and_phone_numbers_never_reach_an_output(tmp_path):
    ids = ["370303199001011234", "37030319850202456X", "11010119800101123x"]
    mobiles = ["13812345678", "15966667777", "+86 139-1234-5678"]
    lines = [
        "评价编号,受理部门,评价渠道,满意度,评价时间,证件号码,手机号码,文字评价,联系人信息,备注",
        f"E1,东湖区人社局,PC端,满意,2023-04-03 10:10:00,{ids[0]},,谢谢 {mobiles[0]},{ids[1]},",
        f"E2,东湖区人社局,PC端,不满意,2023-04-03 10:11:00,,{mobiles[1]},"
        f"我的身份证{ids[2]}丢了,,电话{mobiles[2]}",
        f"E3,东湖区人社局,PC端,满意,2023-04-03 10:12:00,{ids[1]},{mobiles[0]},,{mobiles[1]},",
    ]
    f = write(tmp_path / "evals.csv", lines)
    out = tmp_path / "out"
    result = run_ingest(bare_profile(tmp_path), [f], out)
    assert result.exit_code == 0, result.output
    assert pii_in_outputs(out) == []  # the same scanner as the four-form test
    for raw in [*ids, *mobiles, "13912345678", "8613912345678"]:
        for path in out.rglob("*"):
            if path.is_file():
                text = (
                    pd.read_parquet(path).to_csv() if path.suffix == ".parquet" else path.read_text("utf-8")
                )
                assert raw.upper() not in text.upper()
    e = load_tables(out)["evaluations"]
    # the id number wins over the mobile; one person gets one key
    assert e["evaluator_key"].tolist() == [
        hash_value(ids[0], "test-salt"),
        hash_value(mobiles[1], "test-salt"),
        hash_value(ids[1], "test-salt"),
    ]
    assert e["comment"].tolist()[:2] == ["谢谢 [手机号已脱敏]", "我的身份证[证件号已脱敏]丢了"]
    assert e["联系人信息"].fillna("").tolist() == ["[证件号已脱敏]", "", "[手机号已脱敏]"]
    log = json.loads((out / "ingest_log.json").read_text(encoding="utf-8"))
    masked = {r["what"]: r["count"] for r in log["files"][0]["tables"]["evaluations"]["repaired"]}
    assert masked == {
        "列 comment 中的身份证号/手机号已脱敏": 2,
        "列 联系人信息 中的身份证号/手机号已脱敏": 2,
        "列 备注 中的身份证号/手机号已脱敏": 1,
    }


def test_hashing_depends_on_the_salt():
    assert hash_value("370303199001011234", "a") != hash_value("370303199001011234", "b")
    assert hash_value("37030319850202456x", "a") == hash_value("37030319850202456X", "a")
    assert hash_value("139 1234 5678", "a") == hash_value("13912345678", "a")
    text, hit = scrub(pd.Series(["订单号 202304011234567890123", "无", None], dtype="str"))
    assert (
        hit.tolist() == [] and text.iloc[0] == "订单号 202304011234567890123"
    )  # longer digit runs are not ids


# --- profiles ------------------------------------------------------------------------------------


def test_the_four_profiles_load():
    names = sorted(p.stem for p in PROFILES_DIR.glob("*.yml"))
    assert names == ["canonical", "epoint_jining", "gbt39046", "zhejiang"]
    gbt, zj, ep = load_profile("gbt39046"), load_profile("zhejiang"), load_profile("epoint_jining")
    assert gbt.satisfaction[1] == 5 and zj.satisfaction[1] == 1  # the two directions
    assert gbt.channel[6] == "phone" and zj.channel[7] == "system_default"
    assert ep.active == "flag" and ep.columns["evaluations"]["active_flag"] == ["isprotion"]


@pytest.mark.parametrize(
    "data,fragment",
    [
        ({"codes": {"satisfaction": "reversed"}}, "codes.satisfaction"),
        ({"codes": {"channel": {6: "传真"}}}, "codes.channel"),
        ({"encoding": "latin-1"}, "encoding"),
        ({"columns": {"evaluations": {"score": "分数"}}}, "score"),
        ({"colums": {}}, "colums"),
    ],
)
def test_bad_profiles_are_clear_errors(data, fragment):
    with pytest.raises(HaochaInputError, match=fragment):
        parse_profile(data)


def test_custom_code_table_in_a_profile(tmp_path, qinghe):
    rows = [EVAL_ROWS[0].replace("PC端", "9"), *EVAL_ROWS[1:]]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    profile = tmp_path / "custom.yml"
    profile.write_text("name: custom\ncodes:\n  channel: {9: 评议卡, 6: 电话, 7: 短信}\n", encoding="utf-8")
    tables, _ = build_tables(profile, [f], qinghe, "2023Q2")
    assert tables["evaluations"]["channel"].astype(str).tolist() == ["paper", "phone", "sms"]


def test_schema_failures_name_file_column_and_rows(tmp_path):
    lines = [
        "办件编号,受理部门,办结时间,行政区划",
        "C1,东湖区人社局,2023-04-03 10:00:00,990101",
        "C2,东湖区人社局,2023-04-04 10:00:00,99010",
    ]  # 5 digits: not a region code
    f = write(tmp_path / "cases.csv", lines)
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(bare_profile(tmp_path), [f], out),
        out,
        "cases.csv",
        "列：行政区划",  # the export's own header
        "行号（前10个）：3",
    )


def test_existing_keys_pass_through_but_digit_strings_are_hashed():
    from haocha_analysis.ingest.privacy import hash_keys

    already = "966d07e9ba3fa25b9798949edb1290ed"
    keys = hash_keys(pd.Series([already, "370303199001011234", None], dtype="str"), "s")
    assert keys.iloc[0] == already
    assert keys.iloc[1] == hash_value("370303199001011234", "s") and pd.isna(keys.iloc[2])


def test_scrub_catches_full_width_and_letter_prefixed_numbers():
    from haocha_analysis.ingest.privacy import contains_pii, scrub

    texts = pd.Series(
        ["联系我１３８１２３４５６７８", "ID370302199001011234", "37030219900101123Xabc", "很好，谢谢！",
         "办件号 20230403123456789012345"]  # a longer digit run is not an identity number
    )  # fmt: skip
    out, hit = scrub(texts)
    assert hit.tolist() == [0, 1, 2]
    assert not any(contains_pii(t) for t in out)
    assert out[3] == "很好，谢谢！"  # untouched text keeps its full-width punctuation
    assert out[4] == texts[4]


def test_repeated_header_and_oversized_attempt_are_clear_errors(tmp_path, qinghe):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["青禾市评价数据导出"])
    ws.append(["评价编号", "受理部门", "评价渠道", "满意度", "评价时间", "评价时间"])
    ws.append(["E1", "东湖区人社局", "PC端", "满意", "2023-04-03 10:10:00", "2023-04-03 10:10:00"])
    wb.save(tmp_path / "dup.xlsx")
    csv = tmp_path / "attempt.csv"
    csv.write_text(
        "评价编号,受理部门,评价渠道,满意度,评价时间,评价次数\n"
        "E1,东湖区人社局,PC端,满意,2023-04-03 10:10:00,200\n",
        encoding="utf-8",
    )
    for path, words in ((tmp_path / "dup.xlsx", "重复的列名"), (csv, "评价次数")):
        out = tmp_path / f"out-{path.stem}"
        args = [
            "ingest",
            "--profile",
            "gbt39046",
            str(path),
            "--city",
            str(qinghe.path),
            "--period",
            "2023Q2",
        ]
        result = CliRunner().invoke(cli, [*args, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert words in result.output and str(path) in result.output
        assert not out.exists()


def test_invalid_reasons_map_onto_the_code_list(tmp_path):
    evals = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS])
    rect = write(
        tmp_path / "rect.csv",
        [
            "评价编号,核实结论,无效原因,核实时间,审核通过时间",
            "E2,无效,与办件无关,2023-05-11 09:00:00,2023-05-11 10:00:00",
        ],
    )
    out = tmp_path / "out"
    result = run_ingest(bare_profile(tmp_path), [evals, rect], out)
    assert result.exit_code == 0, result.output
    got = load_tables(out, tables=("rectifications",))["rectifications"]
    assert got["invalid_reason"].tolist() == ["与本办件无关"]
    assert got["verified_at"].tolist() == [pd.Timestamp("2023-05-11 09:00")]
    assert got["approved_at"].tolist() == [pd.Timestamp("2023-05-11 10:00")]
    # a verdict label that names the reason fills it: 重复 → 重复评价
    write(rect, ["评价编号,核实结论", "E2,重复"])
    assert run_ingest(bare_profile(tmp_path), [evals, rect], tmp_path / "out2").exit_code == 0
    again = load_tables(tmp_path / "out2", tables=("rectifications",))["rectifications"]
    assert again["invalid_reason"].tolist() == ["重复评价"]


def test_an_invalid_reason_outside_the_code_list_is_kept_as_text_and_scrubbed(tmp_path):
    # Data contract: invalid_reason is free text or a code; the ledger audits text (审核问题).
    evals = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS])
    rect = write(tmp_path / "rect.csv", ["评价编号,核实结论,无效原因", "E2,无效,群众误操作13800138000"])
    out = tmp_path / "out"
    assert run_ingest(bare_profile(tmp_path), [evals, rect], out).exit_code == 0
    (reason,) = load_tables(out, tables=("rectifications",))["rectifications"]["invalid_reason"].tolist()
    assert reason.startswith("群众误操作") and "13800138000" not in reason
