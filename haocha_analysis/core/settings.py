"""A city's own thresholds without Python: ``settings.yml`` beside ``city.yml``, or ``--settings``.

The file has one section per settings object, each a mapping of field name to value::

    timing:             # core.rules.RecordTiming: one clock for quality and the detectors
      report_delay_limit: 10分钟     # a duration: 300s, 5min, 10分钟, 00:05:00
    quality:            # quality.settings.QualitySettings
      worst_units_top: 20
    anomalies:          # analysis.anomalies.settings.Settings
      alpha: 0.001

Every key is checked against the fields of its settings object (an unknown key, a value of the wrong
kind or a section that is not a mapping is an exit-2 error naming the file, the key and the fix); the
values are converted to the type of the field's default. The effective settings are recorded in
manifest.json.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from haocha_analysis.core.errors import HaochaInputError

SETTINGS_FILE = "settings.yml"
SECTIONS = ("timing", "quality", "anomalies")
T = TypeVar("T")
_CN_UNITS = {"秒": "s", "分钟": "min", "分": "min", "小时": "h", "天": "D", "日": "D"}


def settings_path(city_dir: Path, settings_file: str | Path | None = None) -> Path | None:
    """The settings file to use: the one given, else the city's ``settings.yml`` when it exists."""
    if settings_file:
        path = Path(settings_file)
        if not path.is_file():
            raise HaochaInputError(
                "找不到阈值设置文件", file=str(path), fix="检查 --settings 路径，或省略以使用默认阈值"
            )
        return path
    path = Path(city_dir) / SETTINGS_FILE
    return path if path.is_file() else None


def load_settings(path: Path | None) -> dict[str, dict[str, Any]]:
    """The sections of a settings file ({} for each when there is no file)."""
    out: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    if path is None:
        return out
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise HaochaInputError(
            f"阈值设置文件无法读取：{type(err).__name__}", file=str(path), fix="存为 UTF-8 编码的 YAML"
        ) from None
    if not isinstance(raw, dict):
        raise HaochaInputError(
            "阈值设置文件应为 YAML 映射（quality: / anomalies: 两节）",
            file=str(path),
            fix="参照 docs/new-city.md 的示例书写",
        )
    for section, values in raw.items():
        if section not in SECTIONS:
            raise HaochaInputError(
                f"阈值设置文件中有未知的节“{section}”",
                file=str(path),
                column=str(section),
                fix=f"只能是 {'、'.join(SECTIONS)}",
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise HaochaInputError(
                f"“{section}”节应为“名称: 取值”的映射",
                file=str(path),
                column=str(section),
                fix="每行写 名称: 取值",
            )
        out[section] = values
    return out


def _duration(value: Any) -> timedelta:
    import pandas as pd

    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    text = str(value).strip()
    for cn, unit in _CN_UNITS.items():
        text = re.sub(rf"^(\d+(?:\.\d+)?)\s*{cn}$", rf"\1{unit}", text)
    return pd.Timedelta(text).to_pytimedelta()


def _convert(value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``; ValueError/TypeError when it cannot be."""
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        if isinstance(value, type(default)):
            return value
        if not isinstance(value, dict):
            raise TypeError("应为“名称: 取值”的映射")
        return dataclasses.replace(
            default, **{k: _convert(v, getattr(default, k)) for k, v in value.items() if _known(default, k)}
        )
    if isinstance(default, timedelta):
        return _duration(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise TypeError("应为 true 或 false")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise TypeError("应为整数")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("应为数值")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise TypeError("应为列表")
        return tuple(value)
    if isinstance(default, str):
        return str(value)
    return value


def _known(default: Any, key: str) -> bool:
    if key not in {f.name for f in dataclasses.fields(default)}:
        raise ValueError(f"没有名为“{key}”的项")
    return True


def apply(cls: type[T], overrides: dict[str, Any], *, file: Path | None, section: str) -> T:
    """An instance of the dataclass ``cls`` with ``overrides`` applied (checked, converted)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    values = {}
    for key, value in overrides.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=3)
            raise HaochaInputError(
                f"“{section}”节中没有名为“{key}”的阈值",
                file=str(file),
                column=f"{section}.{key}",
                fix=("是否想写：" + "、".join(near)) if near else "可用的名称见 docs/new-city.md",
            )
        try:
            values[key] = _convert(value, getattr(defaults, key))
        except (TypeError, ValueError) as err:
            raise HaochaInputError(
                f"阈值“{section}.{key}”的取值无效（{err}）",
                file=str(file),
                column=f"{section}.{key}",
                fix=f"默认值为 {getattr(defaults, key)!r}，写成同类取值",
            ) from None
    try:
        return dataclasses.replace(defaults, **values)
    except (TypeError, ValueError) as err:
        raise HaochaInputError(
            f"“{section}”节的阈值组合无效：{err}", file=str(file), fix="检查取值范围"
        ) from None


def for_city(cls: type[T], city_dir: Path, section: str, settings_file: str | Path | None = None) -> T:
    """``cls`` with the city's settings.yml (or the file given) applied: its ``section`` and ``timing``.

    The ``timing`` section (the 5-minute rule, the one clock-skew tolerance) is given to quality and
    to the detectors alike: one clock for both. Every verb reads a city's thresholds through here, so
    ``haocha quality`` and ``haocha anomalies`` give the figures the bulletin gives.
    """
    from haocha_analysis.core.rules import RecordTiming

    path = settings_path(city_dir, settings_file)
    sections = load_settings(path)
    shared = {}
    if sections["timing"]:
        shared["timing"] = apply(RecordTiming, sections["timing"], file=path, section="timing")
    return apply(cls, {**shared, **sections[section]}, file=path, section=section)


def as_plain(settings: Any) -> Any:
    """A settings object (nested ones too) as JSON-friendly values (for manifest.json)."""
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return {f.name: as_plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)}
    if isinstance(settings, timedelta):
        return str(settings)
    if isinstance(settings, tuple | list):
        return [as_plain(v) for v in settings]
    return settings
