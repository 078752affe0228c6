"""The whole run, stage by stage: ingest-if-needed → quality → tables → anomalies → bulletin.

The output folder obeys the one rule of :mod:`haocha_analysis.core.outputs`: absent, empty or a
previous bulletin, never an input. Everything is built in a staging folder beside the target
(``reports/<city>/.<period>.tmp-<run>``, which also holds the kernel's connection file) and swapped
into place by :func:`outputs.swap_in` only when every stage succeeded, so a failed or killed run
leaves the previous outputs of that period intact and never anything half-written that looks
complete. A failed run's folder is kept as ``.<period>.failed-<run>`` until the next run of that
output starts; a killed run's staging is removed by the next run (:func:`outputs.clean_stale`).

Each stage prints a line when it ends (with marks on a terminal); not on a terminal, the run also logs to
``reports/<city>/logs/haocha.log`` (errors still go to stderr, which cron mails).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from haocha_analysis.bulletin import docx, index, render
from haocha_analysis.core import memory, outputs
from haocha_analysis.core.config import (
    REPORTS_DIR,
    SYNTHETIC_DIR,
    reports_path,
)
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference, load_city
from haocha_analysis.engine import EngineOptions, api, refuse_url_on_pandas
from haocha_analysis.ingest import storage
from haocha_analysis.ingest.storage import extraction_date
from haocha_analysis.pipeline import units
from haocha_analysis.pipeline.manifest import Recorder, _display_path, input_records, package_versions, sha256
from haocha_analysis.pipeline.notebook import (
    KERNEL_CONNECTION_GLOB,
    NOTEBOOK,
    Kernel,
    _cell_durations,
    _notebook_failure,
    execute_notebook,
)
from haocha_analysis.pipeline.stages import (
    BulletinFailed,
    RunSettings,
    compute,
    data_exists,
    default_issue_date,
    has_period,
    ingest_if_needed,
    load_context,
    load_data,
    refuse_ingest_into_url,
    resolve_data_dir,
)

log = logging.getLogger("haocha.pipeline")

RESULTS_PICKLE = "_results.pkl"  # hand-over from the stages to the notebook; removed before publishing
MANIFEST = "manifest.json"
RUN_LOG = "run.log"


# --- the run ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a successful run produced."""

    run_id: str
    out_dir: Path
    html: Path
    pdf: Path
    manifest: dict


def new_run_id() -> str:
    """A sortable, unique run id: time of start plus a random suffix."""
    return f"{datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def _publish(staging: Path, target: Path) -> None:
    """Swap the finished folder into place, crash-safe: old outputs are replaced only by complete new ones.

    A run killed during the swap leaves a journal; the next run's :func:`outputs.check_out` restores
    the old folder.
    """
    outputs.swap_in([(staging, target)], journal_dir=target.parent, keep_sources=True)
    (target / outputs.OWNER).unlink(missing_ok=True)


def _keep_failed(staging: Path, target: Path, run_id: str) -> Path | None:
    """Keep a failed run's staging folder for diagnosis, without the hand-over pickle and kernel file."""
    if not staging.exists():
        return None
    for leftover in (RESULTS_PICKLE, outputs.OWNER, *(p.name for p in staging.glob(KERNEL_CONNECTION_GLOB))):
        (staging / leftover).unlink(missing_ok=True)
    for previous in target.parent.glob(f".{target.name}.failed-*"):
        shutil.rmtree(previous, ignore_errors=True)
    failed = target.parent / f".{target.name}.failed-{run_id}"
    os.replace(staging, failed)
    return failed


def _run_period(period: str, data_dir: Path | str | None, ingest: bool, inbox: Path | None) -> Period:
    """The run's period: ``latest`` follows the data, except for ``haocha run`` with an inbox.

    The new quarter's exports wait in the inbox to be ingested, so the last complete calendar quarter
    is the one to publish.
    """
    return storage.resolve_period_in(period, data_dir, follow_data=not (ingest and inbox))


def preflight(
    ref: CityReference,
    period: Period,
    data_dir: Path | str | None,
    out_dir: Path | None,
    narrative_file: Path | None,
    *,
    ingest: bool = False,
    inbox: Path | None = None,
    profile: Path | None = None,
    settings_file: Path | None = None,
) -> tuple[Path, Path]:
    """Every check a run makes before it writes anything, so that bad input is exit 2 with nothing written.

    The narrative template (placeholders included), the output folder (``--out``, else
    ``reports/<city>/<period>/``) by the rule of :mod:`haocha_analysis.core.outputs`, and, for
    ``haocha run`` when the period is missing, the data folder it would ingest into.

    Returns:
        The output folder (absolute) and the narrative template.
    """
    if ingest:
        refuse_ingest_into_url(data_dir, inbox)
    narrative = render.narrative_path(ref, narrative_file)
    render.load_narrative(narrative)
    inputs = {
        "--city": ref.path,
        "--data": data_dir if data_dir else SYNTHETIC_DIR / ref.key,
        "--narrative": narrative_file,
        "--inbox": inbox,
        "--profile": profile,
        "--settings": settings_file,
    }
    target = outputs.check_out(
        Path(out_dir) if out_dir else reports_path(ref.key, period.label), "bulletin", inputs
    )
    missing = data_dir is not None and not (data_exists(data_dir) and has_period(data_dir, period))
    if ingest and missing and inbox and profile:  # haocha run will ingest into --data
        outputs.check_out(
            data_dir, "data", {"--inbox": inbox, "--profile": profile, "--city": ref.path}, option="--data"
        )
    return target, narrative


def build_bulletin(
    city: str | Path,
    period: str,
    data_dir: Path | str | None = None,
    out_dir: Path | None = None,
    extracted_on: str | None = None,
    narrative_file: Path | None = None,
    *,
    ingest: bool = False,
    inbox: Path | None = None,
    profile: Path | None = None,
    interactive: bool = False,
    pdf: bool = True,
    progress: bool = False,
    issued_on: str | None = None,
    doc_number: str = "",
    compare: bool = False,
    settings_file: Path | None = None,
    unit_level: str | None = None,
    engine: EngineOptions | None = None,
) -> RunResult:
    """Produce the bulletin of one city and period into ``out_dir`` (default ``reports/<city>/<period>/``).

    Args:
        city: reference name or folder.
        period: period label, or ``latest`` (see :func:`haocha_analysis.ingest.storage.resolve_period_in`).
        data_dir: canonical tables (a folder, or with ``engine`` dask an fsspec URL the workers read);
            None means the built-in synthetic data.
        out_dir: target folder, replaced atomically on success.
        extracted_on: 数据提取时间 (YYYY-MM-DD) for the 备注 lines.
        narrative_file: narrative template; None means the city's ``bulletin.yml``.
        ingest: run the ingest-if-needed stage first (``haocha run``).
        inbox: raw exports to ingest when the period is missing.
        profile: their source profile.
        interactive: a terminal: progress marks and papermill's progress bar.
        pdf: also print the PDF (benchmarks of the HTML alone may turn it off).
        progress: print a line per finished stage on stderr (the CLI does, terminal or not).
        issued_on: 成文日期 (YYYY-MM-DD); None means the extraction date plus the city's lag.
        doc_number: 发文字号 printed above the title (empty: none).
        compare: 环比/同比 columns in the annexes and a sentence in the bulletin.
        settings_file: thresholds (settings.yml); None means the city's own, if any.
        unit_level: also make a report per unit of this level into ``units/`` (``haocha run``: districts).
        engine: the engine that reduces the records (None: pandas in this process); on Dask every
            record-touching step (the units' earlier periods too) runs in one session.

    Raises:
        BulletinFailed: a stage failed (the failing notebook cell's error included); the previous
            outputs of the period are intact.
        HaochaInputError: bad input (exit status 2 in the CLI).
    """
    ref = load_city(city)
    refuse_url_on_pandas(data_dir, engine)
    per = _run_period(period, data_dir, ingest, inbox)
    for option, value, what in (
        ("--extracted-on", extracted_on, "数据提取时间"),
        ("--issued-on", issued_on, "成文日期"),
    ):
        if value:
            try:
                date.fromisoformat(str(value))
            except ValueError as err:
                raise HaochaInputError(
                    f"{what}“{value}”无法识别", column=option, fix="写成 YYYY-MM-DD，如 2023-07-04"
                ) from err
    run_settings = RunSettings.for_city(ref, settings_file)  # a bad settings file fails before any work
    target, narrative = preflight(
        ref,
        per,
        data_dir,
        out_dir,
        narrative_file,
        ingest=ingest,
        inbox=inbox,
        profile=profile,
        settings_file=settings_file,
    )
    outputs.clean_stale(target)
    run_id = new_run_id()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = outputs.make_staging(target.parent / f".{target.name}.tmp-{run_id}")
    outputs.mark(staging, "bulletin")
    file_log = logging.FileHandler(staging / RUN_LOG, encoding="utf-8")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(file_log)
    log.setLevel(logging.INFO)
    recorder = Recorder(interactive=interactive, progress=progress)
    started = datetime.now()
    t_start = time.perf_counter()
    log.info(
        "运行 %s：城市 %s，统计期 %s，输出 %s", run_id, ref.city_name, per.title_cn(), _display_path(target)
    )
    kernel = None
    try:
        kernel = Kernel(staging)  # starts and imports on the other core while the stages compute
        if ingest:
            with recorder.stage("ingest"):
                data_path, ingest_note = ingest_if_needed(ref, per, data_dir, inbox, profile)
                log.info(ingest_note)
        elif data_dir is None:
            with recorder.stage("synth"):  # generated once, then reused (synth's stamp file)
                data_path = resolve_data_dir(ref, per, None)
            ingest_note = "内置合成数据"
        else:
            ingest_note = ""
            data_path = resolve_data_dir(ref, per, data_dir)
        log.info("规范表：%s", _display_path(data_path))  # a URL as given
        if not extracted_on and (recorded := extraction_date(data_path, per)) is not None:
            extracted_on = recorded.isoformat()  # as recorded by ingest or synth for this data
        engine = engine or EngineOptions()
        unit_history = None  # pandas: counted by the units stage, as before
        with api.session(engine):
            results = compute(
                ref,
                per,
                data_path,
                extracted_on,
                recorder=recorder,
                out_dir=staging,
                compare=compare,
                settings=run_settings,
                engine=engine,
            )
            if unit_level and engine.engine != "pandas":  # counted while the cluster is up
                with recorder.stage("unit-history"):
                    unit_history = units.history_counts(data_path, per, engine=engine)
        data_coverage = results.coverage.as_dict() if results.coverage is not None else None
        headline = {
            k: results.tables.headline.get(k)
            for k in ("total_cases", "total_evaluations", "evaluation_rate", "valid_bad_reviews")
        }
        results_file = staging / RESULTS_PICKLE
        with open(results_file, "wb") as fh:
            pickle.dump(results, fh, protocol=pickle.HIGHEST_PROTOCOL)
        del results
        memory.release_unused()  # the stages' freed memory back to the system before the kernel starts
        parameters = {
            "city": str(ref.path) if Path(str(city)).is_dir() else ref.key,
            "period": per.label,
            "data_dir": str(data_path),
            "extracted_on": extracted_on or "",
            "narrative_file": str(narrative),
            "results_file": str(results_file),
            "run_id": run_id,
            "issued_on": issued_on or "",
            "doc_number": doc_number or "",
        }
        notebook_out = staging / "bulletin.ipynb"
        # The Word 公文 (from the same context as the notebook's) is written beside the notebook: the
        # kernel runs on one core, the document on the other; their stage times overlap.
        with ThreadPoolExecutor(1, thread_name_prefix="docx") as beside:
            written = beside.submit(_write_docx, recorder, ref, parameters, staging)
            try:
                with recorder.stage("notebook"):
                    try:
                        execute_notebook(
                            notebook_out,
                            parameters,
                            interactive,
                            staging / RUN_LOG,
                            notebook_path=NOTEBOOK,
                            kernel=kernel,
                        )
                    except Exception as err:
                        if type(err).__name__ == "PapermillExecutionError":
                            raise BulletinFailed(_notebook_failure(err)) from err
                        raise
                    finally:
                        kernel, running = None, kernel
                        running.stop(staging / RUN_LOG, interactive)
            except BaseException:
                written.exception()  # waited for; the notebook's error is the one reported
                raise
            written.result()
        if unit_level:
            with recorder.stage("units"):  # the same stage results, read by every unit's notebook
                with open(results_file, "rb") as fh:
                    inputs = units.unit_inputs(
                        parameters["city"], per, pickle.load(fh), data_path, history=unit_history
                    )
                units.write_unit_reports(
                    ref,
                    parameters["city"],
                    per,
                    inputs,
                    staging / units.UNITS_SUBDIR,
                    level=unit_level,
                    run_id=run_id,
                    interactive=interactive,
                    pdf=pdf,
                    log_file=staging / RUN_LOG,
                )
                del inputs
        results_file.unlink()
        title = _bulletin_title(notebook_out, ref, per)
        with recorder.stage("html"):
            html, streams = render.notebook_to_html(notebook_out, title=title, run_id=run_id)
            for text in streams:
                log.warning("notebook 输出（未放入通报）：%s", text.strip()[:500])
            html_path = staging / "bulletin.html"
            html_path.write_text(html, encoding="utf-8")
        pdf_path = staging / "bulletin.pdf"
        if pdf:
            with recorder.stage("pdf"):
                render.html_to_pdf(html, pdf_path, staging, logger=log)
        manifest = {
            "run_id": run_id,
            "city": ref.key,
            "city_name": ref.city_name,
            "period": per.label,
            "period_label": per.title_cn(),
            "period_range": [per.start.isoformat(), per.end.isoformat()],
            "started_at": started.isoformat(timespec="seconds"),
            "parameters": {k: v for k, v in parameters.items() if k != "results_file"},
            "data_dir": _display_path(data_path),
            "ingest": ingest_note,
            "data_coverage": data_coverage,
            "settings": run_settings.as_dict(),
            "engine": engine.engine,
            "headline": headline,
            "inputs": input_records(data_path, per, ref, narrative),
            "packages": package_versions(),
            "stages": recorder.as_list(),
            "notebook_cells": _cell_durations(notebook_out),
            "outputs": {},
        }
        manifest["stages"] = recorder.as_list()
        manifest["total_seconds"] = round(time.perf_counter() - t_start, 3)
        manifest["peak_rss_mb"] = max(s["peak_rss_mb"] for s in manifest["stages"])
        manifest["outputs"] = {
            str(p.relative_to(staging)): p.stat().st_size
            for p in sorted(staging.rglob("*"))
            if p.is_file() and p.name != RUN_LOG and not p.name.startswith(".")
        }
        if pdf:
            manifest["pdf_pages"] = _pdf_pages(pdf_path)
        (staging / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        log.info("完成：%s（%.1f 秒）", _display_path(target), manifest["total_seconds"])
        log.removeHandler(file_log)
        file_log.close()
        for connection in staging.glob(KERNEL_CONNECTION_GLOB):
            connection.unlink(missing_ok=True)
        _publish(staging, target)
        if target.resolve().parent.parent == REPORTS_DIR.resolve():
            index.write_index(REPORTS_DIR)  # reports/index.html lists every city and period
        return RunResult(run_id, target, target / "bulletin.html", target / "bulletin.pdf", manifest)
    except BaseException as err:
        if kernel is not None:  # failed before the notebook ran
            kernel.stop(staging / RUN_LOG, interactive)
        log.error("失败：%s", err, exc_info=not isinstance(err, BulletinFailed | HaochaInputError))
        log.removeHandler(file_log)
        file_log.close()
        if isinstance(err, HaochaInputError):
            shutil.rmtree(staging, ignore_errors=True)  # bad input: nothing is written
            raise
        failed = _keep_failed(staging, target, run_id)
        if isinstance(err, BulletinFailed | HaochaInputError) or not isinstance(err, Exception):
            if failed is not None and isinstance(err, BulletinFailed):
                err.args = (
                    f"{err.args[0]}\n（未改动已有输出；本次运行的中间文件：{_display_path(failed)}）",
                )
            raise
        raise BulletinFailed(f"通报生成失败（{type(err).__name__}）：{err}") from err


def _write_docx(recorder: Recorder, ref: CityReference, parameters: dict, staging: Path) -> None:
    with recorder.stage("docx"):
        ctx = load_context(**parameters)
        docx.write_docx(ctx, staging / docx.DOCX_NAME, docx.template_path(ref))


def _pdf_pages(pdf: Path) -> int | None:
    try:
        from pypdf import PdfReader
    except ImportError:  # pypdf is a dev dependency
        return None
    return len(PdfReader(pdf).pages)


def _bulletin_title(notebook: Path, ref: CityReference, period: Period) -> str:
    return f"{ref.city_name}{period.title_cn()}政务服务“好差评”工作情况通报"


@contextmanager
def _quiet_log(log_dir: Path, interactive: bool) -> Iterator[None]:
    """Not on a terminal: log every run to ``<log_dir>/haocha.log`` instead of printing progress."""
    if interactive:
        yield
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / "haocha.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def cli_entry(
    city: str,
    period: str,
    *,
    ingest: bool,
    data_dir: Path | str | None = None,
    out_dir: Path | None = None,
    extracted_on: str | None = None,
    narrative_file: Path | None = None,
    inbox: Path | None = None,
    profile: Path | None = None,
    issued_on: str | None = None,
    doc_number: str = "",
    compare: bool = False,
    settings_file: Path | None = None,
    unit_level: str | None = None,
    engine: EngineOptions | None = None,
) -> None:
    """What ``haocha bulletin`` and ``haocha run`` do: run, report, and exit non-zero on failure."""
    interactive = sys.stderr.isatty()
    ref = load_city(city)
    # Checks first: bad input is exit 2 before anything, the log included, is written.
    target, _ = preflight(
        ref,
        _run_period(period, data_dir, ingest, inbox),
        data_dir,
        out_dir,
        narrative_file,
        ingest=ingest,
        inbox=inbox,
        profile=profile,
        settings_file=settings_file,
    )
    log_dir = (target.parent if out_dir else reports_path(ref.key)) / "logs"
    try:
        with _quiet_log(log_dir, interactive):
            result = build_bulletin(
                city,
                period,
                data_dir,
                out_dir,
                extracted_on,
                narrative_file,
                ingest=ingest,
                inbox=inbox,
                profile=profile,
                interactive=interactive,
                progress=True,
                issued_on=issued_on,
                doc_number=doc_number,
                compare=compare,
                settings_file=settings_file,
                unit_level=unit_level,
                engine=engine,
            )
    except BulletinFailed as err:
        print(f"错误：{err}", file=sys.stderr)
        sys.exit(1)
    manifest = result.manifest
    coverage_note = manifest.get("data_coverage") or {}
    if coverage_note.get("partial"):
        print(
            f"警告：数据仅覆盖 {coverage_note['first_record']} 至 {coverage_note['last_record']}，"
            "统计期其余时段无数据（通报中已说明）",
            file=sys.stderr,
        )
    headline = manifest.get("headline") or {}
    figures = ""
    if headline:
        figures = (
            f"；办件 {headline['total_cases']}，评价 {headline['total_evaluations']}，"
            f"评价率 {headline['evaluation_rate']}"
        )
    print(
        f"{manifest.get('city_name', '')} {manifest.get('period_label', '')} 通报已生成：{result.out_dir}"
        f"（{manifest.get('total_seconds', 0):.1f} 秒，运行 {result.run_id}{figures}）",
        flush=True,
    )


# The pipeline's public names, wherever they are defined (the notebook calls pipeline.load_context).
__all__ = [
    "NOTEBOOK",
    "RESULTS_PICKLE",
    "BulletinFailed",
    "Recorder",
    "RunResult",
    "RunSettings",
    "build_bulletin",
    "cli_entry",
    "compute",
    "default_issue_date",
    "execute_notebook",
    "load_context",
    "load_data",
    "package_versions",
    "preflight",
    "sha256",
]
