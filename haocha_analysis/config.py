"""One place for paths and named thresholds (each with the rule it comes from)."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJ_ROOT / "data"
REFERENCE_DIR = DATA_DIR / "reference"
PROFILES_DIR = DATA_DIR / "profiles"
SYNTHETIC_DIR = DATA_DIR / "synthetic"  # generated, not in git
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
REPORTS_DIR = PROJ_ROOT / "reports"
PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
SCENARIOS_DIR = PACKAGE_DIR / "scenarios"

# Jupyter kernel registered by `make setup`; papermill always runs notebooks with it.
KERNEL_NAME = "haocha"

# 及时性: the provincial 5-minute rule (省级“5分钟”数据质检规则): a record must reach the
# 好差评 system within 5 minutes of the event it reports (case finished / evaluation made).
REPORT_DELAY_LIMIT = timedelta(minutes=5)

# 补充评价: 山东 allows a supplementary evaluation within 5 working days after the case finished.
SUPPLEMENTARY_EVALUATION_WORKING_DAYS = 5

# 差评整改: default rectification deadline when the source gives none (鲁政办发〔2020〕10号 sets
# the handling period for verified bad reviews; 15 working days is the configured default).
RECTIFICATION_WORKING_DAYS = 15

# Satisfaction levels that count as 差评 (鲁政办发〔2020〕10号: "后两个等级为差评").
BAD_SATISFACTION = (1, 2)

# Working hours used by the synthetic generator and the after-hours rule of the backfill detector.
WORKDAY_START_HOUR = 8.5
WORKDAY_END_HOUR = 17.5

SALT_ENV = "HAOCHA_SALT"
SALT_FILE = PROJ_ROOT / ".haocha-salt"


def hash_salt() -> str:
    """Return the salt for hashing identity and phone numbers.

    Taken from the environment variable ``HAOCHA_SALT``; otherwise from ``.haocha-salt`` at the
    project root, which is created with a random value on first use (not in git), so that one
    installation hashes the same person to the same key across periods.
    """
    salt = os.environ.get(SALT_ENV)
    if salt:
        return salt
    if not SALT_FILE.exists():
        SALT_FILE.write_text(secrets.token_hex(16), encoding="utf-8")
    return SALT_FILE.read_text(encoding="utf-8").strip()
