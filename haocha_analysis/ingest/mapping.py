"""Mapping one export file's columns and values onto the canonical tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.schemas import DTYPES, FOLLOW_UP_LEVELS, TABLES
from haocha_analysis.ingest.labels import (
    _BAD,
    _UNDECLARED,
    ACTIVE_LABELS,
    ATTEMPT_LABELS,
    FREE_TEXT,
    INVALID_REASON_LABELS,
    KEY_COLUMNS,
    MAX_ATTEMPT,
    SHARED_KEYS,
    TABLE_LABELS,
    VERDICT_LABELS,
)
from haocha_analysis.ingest.ledger import _Ledger
from haocha_analysis.ingest.privacy import hash_keys, scrub
from haocha_analysis.ingest.profiles import (
    ALIASES,
    CHANNEL_COMMON,
    CHANNEL_LABELS,
    LABEL_TO_SATISFACTION,
    PROMISE_TYPE_LABELS,
    REQUIRED_COLUMNS,
    SIGNATURES,
    Profile,
    fold,
)
from haocha_analysis.ingest.readers import SourceFile
from haocha_analysis.ingest.values import (
    _examples,
    _first_rows,
    _map_distinct,
    _text,
    excel_scientific,
    normalize_keys,
    parse_timestamps,
)

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
            candidates = profile.aliases_for(table, canon)
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
        file=source.name,
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


def _is_code(value: str) -> bool:
    """A numeric code: ASCII digits only (after NFKC), so '٣' or '²' is text, never a crash."""
    return value.isascii() and value.isdigit()


def _declared(table: dict | None, value: str) -> Any:
    """Look a value up in a profile's code table: numeric codes need the table, text may be in it."""
    if _is_code(value):
        return _UNDECLARED if table is None else table.get(int(value), _BAD)
    return _BAD if table is None else table.get(fold(value), _BAD)


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
            file=self.source.name,
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
        self._keys(raw, rows)
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
            parsed, bad, shifted = parse_timestamps(raw[canon], self.profile.timestamp_formats)
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
            self._repair(
                f"{canon}（{self._col(canon)}）带时区（如 Z、+00:00），换算为北京时间", rows[shifted]
            )

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
            unknown = (ids.notna() & ~ids.isin(known)).to_numpy(dtype=bool)
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
                    lines.append(f"第 {', '.join(map(str, _first_rows(at)[:5]))} 行的名称（最接近：{near}）")
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

    def _keys(self, raw: dict, rows: np.ndarray) -> None:
        """Normalise the key columns in ``raw`` (NFKC, trimmed), counted; Excel-mangled ids refused."""
        for canon in KEY_COLUMNS:
            if canon not in raw:
                continue
            values, changed = normalize_keys(_text(raw[canon]))
            mangled = excel_scientific(values)
            if mangled.any():
                raise self._error(
                    f"编号是 Excel 科学计数法（{_examples(values[mangled])}），原编号的后几位已经丢失",
                    canon,
                    rows[mangled],
                    "在 Excel 中把该列设为“文本”格式后从业务系统重新导出（或直接导出 CSV），"
                    "不要经 Excel 另存",
                )
            raw[canon] = values
            self._repair(
                f"{canon}（{self._col(canon)}）含全角、空白或不可见字符，已归一（NFKC）", rows[changed]
            )

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
                return _declared(table, v)

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
            if sat_table is not None and not _is_code(v) and fold(v) in sat_table:
                return sat_table[fold(v)]  # a text code the profile declares (好评/中评/差评) wins
            if v in LABEL_TO_SATISFACTION:
                return LABEL_TO_SATISFACTION[v]
            return _declared(sat_table, v)

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
            if ch_table is not None and not _is_code(v) and fold(v) in ch_table:
                return ch_table[fold(v)]
            if fold(v) in CHANNEL_LABELS:
                return CHANNEL_LABELS[fold(v)]
            if ch_table is None and _is_code(v):
                n = int(v)
                return CHANNEL_COMMON.get(n, _UNDECLARED if n in (6, 7) else _BAD)
            return _declared(ch_table, v)

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
                if _is_code(v) and 1 <= int(v) <= MAX_ATTEMPT:
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
        self._plain(part, raw, ("eval_id",))
        if "invalid_reason" in raw:
            # Data contract: free text or code. Known labels become the code; other text is kept
            # (scrubbed like every free-text column) and the ledger audits it (审核问题).
            reason, _ = _map_distinct(
                _text(raw["invalid_reason"]), lambda v: INVALID_REASON_LABELS.get(fold(v), v)
            )
            part["invalid_reason"] = pd.Series(reason, index=part.index, dtype="str")
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
