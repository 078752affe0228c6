"""The same computations in DuckDB SQL, for the benchmark's side-by-side comparison.

Used only by ``haocha bench`` (DuckDB is a dev dependency). The SQL follows docs/metrics.md; the
benchmark also checks that it agrees with the pandas tables, which makes it a second, independent
implementation of the metric definitions.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference


def _source(data_dir: Path, table: str, period: Period) -> str:
    part = Path(data_dir) / table / f"period={period.label}"
    if part.is_dir():
        return f"read_parquet('{part}/*.parquet')"
    if (Path(data_dir) / table).is_dir():
        return f"read_parquet('{Path(data_dir) / table}/*/*.parquet', hive_partitioning = true)"
    return f"read_parquet('{Path(data_dir) / f'{table}.parquet'}')"


def unit_counts_sql(data_dir: Path, period: Period) -> str:
    """SQL for the per-unit counts that every annex is built from."""
    start, end = period.start_ts, period.end_ts
    cases, evals, rects = (_source(data_dir, t, period) for t in ("cases", "evaluations", "rectifications"))
    return f"""
    WITH all_cases AS (SELECT case_id, unit_id, finished_at FROM {cases}),
    rect AS (SELECT eval_id, verdict FROM {rects}),
    ev AS (
        SELECT e.eval_id, e.case_id, e.satisfaction, e.evaluated_at, e.attempt, e.active,
               ac.case_id IS NOT NULL AS linked,
               coalesce(ac.unit_id, e.unit_id) AS unit_id,
               ac.finished_at >= TIMESTAMP '{start}' AND ac.finished_at < TIMESTAMP '{end}' AS case_in_p,
               e.evaluated_at >= TIMESTAMP '{start}' AND e.evaluated_at < TIMESTAMP '{end}' AS eval_in_p,
               e.satisfaction IN (1, 2) AS bad,
               coalesce(r.verdict = 'invalid', false) AS invalid
        FROM {evals} e
        LEFT JOIN all_cases ac USING (case_id)
        LEFT JOIN rect r USING (eval_id)
    ),
    ranked AS (
        -- rn = 1: a case's first evaluation; rn > 1: a duplicate attempt-1 row (never counted)
        SELECT *, CASE WHEN linked AND attempt = 1 THEN row_number() OVER (
                   PARTITION BY case_id, linked AND attempt = 1 ORDER BY evaluated_at, eval_id) END AS rn
        FROM ev
    ),
    firsts AS (SELECT * FROM ranked WHERE rn = 1),
    counted AS (SELECT * FROM ranked WHERE coalesce(rn, 1) = 1),
    case_part AS (
        SELECT c.unit_id,
               count(*) AS cases,
               count(f.eval_id) AS cases_evaluated,
               count(*) FILTER (WHERE f.active) AS cases_active,
               count(*) FILTER (WHERE f.eval_id IS NOT NULL AND f.active IS NULL) AS cases_active_unknown
        FROM all_cases c LEFT JOIN firsts f USING (case_id)
        WHERE c.finished_at >= TIMESTAMP '{start}' AND c.finished_at < TIMESTAMP '{end}'
        GROUP BY c.unit_id
    ),
    case_bad AS (
        SELECT unit_id, count(*) FILTER (WHERE NOT invalid) AS case_bad_valid
        FROM counted WHERE linked AND case_in_p AND bad GROUP BY unit_id
    ),
    eval_part AS (
        SELECT unit_id,
               count(*) FILTER (WHERE eval_in_p AND attempt = 1 AND (NOT linked)) AS eval_unlinked_first,
               count(*) FILTER (WHERE eval_in_p AND bad AND NOT invalid) AS eval_bad_valid
        FROM counted GROUP BY unit_id
    ),
    first_part AS (
        SELECT unit_id, count(*) AS eval_linked_first FROM firsts WHERE eval_in_p GROUP BY unit_id
    )
    SELECT u.unit_id,
           coalesce(cp.cases, 0) AS cases,
           coalesce(cp.cases_evaluated, 0) AS cases_evaluated,
           coalesce(cp.cases_active, 0) AS cases_active,
           coalesce(cp.cases_active_unknown, 0) AS cases_active_unknown,
           coalesce(cb.case_bad_valid, 0) AS case_bad_valid,
           coalesce(fp.eval_linked_first, 0) + coalesce(ep.eval_unlinked_first, 0) AS eval_first,
           coalesce(ep.eval_bad_valid, 0) AS eval_bad_valid
    FROM (SELECT unit_id FROM case_part UNION SELECT unit_id FROM eval_part) u
    LEFT JOIN case_part cp USING (unit_id)
    LEFT JOIN case_bad cb USING (unit_id)
    LEFT JOIN eval_part ep USING (unit_id)
    LEFT JOIN first_part fp USING (unit_id)
    """


def annex_tables(ref: CityReference, data_dir: Path, period: Period) -> dict[str, pd.DataFrame]:
    """The five annexes' counts computed in DuckDB SQL (numbers only, in official order)."""
    import duckdb

    con = duckdb.connect()
    units = ref.units[["unit_id", "unit_name", "level", "district", "category", "public_service", "order"]]
    con.register("units", units)
    con.execute(f"CREATE TEMP TABLE counts AS {unit_counts_sql(data_dir, period)}")
    joined = "counts JOIN units USING (unit_id)"
    case_cols = """sum(cases)::BIGINT AS 办件数, sum(cases_evaluated)::BIGINT AS 评价数,
                   sum(cases_active)::BIGINT AS 主动评价数, sum(case_bad_valid)::BIGINT AS 差评数"""
    out = {
        "annex1_districts": con.execute(
            f"SELECT district AS 区县, {case_cols} FROM {joined} WHERE level <> 'city_dept' GROUP BY district"
        ).df(),
        "annex2_city_departments": con.execute(
            f"SELECT unit_name AS 部门, {case_cols} FROM {joined} "
            "WHERE level = 'city_dept' GROUP BY unit_name"
        ).df(),
        "annex3_district_departments": con.execute(
            f"""PIVOT (SELECT category AS 部门, district, eval_first FROM {joined}
                       WHERE level = 'district_dept' AND category <> '')
                ON district USING sum(eval_first)::BIGINT"""
        ).df(),
        "annex4_towns_villages": con.execute(
            f"""SELECT district AS 区县,
                       sum(eval_first) FILTER (WHERE level = 'town')::BIGINT AS 镇级评价总数,
                       sum(eval_bad_valid) FILTER (WHERE level = 'town')::BIGINT AS 镇级差评数量,
                       sum(eval_first) FILTER (WHERE level = 'village')::BIGINT AS 村级评价总数,
                       sum(eval_bad_valid) FILTER (WHERE level = 'village')::BIGINT AS 村级差评数量
                FROM {joined} WHERE level IN ('town', 'village') GROUP BY district"""
        ).df(),
        "annex5_public_services": con.execute(
            f"""SELECT district AS 区县, sum(eval_first)::BIGINT AS 评价数 FROM {joined}
                WHERE public_service AND level <> 'city_dept' GROUP BY district"""
        ).df(),
    }
    con.close()
    order = {
        "annex1_districts": ("区县", ref.districts),
        "annex4_towns_villages": ("区县", ref.districts),
        "annex5_public_services": ("区县", ref.districts),
        "annex2_city_departments": ("部门", ref.level("city_dept")["unit_name"].tolist()),
        "annex3_district_departments": ("部门", ref.categories),
    }
    for name, (key, rows) in order.items():
        frame = out[name].set_index(key).reindex(rows)
        if name == "annex3_district_departments":
            frame = frame.reindex(columns=ref.districts)
        out[name] = frame.fillna(0).astype("int64")
    return out


def quality_sql(data_dir: Path, period: Period, limit_seconds: int = 300) -> dict[str, pd.DataFrame]:
    """The quality report's checks in DuckDB SQL: the benchmark's side-by-side twin of quality.py.

    Timeliness (the 5-minute rule), submission, matter and case linkage, orphans, duplicate attempt-1
    evaluations, evaluations before their case, unit conflicts and completeness — by source system,
    by unit and by day.
    """
    import duckdb

    start, end = period.start_ts, period.end_ts
    cases, evals = _source(data_dir, "cases", period), _source(data_dir, "evaluations", period)
    in_p = f"BETWEEN TIMESTAMP '{start}' AND TIMESTAMP '{end}' - INTERVAL 1 MICROSECOND"
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TEMP VIEW c AS SELECT * FROM {cases} WHERE finished_at {in_p}")
        con.execute(f"""
        CREATE TEMP TABLE e AS
        SELECT e.*, ac.case_id IS NOT NULL AS linked, ac.finished_at AS case_finished,
               ac.unit_id AS case_unit,
               CASE WHEN ac.case_id IS NOT NULL AND e.attempt = 1 THEN row_number() OVER (
                   PARTITION BY e.case_id, ac.case_id IS NOT NULL AND e.attempt = 1
                   ORDER BY e.evaluated_at, e.eval_id) END AS rn
        FROM {evals} e LEFT JOIN (SELECT case_id, unit_id, finished_at FROM {cases}) ac USING (case_id)
        WHERE e.evaluated_at {in_p}""")
        case_on_time = f"date_diff('second', finished_at, reported_at) BETWEEN 0 AND {limit_seconds}"
        eval_on_time = f"date_diff('second', evaluated_at, reported_at) BETWEEN 0 AND {limit_seconds}"
        out = {
            "cases_by_system": con.execute(f"""
                SELECT source_system, count(*) AS produced, count(reported_at) AS submitted,
                       count(*) FILTER (WHERE {case_on_time}) AS on_time,
                       count(matter_code) AS with_matter
                FROM c GROUP BY source_system""").df(),
            "evaluations_by_unit": con.execute(f"""
                SELECT coalesce(case_unit, unit_id) AS unit_id, count(*) AS produced,
                       count(reported_at) AS submitted,
                       count(*) FILTER (WHERE {eval_on_time}) AS on_time,
                       count(*) FILTER (WHERE linked) AS linked,
                       count(*) FILTER (WHERE case_id IS NOT NULL AND NOT linked) AS orphans,
                       count(*) FILTER (WHERE rn > 1) AS duplicates,
                       count(*) FILTER (WHERE evaluated_at < case_finished) AS before_case,
                       count(*) FILTER (WHERE linked AND unit_id <> case_unit) AS unit_conflicts
                FROM e GROUP BY ALL""").df(),
            "by_day": con.execute(f"""
                SELECT CAST(evaluated_at AS DATE) AS day, count(*) AS produced,
                       count(*) FILTER (WHERE {eval_on_time}) AS on_time
                FROM e GROUP BY ALL ORDER BY day""").df(),
            "completeness": con.execute(
                "SELECT "
                + ", ".join(
                    f"count({col}) AS {col}"
                    for col in (
                        "case_id",
                        "unit_id",
                        "matter_code",
                        "region_code",
                        "accepted_at",
                        "finished_at",
                        "reported_at",
                        "source_system",
                    )
                )
                + " FROM c"
            ).df(),
        }
        return out
    finally:
        con.close()
