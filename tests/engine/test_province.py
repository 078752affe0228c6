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


def test_a_province_is_ingested_city_by_city_from_exports(tmp_path, qinghe):
    """Each city's exports go through `haocha ingest` into ``<province>/city=<key>/``; tables reads them."""
    import shutil

    folder = tmp_path / "province"
    (folder / "reference").mkdir(parents=True)
    cities = [{"key": "q1", "name": "青禾一市"}, {"key": "q2", "name": "青禾二市"}]
    for city in cities:
        shutil.copytree(qinghe.path, folder / "reference" / city["key"])
        city_yml = folder / "reference" / city["key"] / "city.yml"
        city_yml.write_text(
            city_yml.read_text(encoding="utf-8").replace("青禾市", city["name"]), encoding="utf-8"
        )
    (folder / "province.yml").write_text(
        json.dumps({"province": "青禾省", "cities": cities}, ensure_ascii=False), encoding="utf-8"
    )
    profile = tmp_path / "bare.yml"
    profile.write_text("name: bare\nencoding: auto\ntables: auto\n", encoding="utf-8")
    evals = [
        "评价编号,办件编号,受理部门,评价渠道,满意度,评价时间",
        "E1,C1,东湖区人社局,PC端,非常满意,2023-04-03 10:10:00",
        "E2,,西山县公安局,电话,不满意,2023-05-10 16:00:00",
    ]
    for city in cities:
        exports = tmp_path / city["key"]
        exports.mkdir()
        (exports / "cases.csv").write_text(
            "办件编号,受理部门,办结时间\nC1,东湖区人社局,2023-04-03 10:00:00\n"
        )
        (exports / "evals.csv").write_text("\n".join(evals) + "\n", encoding="utf-8")
        files = [exports / "cases.csv", exports / "evals.csv"]
        args = ["ingest", "--profile", str(profile), *map(str, files)]
        args += ["--city", str(folder / "reference" / city["key"]), "--period", "2023Q2"]
        _run([*args, "--out", str(folder / f"city={city['key']}")])
    out = tmp_path / "out"
    _run(["tables", "--city", str(folder), "--data", str(folder), "--period", "2023Q2", "--out", str(out)])
    rollup = pd.read_csv(out / "cities_rollup.csv", encoding="utf-8-sig")
    assert rollup["城市"].tolist() == ["青禾一市", "青禾二市", "合计"]
    one = json.loads((out / "q1" / "headline.json").read_text(encoding="utf-8"))
    assert rollup.loc[0, "评价数"] == rollup.loc[1, "评价数"] == one["total_evaluations"] > 0
    assert rollup.loc[2, "评价数"] == 2 * one["total_evaluations"]
