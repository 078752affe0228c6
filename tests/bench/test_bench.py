"""Smoke run of the benchmark harness (the benchmark itself is `make bench`, not part of the tests)."""

import json

from haocha_analysis.bench.run import STAGES, run_bench


def test_bench_harness_runs_every_stage_at_a_tiny_scale(tmp_path):
    results = run_bench(tmp_path, [0.01], province_scale=None)
    assert [r["stage"] for r in results] == list(STAGES)
    failed = [(r["stage"], r.get("error")) for r in results if not r.get("ok")]
    assert not failed
    for r in results:
        assert r["wall_s"] >= 0 and r["peak_mb"] > 0
    # DuckDB's SQL is an independent implementation of the metric definitions: it must agree.
    assert next(r for r in results if r["stage"] == "duckdb_tables")["mismatches"] == 0
    saved = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert saved["cores"] >= 1 and len(saved["results"]) == len(STAGES)
    table = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert "| tables | 0.01 |" in table and "×" in table
