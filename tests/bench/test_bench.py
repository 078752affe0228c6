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
    # Loading and its value checks apart; the bulletin's own stages from its manifest, kernel included.
    by_stage = {r["stage"]: r for r in results}
    assert by_stage["load"]["records"] == by_stage["validate"]["records"] > 0
    # The two-quarter window (the period and the one before) reads more than the period alone.
    assert by_stage["load_window"]["records"] > by_stage["load"]["records"]
    assert "| load_window | 0.01 |" in table and "两个季度" in table
    pipeline = [s["name"] for s in by_stage["bulletin"]["pipeline_stages"]]
    assert {"load", "quality", "tables", "anomalies", "notebook", "docx", "html", "pdf"} <= set(pipeline)
    assert by_stage["bulletin"]["tree_peak_mb"] > 0
    assert "通报全流程（bulletin，规模 0.01）" in table and "| notebook（执行通报 notebook） |" in table


def test_measure_tree_counts_the_children_of_the_process(tmp_path):
    """A parent that starts a child holding ~200 MB and spinning: the tree's peak and CPU include it."""
    import sys

    from haocha_analysis.bench.run import measure_tree

    child = (
        "import time; x = bytearray(200 * 2**20); x[::4096] = b'1' * len(x[::4096])\n"
        "t = time.process_time()\nwhile time.process_time() - t < 1.0: pass"
    )
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    measured = measure_tree([sys.executable, "-c", parent], poll_s=0.05)
    assert measured["ok"], measured["error"]
    assert measured["peak_mb"] >= 200  # the child's memory, not only the parent's (~10 MB)
    assert measured["cpu_s"] >= 1.0  # the child's CPU second, waited for by the parent
    assert measured["wall_s"] >= 1.0
    failed = measure_tree([sys.executable, "-c", "raise SystemExit(3)"])
    assert not failed["ok"]


def test_the_table_says_which_target_a_stage_missed():
    from haocha_analysis.bench.run import markdown

    def row(stage, scale, wall, cpu=1.0):
        return {"stage": stage, "scale": scale, "ok": True, "wall_s": wall, "cpu_s": cpu, "peak_mb": 1}

    table = markdown(
        [
            row("quality", 1.0, 1.5),
            row("duckdb_quality", 1.0, 1.2, 2.0),
            row("tables", 1.0, 0.9),
            row("duckdb_tables", 1.0, 1.0, 2.0),
            row("tables", 4.0, 3.0),  # the ratio is a scale-1 target
            row("duckdb_tables", 4.0, 1.0, 2.0),
        ],
        cores=2,
    )
    lines = {tuple(line.split(" | ")[:2]): line for line in table.splitlines() if line.startswith("| ")}
    assert "未达目标：墙钟为 DuckDB 的 1.25 倍，目标 ≤ 1.0 倍" in lines[("| quality", "1.0")]
    assert lines[("| tables", "1.0")].endswith("| 0.90× / 0.50× | 通过 |")
    assert lines[("| tables", "4.0")].endswith("| 3.00× / 0.50× | 通过 |")
