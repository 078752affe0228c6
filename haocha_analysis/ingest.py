"""Ingest (数据导入): exported files → the canonical tables of the data contract.

``haocha ingest --profile PROFILE FILE... --city CITY --period PERIOD --out DIR`` reads CSV, XLSX and
Parquet exports, maps their columns (the profile first, then the contract's aliases), applies the
declared code tables, resolves unit names to ``unit_id``, parses timestamps, hashes identity and
phone numbers, drops identical duplicates, keeps the records of the period, validates the tables with
the pandera models and writes them with :func:`storage.write_tables`, together with
``ingest_log.json``.

Accounting, per file and per canonical table (asserted before anything is written)::

    rows_read = records + rows_without_record
    records   = kept + duplicates_dropped + rejected + excluded_by_period

``records`` are the rows that hold a record of that table: every row of a single-table file; in a
flat export (case and evaluation columns in one row) the rows with any value in the table's own
columns. Repairs change a kept record and are counted beside it. Any error (exit status 2) leaves
no output at all: everything is written into a temporary folder that is moved into place last.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
import pandera.errors as pa_errors
import pyarrow as pa
import pyarrow.compute as pc

from .cli import city_option, out_option, period_option, user_errors
from .config import SALT_ENV, hash_salt
from .errors import HaochaInputError
from .ingest_privacy import hash_keys, scrub
from .ingest_profiles import (
    ALIASES,
    CHANNEL_COMMON,
    CHANNEL_LABELS,
    LABEL_TO_SATISFACTION,
    LOCAL_TIMEZONE,
    PROMISE_TYPE_LABELS,
    REQUIRED_COLUMNS,
    SIGNATURES,
    Profile,
    fold,
    load_profile,
)
from .ingest_readers import SourceFile, read_source
from .periods import Period, parse_period
from .reference import CityReference, load_city
from .schemas import DTYPES, FOLLOW_UP_LEVELS, TABLES, coerce, validate
from .storage import record_extraction, swap_in, write_tables

TABLE_KEYS = {"cases": "case_id", "evaluations": "eval_id", "rectifications": "eval_id"}
TABLE_LABELS = {"cases": "办件表", "evaluations": "评价表", "rectifications": "差评整改表"}
# Columns a flat export shares between its tables: they alone do not make a row hold a record.
SHARED_KEYS = ("case_id", "unit_id", "unit_name")
# Free-text columns scrubbed of identity/phone numbers (keys and code columns are not free text).
FREE_TEXT = {
    "cases": ("matter_name", "source_system"),
    "evaluations": ("operator", "comment"),
    "rectifications": ("invalid_reason",),
}
# Excel serial dates accepted as timestamps: 20000 = 1954-10-03, 80000 = 2119-01-10. Numbers outside
# this window are not dates (a YYYYMMDD number would otherwise become the year 57000).
EXCEL_SERIAL_MIN, EXCEL_SERIAL_MAX = 20000, 80000
EXCEL_EPOCH = pd.Timestamp("1899-12-30")
# The log lists at most this many row numbers per entry (counts are always complete).
LOG_MAX_ROWS = 20
# 评价次数 is stored as int8; a larger value is not a count of evaluations of one case.
MAX_ATTEMPT = 127
LOG_NAME = "ingest_log.json"

ATTEMPT_LABELS = {"首次评价": 1, "首评": 1, "初评": 1, "追评": 2, "追加评价": 2, "二次评价": 2}
ACTIVE_LABELS = {
    "true": True,
    "1": True,
    "是": True,
    "主动": True,
    "主动评价": True,
    "false": False,
    "0": False,
    "否": False,
    "默认": False,
    "默认评价": False,
}
VERDICT_LABELS = {
    "valid": ("valid", None),
    "有效": ("valid", None),
    "有效差评": ("valid", None),
    "属实": ("valid", None),
    "invalid": ("invalid", None),
    "无效": ("invalid", None),
    "无效差评": ("invalid", None),
    "不属实": ("invalid", None),
    "误评": ("invalid", "误评"),
    "恶意差评": ("invalid", "恶意差评"),
    "与办件无关": ("invalid", "与办件无关"),
    "重复": ("invalid", "重复"),
    "重复评价": ("invalid", "重复"),
}

_BAD = object()  # a value that no code table knows
_UNDECLARED = object()  # a numeric code whose table the profile did not declare


# --- bookkeeping ---------------------------------------------------------------------------------


@dataclass
class _Entry:
    file: int
    table: str
    what: str
    rows: np.ndarray


@dataclass
class _Ledger:
    """Everything counted on the way, per file and table."""

    files: list[SourceFile] = field(default_factory=list)
    info: list[dict[str, Any]] = field(default_factory=list)
    records: dict[tuple[int, str], int] = field(default_factory=dict)
    rejected: list[_Entry] = field(default_factory=list)
    duplicates: list[_Entry] = field(default_factory=list)
    excluded: list[_Entry] = field(default_factory=list)
    repaired: list[_Entry] = field(default_factory=list)

    def add(self, kind: list[_Entry], file: int, table: str, what: str, rows: Iterable[int]) -> None:
        rows = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)
        if len(rows):
            kind.append(_Entry(file, table, what, rows))

    def add_by_file(
        self, kind: list[_Entry], frame: pd.DataFrame, mask: np.ndarray, table: str, what: str
    ) -> None:
        """Record the rows of ``frame`` selected by ``mask``, split by the file they came from."""
        sub = frame.loc[mask, ["_file", "_row"]]
        for file, rows in sub.groupby("_file", sort=True)["_row"]:
            self.add(kind, int(file), table, what, rows.to_numpy())

    def name(self, file: int) -> str:
        return str(self.files[file].path)


# --- value helpers (vectorized: Python runs once per distinct value, never per row) ---------------


def _text(series: pd.Series) -> pd.Series:
    """A column as stripped strings; empty cells are missing."""
    if pd.api.types.is_float_dtype(series.dtype):
        whole = series.dropna()
        if len(whole) and (whole == whole.round()).all():
            series = series.astype("Int64")
    text = series if str(series.dtype) == "str" else series.astype("str")
    text = text.str.strip()
    return text.mask(text == "")


def _norm(value: Any) -> str:
    """One distinct code value as text: 5, 5.0, '5', '５ ' all become '5'."""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    text = unicodedata.normalize("NFKC", str(value)).strip()
    if m := re.fullmatch(r"(\d+)\.0+", text):
        return m[1]
    return text


def _map_distinct(series: pd.Series, convert: Callable[[str], Any]) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``convert`` to each distinct value; return the mapped values and the codes (-1 = missing)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    mapped = np.empty(len(uniques) + 1, dtype=object)
    mapped[:-1] = [convert(_norm(u)) for u in uniques]
    mapped[-1] = None
    return mapped[codes], codes


def _isin(values: pd.Series, allowed: pd.Series) -> np.ndarray:
    """``values.isin(allowed)`` for two large string columns, computed by Arrow (missing → False)."""
    left = pa.array(values.astype("str"), from_pandas=True)
    right = pa.array(allowed.dropna().astype("str"), from_pandas=True).unique()
    return pc.fill_null(pc.is_in(left, value_set=right), False).to_numpy(zero_copy_only=False)


def _first_rows(rows: np.ndarray) -> list[int]:
    return [int(r) for r in rows[:LOG_MAX_ROWS]]


def _examples(values: Iterable[Any], n: int = 5) -> str:
    seen = list(dict.fromkeys(str(v) for v in values))
    more = "…" if len(seen) > n else ""
    return "、".join(f"“{v}”" for v in seen[:n]) + more


def parse_timestamps(series: pd.Series, formats: Sequence[str]) -> tuple[pd.Series, np.ndarray]:
    """Parse local timestamps: the given formats in order, then Excel serial dates.

    Typed timestamps (Parquet) are kept; time-zone-aware ones are converted to Asia/Shanghai local
    time. Returns the parsed column (``datetime64[us]``) and the positions of non-empty values that no
    format parses.
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None).astype("datetime64[us]"), np.array(
            [], int
        )
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series.astype("datetime64[us]"), np.array([], dtype=int)
    out = np.full(len(series), np.datetime64("NaT"), dtype="datetime64[us]")
    if pd.api.types.is_numeric_dtype(series.dtype):
        text = series.astype("Float64").astype("str")
    else:
        text = _text(series)
    todo = text.notna().to_numpy(dtype=bool).copy()
    for fmt in formats:
        if not todo.any():
            break
        positions = np.flatnonzero(todo)
        parsed = pd.to_datetime(text.iloc[positions], format=fmt, errors="coerce")
        ok = parsed.notna().to_numpy(dtype=bool)
        if ok.any():
            out[positions[ok]] = parsed[ok].to_numpy().astype("datetime64[us]")
            todo[positions[ok]] = False
    if todo.any():
        positions = np.flatnonzero(todo)
        serial = pd.to_numeric(text.iloc[positions], errors="coerce")
        ok = serial.between(EXCEL_SERIAL_MIN, EXCEL_SERIAL_MAX).to_numpy(dtype=bool)
        if ok.any():
            stamps = EXCEL_EPOCH + pd.to_timedelta(serial[ok].astype("float64"), unit="D")
            out[positions[ok]] = stamps.dt.round("s").to_numpy().astype("datetime64[us]")
            todo[positions[ok]] = False
    return pd.Series(out, index=series.index), np.flatnonzero(todo)


# --- column mapping ------------------------------------------------------------------------------


def _canonical_columns(table: str) -> list[str]:
    return list(ALIASES[table]) + [c for c in DTYPES[table] if c not in ALIASES[table]]


def _resolve_columns(
    header: list[str], profile: Profile, table: str
) -> tuple[dict[str, list[str]], list[str]]:
    """Canonical column → the source columns that feed it: the profile first, then the aliases.

    A column the profile declares is looked up first; when the file does not have it, the contract's
    aliases are tried (and the absent declaration is reported). Columns the profile declares for one
    canonical column are never taken by another one's alias. Returns the mapping and the
    profile-declared source columns that are not in the file.
    """
    by_fold: dict[str, str] = {}
    for name in header:
        by_fold.setdefault(fold(name), name)
    declared = profile.columns.get(table, {})
    claimed = {fold(s) for sources in declared.values() for s in sources if fold(s) in by_fold}
    mapping: dict[str, list[str]] = {}
    missing: list[str] = []
    for canon in _canonical_columns(table):
        found = [by_fold[fold(s)] for s in declared.get(canon, []) if fold(s) in by_fold]
        if canon in declared and not found:
            missing.extend(declared[canon])
        if not found:
            candidates = [canon, *ALIASES[table].get(canon, [])]
            found = list(
                dict.fromkeys(
                    by_fold[fold(s)] for s in candidates if fold(s) in by_fold and fold(s) not in claimed
                )
            )
            # Several sources are coalesced only for the evaluator key (id number, then mobile).
            if canon != "evaluator_source":
                found = found[:1]
        if found:
            mapping[canon] = found
    return mapping, missing


def _has(mapping: dict[str, list[str]], canon: str) -> bool:
    if canon == "unit":
        return "unit_id" in mapping or "unit_name" in mapping
    return canon in mapping


def _missing_column_error(
    table: str, mapping: dict, source: SourceFile, profile: Profile
) -> HaochaInputError:
    missing = [c for c in REQUIRED_COLUMNS[table] if not _has(mapping, c)]
    names = []
    for canon in missing:
        if canon == "unit":
            names.append("unit_id 或 unit_name（" + "、".join(ALIASES[table]["unit_name"][:3]) + " 等）")
        else:
            names.append(f"{canon}（" + "、".join(ALIASES[table].get(canon, [])[:4]) + " 等）")
    column = "unit_name" if missing[0] == "unit" else missing[0]
    return HaochaInputError(
        f"{TABLE_LABELS[table]}缺少必需的列：{'；'.join(names)}",
        file=str(source.path),
        column=column,
        rows=[source.header_row] if source.header_row else None,
        fix=f"在导出中加入该列，或在 profile（{profile.name}）的 columns.{table}.{column} 写明导出中的列名；"
        f"文件中的列为：{'、'.join(map(str, source.frame.columns[:30]))}",
    )


def _plan_file(source: SourceFile, profile: Profile) -> tuple[list, dict, list, dict]:
    """Decide which tables a file holds, each table's column mapping, and the extra columns.

    A column the profile declares but the file lacks is an error only when the table requires it
    (the missing-column error); optional ones are listed in the log.
    """
    header = [str(c) for c in source.frame.columns]
    mappings, missing_declared = {}, {}
    for table in TABLES:
        mappings[table], missing_declared[table] = _resolve_columns(header, profile, table)
    if profile.tables:
        held = list(profile.tables)
    else:
        held = [t for t in TABLES if all(_has(mappings[t], c) for c in SIGNATURES[t])]
    if not held:
        # Name the missing columns of the table the file comes closest to.
        def score(t: str) -> int:
            return sum(_has(mappings[t], c) for c in REQUIRED_COLUMNS[t])

        closest = max(("evaluations", "cases", "rectifications"), key=score)
        raise _missing_column_error(closest, mappings[closest], source, profile)
    for table in held:
        if any(not _has(mappings[table], c) for c in REQUIRED_COLUMNS[table]):
            raise _missing_column_error(table, mappings[table], source, profile)
    # In a flat export a column found by alias belongs to one table only (the row's own table,
    # evaluations when present), except the keys the tables share.
    owner = "evaluations" if "evaluations" in held else held[0]
    plan = {t: dict(mappings[t]) for t in held}
    for table in held:
        if table == owner:
            continue
        declared = profile.columns.get(table, {})
        for canon in list(plan[table]):
            by_profile = {fold(s) for s in declared.get(canon, [])}
            if (
                canon in SHARED_KEYS
                or {fold(s) for s in plan[table][canon]} <= by_profile
                or (table == "rectifications" and canon == "eval_id")
            ):
                continue
            owner_sources = {s for sources in plan[owner].values() for s in sources}
            if set(plan[table][canon]) & owner_sources:
                del plan[table][canon]
    used = {s for t in held for sources in plan[t].values() for s in sources}
    extras = [c for c in header if c not in used]
    missing = {t: missing_declared[t] for t in held if missing_declared[t]}
    return held, plan, extras, missing


# --- mapping one table of one file ---------------------------------------------------------------


def _coalesce(frame: pd.DataFrame, sources: list[str]) -> pd.Series:
    out = frame[sources[0]]
    if len(sources) > 1:
        out = _text(out)
        for src in sources[1:]:
            out = out.fillna(_text(frame[src]))
    return out


class _TableBuilder:
    """Maps one table of one file onto canonical columns; rejects, repairs and errors as it goes."""

    def __init__(
        self,
        source: SourceFile,
        file: int,
        table: str,
        mapping: dict[str, list[str]],
        profile: Profile,
        ref: CityReference,
        salt: str,
        ledger: _Ledger,
    ) -> None:
        self.source, self.file, self.table = source, file, table
        self.mapping, self.profile, self.ref, self.salt, self.ledger = mapping, profile, ref, salt, ledger

    # errors name the source column, not the canonical one
    def _col(self, canon: str) -> str:
        return " / ".join(self.mapping.get(canon, [canon]))

    def _error(self, problem: str, canon: str, rows: np.ndarray, fix: str) -> HaochaInputError:
        return HaochaInputError(
            problem,
            file=str(self.source.path),
            column=self._col(canon),
            rows=_first_rows(np.asarray(rows)),
            fix=fix,
        )

    def build(self, positions: np.ndarray, extras: list[str]) -> pd.DataFrame:
        src = self.source.frame.iloc[positions]
        rows = self.source.rows[positions]
        raw = {canon: _coalesce(src, sources) for canon, sources in self.mapping.items()}
        part = pd.DataFrame(index=pd.RangeIndex(len(src)))
        part["_file"] = np.int32(self.file)
        part["_row"] = rows
        for canon, values in raw.items():
            raw[canon] = values.reset_index(drop=True)
        # 1. missing required values: the row is rejected (counted with its row numbers)
        keep = np.ones(len(part), dtype=bool)
        for canon in REQUIRED_COLUMNS[self.table]:
            if canon == "unit":
                present = np.zeros(len(part), dtype=bool)
                for c in ("unit_id", "unit_name"):
                    if c in raw:
                        raw[c] = _text(raw[c])
                        present |= raw[c].notna().to_numpy()
                what = "必填的单位（unit_id/unit_name）为空"
            else:
                values = (
                    raw[canon]
                    if pd.api.types.is_datetime64_any_dtype(raw[canon].dtype)
                    else _text(raw[canon])
                )
                present = values.notna().to_numpy()
                what = f"必填列 {canon}（{self._col(canon)}）为空"
            bad = keep & ~present
            self.ledger.add(self.ledger.rejected, self.file, self.table, what, rows[bad])
            keep &= present
        part = part[keep].reset_index(drop=True)
        raw = {c: v[keep].reset_index(drop=True) for c, v in raw.items()}
        rows = rows[keep]
        getattr(self, f"_{self.table}")(part, raw, rows)
        self._timestamps(part, raw, rows)
        if extras:
            for name in extras:
                col = name if name not in DTYPES[self.table] and not name.startswith("_") else f"extra_{name}"
                part[col] = _text(src[name].reset_index(drop=True)[keep].reset_index(drop=True))
        self._scrub(part, rows, extras)
        return part

    def _repair(self, what: str, rows: np.ndarray) -> None:
        self.ledger.add(self.ledger.repaired, self.file, self.table, what, rows)

    # -- shared pieces
    def _timestamps(self, part: pd.DataFrame, raw: dict, rows: np.ndarray) -> None:
        for canon, dtype in DTYPES[self.table].items():
            if not dtype.startswith("datetime64") or canon not in raw:
                continue
            parsed, bad = parse_timestamps(raw[canon], self.profile.timestamp_formats)
            if len(bad):
                values = raw[canon].iloc[bad]
                raise self._error(
                    f"时间无法解析：{_examples(values)}",
                    canon,
                    rows[bad],
                    "时间须为 'YYYY-MM-DD HH:MM:SS'、'YYYY/MM/DD HH:MM'、'YYYYMMDDThhmmss' "
                    "或 Excel 日期序号；其他格式请在 profile 的 timestamp_formats 中声明"
                    "（strftime 写法，如 '%Y年%m月%d日 %H:%M'）",
                )
            part[canon] = parsed.to_numpy()

    def _codes(
        self,
        canon: str,
        raw: dict,
        rows: np.ndarray,
        convert: Callable[[str], Any],
        undeclared_problem: str,
        undeclared_fix: str,
        bad_fix: str,
    ) -> np.ndarray:
        values, _ = _map_distinct(_text(raw[canon]), convert)
        undeclared = (
            np.array([v is _UNDECLARED for v in values], dtype=bool) if len(values) else np.zeros(0, bool)
        )
        if undeclared.any():
            raise self._error(
                f"{undeclared_problem}：{_examples(raw[canon][undeclared])}",
                canon,
                rows[undeclared],
                undeclared_fix,
            )
        bad = np.array([v is _BAD for v in values], dtype=bool) if len(values) else np.zeros(0, bool)
        if bad.any():
            raise self._error(
                f"{canon} 的值无法识别：{_examples(raw[canon][bad])}", canon, rows[bad], bad_fix
            )
        return values

    def _resolve_unit(self, part: pd.DataFrame, raw: dict, rows: np.ndarray) -> None:
        unit = pd.Series(pd.NA, index=part.index, dtype="str")
        if "unit_id" in raw:
            ids = raw["unit_id"]
            known = set(self.ref.units["unit_id"])
            unknown = (ids.notna() & ~ids.isin(known)).to_numpy()
            if unknown.any():
                raise self._error(
                    f"单位编码不在城市“{self.ref.city_name}”的参考数据中：{_examples(ids[unknown])}",
                    "unit_id",
                    rows[unknown],
                    f"改正单位编码，或在 {self.ref.path / 'units.csv'} 中补充这些单位",
                )
            unit = ids.copy()
        if "unit_name" in raw:
            names = raw["unit_name"]
            need = (unit.isna() & names.notna()).to_numpy()
            resolved = self.ref.resolve_names(names[need])
            unknown_mask = resolved.isna().to_numpy()
            if unknown_mask.any():
                bad_names = names[need][unknown_mask]
                bad_rows = rows[need][unknown_mask]
                lines = []
                for name in list(dict.fromkeys(bad_names))[:10]:
                    at = bad_rows[(bad_names == name).to_numpy()]
                    near = "、".join(self.ref.suggest(name)) or "无相近名称"
                    lines.append(
                        f"“{name}”（第 {', '.join(map(str, _first_rows(at)[:5]))} 行；最接近：{near}）"
                    )
                raise self._error(
                    f"{len(set(bad_names))} 个单位名称在城市“{self.ref.city_name}”的参考数据中找不到："
                    + "；".join(lines),
                    "unit_name",
                    bad_rows,
                    "改正导出中的单位名称，或把这种写法加入参考数据 units.csv 的 aliases 列"
                    "（多个写法以 | 分隔）",
                )
            unit[need] = resolved.to_numpy()
            exact = set(self.ref.units["unit_name"])
            alias = need.copy()
            alias[need] = ~names[need].isin(exact).to_numpy()
            self._repair("单位名称按别名或全半角归一匹配到参考数据", rows[alias])
        part["unit_id"] = unit.to_numpy()

    def _plain(self, part: pd.DataFrame, raw: dict, names: Iterable[str]) -> None:
        for canon in names:
            if canon in raw:
                part[canon] = _text(raw[canon]).set_axis(part.index)  # stays an Arrow string column

    # -- per table
    def _cases(self, part: pd.DataFrame, raw: dict, rows: np.ndarray) -> None:
        self._plain(part, raw, ("case_id", "matter_code", "matter_name", "region_code", "source_system"))
        if "source_system" not in raw and self.profile.source_system:
            part["source_system"] = self.profile.source_system
        self._resolve_unit(part, raw, rows)
        if "promise_type" in raw:
            table = self.profile.promise_type

            def convert(v: str) -> Any:
                if v in PROMISE_TYPE_LABELS:
                    return v
                if v.isdigit():
                    return _UNDECLARED if table is None else table.get(int(v), _BAD)
                return _BAD

            part["promise_type"] = self._codes(
                "promise_type",
                raw,
                rows,
                convert,
                "办件类型是数字代码，但 profile 没有声明代码表（浙江 1=承诺件，济宁 1=即办件，方向相反）",
                "在 profile 的 codes.promise_type 中声明 zhejiang 或 jining，或改用文字“即办件/承诺件”",
                "取“即办件”“承诺件”或已声明代码表中的数字",
            )

    def _evaluations(self, part: pd.DataFrame, raw: dict, rows: np.ndarray) -> None:
        prof = self.profile
        self._plain(part, raw, ("eval_id", "case_id", "operator", "comment"))
        self._resolve_unit(part, raw, rows)
        sat_table = prof.satisfaction

        def satisfaction(v: str) -> Any:
            if v in LABEL_TO_SATISFACTION:
                return LABEL_TO_SATISFACTION[v]
            if v.isdigit():
                return _UNDECLARED if sat_table is None else sat_table.get(int(v), _BAD)
            return _BAD

        part["satisfaction"] = self._codes(
            "satisfaction",
            raw,
            rows,
            satisfaction,
            "满意度是数字代码，但 profile 没有声明代码表"
            "（接口 5=非常满意，GB/T 39046 1=非常满意，方向相反，不能猜）",
            "在 profile 的 codes.satisfaction 中声明 interface（5=非常满意，浙江等接口方向）或 gbt39046"
            "（1=非常满意，GB/T 39046 附录A.8），或改用文字标签 非常满意/满意/基本满意/不满意/非常不满意",
            "满意度取文字标签 非常满意/满意/基本满意/不满意/非常不满意，或已声明代码表中的数字",
        ).astype(np.int8)
        ch_table = prof.channel

        def channel(v: str) -> Any:
            if fold(v) in CHANNEL_LABELS:
                return CHANNEL_LABELS[fold(v)]
            if v.isdigit():
                n = int(v)
                if ch_table is not None:
                    return ch_table.get(n, _BAD)
                return CHANNEL_COMMON.get(n, _UNDECLARED if n in (6, 7) else _BAD)
            return _BAD

        part["channel"] = self._codes(
            "channel",
            raw,
            rows,
            channel,
            "评价渠道出现数字 6 或 7，但 profile 没有声明渠道代码表"
            "（多数来源 6=电话、7=短信；浙江接口 6=短信、7=系统默认评价）",
            "在 profile 的 codes.channel 中声明 standard（6=电话，7=短信）"
            "或 zhejiang（6=短信，7=系统默认评价），或改用文字标签（电话、短信、系统默认评价…）",
            "渠道取 1–5、已声明代码表中的 6/7，或文字标签（PC端、移动服务端、二维码、"
            "政务大厅平板电脑、政务大厅其他终端、评议卡、电话、短信、系统默认评价）",
        )
        # attempt: 1 first evaluation, 2+ follow-up; an empty cell is a first evaluation (repaired)
        if "attempt" in raw:
            empty = _text(raw["attempt"]).isna().to_numpy()

            def attempt(v: str) -> Any:
                if v.isdigit() and 1 <= int(v) <= MAX_ATTEMPT:
                    return int(v)
                return ATTEMPT_LABELS.get(v, _BAD)

            values = self._codes(
                "attempt",
                raw,
                rows,
                attempt,
                "",
                "",
                f"评价次数取 1（首次评价）、2–{MAX_ATTEMPT}（追评），或“首次评价/追评”",
            )
            values[empty] = 1
            self._repair("评价次数为空，按 1（首次评价）处理", rows[empty])
            part["attempt"] = values.astype(np.int8)
        else:
            part["attempt"] = np.int8(1)
        self._active(part, raw, rows)
        keys = [c for c in ("evaluator_key", "evaluator_source") if c in raw]
        if keys:
            combined = _text(raw[keys[0]])
            for extra in keys[1:]:
                combined = combined.fillna(_text(raw[extra]))
            part["evaluator_key"] = hash_keys(combined, self.salt).set_axis(part.index)

    def _active(self, part: pd.DataFrame, raw: dict, rows: np.ndarray) -> None:
        mode = self.profile.active
        if mode == "auto":
            mode = "column" if "active" in raw else "flag" if "active_flag" in raw else "channel"
        if mode == "column":
            if "active" not in raw:
                raise self._error(
                    "profile 声明 active: column，但文件中没有主动评价列",
                    "active",
                    np.array([self.source.header_row] if self.source.header_row else [], dtype=int),
                    "加入主动评价列，或把 codes.active 改为 channel/flag/unknown",
                )
            values = self._codes(
                "active",
                raw,
                rows,
                lambda v: ACTIVE_LABELS.get(fold(v), _BAD),
                "",
                "",
                "主动评价取 true/false、1/0 或 是/否",
            )
        elif mode == "flag":
            if "active_flag" not in raw:
                raise self._error(
                    "profile 声明 active: flag，但文件中没有默认评价标志列（如 isprotion、默认评价）",
                    "active_flag",
                    np.array([self.source.header_row] if self.source.header_row else [], dtype=int),
                    "在 profile 的 codes.active_flag.column 写明标志列，"
                    "或把 codes.active 改为 channel/unknown",
                )
            true_set, false_set = set(self.profile.flag_true), set(self.profile.flag_false)

            def flag(v: str) -> Any:
                f = fold(v)
                return False if f in true_set else True if f in false_set else _BAD

            values = self._codes(
                "active_flag",
                raw,
                rows,
                flag,
                "",
                "",
                f"默认评价标志取 {'/'.join(true_set)}（系统默认评价）或 {'/'.join(false_set)}（主动评价），"
                "或在 profile 的 codes.active_flag 中声明取值",
            )
        elif mode == "channel":
            values = np.full(len(part), True, dtype=object)  # system defaults set below, not repairs
        else:  # unknown: the source cannot say; only a system default is known not to be active
            values = np.full(len(part), None, dtype=object)
        active = pd.array(values, dtype="boolean")
        default = part["channel"].to_numpy() == "system_default"
        contradicts = default & (active == True).to_numpy(dtype=bool, na_value=False)  # noqa: E712
        if mode in ("column", "flag"):
            self._repair("系统默认评价标为主动评价，改为非主动", rows[contradicts])
        active[default] = False
        part["active"] = active

    def _rectifications(self, part: pd.DataFrame, raw: dict, rows: np.ndarray) -> None:
        self._plain(part, raw, ("eval_id", "invalid_reason"))
        values = self._codes(
            "verdict",
            raw,
            rows,
            lambda v: VERDICT_LABELS.get(fold(v), _BAD),
            "",
            "",
            "核实结论取 有效/有效差评/valid 或 无效/无效差评/误评/恶意差评/与办件无关/重复/invalid",
        )
        part["verdict"] = [v[0] for v in values]
        reasons = np.array([v[1] for v in values], dtype=object)
        fill = (
            pd.isna(part["invalid_reason"]).to_numpy().copy()
            if "invalid_reason" in part
            else np.ones(len(part), bool)
        )
        fill &= pd.notna(reasons)
        if "invalid_reason" not in part:
            part["invalid_reason"] = pd.Series(pd.NA, index=part.index, dtype="str")
        part.loc[fill, "invalid_reason"] = reasons[fill]
        self._repair("无效原因为空，取自核实结论", rows[fill])
        if "follow_up" in raw:
            part["follow_up"] = self._codes(
                "follow_up",
                raw,
                rows,
                lambda v: v if v in FOLLOW_UP_LEVELS else _BAD,
                "",
                "",
                "整改后回访满意度取 满意/基本满意/不满意",
            )

    def _scrub(self, part: pd.DataFrame, rows: np.ndarray, extras: list[str]) -> None:
        columns = [c for c in FREE_TEXT[self.table] if c in part] + [
            c
            for c in part.columns
            if c not in DTYPES[self.table] and not c.startswith("_") and c != "promise_type"
        ]
        for col in columns:
            cleaned, hit = scrub(part[col])
            if len(hit):
                part[col] = cleaned.to_numpy()
                self._repair(f"列 {col} 中的身份证号/手机号已脱敏", rows[hit])


# --- whole-ingest steps --------------------------------------------------------------------------


def _record_mask(source: SourceFile, table: str, plan: dict[str, dict[str, list[str]]]) -> np.ndarray:
    """Rows of a file that hold a record of ``table`` (all rows unless the file is a flat export)."""
    n = len(source.frame)
    if len(plan) == 1:
        return np.ones(n, dtype=bool)
    others = {s for t, m in plan.items() if t != table for sources in m.values() for s in sources}
    own = [s for sources in plan[table].values() for s in sources if s not in others]
    if not own:
        return np.ones(n, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    for col in dict.fromkeys(own):
        values = source.frame[col]
        mask |= (
            _text(values).notna()
            if not pd.api.types.is_datetime64_any_dtype(values.dtype)
            else values.notna()
        ).to_numpy()
    return mask


def _dedupe(frame: pd.DataFrame, table: str, ledger: _Ledger) -> pd.DataFrame:
    """Drop later identical duplicates of a key (counted); differing duplicates are an error."""
    key = TABLE_KEYS[table]
    dup = frame.duplicated(key, keep=False).to_numpy()
    if not dup.any():
        return frame
    content = [c for c in DTYPES[table] if c in frame.columns]
    sub = frame[dup]
    identical_later = sub.duplicated(content, keep="first")
    remaining = sub[~identical_later]
    conflict = remaining.duplicated(key, keep=False)
    if conflict.any():
        clash = remaining[conflict].sort_values([key, "_file", "_row"])
        first_key = clash[key].iloc[0]
        one = clash[clash[key] == first_key]
        differing = [c for c in content if one[c].astype("str").nunique(dropna=False) > 1]
        where = "；".join(
            f"{ledger.name(int(f))} 第 {int(r)} 行" for f, r in one[["_file", "_row"]].to_numpy()[:5]
        )
        raise HaochaInputError(
            f"{TABLE_LABELS[table]}中 {key} 重复且内容不同（共 {clash[key].nunique()} 个编号），"
            f"例如“{first_key}”：{where}；不同的列：{'、'.join(differing)}",
            file=ledger.name(int(clash["_file"].iloc[0])),
            column=key,
            rows=clash["_row"].astype(int).tolist(),
            fix="核对这些记录，保留正确的一条后重新导入；完全相同的重复行会被自动去除并计数",
        )
    drop_mask = np.zeros(len(frame), dtype=bool)
    drop_mask[np.flatnonzero(dup)[identical_later.to_numpy()]] = True
    ledger.add_by_file(ledger.duplicates, frame, drop_mask, table, f"与先出现的记录完全相同的重复 {key}")
    return frame[~drop_mask].reset_index(drop=True)


def _unit_from_case(cases: pd.DataFrame, evaluations: pd.DataFrame, ledger: _Ledger) -> None:
    """A linked case's unit wins over the evaluation's own (data contract §1); each change is logged."""
    if cases.empty or evaluations.empty or "case_id" not in evaluations:
        return
    case_unit = evaluations["case_id"].map(cases.set_index("case_id")["unit_id"])
    change = (case_unit.notna() & (case_unit != evaluations["unit_id"])).to_numpy(dtype=bool)
    if change.any():
        ledger.add_by_file(
            ledger.repaired, evaluations, change, "evaluations", "评价单位与所评办件的单位不一致，按办件单位"
        )
        evaluations.loc[change, "unit_id"] = case_unit[change].to_numpy()


def _apply_period(
    tables: dict[str, pd.DataFrame], period: Period, ledger: _Ledger
) -> dict[str, pd.DataFrame]:
    """Keep the period's records, counting the others.

    Cases count by finished_at; evaluations by evaluated_at, and an evaluation of a kept case is kept
    whenever it was made (评价数 of case tables counts it, data contract §4); a rectification follows
    its evaluation (kept when that evaluation is not part of this ingest).
    """
    out = dict(tables)
    cases = tables["cases"]
    in_cases = period.contains(cases["finished_at"]).to_numpy(dtype=bool) if len(cases) else np.zeros(0, bool)
    ledger.add_by_file(ledger.excluded, cases, ~in_cases, "cases", "办结时间不在统计期内")
    out["cases"] = cases[in_cases].reset_index(drop=True)
    evaluations = tables["evaluations"]
    if len(evaluations):
        linked = (
            _isin(evaluations["case_id"], out["cases"]["case_id"])
            if "case_id" in evaluations
            else np.zeros(len(evaluations), dtype=bool)
        )
        in_eval = period.contains(evaluations["evaluated_at"]).to_numpy(dtype=bool) | linked
    else:
        in_eval = np.zeros(0, bool)
    ledger.add_by_file(
        ledger.excluded, evaluations, ~in_eval, "evaluations", "评价时间不在统计期内，且所评办件不在统计期内"
    )
    out["evaluations"] = evaluations[in_eval].reset_index(drop=True)
    rect = tables["rectifications"]
    dropped = evaluations.loc[~in_eval, "eval_id"] if len(evaluations) else pd.Series([], dtype="str")
    in_rect = ~_isin(rect["eval_id"], dropped) if len(rect) else np.zeros(0, bool)
    ledger.add_by_file(ledger.excluded, rect, ~in_rect, "rectifications", "所核实的评价不在统计期内")
    out["rectifications"] = rect[in_rect].reset_index(drop=True)
    return out


def _validate(frame: pd.DataFrame, table: str, ledger: _Ledger) -> pd.DataFrame:
    """Coerce to canonical dtypes and validate with the pandera model; failures name file and rows."""
    canonical = coerce(frame, table)
    try:
        validate(canonical, table)
    except pa_errors.SchemaErrors as err:
        cases = err.failure_cases
        first = cases.iloc[0]
        column = str(first.get("column") or "")
        index = pd.to_numeric(
            cases.loc[cases["column"] == first.get("column"), "index"], errors="coerce"
        ).dropna()
        index = index.astype(int).tolist()
        file = ledger.name(int(canonical.loc[index[0], "_file"])) if index else None
        rows = canonical.loc[index, "_row"].astype(int).tolist() if index else None
        raise HaochaInputError(
            f"{TABLE_LABELS[table]}未通过规范校验：检查 {first.get('check')} 失败，"
            f"例如值“{first.get('failure_case')}”",
            file=file,
            column=column or None,
            rows=rows,
            fix="按数据契约改正该列的值（docs/data-contract.md）；行政区划代码须为 6、9 或 12 位数字",
        ) from err
    return canonical


def _file_log(ledger: _Ledger, file: int, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    source = ledger.files[file]
    entry: dict[str, Any] = {
        "file": str(source.path),
        "rows_read": len(source.frame),
        **{k: v for k, v in ledger.info[file].items() if k != "tables"},
        "tables": {},
    }
    for table in ledger.info[file]["tables"]:
        records = ledger.records[(file, table)]
        kept = int((tables[table]["_file"] == file).sum())

        def pick(kind: list[_Entry]) -> list[_Entry]:
            return [e for e in kind if e.file == file and e.table == table]  # noqa: B023

        def listing(entries: list[_Entry], label: str) -> list[dict[str, Any]]:
            merged: dict[str, list[np.ndarray]] = {}
            for e in entries:
                merged.setdefault(e.what, []).append(e.rows)
            return [
                {
                    label: what,
                    "count": int(sum(len(r) for r in parts)),
                    "rows": _first_rows(np.sort(np.concatenate(parts))),
                }
                for what, parts in merged.items()
            ]

        rejected, dups, excluded = pick(ledger.rejected), pick(ledger.duplicates), pick(ledger.excluded)
        n_rejected = sum(len(e.rows) for e in rejected)
        n_dups = sum(len(e.rows) for e in dups)
        n_excluded = sum(len(e.rows) for e in excluded)
        if records != kept + n_dups + n_rejected + n_excluded:
            raise RuntimeError(
                f"ingest accounting broken for {source.path} / {table}: {records} records != {kept} kept + "
                f"{n_dups} duplicates + {n_rejected} rejected + {n_excluded} excluded"
            )
        without = len(source.frame) - records
        entry["tables"][table] = {
            "records": records,
            "rows_without_record": without,
            "kept": kept,
            "duplicates_dropped": {
                "count": n_dups,
                "rows": _first_rows(np.sort(np.concatenate([e.rows for e in dups]))) if dups else [],
            },
            "rejected": {"count": n_rejected, "reasons": listing(rejected, "reason")},
            "excluded_by_period": {"count": n_excluded, "reasons": listing(excluded, "reason")},
            "repaired": listing(pick(ledger.repaired), "what"),
        }
    return entry


def build_tables(
    profile: str | Path | Profile,
    files: Sequence[str | Path],
    ref: str | Path | CityReference,
    period: str | Period,
    salt: str | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Read, map, check and account for the files; return the canonical tables and the log.

    Nothing is written. Raises :class:`HaochaInputError` on bad input.
    """
    profile = load_profile(profile)
    ref = ref if isinstance(ref, CityReference) else load_city(ref)
    period = period if isinstance(period, Period) else parse_period(period)
    salt = salt if salt is not None else hash_salt()
    if not files:
        raise HaochaInputError(
            "没有给出输入文件", fix="在命令行列出一个或多个导出文件（CSV、XLSX 或 Parquet）"
        )
    ledger = _Ledger()
    known = profile.known_headers()
    parts: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    for file, path in enumerate(files):
        source = read_source(Path(path), profile, known)
        held, plan, extras, absent = _plan_file(source, profile)
        ledger.files.append(source)
        ledger.info.append(
            {
                "file_type": source.file_type,
                "encoding": source.encoding,
                "header_row": source.header_row,
                "tables": held,
                "columns": plan,
                "extra_columns": extras,
                "declared_columns_absent": absent,
            }
        )
        extras_table = "evaluations" if "evaluations" in held else held[0]
        for table in held:
            mask = _record_mask(source, table, plan)
            ledger.records[(file, table)] = int(mask.sum())
            builder = _TableBuilder(source, file, table, plan[table], profile, ref, salt, ledger)
            parts[table].append(builder.build(np.flatnonzero(mask), extras if table == extras_table else []))
    tables = {}
    for table in TABLES:
        frames = [p for p in parts[table] if len(p)]
        frame = (
            pd.concat(frames, ignore_index=True)
            if frames
            else coerce(
                pd.DataFrame({"_file": pd.Series(dtype="int32"), "_row": pd.Series(dtype="int64")}), table
            )
        )
        tables[table] = _dedupe(frame, table, ledger)
    _unit_from_case(tables["cases"], tables["evaluations"], ledger)
    tables = _apply_period(tables, period, ledger)
    if not len(tables["cases"]) and not len(tables["evaluations"]):
        raise HaochaInputError(
            f"统计期 {period.label}（{period.range_cn()}）内没有任何办件或评价记录",
            file=", ".join(str(p) for p in files),
            fix="检查 --period 是否与导出数据的时间范围一致，以及时间列是否映射正确",
        )
    tables = {t: _validate(f, t, ledger) for t, f in tables.items()}
    log = {
        "city": ref.key,
        "period": period.label,
        "period_range": [period.start.isoformat(), period.end.isoformat()],
        "profile": profile.summary(),
        "accounting": "每个文件、每张表：rows_read = records + rows_without_record；"
        "records = kept + duplicates_dropped + rejected + excluded_by_period",
        "files": [_file_log(ledger, i, tables) for i in range(len(ledger.files))],
        "totals": {},
    }
    for table in TABLES:
        per_file = [f["tables"][table] for f in log["files"] if table in f["tables"]]
        log["totals"][table] = {
            "records": sum(t["records"] for t in per_file),
            "kept": len(tables[table]),
            "duplicates_dropped": sum(t["duplicates_dropped"]["count"] for t in per_file),
            "rejected": sum(t["rejected"]["count"] for t in per_file),
            "excluded_by_period": sum(t["excluded_by_period"]["count"] for t in per_file),
        }
    tables = {t: f.drop(columns=["_file", "_row"]) for t, f in tables.items()}
    return tables, log


def _move_into_place(tmp: Path, out_dir: Path, period_label: str) -> None:
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    moves = [(tmp / LOG_NAME, out_dir / LOG_NAME)]
    for table in TABLES:
        target = out_dir / table / f"period={period_label}"
        target.parent.mkdir(parents=True, exist_ok=True)
        moves.insert(0, (tmp / table / f"period={period_label}", target))
    swap_in(moves)  # the period's tables and the log replace the old ones as one set
    shutil.rmtree(tmp, ignore_errors=True)


def ingest_files(
    profile: str | Path | Profile,
    files: Sequence[str | Path],
    ref: str | Path | CityReference,
    period: str | Period,
    out_dir: str | Path,
    salt: str | None = None,
    extracted_on: date | None = None,
) -> dict[str, Any]:
    """Ingest exported files into canonical Parquet tables under ``out_dir`` and return the log.

    Args:
        profile: a profile (path, name under ``data/profiles/``, or :class:`Profile`).
        files: the exported files (CSV, XLSX, Parquet), all of one period.
        ref: the city (name under ``data/reference/``, folder, or :class:`CityReference`).
        period: the statistical period (``2023Q2``, ``2023-04``, ``2023H1``, ``2023``, ``a..b``).
        out_dir: output folder; tables go to ``<table>/period=<label>/part-0.parquet`` and the log to
            ``ingest_log.json``. Other periods already in the folder are left as they are.
        salt: salt for hashing identity/phone numbers (default: :func:`config.hash_salt`).
        extracted_on: when the export was made (数据提取时间, printed in the annexes' 备注); default today.

    Returns:
        The ingest log (also written as ``ingest_log.json``).

    Raises:
        HaochaInputError: bad input; nothing is written.
    """
    period = period if isinstance(period, Period) else parse_period(period)
    tables, log = build_tables(profile, files, ref, period, salt)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.ingest-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700; the canonical tables are shared with the team
    try:
        written = write_tables(tables, tmp, period.label)
        log["outputs"] = [str(p.relative_to(tmp)) for p in written] + [LOG_NAME]
        log["created_at"] = datetime.now().isoformat(timespec="seconds")
        (tmp / LOG_NAME).write_text(json.dumps(log, ensure_ascii=False, indent=2), encoding="utf-8")
        _move_into_place(tmp, out_dir, period.label)
        record_extraction(out_dir, period.label, extracted_on or date.today())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return log


def _salt_from_env(name: str) -> str:
    if name == SALT_ENV:
        return hash_salt()
    value = os.environ.get(name)
    if not value:
        raise HaochaInputError(
            f"环境变量 {name} 未设置或为空，无法对身份证号、手机号加盐哈希",
            fix=f"export {name}=<盐>，或去掉 --salt-env 使用 {SALT_ENV} / .haocha-salt",
        )
    return value


@click.command("ingest")
@click.option("--profile", "profile", required=True, help="数据来源配置：YAML 路径或 data/profiles/ 下的名称")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@city_option
@period_option
@out_option
@click.option("--salt-env", default=SALT_ENV, show_default=True, help="存放哈希盐的环境变量名")
@click.option(
    "--extracted-on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="数据提取日期（附件备注行），默认今天",
)
@user_errors
def ingest_command(
    profile: str,
    files: tuple[Path, ...],
    city: str,
    period: str,
    out_dir: Path,
    salt_env: str,
    extracted_on: datetime | None,
) -> None:
    """导入导出文件（CSV/XLSX/Parquet），写出规范表与 ingest_log.json。"""
    log = ingest_files(
        profile,
        list(files),
        city,
        period,
        out_dir,
        salt=_salt_from_env(salt_env),
        extracted_on=extracted_on.date() if extracted_on else None,
    )
    totals = log["totals"]
    click.echo(f"已导入 {len(log['files'])} 个文件到 {out_dir}（统计期 {log['period']}）")
    for table in TABLES:
        t = totals[table]
        click.echo(
            f"  {TABLE_LABELS[table]}：保留 {t['kept']}，重复 {t['duplicates_dropped']}，"
            f"拒收 {t['rejected']}，统计期外 {t['excluded_by_period']}"
        )


COMMANDS = [ingest_command]
