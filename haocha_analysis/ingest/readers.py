"""Readers for exported files: CSV (UTF-8, UTF-8 with BOM, GB18030), XLSX and Parquet.

Each reader returns the file's records with their row numbers as the user sees them (the line of a
CSV, the row of a worksheet, the record number of a Parquet file), so every error and every log
entry can point at rows. Blank lines and quoted fields that hold line breaks never shift a reported
row number. The header row is found even below title rows: it is the first row that names enough
known columns. CSV values are read as strings (pyarrow, RFC 4180 quoting with line breaks inside
quotes); an XLSX workbook is read with a streaming reader (python-calamine; openpyxl read-only when
it is not installed), every sheet that has a header of known columns, each sheet as its own source;
Parquet keeps its types. Null markers (``NULL``, ``(null)``, ``-``, ``无`` …, the profile's
``null_values``) become missing values and are counted per column.

No message built here quotes a cell or a row: cells may hold identity or phone numbers.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import itertools
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
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
# One CSV record (with its quoted line breaks) may be at most this long: pyarrow parses in blocks of
# this size, and a longer record is not an export anyone typed (a broken quote, or a pasted file).
MAX_RECORD_BYTES = 16 << 20
# One field may be at most this long: a comment typed by a person is a few KB; a longer field is a
# quote left open or a pasted file, refused with its row rather than carried into every output.
MAX_FIELD_BYTES = 1 << 20
# Numbers from 10^15 up are beyond Excel's 15 significant digits.
EXCEL_EXACT_LIMIT = 1e15
_DECODE_CHUNK = 1 << 22
_HEADER_SAMPLE = 1 << 16
# Compressed files are recognised by their first bytes, whatever their name.
_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!": "rar",
}


@dataclass
class SourceFile:
    """The records of one input file (or one worksheet of a workbook), before any mapping."""

    path: Path
    frame: pd.DataFrame
    rows: np.ndarray  # source row number of each record, as the user sees it
    file_type: str
    encoding: str | None
    header_row: int  # 1-based line/row of the header (0 for Parquet)
    sheet: str | None = None
    null_markers: dict[str, int] = field(default_factory=dict)  # column → cells read as missing
    blank_rows: int = 0  # empty lines/rows between records: skipped, not records
    # rows repeating the header between blocks of records (exports concatenated by hand): skipped
    header_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    dropped_columns: list[str] = field(default_factory=list)  # untitled columns with no value
    sheets_skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """How messages and the log name this source: the file, and the sheet of a workbook."""
        return f"{self.path}（工作表“{self.sheet}”）" if self.sheet is not None else str(self.path)


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


def _empty_error(path: Path | str, detail: str) -> HaochaInputError:
    return HaochaInputError(
        f"文件为空（{detail}）",
        file=str(path),
        fix="检查导出是否完整、是否选错了文件；若该表在本统计期确无记录，请不要传入此文件",
    )


def _refuse_compressed(path: Path) -> None:
    """A compressed file is named as such (gzip, zip …), not called undecodable."""
    with path.open("rb") as fh:
        head = fh.read(8)
    kind = next((name for magic, name in _COMPRESSED.items() if head.startswith(magic)), None)
    if kind is None and head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                members = set(archive.namelist())
        except (zipfile.BadZipFile, OSError):
            members = {"xl/workbook.xml"}  # a damaged zip: the XLSX reader explains it
        if "xl/workbook.xml" not in members:
            kind = "zip"
    if kind:
        raise HaochaInputError(
            f"压缩文件（{kind}）：haocha 不读取压缩包",
            file=str(path),
            fix="先解压，再把其中的 CSV、XLSX 或 Parquet 文件传给 haocha ingest",
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


def _utf8_text(path: Path) -> bool:
    """True when the file is valid UTF-8 and holds non-ASCII text (so GB18030 would read mojibake)."""
    with path.open("rb") as fh:
        head = fh.read(_DECODE_CHUNK)
    return not head.isascii() and _decode_failure(path, "utf-8") is None


def detect_encoding(path: Path, declared: str = "auto") -> str:
    """The encoding of a CSV file: BOM → utf-8-sig; else UTF-8 if the whole file decodes; else GB18030.

    A declared encoding is checked rather than trusted: undecodable bytes are an input error that
    names the line, and a file declared GB18030 that is in fact UTF-8 text (it would decode as
    mojibake without any error) is refused.
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
    if declared == "gb18030" and (head == codecs.BOM_UTF8 or _utf8_text(path)):
        raise HaochaInputError(
            "profile 声明编码为 GB18030，但文件实为 UTF-8：按 GB18030 读会成为乱码",
            file=str(path),
            fix="把 profile 的 encoding 改为 auto 或 utf-8，或用 GB18030 重新导出该文件",
        )
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


def _header_index(rows: list[list[object]], known: set[str]) -> int | None:
    """Index of the first row that names enough known columns (None when no row does)."""
    for i, cells in enumerate(rows[:HEADER_SEARCH_ROWS]):
        names = [fold(c) for c in cells if c is not None and str(c).strip() != ""]
        if not names:
            continue
        matches = sum(n in known for n in names)
        if matches >= max(HEADER_MIN_MATCHES_FLOOR, min(HEADER_MIN_MATCHES, len(names))):
            return i
    return None


def _check_unique_header(header: list[object], name: str, row: int) -> None:
    """A column name given twice in the header cannot be mapped: say which, where, and the fix."""
    names = [str(c).strip() for c in header if c is not None and str(c).strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise HaochaInputError(
            f"表头中有重复的列名：{'、'.join(repeated)}",
            file=name,
            column="、".join(repeated),
            rows=[row],
            fix="重命名或删除重复的列后重新导入",
        )


def _column_names(header: list[object]) -> list[str]:
    """Header cells as column names; an untitled column is named by its position."""
    return [
        str(c).strip() if c is not None and str(c).strip() else f"未命名列{i + 1}"
        for i, c in enumerate(header)
    ]


def _repeated_header(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is its own column's name, folded as headers are: the header again."""
    same = frame.notna().all(axis=1).to_numpy(copy=True)
    for col in frame.columns:
        if not same.any():
            break
        candidates = np.flatnonzero(same)
        cells = frame[col].iloc[candidates].map(fold).to_numpy()
        same[candidates] = cells == fold(col)
    return same


def _tidy(source: SourceFile, header: list[object], profile: Profile) -> SourceFile:
    """Apply what every reader shares: null markers, blank rows, untitled empty columns."""
    frame = source.frame
    markers = profile.null_markers()
    for col in frame.columns:
        s = frame[col]
        if not (s.dtype == object or str(s.dtype) in ("str", "string")):
            continue
        text = s.astype("str") if s.dtype == object else s
        folded = text.str.strip().str.normalize("NFKC").str.lower()
        marked = (folded.isin(markers) | (folded == "")).to_numpy(dtype=bool) & s.notna().to_numpy()
        if marked.any():
            n_markers = int((marked & (folded != "").to_numpy(dtype=bool)).sum())
            if n_markers:
                source.null_markers[str(col)] = n_markers
            frame[col] = s.mask(marked)
    untitled = [
        col
        for col, cell in zip(frame.columns, header, strict=False)
        if (cell is None or str(cell).strip() == "") and frame[col].isna().all()
    ]
    if untitled:
        frame = frame.drop(columns=untitled)
        source.dropped_columns = [str(c) for c in untitled]
    if frame.shape[1]:
        blank = frame.isna().all(axis=1).to_numpy()
        if blank.any():
            source.blank_rows += int(blank.sum())
            frame = frame[~blank].reset_index(drop=True)
            source.rows = source.rows[~blank]
    if frame.shape[1]:
        repeated = _repeated_header(frame)
        if repeated.any():
            source.header_rows = source.rows[repeated]
            frame = frame[~repeated].reset_index(drop=True)
            source.rows = source.rows[~repeated]
    source.frame = frame
    if len(frame) == 0:
        raise _empty_error(source.name, "只有表头，没有数据行")
    return source


# --- CSV ------------------------------------------------------------------------------------------


def _scan_records(path: Path, encoding: str, skip: int, width: int) -> dict[str, Any]:
    """Find the physical lines of malformed records with Python's csv module (error path only).

    Returns the lines of records whose field count differs from the header's (``ragged``), of a
    record longer than :data:`MAX_RECORD_BYTES` (``oversized``) and of a quote never closed
    (``open_quote``).
    """
    found: dict[str, Any] = {"ragged": [], "oversized": None, "open_quote": None}
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_RECORD_BYTES // 4)  # characters of up to 4 bytes
    try:
        with path.open(encoding=encoding, newline="") as fh:
            reader = csv.reader(fh, strict=True)
            line = 0
            try:
                for number, record in enumerate(reader):
                    start, line = line + 1, reader.line_num
                    if number <= skip or not record or record == [""]:
                        continue
                    if len(record) != width:
                        found["ragged"].append(start)
            except csv.Error as err:
                key = "oversized" if "field larger" in str(err) else "open_quote"
                found[key] = line + 1
    finally:
        csv.field_size_limit(limit)
    return found


def _embedded_breaks(table: pa.Table) -> np.ndarray:
    """Line breaks inside the quoted fields of each record (so records map back to physical lines)."""
    total = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        lf = pc.count_substring(column, "\n")
        cr = pc.count_substring(column, "\r")
        crlf = pc.count_substring(column, "\r\n")
        n = pc.subtract(pc.add(lf, cr), crlf).to_numpy(zero_copy_only=False)
        total += np.nan_to_num(n.astype("float64"), nan=0).astype(np.int64)
    return total


def _size(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} KB"


def _csv_error(path: Path, problem: str, rows: list[int] | None, fix: str) -> HaochaInputError:
    return HaochaInputError(problem, file=str(path), rows=rows, fix=fix)


def read_csv(path: Path, profile: Profile, known: set[str]) -> SourceFile:
    """Read a CSV export as strings, RFC 4180 quoting (line breaks inside quotes) every time."""
    if path.stat().st_size == 0:
        raise _empty_error(path, "0 字节")
    encoding = detect_encoding(path, profile.encoding)
    with path.open("rb") as fh:
        sample = fh.read(_HEADER_SAMPLE).decode(encoding, errors="ignore")
    lines = sample.splitlines()
    if len(sample) == _HEADER_SAMPLE:
        lines = lines[:-1]  # the last line of a sample may be cut
    head_rows = list(csv.reader(lines[:HEADER_SEARCH_ROWS]))
    skip = _header_index(head_rows, known) or 0
    if skip >= len(head_rows) or not head_rows[skip]:
        raise _empty_error(path, "没有表头")
    header = head_rows[skip]
    _check_unique_header(header, str(path), skip + 1)
    names = [f"c{i}" for i in range(len(header))]
    ragged = 0

    def on_invalid(_row: object) -> str:
        nonlocal ragged
        ragged += 1
        return "skip"

    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(
                encoding="utf8" if encoding in ("utf-8", "utf-8-sig") else encoding,
                skip_rows=skip + 1,
                column_names=names,
                block_size=MAX_RECORD_BYTES,
            ),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=on_invalid
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError) as err:
        found = _scan_records(path, encoding, skip, len(header))
        if found["oversized"] or "straddling" in str(err):
            raise _csv_error(
                path,
                f"有一行或一个字段超过 {_size(MAX_RECORD_BYTES)}，不是正常的导出记录",
                [found["oversized"]] if found["oversized"] else None,
                "检查该处的引号是否成对（未闭合的引号会把后面的整个文件读成一个字段），或删去过长的内容",
            ) from None
        raise _csv_error(
            path,
            "CSV 无法解析" + ("：引号未闭合" if found["open_quote"] else ""),
            [found["open_quote"]] if found["open_quote"] else None,
            "检查分隔符（须为英文逗号）、引号是否成对、各行列数是否与表头一致",
        ) from None
    if ragged:
        found = _scan_records(path, encoding, skip, len(header))
        raise _csv_error(
            path,
            f"有 {ragged} 行的列数与表头（{len(header)} 列）不一致",
            found["ragged"],
            "检查这些行是否多了或少了逗号；含逗号或换行的内容须用英文双引号括起来",
        )
    # Physical line of each record: after the header, one line per record plus the line breaks
    # inside its quoted fields (blank lines are records of empty cells here, removed by _tidy).
    breaks = _embedded_breaks(table)
    starts = np.arange(table.num_rows, dtype=np.int64) + skip + 2
    starts[1:] += np.cumsum(breaks)[:-1]
    for i, column in enumerate(table.columns):
        lengths = pc.binary_length(column).to_numpy(zero_copy_only=False)
        too_long = np.nan_to_num(lengths.astype("float64"), nan=0) > MAX_FIELD_BYTES
        if too_long.any():
            raise HaochaInputError(
                f"字段超过 {_size(MAX_FIELD_BYTES)}，不是正常的导出内容",
                file=str(path),
                column=_column_names(header)[i],
                rows=starts[too_long].tolist(),
                fix="检查该处的引号是否成对（未闭合的引号会把后面的内容读成一个字段），或删去过长的内容",
            )
    frame = table.to_pandas()
    frame.columns = _column_names(header)
    source = SourceFile(path, frame, starts, "csv", encoding, skip + 1)
    if len(frame) == 0:
        raise _empty_error(path, "只有表头，没有数据行")
    return _tidy(source, header, profile)


# --- XLSX -----------------------------------------------------------------------------------------


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
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not np.isfinite(value) or abs(value) >= EXCEL_EXACT_LIMIT:
            # Excel keeps 15 significant digits: a longer number (an id typed as a number) has lost
            # its last digits, so it is shown the way Excel shows it, and a key check refuses it.
            return f"{value:.6G}" if np.isfinite(value) else repr(value)
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value)
    return text if text.strip() != "" else None


def _column_text(cells: tuple) -> list[str | None]:
    """A worksheet column as text; a column of plain strings takes the fast path."""
    if all(type(c) is str for c in cells):
        return [c if c.strip() else None for c in cells]
    return [_cell_text(c) for c in cells]


def _wanted_sheets(names: list[str], profile: Profile, path: Path) -> list[str]:
    """The sheets to read: the profile's names or patterns, else every sheet."""
    if not profile.sheets:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in profile.sheets)]
    if not chosen:
        raise HaochaInputError(
            f"工作簿中没有与 profile 的 sheet（{'、'.join(profile.sheets)}）相符的工作表",
            file=str(path),
            fix=f"profile 的 sheet 取其中的名称或通配符（如“评价*”）：{'、'.join(names)}",
        )
    return chosen


# Worksheet rows are turned into columns this many at a time, so Python holds one chunk of cells
# (the columns themselves are compact Arrow strings): memory stays flat whatever the sheet's size.
XLSX_CHUNK_ROWS = 1 << 16


class _Workbook:
    """A workbook opened with python-calamine (streaming, Rust), or openpyxl read-only as a fallback."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            import python_calamine
        except ImportError:  # pragma: no cover - the dependency is declared; this is the fallback
            python_calamine = None
        self._calamine = python_calamine
        if python_calamine is not None:
            self._book = python_calamine.CalamineWorkbook.from_path(str(path))
            self.sheet_names = list(self._book.sheet_names)
        else:  # pragma: no cover
            import openpyxl

            self._book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            self.sheet_names = list(self._book.sheetnames)

    def rows(self, name: str) -> tuple[int, Iterator[list[Any]]]:
        """The 0-based index of the sheet's first row, and an iterator over its rows."""
        if self._calamine is not None:
            sheet = self._book.get_sheet_by_name(name)
            start = sheet.start[0] if sheet.start else 0
            return start, (list(r) for r in sheet.iter_rows())
        return 0, (list(r) for r in self._book[name].iter_rows(values_only=True))  # pragma: no cover

    def close(self) -> None:
        self._book.close()


def _damaged(path: Path, sheet: str | None, err: Exception) -> HaochaInputError:
    where = f"工作表“{sheet}”" if sheet else "工作簿"
    return HaochaInputError(
        f"XLSX 文件损坏：{where}无法读取（{type(err).__name__}）",
        file=str(path),
        fix="用 Excel/WPS 打开并另存为 .xlsx 后重试；或导出为 CSV",
    )


def _sheet_columns(rows: Iterator[list[Any]], width: int) -> tuple[list[pa.Array], int]:
    """Turn the remaining rows into ``width`` Arrow string columns, a chunk at a time."""
    parts: list[list[pa.Array]] = [[] for _ in range(width)]
    n = 0
    while chunk := list(itertools.islice(rows, XLSX_CHUNK_ROWS)):
        n += len(chunk)
        padded = [(r + [None] * width)[:width] if len(r) != width else r for r in chunk]
        for i, cells in enumerate(zip(*padded, strict=True)):
            parts[i].append(pa.array(_column_text(cells), type=pa.string()))
    return [pa.chunked_array(p, type=pa.string()) for p in parts], n


def _read_sheet(
    book: _Workbook, name: str, path: Path, profile: Profile, known: set[str], only: bool
) -> SourceFile | str:
    """One worksheet as a source, or the reason it is skipped."""
    start, rows = book.rows(name)
    head_rows = list(itertools.islice(rows, HEADER_SEARCH_ROWS))
    if not any(any(_cell_text(c) is not None for c in r) for r in head_rows):
        return "工作表没有内容"
    head = _header_index(head_rows, known)
    if head is None:
        if not only:
            return "没有可识别的表头（如说明页）"
        head = 0  # the one (or a declared) sheet: the mapping names what is missing
    header_cells = head_rows[head]
    header = _column_names(header_cells)
    label = f"{path}（工作表“{name}”）"
    _check_unique_header(header_cells, label, start + head + 1)
    columns, n = _sheet_columns(itertools.chain(head_rows[head + 1 :], rows), len(header))
    if n == 0:
        return "只有表头，没有数据行"
    frame = pd.DataFrame({h: pd.Series(c, dtype="str") for h, c in zip(header, columns, strict=True)})
    numbers = np.arange(n, dtype=np.int64) + start + head + 2
    return _tidy(
        SourceFile(path, frame, numbers, "xlsx", None, start + head + 1, sheet=name), header_cells, profile
    )


def read_xlsx(path: Path, profile: Profile, known: set[str]) -> list[SourceFile]:
    """Read every data sheet of a workbook, each as its own source (rows split across sheets).

    A data sheet is one whose header (possibly below title rows) names known columns; other sheets
    (notes, empty ones) are skipped and listed. A sheet named by the profile must have such a header.
    """
    try:
        book = _Workbook(path)
    except Exception as err:
        raise _damaged(path, None, err) from None
    sources: list[SourceFile] = []
    skipped: list[dict[str, str]] = []
    try:
        wanted = _wanted_sheets(book.sheet_names, profile, path)
        skipped += [
            {"sheet": n, "reason": "不在 profile 的 sheet 中"} for n in book.sheet_names if n not in wanted
        ]
        only = bool(profile.sheets) or len(wanted) == 1
        for name in wanted:
            try:
                read = _read_sheet(book, name, path, profile, known, only)
            except HaochaInputError:
                raise
            except Exception as err:
                raise _damaged(path, name, err) from None
            if isinstance(read, str):
                skipped.append({"sheet": name, "reason": read})
            else:
                sources.append(read)
    finally:
        book.close()
    if not sources:
        raise _empty_error(
            path, "没有含数据的工作表：" + "；".join(f"{s['sheet']}：{s['reason']}" for s in skipped)
        )
    sources[0].sheets_skipped = skipped
    if len(book.sheet_names) == 1:
        sources[0].sheet = None  # a single-sheet workbook is named by its file alone
    return sources


# --- Parquet --------------------------------------------------------------------------------------


def read_parquet(path: Path, profile: Profile) -> SourceFile:
    """Read a Parquet file, keeping its column types (row number = record number)."""
    try:
        table = pq.read_table(path)
        frame = table.to_pandas()
    except (pa.ArrowException, OSError, ValueError) as err:
        raise HaochaInputError(
            f"Parquet 文件无法读取（{type(err).__name__}）",
            file=str(path),
            fix="确认文件完整且确为 Parquet 格式",
        ) from None
    if table.num_columns == 0:
        raise _empty_error(path, "没有列")
    if len(frame) == 0:
        raise _empty_error(path, "没有记录")
    frame.columns = [str(c).strip() for c in frame.columns]
    for col in frame.columns:
        s = frame[col]
        if (
            pd.api.types.is_float_dtype(s.dtype)
            and np.isinf(s.to_numpy(dtype="float64", na_value=np.nan)).any()
        ):
            bad = np.flatnonzero(np.isinf(s.to_numpy(dtype="float64", na_value=np.nan))) + 1
            raise HaochaInputError(
                "数值列中有无穷大（inf / -inf）",
                file=str(path),
                column=str(col),
                rows=bad.tolist(),
                fix="改正这些记录的取值（或留空）后重新导出",
            )
    source = SourceFile(path, frame, np.arange(1, len(frame) + 1, dtype=np.int64), "parquet", None, 0)
    return _tidy(source, list(frame.columns), profile)


def read_source(path: Path, profile: Profile, known: set[str]) -> list[SourceFile]:
    """Read one input file of any supported type: one source, or one per data sheet of a workbook."""
    path = Path(path)
    if not path.is_file():
        raise HaochaInputError("找不到输入文件", file=str(path), fix="检查文件路径")
    if path.stat().st_size == 0:
        raise _empty_error(path, "0 字节")
    _refuse_compressed(path)
    kind = detect_file_type(path, profile.file_type)
    if kind == "xlsx":
        return read_xlsx(path, profile, known)
    if kind == "parquet":
        return [read_parquet(path, profile)]
    return [read_csv(path, profile, known)]
