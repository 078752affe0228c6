"""A report per unit: ``notebooks/unit_report.ipynb`` run once per unit, in parallel, to HTML and PDF.

The figures are computed once per run (:class:`~haocha_analysis.bulletin.unit_report.UnitReportInputs`:
the bulletin's stage results plus the earlier periods' per-unit counts) and pickled; every unit's
notebook only reads them. Units run in a pool of processes, one per core; each executes the notebook
with papermill, renders it without code (``render.notebook_to_html``) and prints the PDF
(``render.html_to_pdf``). Outputs: ``reports/<city>/<period>/units/<unit_id>.{html,pdf}``, built in a
temporary folder and swapped in whole, so a failed run leaves the previous set intact.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from haocha_analysis.analysis.metrics import NEEDED_COLUMNS, unit_counts
from haocha_analysis.bulletin import render
from haocha_analysis.bulletin.render import StageResults
from haocha_analysis.bulletin.unit_report import (
    TREND_PERIODS,
    UnitContext,
    UnitReportInputs,
    build_unit_context,
    level_units,
)
from haocha_analysis.core.atomic import write_json
from haocha_analysis.core.config import NOTEBOOKS_DIR, REPORTS_DIR
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, parse_period
from haocha_analysis.core.reference import CityReference, load_city
from haocha_analysis.engine import EngineOptions, api, refuse_url_on_pandas
from haocha_analysis.ingest import storage
from haocha_analysis.pipeline.notebook import _notebook_failure, execute_notebook
from haocha_analysis.pipeline.stages import BulletinFailed, compute, resolve_data_dir

UNIT_NOTEBOOK = NOTEBOOKS_DIR / "unit_report.ipynb"
UNITS_SUBDIR = "units"
INPUTS_PICKLE = "_unit_inputs.pkl"  # hand-over to the notebooks; removed before publishing
SUMMARY = "units.json"
UNITS_LOG = "units.log"  # the kernels' own messages, when not run inside haocha run (its run.log)
DEFAULT_LEVEL = "district"


@dataclass
class UnitOutcome:
    """One unit's report: its files and how long it took (seconds)."""

    unit_id: str
    unit_name: str
    html: str
    pdf: str
    seconds: float


@dataclass
class UnitsResult:
    """What a unit-reports run produced."""

    out_dir: Path
    units: list[UnitOutcome] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1


# --- inputs, computed once -------------------------------------------------------------------------


def history_counts(
    data_dir: Path | str,
    period: Period,
    max_periods: int = TREND_PERIODS - 1,
    engine: EngineOptions | None = None,
) -> dict[str, pd.DataFrame]:
    """Per-unit counts of the earlier periods stored in the data folder (the latest ``max_periods``).

    Each earlier period is counted as the bulletin counts it (``metrics.unit_counts`` over the one
    loading window; on Dask the engine's counts of the same window, inside a session), so a trend
    never mixes definitions.
    """
    earlier = []
    for label in storage.available_periods(data_dir):
        try:
            p = parse_period(label)
        except HaochaInputError:
            continue
        if p.end < period.start and p.kind == period.kind:
            earlier.append(p)
    out = {}
    chosen = sorted(earlier, key=lambda p: p.start)[-max_periods:]
    if engine is not None and engine.engine != "pandas":
        with api.session(engine):
            return {p.label: api.tables_counts(data_dir, p, engine).units for p in chosen}
    for p in chosen:
        data = storage.load_window(Path(data_dir), p, columns=NEEDED_COLUMNS)
        out[p.label] = unit_counts(data["cases"], data["evaluations"], data.get("rectifications"), p)
    return out


def unit_inputs(
    city: str,
    period: Period,
    results: StageResults,
    data_dir: Path | None,
    engine: EngineOptions | None = None,
    history: dict[str, pd.DataFrame] | None = None,
) -> UnitReportInputs:
    """The shared inputs of every unit's report (``history``: the earlier periods' counts, if known)."""
    if history is None:
        history = history_counts(data_dir, period, engine=engine) if data_dir is not None else {}
    return UnitReportInputs(city=city, period=period, results=results, history_counts=history)


def load_unit_context(
    city: str, period: str, unit_id: str, inputs_file: str | None = None, data_dir: str | None = None
) -> UnitContext:
    """The unit report notebook's one entry point.

    Args:
        city: name under ``data/reference/`` or path to a reference folder.
        period: statistical period label.
        unit_id: the unit.
        inputs_file: the pickle written by ``haocha unit-reports`` (skips recomputation).
        data_dir: canonical tables when the notebook runs on its own; empty means the synthetic data.
    """
    ref = load_city(city)
    if inputs_file:
        with open(inputs_file, "rb") as fh:
            inputs = pickle.load(fh)
    else:
        per = parse_period(period)
        path = resolve_data_dir(ref, per, data_dir)
        inputs = unit_inputs(city, per, compute(ref, per, path), path)
    return build_unit_context(ref, inputs, unit_id)


# --- which units --------------------------------------------------------------------------------


def select_units(ref: CityReference, level: str | None, unit_ids: list[str] | None) -> pd.DataFrame:
    """The units to report on: the ones named (any report level), else every unit of ``level``."""
    if unit_ids:
        units = ref.units.assign(unit_id=ref.units["unit_id"].astype("str")).set_index("unit_id")
        unknown = [u for u in unit_ids if u not in units.index]
        if unknown:
            raise HaochaInputError(
                f"参考数据中没有这些单位：{'、'.join(unknown[:10])}",
                file=str(Path(ref.path) / "units.csv"),
                column="--units",
                fix="写 units.csv 中的 unit_id，多个用逗号分隔；或用 --level 选一个层级的全部单位",
            )
        chosen = units.loc[list(dict.fromkeys(unit_ids))].reset_index()
        for lv in chosen["level"].unique():
            level_units(ref, str(lv))  # only district / city_dept / district_dept units have reports
        return chosen
    return level_units(ref, level or DEFAULT_LEVEL).assign(unit_id=lambda f: f["unit_id"].astype("str"))


# --- one unit (in a worker process) ----------------------------------------------------------------


def _one_unit(job: dict) -> dict:
    """Execute the notebook for one unit, render HTML and PDF into the staging folder."""
    t0 = time.perf_counter()
    staging = Path(job["staging"])
    unit_id = job["unit_id"]
    notebook = staging / f".{unit_id}.ipynb"
    parameters = {
        "city": job["city"],
        "period": job["period"],
        "unit_id": unit_id,
        "inputs_file": job["inputs_file"],
        "run_id": job["run_id"],
    }
    execute_notebook(notebook, parameters, False, Path(job["log"]), notebook_path=UNIT_NOTEBOOK)
    html, _streams = render.notebook_to_html(notebook, title=job["title"], run_id=job["run_id"])
    html_path = staging / f"{unit_id}.html"
    html_path.write_text(html, encoding="utf-8")
    pdf_path = staging / f"{unit_id}.pdf"
    if job["pdf"]:
        render.html_to_pdf(html, pdf_path, staging)
    notebook.unlink()
    return {"unit_id": unit_id, "seconds": round(time.perf_counter() - t0, 3)}


def write_unit_reports(
    ref: CityReference,
    city: str,
    period: Period,
    inputs: UnitReportInputs,
    target: Path,
    *,
    level: str | None = DEFAULT_LEVEL,
    unit_ids: list[str] | None = None,
    run_id: str = "",
    interactive: bool = False,
    workers: int | None = None,
    pdf: bool = True,
    log_file: Path | None = None,
) -> UnitsResult:
    """Make every chosen unit's report into ``target`` (replaced whole when all succeeded).

    Args:
        ref: the city.
        city: how the notebooks name it (reference name or folder).
        period: the statistical period.
        inputs: the shared inputs (computed once).
        target: the ``units`` folder to produce.
        level: the units' level when ``unit_ids`` is empty.
        unit_ids: the units to report on.
        run_id: the run's id, in each page's metadata.
        interactive: print progress (a terminal).
        workers: processes (default: one per core).
        pdf: also print the PDFs.
        log_file: where the kernels' stderr goes (default: a log in the folder).
    """
    chosen = select_units(ref, level, unit_ids)
    t_start = time.perf_counter()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    run_id = run_id or uuid.uuid4().hex[:12]
    staging = target.parent / f".{target.name}.tmp-{run_id}"
    staging.mkdir()
    try:
        inputs_file = staging / INPUTS_PICKLE
        with open(inputs_file, "wb") as fh:
            pickle.dump(inputs, fh, protocol=pickle.HIGHEST_PROTOCOL)
        log = Path(log_file) if log_file else staging / UNITS_LOG
        jobs = []
        for unit in chosen.itertuples(index=False):
            name = str(unit.unit_name)
            jobs.append(
                {
                    "staging": str(staging),
                    "unit_id": str(unit.unit_id),
                    "unit_name": name,
                    "city": city,
                    "period": period.label,
                    "inputs_file": str(inputs_file),
                    "run_id": run_id,
                    "title": f"{name}{period.title_cn()}政务服务“好差评”情况",
                    "pdf": pdf,
                    "log": str(log),
                }
            )
        n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        done: dict[str, float] = {}
        names = {j["unit_id"]: j["unit_name"] for j in jobs}
        if interactive:
            print(f"… 单位报告：{len(jobs)} 个单位，{n_workers} 个进程", file=sys.stderr, flush=True)
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_one_unit, job): job["unit_id"] for job in jobs}
            for future in as_completed(futures):
                unit_id = futures[future]
                try:
                    outcome = future.result()
                except Exception as err:
                    for other in futures:
                        other.cancel()
                    name = names[unit_id]
                    if type(err).__name__ == "PapermillExecutionError":
                        raise BulletinFailed(f"单位报告（{name}）：{_notebook_failure(err)}") from err
                    raise
                done[unit_id] = outcome["seconds"]
                if interactive:
                    print(
                        f"  [{len(done)}/{len(jobs)}] {names[unit_id]}：{outcome['seconds']:.1f} 秒",
                        file=sys.stderr,
                        flush=True,
                    )
        inputs_file.unlink()
        outcomes = [
            UnitOutcome(
                j["unit_id"],
                j["unit_name"],
                f"{j['unit_id']}.html",
                f"{j['unit_id']}.pdf" if pdf else "",
                done[j["unit_id"]],
            )
            for j in jobs
        ]
        seconds = round(time.perf_counter() - t_start, 3)
        summary = {
            "run_id": run_id,
            "period": period.label,
            "generated_on": date.today().isoformat(),
            "workers": n_workers,
            "seconds": seconds,
            "units": [vars(o) for o in outcomes],
        }
        write_json(staging / SUMMARY, summary)
        storage.swap_in([(staging, target)])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return UnitsResult(out_dir=target, units=outcomes, seconds=seconds, workers=n_workers)


# --- the verb ------------------------------------------------------------------------------------


def cli_entry(
    city: str,
    period: str,
    data_dir: Path | str | None,
    out_dir: Path | None,
    level: str | None,
    unit_ids: list[str] | None,
    engine: EngineOptions | None = None,
) -> UnitsResult:
    """What ``haocha unit-reports`` does: compute once, run every unit, rebuild the reports index.

    ``engine``: the engine that reduces the records (None: pandas); on Dask the stages' and the
    earlier periods' records are reduced in one session.
    """
    from haocha_analysis.bulletin import index
    from haocha_analysis.ingest.storage import extraction_date

    interactive = sys.stderr.isatty()
    ref = load_city(city)
    refuse_url_on_pandas(data_dir, engine)
    per = storage.resolve_period_in(period, data_dir)
    select_units(ref, level, unit_ids)  # bad --level / --units fail before any work
    data_path = resolve_data_dir(ref, per, data_dir)
    recorded = extraction_date(data_path, per)
    t0 = time.perf_counter()
    city_name = str(ref.path) if Path(str(city)).is_dir() else ref.key
    with api.session(engine or EngineOptions()):
        results = compute(ref, per, data_path, recorded.isoformat() if recorded else None, engine=engine)
        inputs = unit_inputs(city_name, per, results, data_path, engine)
    if interactive:
        print(f"✓ 计算各阶段结果：{time.perf_counter() - t0:.1f} 秒", file=sys.stderr, flush=True)
    target = Path(out_dir) if out_dir else REPORTS_DIR / ref.key / per.label / UNITS_SUBDIR
    result = write_unit_reports(
        ref, inputs.city, per, inputs, target, level=level, unit_ids=unit_ids, interactive=interactive
    )
    if out_dir is None:
        index.write_index(REPORTS_DIR)
    per_unit = sum(u.seconds for u in result.units) / max(len(result.units), 1)
    print(
        f"单位报告已生成：{len(result.units)} 个（{result.out_dir}），用时 {result.seconds:.1f} 秒，"
        f"每个单位平均 {per_unit:.1f} 秒（{result.workers} 个进程并行）",
        file=sys.stderr,
    )
    return result
