"""A synthetic province: N cities from one city's model, each generated and written on its own.

Every city is the template city's model (its units, matters, scenario and generator) with its own
seed, its own name and its own codes:

* city ``i`` (1-based) has the key ``c<ii>`` and the template's name with the number after its
  short name (淄博市 → 淄博01市); every text of the reference folder is renamed the same way;
* every unit code, case id and evaluation id is prefixed with the key (``zb-d01`` → ``c01-zb-d01``),
  so no code is shared between two cities;
* the reference folder goes to ``reference/<key>/`` and the canonical Parquet to ``city=<key>/``
  (partitioned by period inside), and ``province.yml`` lists the cities
  (:mod:`haocha_analysis.analysis.province` reads it back).

Only one city's records are in memory at a time: the province's size is bounded by the disk, not
by RAM.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from haocha_analysis.analysis.province import CITY_PREFIX, PROVINCE_FILE, REFERENCE_FOLDER
from haocha_analysis.core.config import DEFAULT_SCENARIO
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.ingest.storage import record_extraction, write_tables
from haocha_analysis.synth.generate import generate, synthetic_extraction_date

# Reference files copied (and renamed) into each city's folder.
REFERENCE_FILES = ("units.csv", "matters.csv", "city.yml", "bulletin.yml", "settings.yml")
ID_COLUMNS = ("case_id", "eval_id")


@dataclass(frozen=True)
class ProvinceCity:
    """One city of a synthetic province: its key, name and the prefix of its codes."""

    key: str
    name: str
    short_name: str
    template_short: str

    @property
    def prefix(self) -> str:
        """Prepended to every unit code and record id of the city."""
        return f"{self.key}-"


def province_cities(template: CityReference, n: int) -> list[ProvinceCity]:
    """The ``n`` cities made from ``template`` (distinct keys, names and code prefixes)."""
    short = template.city_name.removesuffix("市")
    return [ProvinceCity(f"c{i:02d}", f"{short}{i:02d}市", f"{short}{i:02d}", short) for i in range(1, n + 1)]


def renamed_tables(
    tables: dict[str, pd.DataFrame], city: ProvinceCity, units: bool = True
) -> dict[str, pd.DataFrame]:
    """A generated city's tables with its codes: record ids (and, with ``units``, unit codes) prefixed."""
    out = {}
    for table, frame in tables.items():
        frame = frame.copy()
        for col in (*ID_COLUMNS, "unit_id") if units else ID_COLUMNS:
            if col in frame:
                frame[col] = (city.prefix + frame[col].astype("str")).where(frame[col].notna())
        out[table] = frame
    return out


def write_reference(template: CityReference, city: ProvinceCity, folder: Path) -> Path:
    """The city's reference folder: the template's files, names renamed, unit codes prefixed."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in REFERENCE_FILES:
        source = template.path / name
        if not source.is_file():
            continue
        text = source.read_text(encoding="utf-8-sig").replace(city.template_short, city.short_name)
        if name.endswith(".csv"):
            frame = pd.read_csv(io.StringIO(text), dtype="str", keep_default_na=False)
            if "unit_id" in frame:
                frame["unit_id"] = city.prefix + frame["unit_id"]
            frame.to_csv(folder / name, index=False, encoding="utf-8")
        else:
            (folder / name).write_text(text, encoding="utf-8")
    return folder


def iter_province(
    template: CityReference,
    period: Period,
    n: int,
    scale: float = 1.0,
    seed: int = 0,
    scenario: str = DEFAULT_SCENARIO,
    units: bool = True,
) -> Iterator[tuple[ProvinceCity, dict[str, pd.DataFrame]]]:
    """Each city's tables of ``period``, one city at a time (seed ``seed + i - 1`` for city ``i``).

    ``units=False`` keeps the template's unit codes (the bench reads all cities as one big city of
    the template's units); record ids are always the city's own.
    """
    for i, city in enumerate(province_cities(template, n)):
        result = generate(template, period, scale=scale, seed=seed + i, scenario=scenario)
        tables = renamed_tables(result.tables, city, units)
        del result
        yield city, tables


def write_province(
    template: CityReference,
    period: Period,
    n: int,
    out: Path,
    scale: float = 1.0,
    seed: int = 0,
    scenario: str = DEFAULT_SCENARIO,
) -> list[tuple[ProvinceCity, int, int]]:
    """Write a province of ``n`` cities into ``out``; (city, cases, evaluations) per city."""
    out = Path(out)
    made = []
    for city, tables in iter_province(template, period, n, scale, seed, scenario):
        write_reference(template, city, out / REFERENCE_FOLDER / city.key)
        folder = out / f"{CITY_PREFIX}{city.key}"
        write_tables(tables, folder, period.label)
        record_extraction(folder, period.label, synthetic_extraction_date(period.label))
        made.append((city, len(tables["cases"]), len(tables["evaluations"])))
    listing = {
        "province": f"{template.city_name.removesuffix('市')}合成省",
        "template": template.path.name,
        "cities": [{"key": c.key, "name": c.name} for c, _, _ in made],
    }
    (out / PROVINCE_FILE).write_text(yaml.safe_dump(listing, allow_unicode=True, sort_keys=False), "utf-8")
    return made
