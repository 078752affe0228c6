"""Readers for exported files: CSV (UTF-8, UTF-8 with BOM, GB18030), XLSX and Parquet.

Each reader returns the file's records with their row numbers as the user sees them (the line of a
CSV, the row of a worksheet, the record number of a Parquet file), so every error and every log
entry can point at rows. The header row is found even below title rows: it is the first row that
names enough known columns. CSV values are read as strings (pyarrow engine, vectorized); Parquet
keeps its types.
"""

from __future__ import annotations

import codecs
import csv
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.ingest.profiles import Profile, fold

# The header row names at least this many known columns (fewer when the row has fewer cells, but
# never fewer than two): a title row such as “淄博市好差评数据导出” names none.
HEADER_MIN_MATCHES = 3
HEADER_MIN_MATCHES_FLOOR = 2
# Title rows above the header are searched this far down.
HEADER_SEARCH_ROWS = 30
# CSV encodings tried in this order when the profile says ``auto``: UTF-8 first, because a UTF-8 file
# almost always also decodes as GB18030 (as mojibake), never the other way round.
AUTO_ENCODINGS = ("utf-8", "gb18030")
_DECODE_CHUNK = 1 << 22
_HEADER_SAMPLE = 1 << 16


@dataclass
class SourceFile:
    """The records of one input file, before any mapping."""

    path: Path
    frame: pd.DataFrame
    rows: np.ndarray  # source row number of each record, as the user sees it
    file_type: str
    encoding: str | None
    header_row: int  # 1-based line/row of the header (0 for Parquet)


def detect_file_type(path: Path, declared: str = "auto") -> str:
    """CSV, XLSX or Parquet: the profile's declaration, else the suffix, else the magic bytes."""
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    with path.open("rb") as fh:
        head = fh.read(4)
    if head == b"PAR1":
        return "parquet"
    if head == b"PK\x03\x04":
        return "xlsx"
    return "csv"


def _empty_error(path: Path, detail: str) -> HaochaInputError:
    return HaochaInputError(
        f"文件为空（{detail}）",
        file=str(path),
        fix="检查导出是否完整、是否选错了文件；若该表在本统计期确无记录，请不要传入此文件",
    )


def _decode_failure(path: Path, encoding: str) -> tuple[int, int] | None:
    """Check that the whole file decodes; return (line, byte offset) of the first bad byte, or None.

    Streams the file in chunks with an incremental decoder (C speed, constant memory).
    """
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    line, offset = 1, 0
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(_DECODE_CHUNK)
            final = not chunk
            try:
                decoder.decode(chunk, final=final)
            except UnicodeDecodeError as err:
                # err.start counts from the undecoded carry-over plus this chunk: close enough for a line.
                pos = max(0, min(len(chunk), err.start))
                return line + chunk[:pos].count(b"\n"), offset + pos
            if final:
                return None
            line += chunk.count(b"\n")
            offset += len(chunk)


def detect_encoding(path: Path, declared: str = "auto") -> str:
    """The encoding of a CSV file: BOM → utf-8-sig; else UTF-8 if the whole file decodes; else GB18030.

    A declared encoding is checked rather than trusted. Undecodable bytes are an input error that
    names the line.
    """
    with path.open("rb") as fh:
        head = fh.read(3)
    if declared == "auto":
        if head == codecs.BOM_UTF8:
            candidates: tuple[str, ...] = ("utf-8-sig",)
        else:
            candidates = AUTO_ENCODINGS
    else:
        candidates = (declared,)
    first_failure = None
    for encoding in candidates:
        failure = _decode_failure(path, encoding)
        if failure is None:
            return encoding
        first_failure = first_failure or failure
    line, offset = first_failure
    tried = " / ".join(c.upper() for c in candidates)
    raise HaochaInputError(
        f"文件无法按 {tried} 解码：第 {line} 行附近（字节位置 {offset}）有无效字节",
        file=str(path),
        rows=[line],
        fix="用 UTF-8 或 GB18030 重新导出该文件；若已知编码，在 profile 中写明 encoding",
    )


def _header_index(rows: list[list[object]], known: set[str]) -> int:
    """Index of the first row that names enough known columns (0 when none does)."""
    for i, cells in enumerate(rows[:HEADER_SEARCH_ROWS]):
        names = [fold(c) for c in cells if c is not None and str(c).strip() != ""]
        if not names:
            continue
        matches = sum(n in known for n in names)
        if matches >= max(HEADER_MIN_MATCHES_FLOOR, min(HEADER_MIN_MATCHES, len(names))):
            return i
    return 0


def read_csv(path: Path, profile: Profile, known: set[str]) -> SourceFile:
    """Read a CSV export as strings (empty cells are missing)."""
    if path.stat().st_size == 0:
        raise _empty_error(path, "0 字节")
    encoding = detect_encoding(path, profile.encoding)
    with path.open("rb") as fh:
        sample = fh.read(_HEADER_SAMPLE).decode(encoding, errors="ignore")
    lines = sample.splitlines()
    if len(sample) == _HEADER_SAMPLE:
        lines = lines[:-1]  # the last line of a sample may be cut
    head_rows = list(csv.reader(lines[:HEADER_SEARCH_ROWS]))
    skip = _header_index(head_rows, known)
    if skip < len(head_rows):
        _check_unique_header(head_rows[skip], path, skip + 1)
    try:
        frame = pd.read_csv(
            path,
            dtype="str",
            keep_default_na=False,
            na_values=[""],
            engine="pyarrow",
            encoding=encoding,
            skiprows=skip,
        )
    except pd.errors.EmptyDataError as err:
        raise _empty_error(path, "没有表头") from err
    except (pd.errors.ParserError, pa.ArrowInvalid, ValueError) as err:
        raise HaochaInputError(
            f"CSV 无法解析：{str(err)[:300]}",
            file=str(path),
            fix="检查分隔符（须为英文逗号）、引号是否成对、各行列数是否与表头一致",
        ) from err
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise _empty_error(path, "只有表头，没有数据行")
    rows = np.arange(len(frame), dtype=np.int64) + skip + 2
    return SourceFile(path, frame, rows, "csv", encoding, skip + 1)


def _cell_text(value: object) -> str | None:
    """One worksheet cell as text, the way a CSV export would have written it."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, time):
        return value.strftime("%H:%M:%S")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value)
    return text if text.strip() != "" else None


def read_xlsx(path: Path, profile: Profile, known: set[str]) -> SourceFile:
    """Read the first (or the profile's) worksheet; the header may sit below title rows."""
    import openpyxl  # imported here: only XLSX inputs pay for it

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as err:
        raise HaochaInputError(
            f"XLSX 文件无法打开：{err}", file=str(path), fix="用 Excel/WPS 另存为 .xlsx 后重试"
        ) from err
    try:
        if profile.sheet and profile.sheet not in workbook.sheetnames:
            raise HaochaInputError(
                f"工作簿中没有工作表“{profile.sheet}”",
                file=str(path),
                fix=f"profile 的 sheet 取其中之一：{'、'.join(workbook.sheetnames)}",
            )
        sheet = workbook[profile.sheet] if profile.sheet else workbook.worksheets[0]
        raw_rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()
    if not any(any(c is not None for c in r) for r in raw_rows):
        raise _empty_error(path, "工作表没有内容")
    head = _header_index(raw_rows, known)
    header = [str(c).strip() if c is not None else f"未命名列{i + 1}" for i, c in enumerate(raw_rows[head])]
    body, rows = [], []
    for number, cells in enumerate(raw_rows[head + 1 :], start=head + 2):
        texts = [_cell_text(c) for c in cells[: len(header)]]
        if any(t is not None for t in texts):
            body.append(texts + [None] * (len(header) - len(texts)))
            rows.append(number)
    if not body:
        raise _empty_error(path, "只有表头，没有数据行")
    _check_unique_header(header, path, head + 1)
    frame = pd.DataFrame(body, columns=header, dtype="str")
    return SourceFile(path, frame, np.asarray(rows, dtype=np.int64), "xlsx", None, head + 1)


def _check_unique_header(header: list[object], path: Path, row: int) -> None:
    """A column name given twice in the header cannot be mapped: say which, where, and the fix."""
    names = [str(c).strip() for c in header if c is not None and str(c).strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise HaochaInputError(
            f"表头中有重复的列名：{'、'.join(repeated)}",
            file=str(path),
            column="、".join(repeated),
            rows=[row],
            fix="重命名或删除重复的列后重新导入",
        )


def read_parquet(path: Path) -> SourceFile:
    """Read a Parquet file, keeping its column types (row number = record number)."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise HaochaInputError(
            f"Parquet 文件无法读取：{err}", file=str(path), fix="确认文件完整且确为 Parquet 格式"
        ) from err
    if table.num_columns == 0:
        raise _empty_error(path, "没有列")
    frame = table.to_pandas()
    if len(frame) == 0:
        raise _empty_error(path, "没有记录")
    frame.columns = [str(c).strip() for c in frame.columns]
    return SourceFile(path, frame, np.arange(1, len(frame) + 1, dtype=np.int64), "parquet", None, 0)


def read_source(path: Path, profile: Profile, known: set[str]) -> SourceFile:
    """Read one input file of any supported type."""
    path = Path(path)
    if not path.is_file():
        raise HaochaInputError("找不到输入文件", file=str(path), fix="检查文件路径")
    if path.stat().st_size == 0:
        raise _empty_error(path, "0 字节")
    kind = detect_file_type(path, profile.file_type)
    if kind == "xlsx":
        return read_xlsx(path, profile, known)
    if kind == "parquet":
        return read_parquet(path)
    return read_csv(path, profile, known)
