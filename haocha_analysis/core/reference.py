"""City reference data: the units (组织单位) in official order, and the matters catalogue (事项目录).

A city is a folder: ``units.csv`` (required), ``matters.csv`` and ``city.yml`` (optional).
Nothing about any one city is hard-coded: another city is another folder.
"""

from __future__ import annotations

import csv
import difflib
import io
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pandera.pandas as pa
import yaml

from haocha_analysis.core.config import (
    RECTIFICATION_WORKING_DAYS,
    REFERENCE_DIRS,
    REVISIT_WORKING_DAYS,
    VERIFICATION_WORKING_DAYS,
    check_name,
)
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.schemas import LEVELS

UNITS_SCHEMA = pa.DataFrameSchema(
    {
        "unit_id": pa.Column(str, unique=True, nullable=False),
        "unit_name": pa.Column(str, unique=True, nullable=False),
        "level": pa.Column(str, pa.Check.isin(LEVELS), nullable=False),
        "district": pa.Column(str, nullable=True),
        "category": pa.Column(str, nullable=True),
        "public_service": pa.Column(bool, nullable=False),
        "order": pa.Column(int, nullable=False),
        "aliases": pa.Column(str, nullable=True),
    },
    strict=False,
    name="units",
)


@dataclass(frozen=True)
class ClosedLoopLimits:
    """Working-day limits of the 差评 closed loop (核实 → 整改 → 回访) of one city.

    Set in city.yml under ``rectification:`` (``verify_working_days``, ``rectify_working_days``,
    ``revisit_working_days``); a key left out takes the default of :mod:`haocha_analysis.core.config`.

    Attributes:
        verify_days: 核实 — working days after the evaluation's date for the verdict.
        rectify_days: 整改 — working days after the evaluation's date for the rectification (the
            national maximum is 15; a row's own ``deadline`` wins over it).
        revisit_days: 回访 — working days after the rectification's date for the follow-up.
    """

    verify_days: int = VERIFICATION_WORKING_DAYS
    rectify_days: int = RECTIFICATION_WORKING_DAYS
    revisit_days: int = REVISIT_WORKING_DAYS


# city.yml key under ``rectification:`` → (ClosedLoopLimits field, largest value accepted).
LIMIT_KEYS = {
    "verify_working_days": ("verify_days", 60),
    "rectify_working_days": ("rectify_days", RECTIFICATION_WORKING_DAYS),
    "revisit_working_days": ("revisit_days", 60),
}
LIMITS_BLOCK = "rectification"


def closed_loop_limits(meta: dict, file: Path) -> ClosedLoopLimits:
    """Parse city.yml's ``rectification:`` block; a wrong key or value is a clear error."""
    block = meta.get(LIMITS_BLOCK)
    if block is None:
        return ClosedLoopLimits()
    keys = "、".join(LIMIT_KEYS)
    if not isinstance(block, dict):
        raise HaochaInputError(
            f"city.yml 的 {LIMITS_BLOCK} 应为键值表",
            file=str(file),
            column=LIMITS_BLOCK,
            fix=f"写成 {keys}: 天数",
        )
    values = {}
    for key, value in block.items():
        if key not in LIMIT_KEYS:
            raise HaochaInputError(
                f"city.yml 的 {LIMITS_BLOCK} 中有未知的键 {key}",
                file=str(file),
                column=f"{LIMITS_BLOCK}.{key}",
                fix=f"可用的键：{keys}",
            )
        name, largest = LIMIT_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
            raise HaochaInputError(
                f"city.yml 的 {LIMITS_BLOCK}.{key} 应为 0–{largest} 的整数（工作日）",
                file=str(file),
                column=f"{LIMITS_BLOCK}.{key}",
                fix="整改时限不超过国家规定的 15 个工作日；核实、回访时限按本地规定填写",
            )
        values[name] = value
    return ClosedLoopLimits(**values)


def normalize_name(name: str) -> str:
    """Fold the spellings exports disagree on: full/half width (NFKC), spaces, brackets."""
    s = unicodedata.normalize("NFKC", str(name)).strip()
    return "".join(s.split()).replace("(", "（").replace(")", "）")


@dataclass
class CityReference:
    """One city's reference data."""

    key: str
    path: Path
    units: pd.DataFrame
    matters: pd.DataFrame | None = None
    meta: dict = field(default_factory=dict)
    limits: ClosedLoopLimits = field(default_factory=ClosedLoopLimits)

    @property
    def city_name(self) -> str:
        """The city's display name, e.g. 淄博市."""
        return self.meta.get("city_name", self.key)

    @property
    def system_name(self) -> str:
        """The evaluation system named in the annex 备注."""
        return self.meta.get("system_name", f"{self.city_name}政务服务好差评系统")

    def level(self, level: str) -> pd.DataFrame:
        """Units of one level in official order."""
        rows = self.units[self.units["level"] == level]
        return rows.sort_values(["order", "unit_id"], kind="stable")

    @property
    def districts(self) -> list[str]:
        """District names in the bulletin's order."""
        return self.level("district")["unit_name"].tolist()

    @property
    def categories(self) -> list[str]:
        """附件3 rows: the district-department categories in official order."""
        depts = self.level("district_dept")
        depts = depts[depts["category"].fillna("") != ""]
        return depts.drop_duplicates("category")["category"].tolist()

    def name_index(self) -> dict[str, str]:
        """Every known spelling (name, aliases; normalized) → unit_id."""
        index: dict[str, str] = {}
        for uid, name, aliases in self.units[["unit_id", "unit_name", "aliases"]].itertuples(index=False):
            for spelling in [name, *(str(aliases).split("|") if isinstance(aliases, str) else [])]:
                if spelling:
                    index.setdefault(normalize_name(spelling), uid)
        return index

    def resolve_names(self, names: pd.Series) -> pd.Series:
        """Map unit names (any known spelling) to unit_id; unknown names give <NA>."""
        index = self.name_index()
        uniques = pd.Series(names.dropna().unique())
        mapping = {n: index.get(normalize_name(n)) for n in uniques}
        return names.map(mapping).astype("str").where(names.map(mapping).notna())

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """The nearest known unit names, for an error message."""
        names = self.units["unit_name"].tolist()
        return difflib.get_close_matches(normalize_name(name), names, n=n, cutoff=0.3)

    def find_unit(self, text: str) -> str:
        """A unit_id from a unit code or any known spelling of its name; unknown text names the nearest.

        Raises:
            HaochaInputError: no unit has this code or name (the nearest names are suggested).
        """
        text = str(text).strip()
        if text in set(self.units["unit_id"]):
            return text
        found = self.name_index().get(normalize_name(text))
        if found is None:  # a unique unit whose name contains the text (e.g. 张店区人社 → 张店区人社局)
            folded = normalize_name(text)
            hits = self.units.loc[
                self.units["unit_name"].map(normalize_name).str.contains(folded, regex=False)
            ]
            found = str(hits["unit_id"].iloc[0]) if len(hits) == 1 and folded else None
        if found is None:
            near = self.suggest(text)
            raise HaochaInputError(
                f"参考数据中没有单位“{text}”",
                file=str(self.path / "units.csv"),
                fix=("是否想找：" + "、".join(near)) if near else "填写 units.csv 中的单位编码或单位名称",
            )
        return found


UNITS_REQUIRED = ("unit_id", "unit_name", "level", "public_service", "order")
UNITS_OPTIONAL = ("district", "category", "aliases")
MATTERS_REQUIRED = ("matter_code", "matter_name")
MATTERS_OPTIONAL = ("unit_id", "category", "level", "type")
BOOLEAN_TEXT = {"true": True, "false": False, "": False}
# Text values of city.yml that the bulletin and the annex 备注 print.
CITY_TEXT_KEYS = ("city_name", "system_name", "addressees", "issuer", "region_code")
_UNITS_FIX = (
    "units.csv 为 UTF-8 编码的 CSV，列 unit_id、unit_name、level、district、category、public_service、"
    "order、aliases（见 docs/data-contract.md 的 units 表）"
)


def _refuse(
    problem: str, file: Path, fix: str, column: str | None = None, rows: Iterable[int] | None = None
) -> NoReturn:
    raise HaochaInputError(
        problem, file=str(file), column=column, rows=None if rows is None else list(rows), fix=fix
    )


def read_reference_csv(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...], fix: str
) -> pd.DataFrame:
    """Read a reference CSV as text: UTF-8 (BOM allowed), a header, the required columns, data rows.

    Optional columns that are missing are added empty. The frame is indexed by file line (the header
    is line 1), so that row numbers in errors are the lines a user opens; blank lines are skipped.

    Raises:
        HaochaInputError: unreadable, not UTF-8, empty, header only, malformed or missing columns.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        _refuse(f"无法读取参考数据文件（{err.strerror or type(err).__name__}）", path, fix)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        _refuse(
            "参考数据文件不是 UTF-8 编码（可能是 GB18030/GBK）",
            path,
            "用文本编辑器或 Excel 另存为“CSV UTF-8”后重试",
        )
    if not text.strip():
        _refuse("参考数据文件是空的", path, fix)
    if "\0" in text:
        _refuse("参考数据文件含空字符（不是文本 CSV）", path, fix)
    reader = csv.reader(io.StringIO(text))
    records: list[list[str]] = []
    lines: list[int] = []
    ragged: list[int] = []
    try:
        header = [name.strip() for name in next(reader)]
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # a blank line: skipped, and the line numbers of the rows after it stay true
            if len(row) != len(header):
                ragged.append(reader.line_num)
                continue
            records.append(row)
            lines.append(reader.line_num)
    except csv.Error:
        _refuse("参考数据文件不是规整的 CSV（引号不成对）", path, fix, rows=[reader.line_num])
    if ragged:
        _refuse(
            f"参考数据文件有 {len(ragged)} 行的列数与表头（{len(header)} 列）不同",
            path,
            "检查这些行的逗号与引号（含逗号的值要加英文双引号）",
            rows=ragged,
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        _refuse(
            f"参考数据文件的表头有重复的列名：{'、'.join(repeated)}", path, fix, column="、".join(repeated)
        )
    # indexed by file line (the header is line 1), for the row numbers of later errors
    frame = pd.DataFrame(records, columns=header, index=pd.Index(lines, dtype="int64"), dtype=str)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        _refuse(f"参考数据文件缺少列：{'、'.join(missing)}", path, fix, column="、".join(missing))
    if frame.empty:
        _refuse("参考数据文件只有表头，没有数据行", path, fix)
    for col in optional:
        if col not in frame:
            frame[col] = ""
    return frame


def _check_units(units: pd.DataFrame, units_file: Path) -> pd.DataFrame:
    """Check the units table row by row; return it typed (public_service bool, order int)."""
    lines = units.index  # file line numbers (read_reference_csv)

    def refuse_rows(mask: pd.Series, column: str, problem: str, fix: str) -> None:
        if mask.any():
            _refuse(
                f"units.csv 的 {column} 列{problem}（共 {int(mask.sum())} 行）",
                units_file,
                fix,
                column,
                lines[mask.to_numpy()],
            )

    units = units.copy()
    for col in units.columns:
        units[col] = units[col].astype(str).str.strip()
    for col in ("unit_id", "unit_name", "level", "order"):
        refuse_rows(units[col] == "", col, "有空值", f"每个单位都要填写 {col}")
    refuse_rows(~units["level"].isin(LEVELS), "level", "有未知的层级", f"level 取 {'/'.join(LEVELS)}")
    for col in ("unit_id", "unit_name"):
        refuse_rows(
            units[col].duplicated(keep=False),
            col,
            "有重复的值",
            f"每个单位一行，{col} 不重复（重复的行见行号）",
        )
    flags = units["public_service"].str.lower().map(BOOLEAN_TEXT)
    refuse_rows(
        flags.isna(), "public_service", "有无法识别的值", "public_service 取 true 或 false（空为 false）"
    )
    units["public_service"] = flags.astype(bool)
    integral = units["order"].str.fullmatch(r"[+-]?[0-9]+")
    refuse_rows(~integral, "order", "不是整数", "order 为整数（官方顺序 1、2、3…），不能有小数")
    units["order"] = units["order"].astype(int)
    districts = units["level"] == "district"
    # A district row belongs to itself (contract: "its own name for a district row").
    units.loc[districts & (units["district"] == ""), "district"] = units["unit_name"]
    refuse_rows(
        districts & (units["district"] != units["unit_name"]),
        "district",
        "在区县行（level=district）中指向了别的单位",
        "区县行的 district 填它自己的 unit_name（或留空）",
    )
    district_names = set(units.loc[districts, "unit_name"])
    refuse_rows(
        (units["level"] != "city_dept") & ~units["district"].isin(district_names),
        "district",
        "所指的区县不在区县行（level=district）之列",
        "district 列填写所属区县的 unit_name",
    )
    try:
        return UNITS_SCHEMA.validate(units, lazy=True)
    except pa.errors.SchemaErrors as err:  # the checks above should leave nothing; never dump values
        cases = err.failure_cases
        columns = sorted({str(c) for c in cases["column"].dropna()})
        rows = sorted({int(i) for i in cases["index"].dropna()})
        _refuse(
            f"units.csv 不符合规范（{'、'.join(columns)}）", units_file, _UNITS_FIX, "、".join(columns), rows
        )


def _read_meta(meta_file: Path) -> dict:
    fix = "city.yml 是 UTF-8 的 YAML 映射，如 “city_name: 淄博市”（每行“键: 值”）"
    try:
        text = meta_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        _refuse("city.yml 不是 UTF-8 编码", meta_file, fix)
    except OSError as err:
        _refuse(f"无法读取 city.yml（{err.strerror or type(err).__name__}）", meta_file, fix)
    try:
        meta = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        _refuse(
            "city.yml 不是合法的 YAML" + (f"（第 {mark.line + 1} 行附近）" if mark else ""),
            meta_file,
            fix,
            rows=[mark.line + 1] if mark else None,
        )
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        _refuse(f"city.yml 应是“键: 值”的映射，而不是{type(meta).__name__}", meta_file, fix)
    bad = [str(k) for k in CITY_TEXT_KEYS if k in meta and not isinstance(meta[k], str | int | type(None))]
    if bad:
        _refuse(f"city.yml 中 {'、'.join(bad)} 应是一段文字", meta_file, fix, column="、".join(bad))
    return {str(k): v for k, v in meta.items()}


def load_city(city: str | Path) -> CityReference:
    """Load a city by name under ``data/reference/`` or by path to a reference folder.

    Raises:
        HaochaInputError: an unknown city, or reference files that break the data contract (each
            message names the file, the column, the rows and the fix; never a value's dump).
    """
    path = Path(city)
    if not (path.is_dir() and (path / "units.csv").is_file()):
        found = [d / str(city) for d in REFERENCE_DIRS if (d / str(city) / "units.csv").is_file()]
        path = found[0] if found else REFERENCE_DIRS[0] / str(city)
    path = path.resolve()  # the notebook runs with its own working directory
    units_file = path / "units.csv"
    if not units_file.is_file():
        known = sorted(
            {p.name for d in REFERENCE_DIRS if d.is_dir() for p in d.iterdir() if (p / "units.csv").exists()}
        )
        raise HaochaInputError(
            f"找不到城市“{city}”的参考数据",
            file=str(units_file),
            fix=f"--city 取 data/reference/ 下的名称（现有：{'、'.join(known)}）或含 units.csv 的目录路径",
        )
    # The key names output folders (reports/<key>/…): the folder's own name, never "..".
    key = check_name(path.resolve().name, "城市名称", source=str(path))
    units = read_reference_csv(units_file, UNITS_REQUIRED, UNITS_OPTIONAL, _UNITS_FIX)
    units = _check_units(units, units_file)
    matters_file = path / "matters.csv"
    matters = None
    if matters_file.exists():
        matters = read_reference_csv(
            matters_file,
            MATTERS_REQUIRED,
            MATTERS_OPTIONAL,
            "matters.csv 为 UTF-8 编码的 CSV，至少有 matter_code、matter_name 两列（见数据契约）",
        )
    meta_file = path / "city.yml"
    meta = _read_meta(meta_file) if meta_file.exists() else {}
    if matters is not None:
        matters = matters.reset_index(drop=True)
    return CityReference(
        key=key,
        path=path,
        units=units.reset_index(drop=True),
        matters=matters,
        meta=meta,
        limits=closed_loop_limits(meta, meta_file),
    )
