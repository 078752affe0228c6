"""``haocha tables --engine dask`` writes what ``--engine pandas`` writes, file for file."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd
from click.testing import CliRunner

from haocha_analysis.cli import cli


def _run(args: list[str], env: dict[str, str] | None = None):
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _same_files(left: Path, right: Path) -> None:
    names = sorted(p.name for p in left.iterdir())
    assert names == sorted(p.name for p in right.iterdir())
    assert any(n.endswith(".csv") for n in names)
    for name in names:
        if name.endswith(".csv"):
            pd.testing.assert_frame_equal(
                pd.read_csv(left / name, dtype=str, keep_default_na=False),
                pd.read_csv(right / name, dtype=str, keep_default_na=False),
            )
        elif name.endswith(".json"):
            assert (left / name).read_text(encoding="utf-8") == (right / name).read_text(encoding="utf-8")
        elif name.endswith(".xlsx"):
            for sheet, frame in pd.read_excel(left / name, sheet_name=None, dtype=str).items():
                other = pd.read_excel(right / name, sheet_name=sheet, dtype=str)
                pd.testing.assert_frame_equal(frame, other)


def _args(data: str, out: Path, *extra: str) -> list[str]:
    return ["tables", "--city", "zibo", "--period", "2023Q2", "--data", data, "--out", str(out), *extra]


def _tables(data: str, out: Path, *extra: str, env=None):
    return _run(_args(data, out, "--extracted-on", "2023-07-10", *extra), env)


def test_tables_dask_equals_pandas(tmp_path, dask_client, small_zibo):
    env = {"DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    _tables(str(small_zibo), tmp_path / "pandas")
    _tables(str(small_zibo), tmp_path / "dask", "--engine", "dask", env=env)
    _same_files(tmp_path / "pandas", tmp_path / "dask")


def test_tables_dask_reads_an_fsspec_url(tmp_path, dask_client, small_zibo):
    memory = fsspec.filesystem("memory")
    for path in small_zibo.rglob("*.parquet"):
        memory.pipe(f"/zibo-cli/{path.relative_to(small_zibo).as_posix()}", path.read_bytes())
    try:
        _tables(str(small_zibo), tmp_path / "pandas")
        _tables(
            "memory://zibo-cli",
            tmp_path / "url",
            "--engine",
            "dask",
            "--scheduler",
            dask_client.scheduler.address,
        )
    finally:
        memory.rm("/zibo-cli", recursive=True)
    _same_files(tmp_path / "pandas", tmp_path / "url")


def test_tables_compare_on_dask_equals_pandas(tmp_path, dask_client, small_zibo):
    env = {"DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    _tables(str(small_zibo), tmp_path / "pandas", "--compare")
    _tables(str(small_zibo), tmp_path / "dask", "--compare", "--engine", "dask", env=env)
    _same_files(tmp_path / "pandas", tmp_path / "dask")
    annex = pd.read_csv(tmp_path / "dask" / "annex1_districts.csv", dtype=str)
    assert any("环比" in c for c in annex.columns)  # 2023Q1 is stored: compared, not skipped


def test_tables_on_dask_refuse_an_empty_period_before_counting_comparisons(tmp_path, dask_client, small_zibo):
    env = {"DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    args = ["tables", "--city", "zibo", "--period", "2023Q3", "--data", str(small_zibo)]
    args += ["--out", str(tmp_path / "x"), "--compare", "--engine", "dask"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert "没有任何办件或评价记录" in result.output
    assert not (tmp_path / "x").exists()


def test_unreachable_scheduler_is_a_clear_error(tmp_path, small_zibo):
    result = CliRunner().invoke(
        cli,
        _args(str(small_zibo), tmp_path / "x", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9"),
    )
    assert result.exit_code == 2, result.output
    assert "tcp://127.0.0.1:9" in result.output
    assert not (tmp_path / "x").exists()


def test_a_url_on_the_pandas_engine_is_a_clear_error(tmp_path):
    for verb in ("tables", "quality", "anomalies"):
        args = [verb, "--city", "zibo", "--period", "2023Q2", "--data", "memory://x"]
        result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / verb)])
        assert result.exit_code == 2, (verb, result.output)
        assert "--engine dask" in result.output
        assert not (tmp_path / verb).exists()
