"""One place for paths and named thresholds (each with the rule it comes from)."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from haocha_analysis.core.errors import HaochaInputError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
_CHECKOUT = PACKAGE_DIR.parent
# Run from a checkout (an editable install): the repository's data/, notebooks/ and reports/.
IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "data" / "reference").is_dir()
# Installed from a wheel: reference data, profiles and notebooks ship inside the package (setup.py
# copies them into haocha_analysis/_bundled at build time).
BUNDLED_DIR = PACKAGE_DIR / "_bundled"

HOME_ENV = "HAOCHA_HOME"
# The one location setting: HAOCHA_HOME is the folder that holds data/ (your cities' reference data,
# generated synthetic data) and reports/. Default: the checkout when run from one, else the current
# working directory.
PROJ_ROOT = Path(os.environ.get(HOME_ENV) or (_CHECKOUT if IN_CHECKOUT else Path.cwd())).resolve()
DATA_DIR = PROJ_ROOT / "data"
_SHIPPED = _CHECKOUT / "data" if IN_CHECKOUT else BUNDLED_DIR
# Cities are looked up in HAOCHA_HOME/data/reference first, then among those shipped with haocha.
REFERENCE_DIRS = tuple(dict.fromkeys([DATA_DIR / "reference", _SHIPPED / "reference"]))
REFERENCE_DIR = REFERENCE_DIRS[-1]
PROFILES_DIRS = tuple(dict.fromkeys([DATA_DIR / "profiles", _SHIPPED / "profiles"]))
PROFILES_DIR = PROFILES_DIRS[-1]
SYNTHETIC_DIR = DATA_DIR / "synthetic"  # generated, not in git
NOTEBOOKS_DIR = _CHECKOUT / "notebooks" if IN_CHECKOUT else BUNDLED_DIR / "notebooks"
REPORTS_DIR = PROJ_ROOT / "reports"
TEMPLATES_DIR = PACKAGE_DIR / "bulletin" / "templates"
SCENARIOS_DIR = PACKAGE_DIR / "synth" / "scenarios"


def check_name(name: str, what: str, *, source: str | None = None) -> str:
    """A name that becomes one folder name (a city key): never empty, ``.``/``..``, hidden or a path.

    Args:
        name: the name.
        what: what it names, for the message (e.g. ``城市名称``).
        source: where the name came from (a folder or option), for the message.

    Raises:
        HaochaInputError: the name would leave its folder or hide in it.
    """
    text = str(name)
    bad = (
        text.strip() in ("", ".", "..")
        or text.startswith(".")
        or any(sep in text for sep in ("/", "\\", "\0"))
        or text != text.strip()
    )
    if bad:
        raise HaochaInputError(
            f"{what}“{text}”不能用作目录名（不能为空、以点开头、含路径分隔符或首尾空白）",
            file=source,
            fix="--city 给出 data/reference/ 下的城市名称，或城市参考数据目录本身的路径（不以 .. 结尾）",
        )
    return text


def is_url(location: object) -> bool:
    """Whether a ``--data`` value is an fsspec URL (``s3://``, ``hdfs://``, ``file://``, ``memory://``…).

    Only the dask engine reads URLs: its workers open them themselves (nothing is copied to the driver).
    """
    return "://" in str(location)


def local_path(location: object) -> Path | None:
    """The local folder a ``--data`` value names: a folder, a ``file://`` URL's path, else None (remote)."""
    if not is_url(location):
        return Path(str(location))
    if str(location).startswith("file://"):
        return Path(str(location).removeprefix("file://"))
    return None


def reports_path(*parts: str) -> Path:
    """A default output folder ``reports/<part>/…``, checked to stay under the reports root.

    The check is lexical (``..`` and absolute parts are refused), so a reports folder that is itself a
    symbolic link to another disk keeps working.

    Raises:
        HaochaInputError: a part would lead outside ``reports/``.
    """
    root = Path(os.path.abspath(REPORTS_DIR))
    path = Path(os.path.abspath(root.joinpath(*parts)))
    if path == root or root not in path.parents:
        raise HaochaInputError(
            f"默认输出目录 {path} 不在报告目录 {root} 之下",
            fix="检查 --city 与 --period（城市名称不能含路径），或用 --out 明确给出输出目录",
        )
    return path


# Jupyter kernel registered by `make setup`; papermill always runs notebooks with it.
KERNEL_NAME = "haocha"

# The synthetic generator's default scenario (synth/scenarios/default.yml).
DEFAULT_SCENARIO = "default"

# 及时性: the provincial 5-minute rule (省级“5分钟”数据质检规则): a record must reach the
# 好差评 system within 5 minutes of the event it reports (case finished / evaluation made).
REPORT_DELAY_LIMIT = timedelta(minutes=5)

# 补充评价: 山东 allows a supplementary evaluation within 5 working days after the case finished.
SUPPLEMENTARY_EVALUATION_WORKING_DAYS = 5

# 差评闭环 (核实 → 整改 → 回访): default limits in working days, each overridable per city in
# city.yml (``rectification:``) and, for 整改, per row by the data's ``deadline`` (docs/rectification.md).
# 整改: the national rule (国办发〔2019〕51号) — a verified 差评 is rectified and the result fed back to
# the citizen within at most 15 working days of the evaluation; cities may set less (e.g. 5).
RECTIFICATION_WORKING_DAYS = 15
# 核实: the texts say "及时/第一时间安排专人回访核实" without a number; our default is 3 working days
# after the evaluation for the verdict (an invalid verdict counts when its 申诉 is approved).
VERIFICATION_WORKING_DAYS = 3
# 回访: the texts say the result is fed back "及时"; our default is 5 working days after the
# rectification for the follow-up call recording the citizen's satisfaction.
REVISIT_WORKING_DAYS = 5

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
    installation hashes the same person to the same key across periods. The file is readable by its
    owner only (mode 0600): whoever has the salt can test a guessed number against a key. It is
    created with that mode (never briefly world-readable), and a file found with wider permissions
    is narrowed.
    """
    salt = os.environ.get(SALT_ENV)
    if salt:
        return salt
    try:
        fd = os.open(SALT_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if SALT_FILE.stat().st_mode & 0o077:
            SALT_FILE.chmod(0o600)
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_hex(16))
    return SALT_FILE.read_text(encoding="utf-8").strip()
