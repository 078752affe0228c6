"""City reference data: the units (组织单位) in official order, and the matters catalogue (事项目录).

A city is a folder: ``units.csv`` (required), ``matters.csv`` and ``city.yml`` (optional).
Nothing about any one city is hard-coded: another city is another folder.
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import yaml

from haocha_analysis.core.config import (
    RECTIFICATION_WORKING_DAYS,
    REFERENCE_DIRS,
    REVISIT_WORKING_DAYS,
    VERIFICATION_WORKING_DAYS,
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


def load_city(city: str | Path) -> CityReference:
    """Load a city by name under ``data/reference/`` or by path to a reference folder."""
    path = Path(city)
    if not (path.is_dir() and (path / "units.csv").exists()):
        found = [d / str(city) for d in REFERENCE_DIRS if (d / str(city) / "units.csv").exists()]
        path = found[0] if found else REFERENCE_DIRS[0] / str(city)
    path = path.resolve()  # the notebook runs with its own working directory
    units_file = path / "units.csv"
    if not units_file.exists():
        known = sorted(
            {p.name for d in REFERENCE_DIRS if d.is_dir() for p in d.iterdir() if (p / "units.csv").exists()}
        )
        raise HaochaInputError(
            f"找不到城市“{city}”的参考数据",
            file=str(units_file),
            fix=f"--city 取 data/reference/ 下的名称（现有：{'、'.join(known)}）或含 units.csv 的目录路径",
        )
    units = pd.read_csv(units_file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    for col in ("district", "category", "aliases"):
        if col not in units:
            units[col] = ""
    try:
        units["public_service"] = (
            units["public_service"].str.lower().map({"true": True, "false": False, "": False})
        )
        units["order"] = pd.to_numeric(units["order"]).astype(int)
        units = UNITS_SCHEMA.validate(units, lazy=True)
    except (pa.errors.SchemaErrors, ValueError, TypeError) as err:
        raise HaochaInputError(
            f"参考数据 units.csv 不符合规范：{str(err)[:500]}",
            file=str(units_file),
            fix="unit_id、unit_name 唯一；level 取 district/city_dept/district_dept/town/village；"
            "public_service 取 true/false；order 为整数",
        ) from err
    district_names = set(units.loc[units["level"] == "district", "unit_name"])
    local = units[units["level"] != "city_dept"]
    bad = local[~local["district"].isin(district_names)]
    if len(bad):
        raise HaochaInputError(
            "参考数据中有单位的所属区县不在区县行（level=district）之列",
            file=str(units_file),
            column="district",
            rows=(bad.index + 2).tolist(),
            fix="district 列填写所属区县的 unit_name",
        )
    matters_file = path / "matters.csv"
    matters = (
        pd.read_csv(matters_file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        if matters_file.exists()
        else None
    )
    meta_file = path / "city.yml"
    meta = (yaml.safe_load(meta_file.read_text(encoding="utf-8")) if meta_file.exists() else {}) or {}
    return CityReference(
        key=path.name,
        path=path,
        units=units,
        matters=matters,
        meta=meta,
        limits=closed_loop_limits(meta, meta_file),
    )
