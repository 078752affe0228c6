"""Property tests (hypothesis) for the readers and the privacy scrubber.

1. The same records written in random real-export forms (encoding, BOM, line endings, quoting, null
   markers, full-width/padded keys, time formats with and without zones, split files, split sheets)
   ingest to identical canonical tables — or exit 2 naming file, column and row; never exit 0 with
   other numbers.
2. Identity and phone numbers in every common written form, inside arbitrary text, never survive
   into any output file, log or error message: ingest to canonical Parquet, and canonical CSV loaded
   with ``load_tables``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.ingest.build import build_tables, ingest_files
from haocha_analysis.ingest.privacy import contains_pii
from haocha_analysis.ingest.storage import load_tables

QINGHE = Path(__file__).resolve().parents[1] / "data" / "reference" / "qinghe"
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# --- 1. the readers: one set of records, many written forms ----------------------------------------

HEADER = ["评价编号", "办件编号", "受理部门", "评价渠道", "满意度", "评价时间", "文字评价"]
RECORDS = [
    ["E1", "LS2023001", "东湖区人社局", "PC端", "非常满意", datetime(2023, 4, 1, 0, 5, 9), "办得快"],
    ["E2", "LS2023002", "西山县公安局", "电话", "不满意", datetime(2023, 5, 10, 16, 0, 0), None],
    [
        "E3",
        None,
        "东湖区湖滨街道便民服务中心",
        "短信",
        "满意",
        datetime(2023, 6, 30, 23, 59, 59),
        "第一行\n第二行",
    ],
    [
        "E4",
        "LS2023004",
        "西山县人社局",
        "评议卡",
        "基本满意",
        datetime(2023, 4, 30, 8, 0, 0),
        '说"好"，也说,不好',
    ],
]
NULL_MARKERS = ["", "NULL", "null", "(null)", "-", "无"]
TIME_FORMS = ["iso", "slash", "gbt", "offset", "utc", "t"]
FULL_WIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})


def _time(value: datetime, form: str) -> str:
    if form == "slash":
        return value.strftime("%Y/%m/%d %H:%M:%S")
    if form == "gbt":
        return value.strftime("%Y%m%dT%H%M%S")
    if form == "offset":
        return value.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    if form == "utc":
        return (value - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == "t":
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _key(value: str | None, form: str) -> str | None:
    if value is None:
        return None
    return {"plain": value, "wide": value.translate(FULL_WIDTH), "padded": f"  {value} "}[form]


@st.composite
def export_forms(draw):
    n = len(RECORDS)
    return {
        "type": draw(st.sampled_from(["csv", "csv", "xlsx"])),
        "encoding": draw(st.sampled_from(["utf-8", "utf-8-sig", "gb18030"])),
        "newline": draw(st.sampled_from(["\n", "\r\n"])),
        "quoting": draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
        "title_row": draw(st.booleans()),
        "blank_lines": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        "nulls": draw(st.lists(st.sampled_from(NULL_MARKERS), min_size=n, max_size=n)),
        "keys": draw(st.lists(st.sampled_from(["plain", "wide", "padded"]), min_size=n, max_size=n)),
        "times": draw(st.lists(st.sampled_from(TIME_FORMS), min_size=n, max_size=n)),
        "parts": draw(st.integers(min_value=1, max_value=3)),
    }


def _rows(form: dict) -> list[list[str | None]]:
    rows = []
    for i, (eid, cid, unit, channel, grade, at, comment) in enumerate(RECORDS):
        rows.append(
            [
                _key(eid, form["keys"][i]),
                _key(cid, form["keys"][i]),
                unit,
                channel,
                grade,
                _time(at, form["times"][i]),
                comment if comment is not None else form["nulls"][i],
            ]
        )
    return rows


def _write_csv(path: Path, rows: list, form: dict, blanks: list[bool]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=form["quoting"], lineterminator=form["newline"])
    if form["title_row"]:
        writer.writerow(["青禾市好差评评价数据导出"])
    writer.writerow(HEADER)
    for row, blank in zip(rows, blanks, strict=True):
        if blank:
            buffer.write(form["newline"])
        writer.writerow(["" if c is None else c for c in row])
    path.write_bytes(buffer.getvalue().encode(form["encoding"]))


def _write(folder: Path, form: dict) -> list[Path]:
    rows = _rows(form)
    chunks = [rows[i :: form["parts"]] for i in range(form["parts"])]
    blanks = [form["blank_lines"][i :: form["parts"]] for i in range(form["parts"])]
    if form["type"] == "xlsx":
        wb = Workbook()
        wb.remove(wb.active)
        for i, chunk in enumerate(chunks):
            ws = wb.create_sheet(f"第{i + 1}页")
            if form["title_row"]:
                ws.append(["青禾市好差评评价数据导出"])
            ws.append(HEADER)
            for row, blank in zip(chunk, blanks[i], strict=True):
                if blank:
                    ws.append([])
                ws.append(row)
        wb.save(folder / "export.xlsx")
        return [folder / "export.xlsx"]
    paths = []
    for i, chunk in enumerate(chunks):
        path = folder / f"export-{i}.csv"
        _write_csv(path, chunk, form, blanks[i])
        paths.append(path)
    return paths


PROFILE = "name: forms\ncodes:\n  satisfaction: interface\n"


def _canonical(tables: dict) -> pd.DataFrame:
    return tables["evaluations"].sort_values("eval_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    (folder / "p.yml").write_text(PROFILE, encoding="utf-8")
    plain = {
        "type": "csv",
        "encoding": "utf-8",
        "newline": "\n",
        "quoting": csv.QUOTE_MINIMAL,
        "title_row": False,
        "blank_lines": [False] * 4,
        "nulls": [""] * 4,
        "keys": ["plain"] * 4,
        "times": ["iso"] * 4,
        "parts": 1,
    }
    tables, _ = build_tables(folder / "p.yml", _write(folder, plain), QINGHE, "2023Q2")
    return _canonical(tables)


@PROPERTY
@given(form=export_forms())
def test_every_written_form_ingests_to_the_same_tables(expected, form):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "p.yml").write_text(PROFILE, encoding="utf-8")
        try:
            tables, log = build_tables(folder / "p.yml", _write(folder, form), QINGHE, "2023Q2")
        except HaochaInputError as err:  # allowed only as a clear refusal
            assert err.file and (err.column or err.rows) and err.fix, err.message()
            return
    pd.testing.assert_frame_equal(_canonical(tables), expected)
    assert sum(f["rows_read"] for f in log["files"]) == len(RECORDS)
    assert log["totals"]["evaluations"]["kept"] == len(RECORDS)


# --- 2. privacy: numbers of people in every written form, inside any text --------------------------

SEPARATORS = ["", " ", "-", ".", "/", "\u3000", "－", " - "]


@st.composite
def identity_numbers(draw):
    region = draw(st.sampled_from(["370303", "110101", "440305", "510107"]))
    born = draw(st.dates(min_value=datetime(1930, 1, 1).date(), max_value=datetime(2010, 12, 31).date()))
    seq = draw(st.integers(0, 999))
    if draw(st.booleans()):
        body = f"{region}{born:%Y%m%d}{seq:03d}"
        digits = body + draw(st.sampled_from(list("0123456789Xx")))
        groups = [digits[:6], digits[6:14], digits[14:]]
        alt = [digits[:3], digits[3:6], digits[6:10], digits[10:14], digits[14:]]
    else:  # 15-digit id issued before 1999
        digits = f"{region}{born:%y%m%d}{seq:03d}"
        groups = [digits[:6], digits[6:12], digits[12:]]
        alt = [digits[:3], digits[3:6], digits[6:9], digits[9:12], digits[12:]]
    sep = draw(st.sampled_from(SEPARATORS))
    written = sep.join(draw(st.sampled_from([groups, alt, [digits]])))
    return digits, _width(draw, written)


@st.composite
def mobiles(draw):
    digits = "1" + draw(st.sampled_from("3456789")) + "".join(str(draw(st.integers(0, 9))) for _ in range(9))
    grouping = draw(st.sampled_from([(3, 4, 4), (3, 3, 5), (11,), (4, 3, 4)]))
    parts, at = [], 0
    for size in grouping:
        parts.append(digits[at : at + size])
        at += size
    written = draw(st.sampled_from(SEPARATORS)).join(parts)
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "0086", "86-", "(+86)", "＋86 "]))
    return digits, _width(draw, prefix + written)


def _width(draw, text: str) -> str:
    return text.translate(FULL_WIDTH) if draw(st.booleans()) else text


NOT_DIGIT = st.characters(blacklist_categories=("Cs", "Cc", "Nd", "No"), blacklist_characters="Xx")
TEXT = st.text(st.one_of(NOT_DIGIT, st.sampled_from(list(',"\n ;：号码'))), max_size=12)


@st.composite
def texts_with_numbers(draw):
    numbers = draw(st.lists(st.one_of(identity_numbers(), mobiles()), min_size=1, max_size=2))
    pieces = [draw(TEXT)]
    for _, written in numbers:
        pieces += [written, draw(TEXT)]
    # a neighbour that is a digit would make it a longer number: separate with a letter
    return [d for d, _ in numbers], [w for _, w in numbers], "甲".join(pieces)


def _leaks(text: str, digits: list[str], written: list[str]) -> list[str]:
    bare = "".join(ch for ch in text if ch.isalnum())
    return [w for w in written if w.strip() and w in text] + [d for d in digits if d in bare]


def _all_output_text(folder: Path) -> str:
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".parquet":
            parts.append(pd.read_parquet(path).to_csv(index=False))
        elif path.is_file():
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


@settings(max_examples=200, deadline=None)
@given(samples=st.lists(texts_with_numbers(), min_size=1, max_size=5))
def test_the_scrubber_masks_every_written_form(samples):
    from haocha_analysis.ingest.privacy import scrub

    texts = pd.Series([text for _, _, text in samples], dtype="str")
    out, hit = scrub(texts)
    assert hit.tolist() == list(range(len(samples)))
    for (digits, written, _), masked in zip(samples, out, strict=True):
        assert not _leaks(masked, digits, written), masked
        assert not contains_pii(masked)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=texts_with_numbers(), column=st.sampled_from(["source_system", "operator", "comment", "备注"]))
def test_no_identity_or_phone_number_survives_any_path(sample, column):
    digits, written, text = sample
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    logging.getLogger("haocha").addHandler(handler)
    try:
        seen = _every_path(text, column)
    finally:
        logging.getLogger("haocha").removeHandler(handler)
    seen += logged.getvalue()
    assert not _leaks(seen, digits, written), (text, _leaks(seen, digits, written))


def _every_path(text: str, column: str) -> str:
    """Everything a user can see when ``text`` sits in ``column``: outputs, logs and messages."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = pd.DataFrame(
            {"case_id": ["C1"], "unit_id": ["qh-d1-k1"], "finished_at": ["2023-04-03 09:00:00"]}
        )
        evals = pd.DataFrame(
            {
                "eval_id": ["E1", "E2"],
                "case_id": ["C1", None],
                "unit_id": ["qh-d1-k1", "qh-d2-k2"],
                "channel": ["pc", "sms"],
                "satisfaction": ["5", "3"],
                "evaluated_at": ["2023-04-03 10:00:00", "2023-04-04 10:00:00"],
            }
        )
        target = cases if column == "source_system" else evals
        target[column] = text
        canonical = folder / "canonical"
        canonical.mkdir()
        cases.to_csv(canonical / "cases.csv", index=False)
        evals.to_csv(canonical / "evaluations.csv", index=False)
        # (a) a flat canonical CSV given to --data: scrubbed as it is loaded
        loaded = load_tables(canonical, tables=("cases", "evaluations"))
        seen = "\n".join(f.to_csv(index=False) for f in loaded.values())
        # (b) ingest of the same files: every output file and the log
        out = folder / "out"
        ingest_files(
            "canonical", [canonical / "cases.csv", canonical / "evaluations.csv"], QINGHE, "2023Q2", out
        )
        seen += _all_output_text(out)
        assert not contains_pii(_all_output_text(out))
        # (c) error messages: the text where a code, a unit or a time is expected
        messages = []
        for bad in ("satisfaction", "unit_id", "evaluated_at"):
            broken = evals.copy()
            broken[bad] = text
            broken.to_csv(folder / "bad.csv", index=False)
            try:
                ingest_files("canonical", [folder / "bad.csv"], QINGHE, "2023Q2", folder / "bad-out")
            except HaochaInputError as err:
                messages.append(err.message())
            (folder / "flat").mkdir(exist_ok=True)
            broken.to_csv(folder / "flat" / "evaluations.csv", index=False)
            try:
                load_tables(folder / "flat", tables=("evaluations",))
            except HaochaInputError as err:
                messages.append(err.message())
        return seen + "\n".join(messages)


def test_the_salt_file_is_readable_by_its_owner_only(tmp_path, monkeypatch):
    from haocha_analysis.core import config

    monkeypatch.delenv("HAOCHA_SALT")
    monkeypatch.setattr(config, "SALT_FILE", tmp_path / ".haocha-salt")
    salt = config.hash_salt()
    assert len(salt) == 32 and (tmp_path / ".haocha-salt").stat().st_mode & 0o777 == 0o600
    (tmp_path / ".haocha-salt").chmod(0o644)  # made by an older version
    assert config.hash_salt() == salt and (tmp_path / ".haocha-salt").stat().st_mode & 0o777 == 0o600


def test_repeated_keys_across_partitions_are_kept_for_linkage_and_reported(tmp_path, caplog):
    from haocha_analysis.core.periods import parse_period
    from haocha_analysis.ingest.storage import load_window, write_tables

    def evals(ids, at):
        return pd.DataFrame(
            {
                "eval_id": ids,
                "unit_id": ["qh-d1-k1"] * len(ids),
                "channel": ["pc"] * len(ids),
                "satisfaction": [5] * len(ids),
                "evaluated_at": pd.to_datetime([at] * len(ids)),
            }
        )

    cases = pd.DataFrame({"case_id": [], "unit_id": [], "finished_at": pd.to_datetime([])})
    write_tables({"cases": cases, "evaluations": evals(["E1", "E2"], "2023-03-30")}, tmp_path, "2023Q1")
    write_tables({"cases": cases, "evaluations": evals(["E2", "E3"], "2023-04-02")}, tmp_path, "2023Q2")
    with caplog.at_level(logging.WARNING, logger="haocha.storage"):
        window = load_window(tmp_path, parse_period("2023Q2"))
    e = window["evaluations"]
    assert e["eval_id"].tolist() == ["E1", "E2", "E2", "E3"]  # oldest partition first, nothing dropped
    assert e.attrs["repeated_keys"] == 1
    assert "1 条记录的 eval_id 与更早分区中的记录重复" in caplog.text
    log_entry = json.dumps(e.attrs, ensure_ascii=False)
    assert "E2" not in log_entry and "E2" not in caplog.text
