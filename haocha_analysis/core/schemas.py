"""The canonical tables of the data contract, their code tables and pandera models.

Every input is mapped onto these tables before anything else runs (docs/data-contract.md).
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

# --- code tables -------------------------------------------------------------------------------

SATISFACTION_LABELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}

# canonical channel code -> (label, on-site 现场评价)
CHANNELS: dict[str, tuple[str, bool]] = {
    "pc": ("PC端", False),
    "mobile": ("移动服务端", False),
    "qr_code": ("二维码", False),
    "hall_tablet": ("政务大厅平板电脑", True),
    "hall_terminal": ("政务大厅其他终端", True),
    "paper": ("评议卡", True),
    "phone": ("电话", False),
    "sms": ("短信", False),
    "system_default": ("系统默认评价", False),
}
CHANNEL_CODES = list(CHANNELS)
ONSITE_CHANNELS = [c for c, (_, onsite) in CHANNELS.items() if onsite]

VERDICTS = ("valid", "invalid")
# 无效差评 reasons (核实为无效的原因): an invalid verdict names one of these codes.
INVALID_REASONS = ("误评", "恶意差评", "与本办件无关", "重复评价", "其他")
FOLLOW_UP_LEVELS = ("满意", "基本满意", "不满意")
FOLLOW_UP_SATISFIED = ("满意", "基本满意")

LEVELS = ("district", "city_dept", "district_dept", "town", "village")
LEVEL_LABELS = {
    "district": "区县",
    "city_dept": "市直部门",
    "district_dept": "区直部门",
    "town": "镇（街道）",
    "village": "村（社区）",
}

TABLES = ("cases", "evaluations", "rectifications")

# --- canonical columns and storage dtypes ------------------------------------------------------
# Strings are plain object/str; unit_id and channel are categorical in memory (issue: memory).

CASE_DTYPES: dict[str, str] = {
    "case_id": "str",
    "unit_id": "category",
    "matter_code": "str",
    "matter_name": "str",
    "region_code": "str",
    "accepted_at": "datetime64[us]",
    "finished_at": "datetime64[us]",
    "reported_at": "datetime64[us]",
    "source_system": "category",
}
EVALUATION_DTYPES: dict[str, str] = {
    "eval_id": "str",
    "case_id": "str",
    "unit_id": "category",
    "channel": "category",
    "satisfaction": "int8",
    "evaluated_at": "datetime64[us]",
    "reported_at": "datetime64[us]",
    "attempt": "int8",
    "active": "boolean",
    "evaluator_key": "str",
    "operator": "str",
    "comment": "str",
}
RECTIFICATION_DTYPES: dict[str, str] = {
    "eval_id": "str",
    "verdict": "category",
    "invalid_reason": "str",
    "revisited_at": "datetime64[us]",
    "deadline": "datetime64[us]",
    "rectified_at": "datetime64[us]",
    "follow_up": "str",
    "verified_at": "datetime64[us]",
    "approved_at": "datetime64[us]",
}
# Optional columns with a default other than empty (contract: 评价次数 defaults to 1).
DEFAULTS = {"attempt": 1}
DTYPES = {"cases": CASE_DTYPES, "evaluations": EVALUATION_DTYPES, "rectifications": RECTIFICATION_DTYPES}
REQUIRED = {
    "cases": ("case_id", "unit_id", "finished_at"),
    "evaluations": ("eval_id", "unit_id", "channel", "satisfaction", "evaluated_at"),
    "rectifications": ("eval_id", "verdict"),
}


def empty(table: str) -> pd.DataFrame:
    """An empty canonical table with the right columns and dtypes."""
    return coerce(pd.DataFrame({c: pd.Series(dtype="object") for c in DTYPES[table]}), table)


def coerce(frame: pd.DataFrame, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Give a frame the canonical columns (missing optional ones added empty) and dtypes.

    Extra columns are kept at the end. Values must already be canonical: this converts types, it
    does not map codes (that is ingest's job). With ``columns``, only those canonical columns are
    produced (in that order), plus the frame's extra columns.
    """
    out = frame.copy()
    wanted = list(DTYPES[table]) if columns is None else [c for c in columns if c in DTYPES[table]]
    for col in wanted:
        if col not in out.columns:
            out[col] = pd.Series(DEFAULTS.get(col, pd.NA), index=out.index, dtype="object")
        out[col] = coerce_series(out[col], DTYPES[table][col])
    return out[wanted + [c for c in out.columns if c not in DTYPES[table]]]


def coerce_series(s: pd.Series, dtype: str) -> pd.Series:
    """One column to its canonical storage dtype."""
    if str(s.dtype) == dtype and dtype != "category":
        return s
    if dtype.startswith("datetime64"):
        return pd.to_datetime(s).astype(dtype)
    if dtype == "category":
        if isinstance(s.dtype, pd.CategoricalDtype) and s.cat.categories.dtype == "str":
            return s
        return s.astype("str").astype("category")
    return s.astype(dtype)


# --- pandera models: validated at the boundary (after ingest, after load, after synth) ---------

_nullable = {"nullable": True}

CASES_SCHEMA = pa.DataFrameSchema(
    {
        "case_id": pa.Column(str, unique=True, nullable=False),
        "unit_id": pa.Column("category", nullable=False),
        "matter_code": pa.Column(str, **_nullable),
        "matter_name": pa.Column(str, **_nullable),
        "region_code": pa.Column(str, pa.Check.str_matches(r"^(\d{6}|\d{9}|\d{12})$"), **_nullable),
        "accepted_at": pa.Column("datetime64[us]", **_nullable),
        "finished_at": pa.Column("datetime64[us]", nullable=False),
        "reported_at": pa.Column("datetime64[us]", **_nullable),
        "source_system": pa.Column("category", **_nullable),
    },
    strict=False,
    coerce=False,
    name="cases",
)

EVALUATIONS_SCHEMA = pa.DataFrameSchema(
    {
        "eval_id": pa.Column(str, unique=True, nullable=False),
        "case_id": pa.Column(str, **_nullable),
        "unit_id": pa.Column("category", nullable=False),
        "channel": pa.Column("category", pa.Check.isin(CHANNEL_CODES), nullable=False),
        "satisfaction": pa.Column("int8", pa.Check.in_range(1, 5), nullable=False),
        "evaluated_at": pa.Column("datetime64[us]", nullable=False),
        "reported_at": pa.Column("datetime64[us]", **_nullable),
        "attempt": pa.Column("int8", pa.Check.ge(1), nullable=False),
        "active": pa.Column("boolean", **_nullable),
        "evaluator_key": pa.Column(str, pa.Check.str_matches(r"^[0-9a-f]{16,64}$"), **_nullable),
        "operator": pa.Column(str, **_nullable),
        "comment": pa.Column(str, **_nullable),
    },
    checks=[
        # 主动评价: a system default evaluation is never active.
        pa.Check(
            lambda df: ~((df["channel"] == "system_default") & (df["active"] == True)).fillna(False),  # noqa: E712
            name="system_default_is_not_active",
        )
    ],
    strict=False,
    coerce=False,
    name="evaluations",
)

RECTIFICATIONS_SCHEMA = pa.DataFrameSchema(
    {
        "eval_id": pa.Column(str, unique=True, nullable=False),
        "verdict": pa.Column("category", pa.Check.isin(VERDICTS), nullable=False),
        "invalid_reason": pa.Column(str, **_nullable),  # free text or a code (INVALID_REASONS)
        "revisited_at": pa.Column("datetime64[us]", **_nullable),
        "deadline": pa.Column("datetime64[us]", **_nullable),
        "rectified_at": pa.Column("datetime64[us]", **_nullable),
        "follow_up": pa.Column(str, pa.Check.isin(FOLLOW_UP_LEVELS), **_nullable),
        "verified_at": pa.Column("datetime64[us]", **_nullable),
        "approved_at": pa.Column("datetime64[us]", **_nullable),
    },
    strict=False,
    coerce=False,
    name="rectifications",
)

SCHEMAS = {"cases": CASES_SCHEMA, "evaluations": EVALUATIONS_SCHEMA, "rectifications": RECTIFICATIONS_SCHEMA}


def validate(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Validate a canonical table, raising pandera's SchemaErrors with every failing case."""
    return SCHEMAS[table].validate(frame, lazy=True)
