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
import shutil
import tempfile
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.errors as pa_errors

from haocha_analysis.core.arrays import isin
from haocha_analysis.core.config import hash_salt
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, parse_period
from haocha_analysis.core.reference import CityReference, load_city
from haocha_analysis.core.schemas import DTYPES, TABLES, coerce, validate
from haocha_analysis.ingest.labels import LINKAGE_WARN_SHARE, LOG_NAME, TABLE_KEYS, TABLE_LABELS
from haocha_analysis.ingest.ledger import _Entry, _Ledger
from haocha_analysis.ingest.mapping import _plan_file, _TableBuilder
from haocha_analysis.ingest.profiles import (
    Profile,
    load_profile,
)
from haocha_analysis.ingest.readers import SourceFile, read_source
from haocha_analysis.ingest.storage import _overlaps, record_extraction, swap_in, write_tables
from haocha_analysis.ingest.values import _first_rows, _text

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
        one = clash[clash[key] == clash[key].iloc[0]]
        differing = [c for c in content if one[c].astype("str").nunique(dropna=False) > 1]
        where = "；".join(
            f"{ledger.name(int(f))} 第 {int(r)} 行" for f, r in one[["_file", "_row"]].to_numpy()[:5]
        )
        first_file = int(clash["_file"].iloc[0])
        raise HaochaInputError(
            f"{TABLE_LABELS[table]}中编号重复且内容不同（共 {clash[key].nunique()} 个编号），"
            f"例如同一编号出现在：{where}；不同的列：{'、'.join(differing)}",
            file=ledger.name(first_file),
            column=ledger.source_column(first_file, table, key),
            rows=clash.loc[clash["_file"] == first_file, "_row"].astype(int).tolist(),
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
            isin(evaluations["case_id"], out["cases"]["case_id"])
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
    in_rect = ~isin(rect["eval_id"], dropped) if len(rect) else np.zeros(0, bool)
    ledger.add_by_file(ledger.excluded, rect, ~in_rect, "rectifications", "所核实的评价不在统计期内")
    out["rectifications"] = rect[in_rect].reset_index(drop=True)
    return out


def _linkage(tables: dict[str, pd.DataFrame], ledger: _Ledger) -> tuple[dict[str, Any], list[str]]:
    """Count the kept evaluations whose case_id names no case of this ingest; warn above a share.

    Only meaningful when the ingest holds cases: an evaluation of a case stored in an earlier period
    links when the tables are loaded (the loading window), so it is counted here, not dropped.
    """
    cases, evaluations = tables["cases"], tables["evaluations"]
    if not len(cases) or not len(evaluations):
        return {}, []
    named = (
        evaluations["case_id"].notna().to_numpy(dtype=bool)
        if "case_id" in evaluations
        else np.zeros(len(evaluations), dtype=bool)
    )
    unlinked = named & ~isin(evaluations["case_id"], cases["case_id"]) if named.any() else named
    share = float(unlinked.sum() / named.sum()) if named.any() else 0.0
    by_file = [
        {"file": ledger.name(int(f)), "count": len(rows), "rows": _first_rows(np.sort(rows.to_numpy()))}
        for f, rows in evaluations.loc[unlinked, ["_file", "_row"]].groupby("_file")["_row"]
    ]
    # A file none of whose evaluations names a case, beside cases: most often the vendor renamed the
    # 办件编号 column, and every evaluation would lose its case without any other sign.
    naming = pd.Series(named).groupby(evaluations["_file"].to_numpy()).any()
    silent = [int(f) for f, any_named in naming.items() if not any_named]
    files_naming_no_case = [
        {"file": ledger.name(f), "count": int((evaluations["_file"] == f).sum())} for f in silent
    ]
    entry = {
        "evaluations_naming_a_case": int(named.sum()),
        "case_not_in_this_ingest": int(unlinked.sum()),
        "share": round(share, 4),
        "by_file": by_file,
        "files_naming_no_case": files_naming_no_case,
    }
    warnings = []
    for f, item in zip(silent, files_naming_no_case, strict=True):
        unused = ledger.info[f].get("extra_columns") or []
        warnings.append(
            f"警告：文件 {item['file']} 的 {item['count']} 条评价都没有办件编号，而本次导入含办件："
            "这些评价不会计入办件的评价数。"
            + (f"未用到的列：{'、'.join(map(str, unused[:10]))}。" if unused else "")
            + "办件编号列改了名时，在 profile 的 columns.evaluations.case_id 写明导出中的列名"
        )
    if share > LINKAGE_WARN_SHARE:
        warnings.append(
            f"警告：{share:.1%} 的评价（{int(unlinked.sum())} 条）所评办件不在本次导入的办件中"
            f"（阈值 {LINKAGE_WARN_SHARE:.0%}）。检查办件编号的写法是否与办件表一致，或是否漏传了办件文件；"
            "行号见 ingest_log.json 的 linkage"
        )
    return entry, warnings


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
        file_no = int(canonical.loc[index[0], "_file"]) if index else None
        file = ledger.name(file_no) if index else None
        rows = (
            canonical.loc[index][canonical.loc[index, "_file"] == file_no]["_row"].astype(int).tolist()
            if index
            else None
        )
        if index and column:
            column = ledger.source_column(file_no, table, column)
        raise HaochaInputError(
            f"{TABLE_LABELS[table]}未通过规范校验：检查 {first.get('check')} 失败",
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
        **({"sheet": source.sheet} if source.sheet is not None else {}),
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
    sources = [source for path in files for source in read_source(Path(path), profile, known)]
    for file, source in enumerate(sources):
        held, plan, extras, absent = _plan_file(source, profile)
        ledger.files.append(source)
        ledger.info.append(
            {
                "file_type": source.file_type,
                "encoding": source.encoding,
                "header_row": source.header_row,
                "blank_rows_skipped": source.blank_rows,
                "header_rows_skipped": {
                    "count": len(source.header_rows),
                    "rows": _first_rows(np.sort(source.header_rows)),
                },
                "null_markers": source.null_markers,
                "empty_untitled_columns_dropped": source.dropped_columns,
                **({"sheets_skipped": source.sheets_skipped} if source.sheets_skipped else {}),
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
            f"统计期 {period.title_cn()}（{period.range_cn()}）内没有任何办件或评价记录",
            file=", ".join(str(p) for p in files),
            fix="检查 --period 是否与导出数据的时间范围一致，以及时间列是否映射正确",
        )
    tables = {t: _validate(f, t, ledger) for t, f in tables.items()}
    linkage, warnings = _linkage(tables, ledger)
    log = {
        "city": ref.key,
        "period": period.label,
        "period_range": [period.start.isoformat(), period.end.isoformat()],
        "profile": profile.summary(),
        "accounting": "每个文件、每张表：rows_read = records + rows_without_record；"
        "records = kept + duplicates_dropped + rejected + excluded_by_period",
        "files": [_file_log(ledger, i, tables) for i in range(len(ledger.files))],
        "totals": {},
        "linkage": linkage,
        "warnings": warnings,
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


def _refuse_overlapping_partitions(out_dir: Path, period: Period) -> None:
    """A partition of another period that overlaps this one would count its records twice.

    Re-ingesting the same period replaces its partition; any other overlapping period already in
    ``out_dir`` (``2023Q2`` when ingesting ``2023-05``) is refused before any work, so the folder stays
    readable by every verb instead of being refused by all of them afterwards.
    """
    clashes = sorted(
        {
            f"{table}/{part.name}"
            for table in TABLES
            if (out_dir / table).is_dir()
            for part in (out_dir / table).iterdir()
            if part.is_dir()
            and part.name.startswith("period=")
            and part.name != f"period={period.label}"
            and _overlaps(part.name.removeprefix("period="), period)
        }
    )
    if clashes:
        raise HaochaInputError(
            f"--out 中已有与统计期 {period.title_cn()} 时间重叠的分区：{'、'.join(clashes[:5])}；"
            "两份都保留会把同一批记录计两次",
            file=str(out_dir),
            column="--period",
            fix=f"按已有分区的统计期重新导入（替换该期），或把 {period.title_cn()} 导入到另一个 --out 目录",
        )


def _refuse_another_city(out_dir: Path, ref: CityReference) -> None:
    """A canonical folder holds one city: another city's ingest would replace or mix its partitions."""
    try:
        previous = json.loads((out_dir / LOG_NAME).read_text(encoding="utf-8")).get("city")
    except (OSError, ValueError, AttributeError):
        return  # no log (a new folder, synthetic data): nothing says whose records these are
    if previous and previous != ref.key:
        raise HaochaInputError(
            f"--out 中是城市“{previous}”的规范表，本次导入的是{ref.city_name}（{ref.key}）；"
            "写入会替换或混入另一个城市的记录",
            file=str(out_dir),
            column="--out",
            fix=f"每个城市用自己的规范表目录，如 data/canonical/{ref.key}",
        )


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
    out_dir = Path(out_dir)
    ref = ref if isinstance(ref, CityReference) else load_city(ref)
    _refuse_another_city(out_dir, ref)
    _refuse_overlapping_partitions(out_dir, period)
    tables, log = build_tables(profile, files, ref, period, salt)
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
