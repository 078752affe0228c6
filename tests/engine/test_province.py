"""A synthetic province: distinct cities, per-city annexes and the 各市 roll-up, Dask = pandas."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from haocha_analysis.analysis.province import load_province
from haocha_analysis.cli import cli
from tests.engine.test_cli_engine import _same_files


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def province(tmp_path_factory):
    """3 cities from 淄博's model at scale 0.02 (2023Q2), with 差评 handled (the bad-reviews scenario)."""
    out = tmp_path_factory.mktemp("province") / "p"
    args = ["synth", "--city", "zibo", "--period", "2023Q2", "--scale", "0.02", "--seed", "5"]
    args += ["--scenario", "bad-reviews"]
    _run([*args, "--province", "3", "--out", str(out)])
    return out


def test_the_cities_are_distinct(province):
    cities = load_province(province).cities
    assert list(cities) == ["c01", "c02", "c03"]
    assert len({ref.city_name for ref in cities.values()}) == 3
    units = [set(ref.units["unit_id"]) for ref in cities.values()]
    assert not (units[0] & units[1]) and not (units[1] & units[2]) and not (units[0] & units[2])
    ids = [set(pd.read_parquet(province / f"city={key}" / "cases")["case_id"].astype(str)) for key in cities]
    assert all(len(s) > 1000 for s in ids)
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    # Each city's records name only its own units.
    for key, ref in cities.items():
        evaluations = pd.read_parquet(province / f"city={key}" / "evaluations")
        assert set(evaluations["unit_id"].astype(str)) <= set(ref.units["unit_id"])


def test_province_tables_dask_equals_pandas(tmp_path, dask_client, province):
    base = ["tables", "--city", str(province), "--data", str(province), "--period", "2023Q2"]
    base += ["--extracted-on", "2023-07-10"]
    said = _run([*base, "--out", str(tmp_path / "pandas")])
    env = {"DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    _run([*base, "--out", str(tmp_path / "dask"), "--engine", "dask"], env)
    for folder in ("", "c01", "c02", "c03"):
        _same_files(tmp_path / "pandas" / folder, tmp_path / "dask" / folder)
    assert "各市汇总" in said

    rollup = pd.read_csv(tmp_path / "pandas" / "cities_rollup.csv", encoding="utf-8-sig")
    assert rollup["城市"].tolist() == ["淄博01市", "淄博02市", "淄博03市", "合计"]
    for i, key in enumerate(("c01", "c02", "c03")):
        headline = json.loads((tmp_path / "pandas" / key / "headline.json").read_text(encoding="utf-8"))
        assert rollup.loc[i, "办件数"] == headline["total_cases"]
        assert rollup.loc[i, "评价数"] == headline["total_evaluations"]
        assert rollup.loc[i, "评价率"] == headline["evaluation_rate"]
        assert rollup.loc[i, "差评数"] == headline["valid_bad_reviews"]
    counts = ["办件数", "评价数", "主动评价数", "差评数", "按时整改数"]
    assert rollup.loc[3, counts].tolist() == rollup.loc[:2, counts].sum().tolist()
    assert (rollup.loc[:2, ["主动评价数", "差评数", "按时整改数"]] > 0).all().all()  # no column is all zero
    sheet = pd.read_excel(tmp_path / "pandas" / "cities_rollup.xlsx", header=None)
    assert "各市汇总" in str(sheet.iloc[0, 0])  # the title row


def test_the_bench_province_keeps_the_template_units(zibo):
    """The bench reads a province as one big city of the template's units: only record ids differ."""
    from haocha_analysis.core.periods import parse_period
    from haocha_analysis.synth.province import iter_province

    made = list(iter_province(zibo, parse_period("2023Q2"), 2, scale=0.01, seed=1, units=False))
    assert [city.key for city, _ in made] == ["c01", "c02"]
    known = set(zibo.units["unit_id"])
    for _, tables in made:
        assert set(tables["cases"]["unit_id"].astype(str)) <= known
    first, second = (set(t["evaluations"]["eval_id"].astype(str)) for _, t in made)
    assert first and second and not (first & second)


@pytest.mark.parametrize("verb", ["quality", "anomalies"])
def test_province_quality_and_anomalies_dask_equal_pandas(tmp_path, dask_client, province, verb):
    from tests.engine.test_quality_engine import engines_agree

    engines_agree(verb, str(province), province, tmp_path, dask_client)  # every city's folder
    for key in ("c01", "c02", "c03"):
        assert any(p.suffix == ".csv" for p in (tmp_path / "dask" / key).iterdir())
