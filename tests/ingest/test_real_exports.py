"""Issue 12 and 13: real exports read right or refused, never wrong figures with exit 0.

Each test builds a small literal export in one messy form and asserts the canonical values (not only
the exit status) and the row accounting of ingest_log.json; the refused forms assert exit 2, a
message that names file, column or rows and the fix, and no output.
"""

from __future__ import annotations

import gzip
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook
from test_ingest import EVAL_HEADER, EVAL_ROWS, assert_input_error, bare_profile, run_ingest, write

from haocha_analysis.ingest.build import build_tables

CASE_HEADER = "办件编号,受理部门,办结时间"


def profile(tmp_path: Path, text: str, name: str = "p.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(tmp_path: Path, files: list[Path], *fragments: str, rows: bool = True) -> str:
    """Ingest with the bare profile must be refused: exit 2, these fragments, no output."""
    out = tmp_path / "out"
    return assert_input_error(run_ingest(bare_profile(tmp_path), files, out), out, *fragments, rows=rows)


def accounting(log: dict, table: str = "evaluations", file: int = 0) -> dict:
    return log["files"][file]["tables"][table]


def repaired(log: dict, table: str = "evaluations", file: int = 0) -> dict[str, int]:
    return {r["what"]: r["count"] for r in accounting(log, table, file)["repaired"]}


# --- 12.1 times with a zone offset are Beijing wall time ------------------------------------------


def test_zoned_times_become_beijing_wall_time(tmp_path, qinghe):
    rows = [
        "E1,C1,东湖区人社局,PC端,非常满意,2023-04-01T00:27:07+08:00",  # already Beijing time
        "E2,C2,西山县公安局,电话,不满意,2023-03-31T16:30:00Z",  # UTC: 00:30 on 1 April in Beijing
        "E3,,东湖区湖滨街道便民服务中心,短信,满意,2023-06-02 14:20:00",  # no zone: local time
        "E4,,东湖区人社局,PC端,满意,2023-06-30T16:30:00+00:00",  # 00:30 on 1 July: next period
    ]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    tables, log = build_tables(bare_profile(tmp_path), [f], qinghe, "2023Q2")
    e = tables["evaluations"]
    assert e["eval_id"].tolist() == ["E1", "E2", "E3"]
    assert e["evaluated_at"].tolist() == [
        pd.Timestamp("2023-04-01 00:27:07"),
        pd.Timestamp("2023-04-01 00:30:00"),
        pd.Timestamp("2023-06-02 14:20:00"),
    ]
    assert repaired(log)["evaluated_at（评价时间）带时区（如 Z、+00:00），换算为北京时间"] == 2
    assert accounting(log)["excluded_by_period"]["count"] == 1
    assert accounting(log)["excluded_by_period"]["reasons"][0]["rows"] == [5]


# --- 12.2 full-width and padded keys are normalised, counted ---------------------------------------


def test_full_width_and_padded_keys_keep_their_link(tmp_path, qinghe):
    cases = write(
        tmp_path / "cases.csv",
        [
            CASE_HEADER,
            "LS2023001,东湖区人社局,2023-04-03 09:00:00",
            "LS2023002,西山县公安局,2023-04-04 09:00:00",
        ],
    )
    evals = write(
        tmp_path / "evals.csv",
        [
            EVAL_HEADER,
            "E1,ＬＳ２０２３００１,东湖区人社局,PC端,满意,2023-04-03 10:00:00",  # full width
            "E2, LS2023002\u200b ,西山县公安局,PC端,满意,2023-04-04 10:00:00",  # padded, zero-width
            "Ｅ３,,东湖区人社局,PC端,满意,2023-04-05 10:00:00",
        ],
    )
    tables, log = build_tables(bare_profile(tmp_path), [cases, evals], qinghe, "2023Q2")
    e = tables["evaluations"]
    assert e["eval_id"].tolist() == ["E1", "E2", "E3"]
    assert e["case_id"].tolist()[:2] == ["LS2023001", "LS2023002"]
    assert set(e["case_id"].dropna()) <= set(tables["cases"]["case_id"])  # every link kept
    counts = repaired(log, file=1)
    assert counts["case_id（办件编号）含全角、空白或不可见字符，已归一（NFKC）"] == 2
    assert counts["eval_id（评价编号）含全角、空白或不可见字符，已归一（NFKC）"] == 1


def test_excel_scientific_ids_are_refused_as_such(tmp_path):
    f = write(
        tmp_path / "evals.csv", [EVAL_HEADER, "E1,1.64479E+18,东湖区人社局,PC端,满意,2023-04-03 10:00:00"]
    )
    msg = refused(tmp_path, [f], "科学计数法", "列：办件编号", "行号（前10个）：2")
    assert "1.64479E+18" not in msg  # the shape, never the value


# --- 12.3 and 13.7 workbooks: every data sheet, streamed ------------------------------------------


def _workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def _cells(line: str) -> list[str]:
    return line.split(",")


def test_rows_split_across_sheets_are_all_read_and_logged(tmp_path, qinghe):
    header = _cells(EVAL_HEADER)
    book = _workbook(
        tmp_path / "evals.xlsx",
        {
            "说明": [["本文件由系统导出"], ["字段说明见附件"]],
            "4月": [["青禾市评价数据"], header, _cells(EVAL_ROWS[0])],
            "5月": [header, _cells(EVAL_ROWS[1])],
            "6月": [header, [], _cells(EVAL_ROWS[2])],  # a blank row does not shift row numbers
            "空": [],
        },
    )
    tables, log = build_tables(bare_profile(tmp_path), [book], qinghe, "2023Q2")
    assert tables["evaluations"]["eval_id"].tolist() == ["E1", "E2", "E3"]
    assert [f.get("sheet") for f in log["files"]] == ["4月", "5月", "6月"]
    assert [f["header_row"] for f in log["files"]] == [2, 1, 1]
    assert log["files"][0]["sheets_skipped"] == [
        {"sheet": "说明", "reason": "没有可识别的表头（如说明页）"},
        {"sheet": "空", "reason": "工作表没有内容"},
    ]
    assert log["files"][2]["blank_rows_skipped"] == 1
    result = run_ingest(bare_profile(tmp_path), [book], tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "已导入 1 个文件（3 个工作表）到" in result.output  # one file given, not three
    # the same records as CSV give the same canonical table
    csv = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS])
    from_csv, _ = build_tables(bare_profile(tmp_path), [csv], qinghe, "2023Q2")
    pd.testing.assert_frame_equal(tables["evaluations"], from_csv["evaluations"])


def test_declared_sheet_patterns_and_errors_name_the_sheet(tmp_path, qinghe):
    header = _cells(EVAL_HEADER)
    bad = _cells(EVAL_ROWS[1].replace("不满意", "极好"))
    book = _workbook(
        tmp_path / "evals.xlsx",
        {"评价4月": [header, _cells(EVAL_ROWS[0])], "评价5月": [header, bad], "办件": [header, bad]},
    )
    only_april = profile(tmp_path, "name: p\nsheet: 评价4*\n")
    tables, log = build_tables(only_april, [book], qinghe, "2023Q2")
    assert tables["evaluations"]["eval_id"].tolist() == ["E1"]
    assert {s["sheet"] for s in log["files"][0]["sheets_skipped"]} == {"评价5月", "办件"}
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(profile(tmp_path, "name: p\nsheet: [评价*]\n", "q.yml"), [book], out),
        out,
        "工作表“评价5月”",
        "列：满意度",
        "行号（前10个）：2",
    )


def test_damaged_workbooks_and_sheets_are_exit_2(tmp_path):
    good = _workbook(tmp_path / "good.xlsx", {"评价": [_cells(EVAL_HEADER), _cells(EVAL_ROWS[0])]})
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                data = data[: len(data) // 2]  # a sheet cut in the middle
            dst.writestr(item, data)
    truncated = tmp_path / "truncated.xlsx"
    truncated.write_bytes(good.read_bytes()[:300])
    for path in (broken, truncated):
        out = tmp_path / f"out-{path.stem}"
        assert_input_error(
            run_ingest(bare_profile(tmp_path), [path], out), out, path.name, "XLSX 文件损坏", rows=False
        )


def test_excel_mangled_numbers_in_a_workbook_are_not_silently_rounded(tmp_path):
    row = [*_cells(EVAL_ROWS[0])]
    row[1] = 1.64479e18  # a case number Excel stored as a number
    book = _workbook(tmp_path / "evals.xlsx", {"评价": [_cells(EVAL_HEADER), row]})
    refused(tmp_path, [book], "科学计数法", "列：办件编号")


# --- 12.4 quoted line breaks, blank lines, ragged rows, oversized fields ---------------------------


def test_quoted_line_breaks_keep_row_numbers_and_are_never_printed(tmp_path, qinghe):
    lines = [
        EVAL_HEADER + ",文字评价",
        'E1,C1,东湖区人社局,PC端,非常满意,2023-04-03 10:10:00,"第一行\r\n第二行，电话13912345678"',
        "",  # a blank line
        'E2,C2,西山县公安局,电话,不满意,2023-05-10 16:00:00,"很好"',
        'E3,,东湖区湖滨街道便民服务中心,短信,满意,2023-06-31 14:20:00,"a\nb\nc"',  # bad date: line 6
    ]
    f = write(tmp_path / "evals.csv", lines)
    msg = refused(tmp_path, [f], "列：评价时间", "行号（前10个）：6")
    assert "13912345678" not in msg and "第二行" not in msg
    write(tmp_path / "evals.csv", [*lines[:-1], lines[-1].replace("06-31", "06-30")])
    tables, log = build_tables(bare_profile(tmp_path), [f], qinghe, "2023Q2")
    assert tables["evaluations"]["comment"].tolist() == [
        "第一行\r\n第二行，电话[手机号已脱敏]",
        "很好",
        "a\nb\nc",
    ]
    assert log["files"][0]["rows_read"] == 3 and log["files"][0]["blank_rows_skipped"] == 1


def test_quoted_line_breaks_across_read_blocks(tmp_path, qinghe, monkeypatch):
    """A record whose line break falls on a block boundary parses the same (RFC 4180 every time)."""
    from haocha_analysis.ingest import readers

    monkeypatch.setattr(readers, "MAX_RECORD_BYTES", 1 << 10)
    rows = [EVAL_HEADER + ",文字评价"]
    for i in range(200):
        rows.append(f'E{i},,东湖区人社局,PC端,满意,2023-04-03 10:10:00,"行{i}\n续{i}"')
    f = write(tmp_path / "evals.csv", rows)
    tables, log = build_tables(bare_profile(tmp_path), [f], qinghe, "2023Q2")
    assert tables["evaluations"]["comment"].tolist() == [f"行{i}\n续{i}" for i in range(200)]
    assert log["files"][0]["rows_read"] == 200


def test_ragged_rows_are_reported_with_their_line(tmp_path):
    lines = [EVAL_HEADER, EVAL_ROWS[0], "", 'E2,C2,"西山县\n公安局",电话', EVAL_ROWS[2] + ",13912345678"]
    f = write(tmp_path / "evals.csv", lines)
    msg = refused(tmp_path, [f], "evals.csv", "列数", "行号（前10个）：4, 6", "逗号")
    assert "13912345678" not in msg and "西山县" not in msg


def test_an_oversized_field_is_a_clear_error(tmp_path, monkeypatch):
    from haocha_analysis.ingest import readers

    monkeypatch.setattr(readers, "MAX_FIELD_BYTES", 1 << 16)  # 1 MB in production, 64 KB here
    f = tmp_path / "evals.csv"
    big = "长" * (1 << 15)  # 96 KB of UTF-8
    f.write_text(
        "\n".join([EVAL_HEADER + ",文字评价", EVAL_ROWS[0] + ",好", EVAL_ROWS[1] + f',"{big}"']) + "\n"
    )
    msg = refused(
        tmp_path,
        [f],
        "evals.csv",
        "超过 64 KB",
        "列：文字评价",
        "行号（前10个）：3",
    )
    assert "straddl" not in msg and big[:10] not in msg
    # a record longer than a read block (pyarrow's "straddling object") is the same kind of message
    monkeypatch.setattr(readers, "MAX_RECORD_BYTES", 1 << 14)
    msg = refused(tmp_path, [f], "evals.csv", "超过", rows=False)
    assert "straddl" not in msg and big[:10] not in msg


# --- 12.5 null markers -----------------------------------------------------------------------------


def test_null_markers_are_missing_values_and_counted(tmp_path, qinghe):
    header = EVAL_HEADER + ",评价次数,文字评价,上报时间"
    rows = [
        EVAL_ROWS[0] + ",NULL,(null),-",
        EVAL_ROWS[1] + ",null,无,",
        EVAL_ROWS[2] + ",1, NULL ,2023-06-02 14:21:00",
    ]
    f = write(tmp_path / "evals.csv", [header, *rows])
    tables, log = build_tables(bare_profile(tmp_path), [f], qinghe, "2023Q2")
    e = tables["evaluations"]
    assert e["attempt"].tolist() == [1, 1, 1]
    assert e["comment"].isna().all()
    assert e["reported_at"].isna().tolist() == [True, True, False]
    assert log["files"][0]["null_markers"] == {"评价次数": 2, "文字评价": 3, "上报时间": 1}
    assert repaired(log)["评价次数为空，按 1（首次评价）处理"] == 2
    # a null in a required column rejects the row, with its reason and row number
    write(tmp_path / "evals.csv", [header, *rows[:2], rows[2].replace("满意", "NULL", 1)])
    tables, log = build_tables(bare_profile(tmp_path), [f], qinghe, "2023Q2")
    assert accounting(log)["rejected"]["reasons"] == [
        {"reason": "必填列 satisfaction（满意度）为空", "count": 1, "rows": [4]}
    ]


def test_a_profile_declares_its_own_null_markers(tmp_path, qinghe):
    f = write(
        tmp_path / "evals.csv", [EVAL_HEADER + ",文字评价", EVAL_ROWS[0] + ",-", EVAL_ROWS[1] + ",暂无"]
    )
    p = profile(tmp_path, "name: p\nnull_values: [暂无]\n")
    tables, _ = build_tables(p, [f], qinghe, "2023Q2")
    assert tables["evaluations"]["comment"].fillna("<NA>").tolist() == ["-", "<NA>"]


# --- 12.6 text code tables, aliases switched off or replaced ---------------------------------------


def test_text_code_tables_for_three_level_exports(tmp_path, qinghe):
    rows = [
        r.replace("非常满意", "好评").replace("不满意", "差评").replace(",满意,", ",中评,") for r in EVAL_ROWS
    ]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    p = profile(tmp_path, "name: p\ncodes:\n  satisfaction: {好评: 满意, 中评: 基本满意, 差评: 不满意}\n")
    tables, _ = build_tables(p, [f], qinghe, "2023Q2")
    assert tables["evaluations"]["satisfaction"].tolist() == [4, 2, 3]


def test_a_profile_switches_off_or_replaces_built_in_aliases(tmp_path, qinghe):
    header = EVAL_HEADER + ",部门编码"
    rows = [r + ",91370300MA3C000001" for r in EVAL_ROWS]  # 统一社会信用代码, not a unit_id
    f = write(tmp_path / "evals.csv", [header, *rows])
    refused(tmp_path, [f], "列：部门编码")
    off = profile(tmp_path, "name: p\ncolumns:\n  evaluations:\n    unit_id: null\n")
    tables, log = build_tables(off, [f], qinghe, "2023Q2")
    assert tables["evaluations"]["unit_id"].tolist() == ["qh-d1-k1", "qh-d2-k2", "qh-d1-t1"]
    assert "部门编码" in log["files"][0]["extra_columns"]
    # aliases: none — only the profile's names (and canonical names) are looked up
    only = profile(
        tmp_path,
        "name: p\naliases: none\ncolumns:\n  evaluations:\n    eval_id: 评价编号\n    unit_name: 受理部门\n"
        "    channel: 评价渠道\n    satisfaction: 满意度\n    evaluated_at: 评价时间\n",
    )
    tables, log = build_tables(only, [f], qinghe, "2023Q2")
    assert "case_id" not in log["files"][0]["columns"]["evaluations"]
    assert {"办件编号", "部门编码"} <= set(log["files"][0]["extra_columns"])


# --- 12.8 smaller: rows per file, export headers, trailing empty columns ---------------------------


def test_duplicate_keys_across_files_name_each_file_and_the_export_header(tmp_path):
    a = write(tmp_path / "a.csv", [EVAL_HEADER, *EVAL_ROWS])
    b = write(tmp_path / "b.csv", [EVAL_HEADER, EVAL_ROWS[2], EVAL_ROWS[1].replace("不满意", "满意")])
    msg = refused(tmp_path, [a, b], "a.csv 第 3 行", "b.csv 第 3 行", "列：评价编号")
    assert "行号（前10个）：3\n" in msg  # the rows of the named file only


def test_a_trailing_empty_column_is_dropped_not_kept_as_unnamed(tmp_path, qinghe):
    f = write(tmp_path / "evals.csv", [EVAL_HEADER + ",", *(r + "," for r in EVAL_ROWS)])
    tables, log = build_tables(bare_profile(tmp_path), [f], qinghe, "2023Q2")
    assert not [c for c in tables["evaluations"].columns if "Unnamed" in c or "未命名" in c]
    assert log["files"][0]["empty_untitled_columns_dropped"] == ["未命名列7"]


# --- 13.5 / 13.6 probes: exit 2 with a clear message, never a traceback -----------------------------


def test_infinite_floats_in_parquet_are_exit_2(tmp_path):
    frame = pd.DataFrame(
        {
            "eval_id": ["E1", "E2"],
            "unit_id": ["qh-d1-k1", "qh-d1-k1"],
            "channel": ["pc", "pc"],
            "satisfaction": [5.0, np.inf],
            "evaluated_at": pd.to_datetime(["2023-04-03 10:00", "2023-04-03 11:00"]),
        }
    )
    path = tmp_path / "evals.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    out = tmp_path / "out"
    assert_input_error(
        run_ingest("canonical", [path], out),
        out,
        "evals.parquet",
        "无穷大",
        "列：satisfaction",
        "行号（前10个）：2",
    )


def test_width_variants_of_digits_are_the_digits(tmp_path, qinghe):
    rows = [EVAL_ROWS[0].replace("非常满意", "５"), EVAL_ROWS[1].replace("不满意", "²"), EVAL_ROWS[2]]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    tables, _ = build_tables(bare_profile(tmp_path, satisfaction="interface"), [f], qinghe, "2023Q2")
    assert tables["evaluations"]["satisfaction"].tolist() == [5, 2, 4]  # NFKC, as every key and code


@pytest.mark.parametrize("code", ["٣", "৩", "三", "5.5", "-1"])
def test_non_ascii_digits_in_code_columns_are_exit_2(tmp_path, code):
    rows = [EVAL_ROWS[0].replace("非常满意", code), *EVAL_ROWS[1:]]
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *rows])
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(bare_profile(tmp_path, satisfaction="interface"), [f], out),
        out,
        "列：满意度",
        "行号（前10个）：2",
    )


def test_compressed_inputs_are_named_as_such(tmp_path):
    plain = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS])
    gz = tmp_path / "evals.csv.gz"
    with plain.open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    archive = tmp_path / "evals.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(plain, "evals.csv")
    disguised = tmp_path / "evals2.csv"
    disguised.write_bytes(gz.read_bytes())
    for path, kind in ((gz, "gzip"), (archive, "zip"), (disguised, "gzip")):
        out = tmp_path / f"out-{path.name}"
        assert_input_error(
            run_ingest(bare_profile(tmp_path), [path], out),
            out,
            path.name,
            f"压缩文件（{kind}）",
            "解压",
            rows=False,
        )


def test_utf8_declared_gb18030_is_refused_not_mojibake(tmp_path, qinghe):
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS], encoding="utf-8")
    out = tmp_path / "out"
    assert_input_error(
        run_ingest(profile(tmp_path, "name: p\nencoding: gb18030\n"), [f], out),
        out,
        "evals.csv",
        "实为 UTF-8",
        "encoding",
        rows=False,
    )
    g = write(tmp_path / "gb.csv", [EVAL_HEADER, *EVAL_ROWS], encoding="gb18030")
    tables, log = build_tables(profile(tmp_path, "name: p\nencoding: gb18030\n"), [g], qinghe, "2023Q2")
    assert log["files"][0]["encoding"] == "gb18030" and len(tables["evaluations"]) == 3


def test_blank_lines_do_not_shift_reported_rows(tmp_path):
    lines = [EVAL_HEADER, "", EVAL_ROWS[0], "", "", EVAL_ROWS[1].replace("电话", "传真")]
    f = write(tmp_path / "evals.csv", lines)
    refused(tmp_path, [f], "列：评价渠道", "行号（前10个）：6")


def test_a_header_row_repeated_inside_the_data_is_skipped_and_counted(tmp_path, qinghe):
    # Exports concatenated by hand (or pasted sheet after sheet) repeat the header between blocks;
    # before, the repeated row was read as a record: "单位名称找不到：受理部门" and nothing imported.
    # Row numbers after a repeated header stay the ones the user sees (E2 is line 4).
    bad = [EVAL_HEADER, EVAL_ROWS[0], EVAL_HEADER, EVAL_ROWS[1].replace("电话", "传真")]
    refused(tmp_path, [write(tmp_path / "evals.csv", bad)], "列：评价渠道", "行号（前10个）：4")
    lines = [EVAL_HEADER, EVAL_ROWS[0], " " + EVAL_HEADER.replace(",", " ,"), EVAL_ROWS[1], EVAL_ROWS[2]]
    f = write(tmp_path / "evals.csv", lines)
    out = tmp_path / "out1"
    result = run_ingest(bare_profile(tmp_path), [f], out)
    assert result.exit_code == 0, result.output
    log = json.loads((out / "ingest_log.json").read_text(encoding="utf-8"))
    entry = log["files"][0]
    assert entry["rows_read"] == 3
    assert entry["header_rows_skipped"] == {"count": 1, "rows": [3]}
    assert accounting(log)["kept"] == 3
    # A row that only shares some header cells is data, not a header.
    partly = EVAL_ROWS[2].replace("E3", "评价编号")
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, EVAL_ROWS[0], partly])
    result = run_ingest(bare_profile(tmp_path), [f], tmp_path / "out2")
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "out2" / "ingest_log.json").read_text(encoding="utf-8"))
    assert log["files"][0]["header_rows_skipped"] == {"count": 0, "rows": []}
    assert accounting(log)["kept"] == 2


def test_ingest_log_is_json_and_accounts_for_every_row(tmp_path, qinghe):
    f = write(tmp_path / "evals.csv", [EVAL_HEADER, "", *EVAL_ROWS, ",,,,,"])
    out = tmp_path / "out"
    result = run_ingest(bare_profile(tmp_path), [f], out)
    assert result.exit_code == 0, result.output
    log = json.loads((out / "ingest_log.json").read_text(encoding="utf-8"))
    entry = log["files"][0]
    assert entry["rows_read"] == 3 and entry["blank_rows_skipped"] == 2
    t = entry["tables"]["evaluations"]
    assert t["records"] == t["kept"] == 3


# --- What must hold: a linkage drop is counted and, above a threshold, a warning ---------------------


def test_an_evaluation_file_naming_no_case_beside_cases_is_warned(tmp_path):
    # The vendor renamed 办件编号 to 业务流水号: every evaluation would silently lose its case, and
    # 附件1's 评价数 drop to 0 with exit 0 (the 5 % check only sees evaluations that name a case).
    cases = write(
        tmp_path / "cases.csv",
        [CASE_HEADER, "C1,东湖区人社局,2023-04-03 09:00:00", "C2,西山县公安局,2023-04-04 09:00:00"],
    )
    renamed = EVAL_HEADER.replace("办件编号", "业务流水号")
    evals = write(tmp_path / "evals.csv", [renamed, *EVAL_ROWS])
    out = tmp_path / "out"
    result = run_ingest(bare_profile(tmp_path), [cases, evals], out)
    assert result.exit_code == 0, result.output
    assert f"警告：文件 {evals} 的 3 条评价都没有办件编号" in result.output
    assert "业务流水号" in result.output
    log = json.loads((out / "ingest_log.json").read_text(encoding="utf-8"))
    assert log["linkage"]["files_naming_no_case"] == [{"file": str(evals), "count": 3}]
    # An evaluation file that names cases is not warned, even when some rows name none (E3).
    evals = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS])
    result = run_ingest(bare_profile(tmp_path), [cases, evals], tmp_path / "out2")
    assert result.exit_code == 0 and "警告" not in result.output, result.output


def test_unlinked_evaluations_are_counted_and_warned(tmp_path):
    cases = write(tmp_path / "cases.csv", [CASE_HEADER, "C1,东湖区人社局,2023-04-03 09:00:00"])
    evals = write(tmp_path / "evals.csv", [EVAL_HEADER, *EVAL_ROWS])  # E2 names C2: not ingested
    out = tmp_path / "out"
    result = run_ingest(bare_profile(tmp_path), [cases, evals], out)
    assert result.exit_code == 0, result.output
    assert "警告：50.0% 的评价（1 条）所评办件不在本次导入的办件中" in result.output
    log = json.loads((out / "ingest_log.json").read_text(encoding="utf-8"))
    assert log["linkage"]["evaluations_naming_a_case"] == 2
    assert log["linkage"]["case_not_in_this_ingest"] == 1
    assert log["linkage"]["by_file"] == [{"file": str(evals), "count": 1, "rows": [3]}]
    cases = write(
        tmp_path / "cases.csv",
        [CASE_HEADER, "C1,东湖区人社局,2023-04-03 09:00:00", "C2,西山县公安局,2023-04-04 09:00:00"],
    )
    result = run_ingest(bare_profile(tmp_path), [cases, evals], tmp_path / "out2")
    assert result.exit_code == 0 and "警告" not in result.output
