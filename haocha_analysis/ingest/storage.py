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
import os
import shutil
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from haocha_analysis.core import atomic
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, parse_period
from haocha_analysis.core.schemas import CHANNEL_CODES, DTYPES, REQUIRED, TABLES, VERDICTS, coerce, validate


def partitions(data_dir: Path, table: str) -> dict[str, Path]:
    """Partition label → folder, for a partitioned table."""
    base = Path(data_dir) / table
    if not base.is_dir():
        return {}
    return {p.name.split("=", 1)[1]: p for p in sorted(base.glob("period=*")) if p.is_dir()}


def available_periods(data_dir: Path) -> list[str]:
    """Labels of the periods stored in a data folder (from the cases partitions)."""
    return list(partitions(data_dir, "cases"))


def _overlaps(label: str, period: Period) -> bool:
    try:
        p = parse_period(label)
    except HaochaInputError:
        return True
    return p.start <= period.end and p.end >= period.start


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


def _read_one(data_dir: Path, table: str, period: Period | None, columns: list[str] | None) -> pd.DataFrame:
    data_dir = Path(data_dir)
    parts = partitions(data_dir, table)
    source = data_dir / table  # named in error messages
    if parts:
        chosen = [path for label, path in parts.items() if period is None or _overlaps(label, period)]
        files = [f for path in chosen for f in sorted(path.glob("*.parquet"))]
        if not files:
            return coerce(pd.DataFrame(columns=columns or list(DTYPES[table])), table)[columns or slice(None)]
        frames = [
            pq.read_table(f, columns=_available(table, columns, pq.read_schema(f).names, f)).to_pandas()
            for f in files
        ]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if len(chosen) > 1:
            key = "case_id" if table == "cases" else "eval_id"
            if key in frame:
                frame = frame.drop_duplicates(key, keep="last", ignore_index=True)
    elif (path := data_dir / f"{table}.parquet").exists():
        source = path
        frame = pq.read_table(path, columns=_available(table, columns, pq.read_schema(path).names, path))
        frame = frame.to_pandas()
    elif (path := data_dir / f"{table}.csv").exists():
        source = path
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns.tolist()
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            usecols=_available(table, columns, header, path),
        )
    elif table == "rectifications":
        frame = pd.DataFrame(columns=columns or list(DTYPES[table]))
    else:
        raise HaochaInputError(
            f"数据目录中找不到 {table} 表",
            file=str(data_dir),
            fix=f"先运行 haocha ingest 或 haocha synth 生成规范表，或放入 {table}.parquet / {table}.csv",
        )
    if table == "evaluations" and "active" not in frame and "channel" in frame:
        # Contract §2: without an explicit flag, 主动评价 is derived from the channel.
        frame["active"] = (frame["channel"].astype("str") != "system_default").astype("boolean")
    frame = check_values(frame, table, source, row_offset=2 if source.suffix == ".csv" else 1)
    if columns is None:
        return coerce(frame, table)
    # Optional columns the source lacks are added empty (attempt defaults to 1, as the contract says).
    return coerce(frame[[c for c in frame.columns if c in columns]], table, columns=columns)


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

    frame = frame.copy()
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
) -> dict[str, pd.DataFrame]:
    """Load canonical tables of a data folder, validated with the pandera models.

    Args:
        data_dir: folder written by ingest or synth, or holding ``cases.parquet``/``.csv`` etc.
        period: when given, only partitions overlapping it are read (rows are not filtered here:
            the metrics apply the period to each timestamp by its own rule).
        tables: which tables.
        columns: per table, the columns to read (default all).
        check: validate full tables against the canonical schema.
    """
    out = {}
    for table in tables:
        cols = (columns or {}).get(table)
        frame = _read_one(Path(data_dir), table, period, cols)
        if check and cols is None:
            validate_or_explain(frame, table, Path(data_dir) / table)
        out[table] = frame
    return out


def load_window(
    data_dir: Path,
    period: Period,
    columns: dict[str, list[str]] | None = None,
    tables: tuple[str, ...] = TABLES,
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
    """
    try:
        return load_tables(
            Path(data_dir), period.with_previous(), tables=tables, columns=columns, check=False
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


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def swap_in(moves: list[tuple[Path, Path]]) -> None:
    """Move staged folders/files into place as one set: all of them, or none.

    Each existing target is first renamed aside; if any move fails, the old ones are put back. The
    old ones are deleted only when every new one is in place.
    """
    aside: list[tuple[Path, Path]] = []
    done: list[Path] = []
    try:
        for src, target in moves:
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                aside.append((old, target))
            os.replace(src, target)
            done.append(target)
    except BaseException:
        for target in done:
            _remove(target)
        for old, target in aside:
            os.replace(old, target)
        for src, _ in moves:
            _remove(src)
        raise
    for old, _ in aside:
        _remove(old)


EXTRACTIONS_FILE = "extractions.json"


def record_extraction(data_dir: Path, period_label: str, extracted_on: date) -> None:
    """Remember when a period's records were extracted (数据提取时间, printed in every annex's 备注)."""
    path = Path(data_dir) / EXTRACTIONS_FILE
    known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    known[period_label] = extracted_on.isoformat()
    atomic.write_json(path, known, sort_keys=True)


def extraction_date(data_dir: Path, period: Period) -> date | None:
    """The recorded extraction date of a period's data, if any (the latest of overlapping partitions)."""
    path = Path(data_dir) / EXTRACTIONS_FILE
    if not path.exists():
        return None
    known = json.loads(path.read_text(encoding="utf-8"))
    if period.label in known:
        return date.fromisoformat(known[period.label])
    dates = [date.fromisoformat(v) for k, v in known.items() if _overlaps(k, period)]
    return max(dates) if dates else None
