"""Source profiles (数据来源配置) and the code tables they declare.

A profile is data (YAML under ``data/profiles/``), not code: which canonical table(s) a file holds,
the column mapping per table, the code-table declarations, the encoding, the file type and the
timestamp formats. Column mapping takes the profile first, then the data contract's aliases
(:data:`ALIASES`, docs/data-contract.md §1). The code tables below are the conventions the contract
names (§2); a profile may also spell out its own table as a mapping ``code: label``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from haocha_analysis.core.config import PROFILES_DIRS
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.schemas import CHANNELS, DTYPES, SATISFACTION_LABELS, TABLES


def fold(name: Any) -> str:
    """Fold a header for matching: NFKC (full → half width), no spaces, lower case."""
    return "".join(unicodedata.normalize("NFKC", str(name)).split()).casefold()


# --- column aliases (data contract §1), one table for the whole package -------------------------
# Canonical name -> names recognised in exports. Matching folds case, full/half width and spaces, so
# projectNo / projectno / PROJECTNO are one entry. The canonical name itself is always recognised.
# ``evaluator_source`` and ``active_flag`` are ingest-only inputs: raw identity/phone numbers (hashed
# into evaluator_key, never stored) and the 默认评价 flag (active is its inverse).
_CASE_KEY = ["办件编号", "projectNo", "projId", "办件申报号", "申报号"]
_UNIT_ID = ["单位编码", "deptCode", "部门编码", "组织机构编码"]
_UNIT_NAME = ["受理部门", "proDepart", "部门名称", "单位名称", "受理单位", "评价对象"]
_EVAL_KEY = ["评价编号", "rowguid", "row_id", "评价标识"]

ALIASES: dict[str, dict[str, list[str]]] = {
    "cases": {
        "case_id": _CASE_KEY,
        "unit_id": _UNIT_ID,
        "unit_name": _UNIT_NAME,
        "matter_code": ["事项编码", "taskCode", "matterCode", "BUSINESSCODE", "事项代码"],
        "matter_name": ["事项名称", "taskName"],
        "region_code": ["行政区划", "行政区划代码", "areaCode", "REGIONCODE", "regionCode"],
        "accepted_at": ["受理时间", "收件时间", "acceptDate", "AcceptTime"],
        "finished_at": ["办结时间", "gmtService", "RESULTDATE"],
        "reported_at": ["上报时间", "归集时间", "办件上报时间"],
        "source_system": ["数据来源", "dataSource", "来源系统"],
        "promise_type": ["办件类型", "promiseType", "即办件承诺件"],
    },
    "evaluations": {
        "eval_id": _EVAL_KEY,
        "case_id": _CASE_KEY,
        "unit_id": _UNIT_ID,
        "unit_name": _UNIT_NAME,
        "channel": ["评价渠道", "pf", "evaluateChannel", "评价方式"],
        "satisfaction": ["满意度", "评价等级", "levelCode", "满意度代码"],
        "evaluated_at": ["评价时间", "assessTime", "submitTime"],
        "reported_at": ["上报时间", "评价上报时间"],
        "attempt": ["评价次数", "assessNumber", "number", "EVALUATETYPE"],
        "active": ["主动评价"],
        "active_flag": ["isprotion", "默认评价", "是否默认评价"],
        "evaluator_key": [],
        "evaluator_source": [
            "certKey",
            "certkeygov",
            "证件号码",
            "身份证号",
            "身份证号码",
            "mobile",
            "CONTACTMOBILE",
            "手机号码",
            "联系电话",
            "手机号",
        ],
        "operator": ["proManager", "operateusername", "经办人", "窗口经办人"],
        "comment": ["writingEvaluation", "words", "文字评价", "评价内容"],
    },
    "rectifications": {
        "eval_id": _EVAL_KEY,
        "verdict": ["核实结论", "核实结果", "差评核实结论"],
        "invalid_reason": ["无效原因", "无效差评原因", "核实说明"],
        "revisited_at": ["回访时间"],
        "deadline": ["整改期限", "整改时限"],
        "rectified_at": ["整改完成时间", "整改反馈时间", "整改时间"],
        "follow_up": ["整改后回访满意度", "回访满意度", "整改满意度"],
        "verified_at": ["核实时间", "核实完成时间"],
        "approved_at": ["审核通过时间", "申诉审核时间", "无效审核时间", "审批时间"],
    },
}

# Columns that a table needs (one of unit_id/unit_name stands for the unit).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "cases": ("case_id", "unit", "finished_at"),
    "evaluations": ("eval_id", "unit", "channel", "satisfaction", "evaluated_at"),
    "rectifications": ("eval_id", "verdict"),
}
# A file holds a table when these columns are found (``tables: auto``).
SIGNATURES: dict[str, tuple[str, ...]] = {
    "cases": ("case_id", "finished_at"),
    "evaluations": ("eval_id", "satisfaction"),
    "rectifications": ("eval_id", "verdict"),
}
# Columns shared by the tables of a flat export: they do not, alone, make a row hold a record.

# --- code tables (data contract §2) ---------------------------------------------------------------

LABEL_TO_SATISFACTION = {label: code for code, label in SATISFACTION_LABELS.items()}
# Named numeric conventions: source code -> canonical satisfaction (5 非常满意 … 1 非常不满意).
SATISFACTION_TABLES: dict[str, dict[int, int]] = {
    # 浙江 satisfaction / levelCode and most interfaces: the canonical direction.
    "interface": {5: 5, 4: 4, 3: 3, 2: 2, 1: 1},
    # GB/T 39046-2020 附录A.8 满意度代码: 1 = 非常满意 (the reverse).
    "gbt39046": {1: 5, 2: 4, 3: 3, 4: 2, 5: 1},
}

# Channel labels always accepted, whatever the numeric convention (folded spellings).
_CHANNEL_SPELLINGS: dict[str, str] = {
    **{code: code for code in CHANNELS},
    **{label: code for code, (label, _) in CHANNELS.items()},
    "政务服务网": "pc",
    "网上评价": "pc",
    "移动端": "mobile",
    "app": "mobile",
    "小程序": "mobile",
    "移动服务端/app/小程序": "mobile",
    "扫码评价": "qr_code",
    "平板电脑": "hall_tablet",
    "窗口评价器": "hall_tablet",
    "评价器": "hall_tablet",
    "自助终端": "hall_terminal",
    "一体机": "hall_terminal",
    "其他终端": "hall_terminal",
    "书面评价表": "paper",
    "纸质评价": "paper",
    "电话": "phone",
    "12345": "phone",
    "12345热线": "phone",
    "电话/12345热线": "phone",
    "默认评价": "system_default",
    "系统默认": "system_default",
}
CHANNEL_LABELS: dict[str, str] = {fold(spelling): code for spelling, code in _CHANNEL_SPELLINGS.items()}
# pf 1..5 agree across sources; 6 and 7 do not, so a source that uses them declares its table.
CHANNEL_COMMON = {1: "pc", 2: "mobile", 3: "qr_code", 4: "hall_tablet", 5: "hall_terminal"}
CHANNEL_TABLES: dict[str, dict[int, str]] = {
    # Most sources and the GB/T 39046 order: 6 电话, 7 短信.
    "standard": {**CHANNEL_COMMON, 6: "phone", 7: "sms"},
    # 浙江 interface: 6 短信, 7 系统默认评价.
    "zhejiang": {**CHANNEL_COMMON, 6: "sms", 7: "system_default"},
}

PROMISE_TYPE_LABELS = ("即办件", "承诺件")
# 即办件/承诺件 codes are reversed between sources (data contract §2). The code 1 is documented for both;
# the other code of the pair (2) is the assumed complement, see docs/ingest.md.
PROMISE_TYPE_TABLES: dict[str, dict[int, str]] = {
    "zhejiang": {1: "承诺件", 2: "即办件"},
    "jining": {1: "即办件", 2: "承诺件"},
}

ACTIVE_MODES = ("auto", "channel", "flag", "column", "unknown")
FLAG_TRUE_DEFAULT = ["1", "是", "true", "y", "yes"]  # flag set = 系统默认评价 → active false
FLAG_FALSE_DEFAULT = ["0", "否", "false", "n", "no"]

# Cells that mean "no value" in real exports (compared after trimming, NFKC and lower case). A
# profile's ``null_values`` replaces this list; an empty cell is always missing.
DEFAULT_NULL_VALUES = ["NULL", "(null)", "<null>", "None", "NaN", "#N/A", "N/A", "-", "--", "—", "无"]

ENCODINGS = ("auto", "utf-8", "utf-8-sig", "gb18030")
FILE_TYPES = ("auto", "csv", "xlsx", "parquet")

# Timestamps are local time (Asia/Shanghai). The contract's formats first, then common variants.
DEFAULT_TIMESTAMP_FORMATS = [
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y%m%dT%H%M%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d",
    "%Y/%m/%d",
]
LOCAL_TIMEZONE = "Asia/Shanghai"

_PROFILE_KEYS = {
    "name",
    "description",
    "file_type",
    "encoding",
    "tables",
    "columns",
    "codes",
    "timestamp_formats",
    "sheet",
    "sheets",
    "source_system",
    "null_values",
    "aliases",
}
_CODE_KEYS = {"satisfaction", "channel", "promise_type", "active", "active_flag"}


@dataclass
class Profile:
    """A parsed, checked source profile."""

    name: str
    path: Path | None = None
    description: str = ""
    file_type: str = "auto"
    encoding: str = "auto"
    tables: list[str] | None = None  # None = auto (per file, from the columns found)
    columns: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    satisfaction: dict[int, int] | None = None
    satisfaction_name: str | None = None
    channel: dict[int, str] | None = None
    channel_name: str | None = None
    promise_type: dict[int, str] | None = None
    promise_type_name: str | None = None
    active: str = "auto"
    flag_true: list[str] = field(default_factory=lambda: list(FLAG_TRUE_DEFAULT))
    flag_false: list[str] = field(default_factory=lambda: list(FLAG_FALSE_DEFAULT))
    timestamp_formats: list[str] = field(default_factory=lambda: list(DEFAULT_TIMESTAMP_FORMATS))
    sheets: list[str] | None = None  # XLSX sheet names or patterns (None = every data sheet)
    source_system: str | None = None
    null_values: list[str] = field(default_factory=lambda: list(DEFAULT_NULL_VALUES))
    aliases: bool = True  # False: only the profile's columns and the canonical names are looked up
    switched_off: dict[str, set[str]] = field(default_factory=dict)  # table → columns never mapped

    def known_headers(self) -> set[str]:
        """Every folded header this profile can map (profile columns and aliases)."""
        names = {fold(n) for table in ALIASES.values() for c, aliases in table.items() for n in [c, *aliases]}
        names |= {fold(s) for table in self.columns.values() for sources in table.values() for s in sources}
        return names

    def aliases_for(self, table: str, canon: str) -> list[str]:
        """The names tried for a canonical column the profile does not map (empty when switched off)."""
        if canon in self.switched_off.get(table, set()):
            return []
        return [canon, *ALIASES[table].get(canon, [])] if self.aliases else [canon]

    def null_markers(self) -> set[str]:
        """The folded null markers (trimmed, NFKC, lower case)."""
        return {unicodedata.normalize("NFKC", v).strip().lower() for v in self.null_values}

    def summary(self) -> dict[str, Any]:
        """What the log records about the profile."""
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "satisfaction": self.satisfaction_name,
            "channel": self.channel_name,
            "promise_type": self.promise_type_name,
            "active": self.active,
            "null_values": self.null_values,
            "aliases": self.aliases,
            "switched_off": {t: sorted(c) for t, c in self.switched_off.items() if c},
        }


def _profile_error(problem: str, path: Path | None, fix: str) -> HaochaInputError:
    return HaochaInputError(problem, file=str(path) if path else None, fix=fix)


def _code_table(value: Any, named: dict[str, dict], what: str, path: Path | None, parse_label) -> tuple:
    """Resolve a code-table declaration: a convention name, an explicit mapping, or none."""
    if value is None:
        return None, None
    if isinstance(value, str):
        if value not in named:
            raise _profile_error(
                f"profile 中 codes.{what} 取值“{value}”不是已知的代码表",
                path,
                f"取 {' / '.join(named)}，或写成“代码: 标签”的映射",
            )
        return dict(named[value]), value
    if isinstance(value, dict):
        table: dict[int | str, Any] = {}
        for code, label in value.items():
            try:
                table[code_key(code)] = parse_label(label)
            except (TypeError, ValueError, KeyError) as err:
                raise _profile_error(
                    f"profile 中 codes.{what} 的映射 {code}: {label} 无法识别",
                    path,
                    "左侧为导出中的代码（整数，或文字如“好评”），右侧须为规范标签",
                ) from err
        return table, "custom"
    raise _profile_error(f"profile 中 codes.{what} 的格式不对", path, "写代码表名称或“代码: 标签”映射")


def code_key(code: Any) -> int | str:
    """A code as a code table keys it: an integer when it is one (5, '5', '５'), else folded text."""
    text = unicodedata.normalize("NFKC", str(code)).strip()
    if isinstance(code, bool) or not text:
        raise ValueError(code)
    return int(text) if text.isascii() and text.isdigit() else fold(text)


def _satisfaction_label(label: Any) -> int:
    if isinstance(label, int) and label in SATISFACTION_LABELS:
        return label
    return LABEL_TO_SATISFACTION[str(label).strip()]


def _channel_label(label: Any) -> str:
    return CHANNEL_LABELS[fold(label)]


def _promise_label(label: Any) -> str:
    if str(label) not in PROMISE_TYPE_LABELS:
        raise ValueError(label)
    return str(label)


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def parse_profile(data: dict, path: Path | None = None) -> Profile:
    """Build a :class:`Profile` from its YAML data, rejecting anything it does not understand."""
    if not isinstance(data, dict):
        raise _profile_error("profile 文件不是 YAML 映射", path, "参见 docs/ingest.md 的 profile 格式")
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise _profile_error(
            f"profile 含未知的键：{'、'.join(sorted(unknown))}",
            path,
            f"可用的键：{'、'.join(sorted(_PROFILE_KEYS))}",
        )
    name = str(data.get("name") or (path.stem if path else "profile"))
    prof = Profile(name=name, path=path, description=str(data.get("description", "")))
    prof.file_type = str(data.get("file_type", "auto")).lower()
    if prof.file_type not in FILE_TYPES:
        raise _profile_error(f"file_type“{prof.file_type}”未知", path, f"取 {' / '.join(FILE_TYPES)}")
    prof.encoding = str(data.get("encoding", "auto")).lower().replace("_", "-")
    if prof.encoding not in ENCODINGS:
        raise _profile_error(f"encoding“{prof.encoding}”未知", path, f"取 {' / '.join(ENCODINGS)}")
    tables = data.get("tables", "auto")
    if tables != "auto":
        tables = _as_list(tables)
        bad = [t for t in tables if t not in TABLES]
        if bad:
            raise _profile_error(
                f"tables 含未知的表：{'、'.join(bad)}", path, f"取 auto 或 {' / '.join(TABLES)}"
            )
        prof.tables = tables
    for table, mapping in (data.get("columns") or {}).items():
        if table not in TABLES or not isinstance(mapping, dict):
            raise _profile_error(
                f"columns 下的“{table}”不是规范表", path, f"columns 下按表写：{' / '.join(TABLES)}"
            )
        allowed = set(ALIASES[table]) | set(DTYPES[table])
        bad = [c for c in mapping if c not in allowed]
        if bad:
            raise _profile_error(
                f"columns.{table} 含非规范列名：{'、'.join(map(str, bad))}",
                path,
                f"左侧写规范列名（{'、'.join(sorted(allowed))}），右侧写导出文件中的列名",
            )
        # A column mapped to nothing (null or []) is switched off: no built-in alias is tried for it.
        prof.switched_off[table] = {c for c, v in mapping.items() if v is None or v == []}
        prof.columns[table] = {c: _as_list(v) for c, v in mapping.items() if v is not None and v != []}
    codes = data.get("codes") or {}
    unknown = set(codes) - _CODE_KEYS
    if unknown:
        raise _profile_error(
            f"codes 含未知的键：{'、'.join(sorted(unknown))}",
            path,
            f"可用的键：{'、'.join(sorted(_CODE_KEYS))}",
        )
    prof.satisfaction, prof.satisfaction_name = _code_table(
        codes.get("satisfaction"), SATISFACTION_TABLES, "satisfaction", path, _satisfaction_label
    )
    prof.channel, prof.channel_name = _code_table(
        codes.get("channel"), CHANNEL_TABLES, "channel", path, _channel_label
    )
    prof.promise_type, prof.promise_type_name = _code_table(
        codes.get("promise_type"), PROMISE_TYPE_TABLES, "promise_type", path, _promise_label
    )
    prof.active = str(codes.get("active", "auto"))
    if prof.active not in ACTIVE_MODES:
        raise _profile_error(f"codes.active“{prof.active}”未知", path, f"取 {' / '.join(ACTIVE_MODES)}")
    flag = codes.get("active_flag") or {}
    if flag:
        if not isinstance(flag, dict):
            raise _profile_error(
                "codes.active_flag 须为映射",
                path,
                "写 column（默认评价标志列）、default_values、active_values",
            )
        if "column" in flag:
            prof.columns.setdefault("evaluations", {})["active_flag"] = _as_list(flag["column"])
        prof.flag_true = [fold(v) for v in _as_list(flag.get("default_values", FLAG_TRUE_DEFAULT))]
        prof.flag_false = [fold(v) for v in _as_list(flag.get("active_values", FLAG_FALSE_DEFAULT))]
    formats = data.get("timestamp_formats")
    if formats:
        extra = _as_list(formats)
        prof.timestamp_formats = extra + [f for f in DEFAULT_TIMESTAMP_FORMATS if f not in extra]
    sheets = data.get("sheets", data.get("sheet"))
    prof.sheets = _as_list(sheets) if sheets not in (None, [], "") else None
    if "null_values" in data:
        # YAML reads an unquoted NULL / null / ~ as "no value": the user meant the marker text.
        markers = data["null_values"] if isinstance(data["null_values"], list) else [data["null_values"]]
        prof.null_values = ["null" if v is None else str(v) for v in markers]
    aliases = data.get("aliases")
    aliases = "builtin" if aliases is None else aliases
    if aliases not in ("builtin", "none", True, False):
        raise _profile_error(
            f"aliases“{aliases}”未知",
            path,
            "取 builtin（默认：按数据契约的别名找列）或 none（只认 profile 写明的列名）",
        )
    prof.aliases = aliases in ("builtin", True)
    prof.source_system = str(data["source_system"]) if data.get("source_system") else None
    return prof


def load_profile(profile: str | Path | Profile) -> Profile:
    """Load a profile by path, or by name under ``data/profiles/`` (``gbt39046`` → gbt39046.yml)."""
    if isinstance(profile, Profile):
        return profile
    path = Path(profile)
    if not path.is_file():
        named = [d / f"{profile}.yml" for d in PROFILES_DIRS if (d / f"{profile}.yml").is_file()]
        if named:
            path = named[0]
        else:
            known = sorted({p.stem for d in PROFILES_DIRS for p in d.glob("*.yml")})
            raise HaochaInputError(
                f"找不到数据来源配置（profile）“{profile}”",
                file=str(path),
                fix=f"--profile 取 YAML 文件路径或 data/profiles/ 下的名称（现有：{'、'.join(known)}）",
            )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise HaochaInputError(
            f"profile 不是合法的 YAML：{err}", file=str(path), fix="用 UTF-8 保存，并检查缩进与冒号"
        ) from err
    return parse_profile(data, path)
