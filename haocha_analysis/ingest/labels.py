"""Ingest's constants and label tables: text codes for attempt, active and verdict, free-text columns."""

from __future__ import annotations

import pandas as pd

from haocha_analysis.core.schemas import INVALID_REASONS

TABLE_KEYS = {"cases": "case_id", "evaluations": "eval_id", "rectifications": "eval_id"}
TABLE_LABELS = {"cases": "办件表", "evaluations": "评价表", "rectifications": "差评整改表"}
# Columns a flat export shares between its tables: they alone do not make a row hold a record.
SHARED_KEYS = ("case_id", "unit_id", "unit_name")
# Key columns: normalised (NFKC, trimmed) the same way everywhere, never scrubbed (they link records).
KEY_COLUMNS = ("case_id", "eval_id", "unit_id", "matter_code", "region_code")
# Free-text columns scrubbed of identity/phone numbers (keys and code columns are not free text).
FREE_TEXT = {
    "cases": ("matter_name", "source_system"),
    "evaluations": ("operator", "comment"),
    "rectifications": (),
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
# Above this share of evaluations whose case is not among the ingested cases, ingest warns in the
# terminal (a mis-written case number, or a cases file left out, silently lowers 评价数).
LINKAGE_WARN_SHARE = 0.05

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
    "与办件无关": ("invalid", "与本办件无关"),
    "与本办件无关": ("invalid", "与本办件无关"),
    "重复": ("invalid", "重复评价"),
    "重复评价": ("invalid", "重复评价"),
}
# 无效原因 as exports write it → the code list (core.schemas.INVALID_REASONS); keys are folded.
INVALID_REASON_LABELS = {
    **{code: code for code in INVALID_REASONS},
    "与办件无关": "与本办件无关",
    "重复": "重复评价",
    "其它": "其他",
}

_BAD = object()  # a value that no code table knows
_UNDECLARED = object()  # a numeric code whose table the profile did not declare
