"""One period's detection from a data folder, with its history (the analysts' entry point)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from haocha_analysis.analysis.anomalies.features import Context, history_note, prepare
from haocha_analysis.analysis.anomalies.findings import detect_context
from haocha_analysis.analysis.anomalies.settings import DETECT_COLUMNS, HISTORY_COLUMNS, Settings
from haocha_analysis.core import config
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference, load_city
from haocha_analysis.ingest.storage import load_history as load_stored_history
from haocha_analysis.ingest.storage import load_window, resolve_period_in

log = logging.getLogger("haocha.anomalies")

HISTORY_PERIODS = 4  # earlier periods a unit is compared with, by default (haocha anomalies --history)

# --- loading and the command line --------------------------------------------------------------


def load_period(data_dir: Path, period: Period) -> dict[str, pd.DataFrame]:
    """The columns the detectors need, through the one loading window (the period and the one before)."""
    return load_window(Path(data_dir), period, columns=DETECT_COLUMNS)


def history_periods(period: Period, max_periods: int = HISTORY_PERIODS) -> list[Period]:
    """The periods a unit's own history is read from, oldest first.

    The ``max_periods`` before ``period``, and the same period a year earlier (season) even when it
    lies further back.
    """
    out: list[Period] = []
    p = period
    for _ in range(max(int(max_periods), 0)):
        p = p.shifted("previous")
        out.insert(0, p)
    year = period.shifted("year")
    if max_periods and year is not None and year.label not in {q.label for q in out}:
        out.insert(0, year)
    return out


def load_history(
    data_dir: Path, period: Period, max_periods: int = HISTORY_PERIODS
) -> dict[str, dict[str, pd.DataFrame]]:
    """Earlier periods found in a data folder, partitioned or flat, CSV or Parquet (storage.load_history).

    Only periods with rows come back; an empty result means the folder holds nothing earlier, which
    the findings, the notebook and the command line then say (features.history_note).
    """
    periods = history_periods(period, max_periods)
    history = load_stored_history(Path(data_dir), periods, columns=HISTORY_COLUMNS)
    log.info("%s", history_note(period, history))
    return history


def default_data_dir(city: str | Path, data_dir: str | Path = "") -> Path:
    """The data folder: the one given, else the city's synthetic data folder (data/synthetic/<city>)."""
    path = Path(data_dir) if str(data_dir) else config.SYNTHETIC_DIR / Path(str(city)).name
    if not path.exists():
        raise HaochaInputError(
            "规范表目录不存在",
            file=str(path),
            fix=f"检查 data_dir，或先生成合成数据：haocha synth --city {city} --period 2023Q2 --out {path}",
        )
    return path


@dataclass
class Analysis:
    """One period's detection, with what it was computed from (for the analysts' notebook)."""

    ref: CityReference
    period: Period
    data: dict[str, pd.DataFrame]
    history: dict[str, dict[str, pd.DataFrame]]
    context: Context
    findings: pd.DataFrame


def analyse(
    city: str | Path,
    period: str,
    data_dir: str | Path = "",
    history_periods: int = HISTORY_PERIODS,
    settings: Settings | None = None,
) -> Analysis:
    """Load a period (and up to ``history_periods`` earlier ones) from a data folder and detect."""
    ref = load_city(city)
    p = resolve_period_in(period, data_dir or None)
    folder = default_data_dir(city, data_dir)
    data = load_period(folder, p)
    history = load_history(folder, p, history_periods) if history_periods else {}
    ctx = prepare(ref, data, p, history, settings)
    return Analysis(ref, p, data, history, ctx, detect_context(ctx))
