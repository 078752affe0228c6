"""Reading and writing the canonical tables.

Writers (``haocha ingest``, ``haocha synth``) write Parquet partitioned by period::

    DIR/cases/period=2023Q2/part-0.parquet
    DIR/evaluations/period=2023Q2/part-0.parquet
    DIR/rectifications/period=2023Q2/part-0.parquet

Readers also accept ``DIR/cases.parquet`` or ``DIR/cases.csv`` (canonical column names). A period's
load reads the partitions whose period overlaps it, and only the columns asked for.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from haocha_analysis.core import atomic, outputs
from haocha_analysis.core.config import is_url
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.linkage import distinct_ids
from haocha_analysis.core.memory import release_unused
from haocha_analysis.core.periods import Period, latest_complete_quarter, parse_period
from haocha_analysis.core.schemas import (
    CHANNEL_CODES,
    DTYPES,
    REQUIRED,
    TABLES,
    VERDICTS,
    coerce,
    validate,
)
from haocha_analysis.ingest.privacy import not_a_key, scrub_frame


def partitions(data_dir: Path, table: str) -> dict[str, Path]:
    """Partition label → folder, for a partitioned table."""
    base = Path(data_dir) / table
    if not base.is_dir():
        return {}
    return {p.name.split("=", 1)[1]: p for p in sorted(base.glob("period=*")) if p.is_dir()}


def url_root(url: str) -> tuple[object, str]:
    """The fsspec filesystem of a data URL and the folder's path on it (no trailing slash).

    Raises:
        HaochaInputError: the URL's scheme is unknown, or its fsspec driver is not installed.
    """
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(str(url))
    except (ImportError, ValueError) as err:
        raise HaochaInputError(
            f"无法读取地址：{err}",
            file=str(url),
            column="--data",
            fix="安装该地址所需的 fsspec 驱动（如 s3:// 需 pip install s3fs，gs:// 需 gcsfs），"
            "或检查地址的写法",
        ) from err
    return fs, root.rstrip("/")


def url_partitions(url: str, table: str) -> dict[str, str]:
    """Partition label → folder path on the URL's filesystem, for a partitioned table at a URL.

    What :func:`partitions` is for a local folder; a listing only, nothing is read.
    """
    fs, root = url_root(url)
    base = f"{root}/{table}"
    if not fs.isdir(base):
        return {}
    folders = sorted(fs.ls(base, detail=False))
    return {
        PurePosixPath(p).name.split("=", 1)[1]: p
        for p in folders
        if PurePosixPath(p).name.startswith("period=") and fs.isdir(p)
    }


def available_periods(data_dir: Path | str) -> list[str]:
    """Labels of the periods stored in a data folder or at a URL (from the cases partitions)."""
    if is_url(data_dir):
        return list(url_partitions(str(data_dir), "cases"))
    return list(partitions(data_dir, "cases"))


def resolve_period_in(text: str, data_dir: object = None, *, follow_data: bool = True) -> Period:
    """A period as a user writes it; ``latest`` is read the same way by every verb.

    ``latest`` is the last complete quarter the data folder (or URL) holds (data ending in 2023Q2
    gives 2023Q2 in 2026), so that no verb reports on a quarter the data do not reach. With no
    folder, a folder without period partitions, or ``follow_data=False`` (``haocha run`` with an
    inbox: the new quarter's exports are waiting to be ingested), it is the last complete calendar
    quarter.
    """
    if str(text).strip().lower() != "latest":
        return parse_period(text)
    calendar_latest = latest_complete_quarter()
    if not follow_data or data_dir is None or (not is_url(data_dir) and not Path(data_dir).is_dir()):
        return calendar_latest
    held = []
    for label in available_periods(data_dir):
        try:
            p = parse_period(label)
        except HaochaInputError:
            continue
        if p.end <= calendar_latest.end:
            held.append(p)
    if not held:
        return calendar_latest
    last = max(held, key=lambda p: p.end)
    return parse_period(f"{last.end.year}Q{(last.end.month - 1) // 3 + 1}")


def _overlaps(label: str, period: Period) -> bool:
    try:
        p = parse_period(label)
    except HaochaInputError:
        return True
    return p.start <= period.end and p.end >= period.start


def _refuse_overlapping(labels: list[str], source: Path) -> None:
    """Partitions whose periods overlap (``2023Q2`` beside ``2023-05``) would count records twice."""
    spans = []
    for label in labels:
        try:
            p = parse_period(label)
        except HaochaInputError:
            continue
        spans.append((p.start, p.end, label))
    spans.sort()
    clashes, latest = [], None  # latest: the span reaching furthest so far
    for span in spans:
        if latest is not None and span[0] <= latest[1]:
            clashes.append((latest[2], span[2]))
        if latest is None or span[1] > latest[1]:
            latest = span
    if clashes:
        pairs = "、".join(f"period={x} 与 period={y}" for x, y in clashes[:5])
        raise HaochaInputError(
            f"数据目录中有时间重叠的分区：{pairs}，同一批记录会被重复计数",
            file=str(source),
            fix="每个时段只保留一份数据：删除其中一个分区目录（或重新导入），"
            "内置合成数据可用 make clean-data 清除后重新生成",
        )


def _available(table: str, wanted: list[str] | None, names: list[str], source: Path) -> list[str] | None:
    """The wanted columns the source has; a missing required column is a clear error."""
    if wanted is None:
        return None
    missing_required = [c for c in wanted if c not in names and c in REQUIRED[table]]
    if missing_required:
        raise HaochaInputError(
            f"{table} 表缺少必需的列：{'、'.join(missing_required)}",
            file=str(source),
            column="、".join(missing_required),
            fix="规范表的列名见 docs/data-contract.md；原始导出请用 haocha ingest 导入",
        )
    return [c for c in wanted if c in names]


log = logging.getLogger("haocha.storage")
_READ_FIX = (
    "确认文件完整；规范表请用 haocha ingest 或 haocha synth 生成（列名与取值见 docs/data-contract.md）"
)


def _read_parquet(path: Path, table: str, columns: list[str] | None) -> pd.DataFrame:
    """One canonical Parquet file; a damaged one is an input error (never its content)."""
    return _converted(_read_arrow(path, table, columns), table, path)


def _read_arrow(path: Path, table: str, columns: list[str] | None) -> pa.Table:
    """One canonical Parquet file as Arrow (the columns wanted that it has)."""
    try:
        wanted = _available(table, columns, pq.read_schema(path).names, path)
        return pq.read_table(path, columns=wanted)
    except (pa.ArrowException, OSError) as err:
        raise _unreadable(err, table, path) from None


def _converted(data: pa.Table, table: str, path: Path) -> pd.DataFrame:
    """An Arrow table as pandas (a failed conversion is an input error naming the file)."""
    try:
        return data.to_pandas()
    except (pa.ArrowException, OSError) as err:
        raise _unreadable(err, table, path) from None


def _unreadable(err: Exception, table: str, path: Path) -> HaochaInputError:
    """The error of a damaged Parquet file: its table, the file and the fix, never its content."""
    return HaochaInputError(
        f"{table} 表的 Parquet 文件无法读取（{type(err).__name__}）", file=str(path), fix=_READ_FIX
    )


def _read_parquet_files(
    files: list[Path], table: str, columns: list[str] | None
) -> tuple[pd.DataFrame, list[int]]:
    """Several Parquet files of one table as one frame, and the rows each gave.

    Files with one schema (the usual case) are joined as Arrow tables and converted once: the
    timestamps and numbers are copied into pandas once, not once per file and again to join them.
    """
    tables = [_read_arrow(f, table, columns) for f in files]
    sizes = [t.num_rows for t in tables]
    if len(tables) > 1 and all(t.schema.equals(tables[0].schema) for t in tables[1:]):
        frame = _converted(pa.concat_tables(tables), table, files[0].parent)
        frame.index = pd.RangeIndex(len(frame))
        return frame, sizes
    frames = [_converted(t, table, f) for t, f in zip(tables, files, strict=True)]
    return (pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]), sizes


def _read_csv(path: Path, table: str, columns: list[str] | None) -> pd.DataFrame:
    """One canonical CSV file (UTF-8, with or without BOM); a parse failure never quotes a row."""
    try:
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns.tolist()
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            usecols=_available(table, columns, header, path),
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as err:
        line = re.search(r"line (\d+)", str(err))
        raise HaochaInputError(
            f"{table} 表的 CSV 文件无法读取（{type(err).__name__}）",
            file=str(path),
            rows=[int(line[1])] if line else None,
            fix="规范 CSV 须为 UTF-8 编码、英文逗号分隔、各行列数与表头一致；原始导出请用 haocha ingest 导入",
        ) from None


def key_column(table: str) -> str:
    """The id that names a row of a table: case_id for cases, eval_id for evaluations and rectifications."""
    return "case_id" if table == "cases" else "eval_id"


def stored_twice(
    frame: pd.DataFrame,
    table: str,
    part: np.ndarray,
    read_all: Callable[[], pd.DataFrame] | None = None,
) -> np.ndarray:
    """Mask of the rows that repeat, in every stored column, a row of an earlier period partition.

    Ingesting consecutive quarters from one export stores an evaluation made in July of a June case
    in both (its case's quarter keeps it for 评价数, its own quarter for the evaluations made then):
    the same record twice is the storage's doing, not a repeat in the source, and is read once. A key
    repeated with any difference, or repeated inside one partition, stays for the linkage rule and
    quality. The one rule for every reader (pandas and Dask, whatever columns it reads).

    Args:
        frame: the window's rows in load order (all columns or some).
        table: canonical table name.
        part: per row, the index of the period partition it was read from.
        read_all: when ``frame`` holds only some columns, a function returning the same rows with
            every stored column (called only when a key repeats, so a window without repeats pays
            nothing for it).
    """
    key = key_column(table)
    drop = np.zeros(len(frame), dtype=bool)
    if not len(frame) or part.min() == part.max():  # one partition: nothing stored twice
        return drop
    full = None
    if key not in frame:
        if read_all is None:
            return drop
        frame = full = read_all()
    # The linkage's own encoding says whether any key repeats (computed once, reused by link()):
    # only then are the rows compared.
    given, distinct = distinct_ids(frame[key])
    if given == distinct:
        return drop
    keys = frame[key]
    candidates = (keys.notna() & keys.duplicated(keep=False)).to_numpy(dtype=bool)
    if not candidates.any():
        return drop
    if full is None:
        full = frame if read_all is None else read_all()
    values = [c for c in DTYPES[table] if c in full]
    rows = full.loc[candidates, values].assign(_part=part[candidates])
    within = rows.duplicated(subset=[*values, "_part"], keep="first")
    across = rows.duplicated(subset=values, keep="first") & ~within
    drop[np.flatnonzero(candidates)[across.to_numpy(dtype=bool)]] = True
    return drop


def _drop_stored_twice(
    frame: pd.DataFrame,
    table: str,
    part: np.ndarray,
    source: Path,
    read_all: Callable[[], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """:func:`stored_twice` applied: those rows dropped, said and counted (``attrs["stored_twice"]``)."""
    drop = stored_twice(frame, table, part, read_all)
    dropped = int(drop.sum())
    if dropped:
        frame = frame[~drop].reset_index(drop=True)
        log.info(
            "%s：%d 条记录在相邻两个分区中完全相同（同一导出分两期导入时常见），按一条读取",
            source,
            dropped,
        )
    frame.attrs["stored_twice"] = dropped
    return frame


def _report_repeated(frame: pd.DataFrame, table: str, source: Path, n_partitions: int) -> None:
    """Count keys stored in more than one row and say so (never silent); they are kept."""
    key = key_column(table)
    if key not in frame or n_partitions < 2:
        frame.attrs["repeated_keys"] = 0
        return
    # How many rows repeat an earlier key, by the linkage rule's own encoding of the trimmed ids:
    # computed once here, reused by every later link() of the same column (core/linkage.py).
    given, distinct = distinct_ids(frame[key])
    repeated = given - distinct
    frame.attrs["repeated_keys"] = repeated
    if repeated:
        log.warning(
            "%s：%d 条记录的 %s 与更早分区中的记录重复；按关联规则取最早的一条，其余作为重复记录由质检计数",
            source,
            repeated,
            key,
        )


# With ``origin``, every loaded row carries the file it came from and its row number there (a header
# row counts in a CSV), so that a check across tables can name the file and rows a user opens.
ORIGIN_COLUMNS = ("_file", "_row")


def _with_origin(frame: pd.DataFrame, source: Path, first_row: int) -> pd.DataFrame:
    frame = frame.copy(deep=False)  # copy-on-write: columns below are replaced, never changed in place
    frame["_file"] = pd.Series(str(source), index=frame.index, dtype="str")
    frame["_row"] = np.arange(first_row, first_row + len(frame), dtype=np.int64)
    return frame


def _read_one(
    data_dir: Path, table: str, period: Period | None, columns: list[str] | None, origin: bool = False
) -> pd.DataFrame:
    data_dir = Path(data_dir)
    parts = partitions(data_dir, table)
    source = data_dir / table  # named in error messages
    if parts:
        labels = window_labels(list(parts), period, data_dir / table)
        chosen = [parts[label] for label in labels]
        listed = [(i, f) for i, path in enumerate(chosen) for f in sorted(path.glob("*.parquet"))]
        files = [f for _, f in listed]
        if not files:
            empty = coerce(pd.DataFrame(columns=columns or list(DTYPES[table])), table)
            empty = empty[columns or slice(None)]
            return _with_origin(empty, source, 1) if origin else empty
        if origin:
            frames = [_with_origin(_read_parquet(f, table, columns), f, 1) for f in files]
            frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            sizes = [len(f) for f in frames]
        else:
            frame, sizes = _read_parquet_files(files, table, columns)
        if len(chosen) > 1:
            parts_index = np.repeat([i for i, _ in listed], sizes)

            def read_all() -> pd.DataFrame:  # every stored column: a record is the same in all
                return pd.concat([_read_parquet(f, table, None) for f in files], ignore_index=True)

            frame = _drop_stored_twice(
                frame, table, parts_index, data_dir / table, None if columns is None else read_all
            )
        # Partitions are read oldest first; a key stored in two partitions is not dropped here: the
        # linkage rule takes the first row and marks the others, the quality checks count them.
        _report_repeated(frame, table, data_dir / table, len(chosen))
    elif (path := data_dir / f"{table}.parquet").exists():
        source = path
        frame = _read_parquet(path, table, columns)
        if origin:
            frame = _with_origin(frame, path, 1)
    elif (path := data_dir / f"{table}.csv").exists():
        source = path
        frame = _read_csv(path, table, columns)
        if origin:
            frame = _with_origin(frame, path, 2)
    elif table == "rectifications":
        frame = pd.DataFrame(columns=columns or list(DTYPES[table]))
        if origin:
            frame = _with_origin(frame, source, 1)
    else:
        raise HaochaInputError(
            f"数据目录中找不到 {table} 表",
            file=str(data_dir),
            fix=f"先运行 haocha ingest 或 haocha synth 生成规范表，或放入 {table}.parquet / {table}.csv",
        )
    return finish_read(frame, table, source, columns, origin)


def window_labels(labels: list[str], period: Period | None, source: Path | str) -> list[str]:
    """The partition labels a load of ``period`` reads (all when None); overlapping ones refused."""
    chosen = [label for label in labels if period is None or _overlaps(label, period)]
    _refuse_overlapping(chosen, Path(source))
    return chosen


def finish_read(
    frame: pd.DataFrame, table: str, source: Path | str, columns: list[str] | None, origin: bool = False
) -> pd.DataFrame:
    """A table as read from one source: 主动评价 derived, values checked, canonical dtypes.

    Args:
        frame: the rows as read (the columns the source has among those wanted).
        table: canonical table name.
        source: the file or folder named in error messages (a ``.csv`` counts its header row).
        columns: the columns wanted (default: all canonical columns).
        origin: keep the ``_file`` / ``_row`` columns (:data:`ORIGIN_COLUMNS`).
    """
    source = Path(source)
    if table == "evaluations" and "active" not in frame and "channel" in frame:
        # Contract §2: without an explicit flag, 主动评价 is derived from the channel.
        frame["active"] = (frame["channel"].astype("str") != "system_default").astype("boolean")
    frame = check_values(frame, table, source, row_offset=2 if source.suffix == ".csv" else 1)
    scrubbed = scrub_frame(frame)
    if scrubbed:
        log.warning(
            "%s：读取时脱敏（身份证号/手机号）%s",
            source,
            "，".join(f"列 {c} {n} 行" for c, n in scrubbed.items()),
        )
    frame.attrs["scrubbed"] = scrubbed
    if columns is None:
        return coerce(frame, table)
    # Optional columns the source lacks are added empty (attempt defaults to 1, as the contract says).
    keep = [c for c in frame.columns if c in columns or (origin and c in ORIGIN_COLUMNS)]
    return coerce(frame[keep], table, columns=columns)


def available_columns(
    table: str, wanted: list[str] | None, names: list[str], source: Path | str
) -> list[str] | None:
    """The wanted columns a source has (None: all); a missing required column is a clear error."""
    return _available(table, wanted, names, Path(source))


ACTIVE_TEXT = {"true": True, "false": False, "1": True, "0": False, "是": True, "否": False}
_CANONICAL_FIX = "规范表的取值见 docs/data-contract.md；原始导出请用 haocha ingest 按数据来源配置导入"


def check_values(frame: pd.DataFrame, table: str, source: Path, row_offset: int = 1) -> pd.DataFrame:
    """Check a canonical table's values as read, and convert text columns to their types.

    Required columns may not be empty; timestamps must be ISO 8601; codes must be canonical
    (channel, satisfaction 1–5, attempt ≥ 1, verdict, active). A failure is a HaochaInputError naming
    the file, the column and the first rows — never the values, which may be personal data.
    """

    def fail(col: str, mask: np.ndarray, problem: str, fix: str = _CANONICAL_FIX) -> None:
        raise HaochaInputError(
            f"{table} 表的 {col} 列{problem}（共 {int(mask.sum())} 行）",
            file=str(source),
            column=col,
            rows=(np.flatnonzero(mask) + row_offset).tolist(),
            fix=fix,
        )

    frame = frame.copy(deep=False)  # copy-on-write: columns below are replaced, never changed in place
    for col in [c for c in frame.columns if c in DTYPES[table]]:
        s, dtype = frame[col], DTYPES[table][col]
        given = s.notna().to_numpy()
        if col in REQUIRED[table] and not given.all():
            fail(col, ~given, "有空值，而该列必填")
        textual = s.dtype == object or str(s.dtype) in ("str", "string")
        if dtype.startswith("datetime64") and textual:
            parsed = pd.to_datetime(s, errors="coerce", format="ISO8601")
            bad = given & parsed.isna().to_numpy()
            if bad.any():
                fail(
                    col,
                    bad,
                    "有无法识别的时间",
                    "时间写成 YYYY-MM-DD HH:MM:SS；其他格式请用 haocha ingest 导入",
                )
            frame[col] = parsed
        elif dtype == "int8" and textual:
            number = pd.to_numeric(s, errors="coerce")
            bad = given & number.isna().to_numpy()
            if bad.any():
                fail(col, bad, "有非数字的值")
            frame[col] = number
        elif dtype == "boolean" and textual:
            mapped = s.astype("str").str.strip().str.lower().map(ACTIVE_TEXT)
            bad = given & mapped.isna().to_numpy()
            if bad.any():
                fail(col, bad, "有无法识别的值（应为 true/false，空为未知）")
            frame[col] = mapped.astype("boolean")
    domains = {
        "channel": (lambda s: s.isin(CHANNEL_CODES), "不是规范的渠道代码"),
        "satisfaction": (lambda s: pd.to_numeric(s, errors="coerce").between(1, 5), "不在 1–5 之间"),
        "attempt": (lambda s: pd.to_numeric(s, errors="coerce").between(1, 127), "不在 1–127 之间"),
        "verdict": (lambda s: s.isin(VERDICTS), "不是 valid/invalid"),
    }
    if "evaluator_key" in frame:
        raw = not_a_key(frame["evaluator_key"])
        if raw.any():
            fail(
                "evaluator_key",
                raw,
                "不是哈希后的 key（16–64 位小写十六进制），可能是原始证件号或手机号",
                "原始号码不得放进规范表：用 haocha ingest --profile canonical 导入，号码会被加盐哈希",
            )
    for col, (ok, problem) in domains.items():
        if col in frame and DTYPES[table].get(col):
            given = frame[col].notna().to_numpy()
            bad = given & ~ok(frame[col]).fillna(False).to_numpy(dtype=bool)
            if bad.any():
                fail(col, bad, problem)
    if "attempt" in frame:
        frame["attempt"] = frame["attempt"].fillna(1)  # contract: 评价次数 defaults to 1
    return frame


def load_tables(
    data_dir: Path,
    period: Period | None = None,
    tables: tuple[str, ...] = TABLES,
    columns: dict[str, list[str]] | None = None,
    check: bool = True,
    origin: bool = False,
) -> dict[str, pd.DataFrame]:
    """Load canonical tables of a data folder, validated with the pandera models.

    Args:
        data_dir: folder written by ingest or synth, or holding ``cases.parquet``/``.csv`` etc.
        period: when given, only partitions overlapping it are read (rows are not filtered here:
            the metrics apply the period to each timestamp by its own rule).
        tables: which tables.
        columns: per table, the columns to read (default all).
        check: validate full tables against the canonical schema.
        origin: add the columns ``_file`` and ``_row`` (where each row was read; ORIGIN_COLUMNS).
    """
    out = {}
    for table in tables:
        cols = (columns or {}).get(table)
        frame = _read_one(Path(data_dir), table, period, cols, origin)
        if check and cols is None:
            validate_or_explain(frame, table, Path(data_dir) / table)
        out[table] = frame
    release_unused()  # decoding and checking left freed Arrow buffers mapped
    return out


def load_window(
    data_dir: Path,
    period: Period,
    columns: dict[str, list[str]] | None = None,
    tables: tuple[str, ...] = TABLES,
    origin: bool = False,
) -> dict[str, pd.DataFrame]:
    """The one loading window of every entry point: the period plus the period before it.

    The previous period is read because an evaluation made in the period may belong to a case
    finished (and stored) in the previous one, and an earlier attempt-1 evaluation makes a later one
    a duplicate (:mod:`haocha_analysis.core.linkage`). Records outside the period only link; no stage
    counts them. Values are checked as they are read (:func:`check_values`); repeated ids are not
    refused here: the linkage rule marks them and the quality checks count them.

    Args:
        data_dir: canonical tables (partitioned by period, flat Parquet or CSV).
        period: the statistical period.
        columns: per table, the columns to read (default: all canonical columns).
        tables: which tables.
        origin: add the columns ``_file`` and ``_row`` naming where each row was read.
    """
    try:
        return load_tables(
            Path(data_dir), period.with_previous(), tables=tables, columns=columns, check=False, origin=origin
        )
    except (KeyError, ValueError) as err:  # pyarrow reports a missing column as one of these
        raise HaochaInputError(
            f"规范表缺少所需的列：{err}",
            file=str(data_dir),
            fix="用 haocha ingest 或 haocha synth 重新生成规范表（列名见数据契约）",
        ) from err


# The timestamp that places a row in a period (the metrics' rule: cases by finish, evaluations when made).
PERIOD_COLUMN = {"cases": "finished_at", "evaluations": "evaluated_at"}


def load_history(
    data_dir: Path,
    periods: list[Period],
    columns: dict[str, list[str]] | None = None,
    tables: tuple[str, ...] = ("cases", "evaluations"),
) -> dict[str, dict[str, pd.DataFrame]]:
    """Earlier periods' rows, each period holding only its own: {label: {table: frame}}.

    Works on any canonical folder: partitioned Parquet reads the partitions overlapping each period;
    flat ``cases.parquet``/``.csv`` files are read once and split by period (cases by ``finished_at``,
    evaluations by ``evaluated_at``). A period without any row is left out, so an empty result means
    the folder holds no earlier data. Values are checked as they are read (:func:`check_values`).

    Args:
        data_dir: canonical tables (partitioned by period, flat Parquet or CSV).
        periods: the periods wanted (typically the ones before the period analysed).
        columns: per table, the columns to read (the period column is always read).
        tables: which tables (each must have a period column).
    """
    columns = {t: list(dict.fromkeys([*(columns or {}).get(t, DTYPES[t]), PERIOD_COLUMN[t]])) for t in tables}
    flat = not partitions(Path(data_dir), tables[0])
    whole = load_tables(Path(data_dir), None, tables, columns, check=False) if flat else None
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for period in periods:
        loaded = whole or load_tables(Path(data_dir), period, tables, columns, check=False)
        own = {
            t: frame[period.contains(frame[PERIOD_COLUMN[t]]).to_numpy()].reset_index(drop=True)
            for t, frame in loaded.items()
        }
        if any(len(frame) for frame in own.values()):
            out[period.label] = own
    return out


def validate_or_explain(frame: pd.DataFrame, table: str, source: Path) -> None:
    """Validate with the pandera model; a failure becomes a HaochaInputError naming checks and rows.

    The failing values are left out on purpose: they may be identity or phone numbers.
    """
    from pandera.errors import SchemaErrors

    try:
        validate(frame, table)
    except SchemaErrors as err:
        cases = err.failure_cases
        problems = sorted({f"{c}：{k}" for c, k in zip(cases["column"], cases["check"], strict=True)})
        rows = sorted({int(i) + 1 for i in cases["index"].dropna()})
        raise HaochaInputError(
            f"{table} 表未通过规范检查：{'；'.join(problems[:5])}",
            file=str(source),
            column="、".join(sorted({str(c) for c in cases["column"].dropna()})),
            rows=rows,
            fix=_CANONICAL_FIX,
        ) from None


def write_tables(
    tables: dict[str, pd.DataFrame], out_dir: Path, period_label: str, csv: bool = False
) -> list[Path]:
    """Write canonical tables for one period, atomically per table (no half-written partition)."""
    out_dir = Path(out_dir)
    written = []
    staged: list[tuple[Path, Path]] = []
    for table, frame in tables.items():
        frame = coerce(frame, table)
        if csv:
            target = out_dir / f"{table}.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".csv.tmp")
            frame.to_csv(tmp, index=False, encoding="utf-8-sig", date_format="%Y-%m-%d %H:%M:%S")
            os.replace(tmp, target)
            written.append(target)
            continue
        target = out_dir / table / f"period={period_label}"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{table}-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes 0700
        staged.append((tmp, target))
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), tmp / "part-0.parquet", compression="zstd"
        )
        written.append(target / "part-0.parquet")
    swap_in(staged)
    return written


def swap_in(moves: list[tuple[Path, Path]]) -> None:
    """Move staged folders/files into place as one set, all or none, even across a crash (core.outputs)."""
    outputs.swap_in(moves)


EXTRACTIONS_FILE = "extractions.json"


def record_extraction(data_dir: Path, period_label: str, extracted_on: date) -> None:
    """Remember when a period's records were extracted (数据提取时间, printed in every annex's 备注)."""
    path = Path(data_dir) / EXTRACTIONS_FILE
    known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    known[period_label] = extracted_on.isoformat()
    atomic.write_json(path, known, sort_keys=True)


def extraction_date(data_dir: Path | str, period: Period) -> date | None:
    """The recorded extraction date of a period's data, if any (the latest of overlapping partitions).

    ``data_dir``: a folder, or a URL (``extractions.json`` beside the tables, read through fsspec).
    """
    if is_url(data_dir):
        fs, root = url_root(str(data_dir))
        if not fs.isfile(f"{root}/{EXTRACTIONS_FILE}"):
            return None
        known = json.loads(fs.cat_file(f"{root}/{EXTRACTIONS_FILE}").decode("utf-8"))
    else:
        path = Path(data_dir) / EXTRACTIONS_FILE
        if not path.exists():
            return None
        known = json.loads(path.read_text(encoding="utf-8"))
    if period.label in known:
        return date.fromisoformat(known[period.label])
    dates = [date.fromisoformat(v) for k, v in known.items() if _overlaps(k, period)]
    return max(dates) if dates else None
