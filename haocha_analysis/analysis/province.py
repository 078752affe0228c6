"""A province: its cities' reference folders, and the 各市 roll-up table beside their annexes.

A province folder holds ``province.yml`` (the province's name and its cities' keys and names, in
the order the roll-up lists them) and one city reference folder per key under ``reference/<key>/``.
Its canonical data are one folder per city, ``city=<key>/`` (each partitioned by period), so each
city is read, linked and counted on its own, as a one-city folder would be: cases and their
evaluations never cross a city.

The 各市 roll-up has one row per city and a 合计 row, from each city's tables (the figures of its
bulletin's headline paragraph):

* 办件数 = the city's 附件1 + 附件2 办件数 (headline ``total_cases``);
* 评价数 = 附件1 + 附件2 评价数 (``total_evaluations``); 评价率 = 评价数 / 办件数;
* 主动评价数 = 附件1 + 附件2 主动评价数 (a "/" there counts 0);
* 差评数 = 附件1 + 附件2 差评数: valid 差评 (``valid_bad_reviews``);
* 按时整改数 = valid 差评 rectified by their deadline, every unit of the city
  (``eval_rectified_on_time`` of the per-unit counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from haocha_analysis.analysis.annexes import TablesResult
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.reference import CityReference, load_city
from haocha_analysis.core.spreadsheet import (
    PERCENT_FORMAT,
    PLAIN_INTEGER_FORMAT,
    SheetSpec,
    neutralise_frame,
    truncate_fraction,
    write_workbook,
)
from haocha_analysis.core.text import format_ratio

PROVINCE_FILE = "province.yml"
REFERENCE_FOLDER = "reference"
CITY_PREFIX = "city="
ROLLUP_NAME = "cities_rollup"
ROLLUP_COLUMNS = ["城市", "办件数", "评价数", "评价率", "主动评价数", "差评数", "按时整改数"]
COUNTS = ["办件数", "评价数", "主动评价数", "差评数", "按时整改数"]


@dataclass(frozen=True)
class Province:
    """A province reference folder: its name and its cities' references, in listing order."""

    path: Path
    name: str
    cities: dict[str, CityReference]


def is_province(path: str | Path) -> bool:
    """Whether ``path`` is a province folder (it holds ``province.yml``)."""
    return (Path(path) / PROVINCE_FILE).is_file()


def load_province(path: str | Path) -> Province:
    """Read ``province.yml`` and every city's reference folder (``reference/<key>/``)."""
    path = Path(path).resolve()
    listing_file = path / PROVINCE_FILE
    try:
        listing = yaml.safe_load(listing_file.read_text(encoding="utf-8")) or {}
        keys = [str(city["key"]) for city in listing["cities"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise HaochaInputError(
            "省级目录的 province.yml 无法读取",
            file=str(listing_file),
            fix="province.yml 写成 province: 名称 与 cities: 列表（每项 key: 城市目录名），"
            "如 haocha synth --province 的输出",
        ) from err
    if not keys or len(set(keys)) != len(keys):
        raise HaochaInputError(
            "province.yml 的城市列表为空或有重复的 key", file=str(listing_file), fix="每个城市列一次"
        )
    cities = {key: load_city(path / REFERENCE_FOLDER / key) for key in keys}
    return Province(path, str(listing.get("province", path.name)), cities)


def city_data(data: str | Path, key: str) -> str:
    """The folder (or URL) of one city's canonical data inside a province's data folder."""
    return f"{str(data).rstrip('/')}/{CITY_PREFIX}{key}"


def city_result(results: dict, key: str, data: str | Path) -> object:
    """A city's result from an engine's results by city folder; a city without a folder is refused."""
    if key not in results:
        raise HaochaInputError(
            f"数据目录中没有城市 {key} 的规范表",
            file=city_data(data, key),
            fix="每个城市的规范表放在数据目录下的 city=<城市> 子目录中（province.yml 列出的每个城市）",
        )
    return results[key]


def rollup(province: Province, results: dict[str, TablesResult]) -> pd.DataFrame:
    """The 各市 roll-up (numbers; 评价率 a fraction) from each city's tables, and a 合计 row."""
    rows = []
    for key, ref in province.cities.items():
        result = results[key]
        a1, a2 = result.numeric["annex1_districts"], result.numeric["annex2_city_departments"]
        rows.append(
            {
                "城市": ref.city_name,
                "办件数": int(result.headline["total_cases"]),
                "评价数": int(result.headline["total_evaluations"]),
                "主动评价数": int(a1["主动评价数"].fillna(0).sum() + a2["主动评价数"].fillna(0).sum()),
                "差评数": int(result.headline["valid_bad_reviews"]),
                "按时整改数": int(result.counts["eval_rectified_on_time"].sum()),
            }
        )
    frame = pd.DataFrame(rows, columns=["城市", *COUNTS])
    total = frame[COUNTS].sum()
    frame = pd.concat([frame, pd.DataFrame([{"城市": "合计", **total.to_dict()}])], ignore_index=True)
    frame[COUNTS] = frame[COUNTS].astype("int64")
    rate = [n / d if d else None for n, d in zip(frame["评价数"], frame["办件数"], strict=True)]
    frame.insert(3, "评价率", pd.Series(rate, dtype="Float64"))
    return frame[ROLLUP_COLUMNS]


def write_rollup(province: Province, frame: pd.DataFrame, title: str, out_dir: Path) -> list[Path]:
    """``cities_rollup.csv`` (UTF-8 with BOM, rates printed as in the annexes) and ``.xlsx``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    printed = frame.copy()
    printed["评价率"] = [format_ratio(n, d) for n, d in zip(frame["评价数"], frame["办件数"], strict=True)]
    csv_path = out_dir / f"{ROLLUP_NAME}.csv"
    neutralise_frame(printed, ["城市"]).to_csv(csv_path, index=False, encoding="utf-8-sig")
    cells = frame.copy()
    cells["评价率"] = frame["评价率"].map(truncate_fraction).astype("Float64")
    sheet = SheetSpec(
        name="各市汇总",
        frame=cells,
        title=f"{province.name}{title}各市汇总",
        notes=["备注：评价率按截断保留两位小数；差评数为有效差评；按时整改数为按期整改的有效差评。"],
        number_formats={"评价率": PERCENT_FORMAT, **dict.fromkeys(COUNTS, PLAIN_INTEGER_FORMAT)},
        slash_columns=["评价率"],
        total_rows=[len(frame) - 1],
    )
    return [csv_path, write_workbook(out_dir / f"{ROLLUP_NAME}.xlsx", [sheet])]
