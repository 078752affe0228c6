"""The whole run, stage by stage: ingest-if-needed → quality → tables → anomalies → bulletin.

Everything is built in a temporary folder beside the target (``reports/<city>/.<period>.tmp-<run>``)
and moved into place only when every stage succeeded, so a failed run leaves the previous outputs of
that period intact and never anything half-written that looks complete. The failed run's folder is
kept as ``.<period>.failed-<run>`` (only the latest one) for diagnosis.

On a terminal each stage prints its progress; otherwise the run is quiet and logs to
``reports/<city>/logs/haocha.log`` (errors still go to stderr, which cron mails).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import platform
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from haocha_analysis import quality
from haocha_analysis.analysis import annexes as tables
from haocha_analysis.analysis import anomalies
from haocha_analysis.bulletin import render
from haocha_analysis.bulletin.render import BulletinContext, StageResults
from haocha_analysis.core.config import KERNEL_NAME, NOTEBOOKS_DIR, PROJ_ROOT, REPORTS_DIR
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, parse_period, resolve_period
from haocha_analysis.core.reference import CityReference, load_city
from haocha_analysis.ingest import build as ingest
from haocha_analysis.ingest import storage
from haocha_analysis.ingest.storage import extraction_date
from haocha_analysis.synth import generate as synth

log = logging.getLogger("haocha.pipeline")

NOTEBOOK = NOTEBOOKS_DIR / "bulletin.ipynb"
RESULTS_PICKLE = "_results.pkl"  # hand-over from the stages to the notebook; removed before publishing
MANIFEST = "manifest.json"
RUN_LOG = "run.log"
QUALITY_SUBDIR = "quality"
ANOMALIES_SUBDIR = "anomalies"
MEMORY_SAMPLE_SECONDS = 0.05  # RSS sampling interval of the stage recorder
# Packages whose versions the manifest records (the ones that shape the numbers and the rendering).
MANIFEST_PACKAGES = (
    "haocha",
    "pandas",
    "numpy",
    "pyarrow",
    "pandera",
    "matplotlib",
    "papermill",
    "nbconvert",
    "nbformat",
    "ipykernel",
    "weasyprint",
    "pydyf",
    "chinesecalendar",
    "openpyxl",
)
STAGE_LABELS = {
    "ingest": "按需导入",
    "synth": "准备内置合成数据",
    "load": "读取规范表",
    "quality": "数据质检",
    "tables": "附件表格",
    "anomalies": "异常发现",
    "notebook": "执行通报 notebook",
    "html": "生成 HTML",
    "pdf": "生成 PDF",
}


class BulletinFailed(RuntimeError):
    """A stage failed; the message is what the user reads (Chinese), the previous outputs are intact."""


# --- stage recorder ---------------------------------------------------------------------------


@dataclass
class StageRecord:
    """Wall time, CPU time and peak memory (this process and its children, e.g. the kernel) of a stage."""

    name: str
    label: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    status: str = "running"


@dataclass
class Recorder:
    """Times each stage, samples peak memory, and reports progress (terminal) or logs (otherwise)."""

    interactive: bool = False
    stages: list[StageRecord] = field(default_factory=list)

    def _rss(self, proc: psutil.Process) -> int:
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        """Record one stage; progress goes to stderr on a terminal, to the log otherwise."""
        record = StageRecord(name, STAGE_LABELS.get(name, name))
        self.stages.append(record)
        proc = psutil.Process()
        peak = [self._rss(proc)]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(MEMORY_SAMPLE_SECONDS):
                peak[0] = max(peak[0], self._rss(proc))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        if self.interactive:
            print(f"… {record.label}", file=sys.stderr, flush=True)
        log.info("开始：%s", record.label)
        t0, c0 = time.perf_counter(), _cpu_seconds(proc)
        try:
            yield record
            record.status = "ok"
        except BaseException:
            record.status = "failed"
            raise
        finally:
            stop.set()
            sampler.join()
            peak[0] = max(peak[0], self._rss(proc))
            record.seconds = round(time.perf_counter() - t0, 3)
            record.cpu_seconds = round(_cpu_seconds(proc) - c0, 3)
            record.peak_rss_mb = round(peak[0] / 2**20, 1)
            line = f"{record.label}：{record.seconds:.1f} 秒，峰值内存 {record.peak_rss_mb:.0f} MB"
            if record.status == "failed":
                line = f"{record.label}：失败（{record.seconds:.1f} 秒）"
            if self.interactive:
                print(("✓ " if record.status == "ok" else "✗ ") + line, file=sys.stderr, flush=True)
            log.info(line)

    def as_list(self) -> list[dict]:
        """Stage records for the manifest."""
        return [vars(s).copy() for s in self.stages]


def _cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


# --- data -------------------------------------------------------------------------------------


def resolve_data_dir(ref: CityReference, period: Period, data_dir: str | Path | None) -> Path:
    """The canonical tables to use: the folder given, else the built-in synthetic data (generated once)."""
    if data_dir:
        path = Path(data_dir)
        if not path.is_absolute():
            path = (Path.cwd() / path) if (Path.cwd() / path).exists() else PROJ_ROOT / path
        if not path.exists():
            raise HaochaInputError(
                "规范表目录不存在", file=str(data_dir), fix="检查 --data 路径，或省略以使用内置合成数据"
            )
        return path
    return Path(synth.ensure_default_data(city=ref.key, period=period.label))


def has_period(data_dir: Path, period: Period) -> bool:
    """Whether the folder holds cases for the period (a partition overlapping it, or flat files)."""
    for label in storage.available_periods(data_dir):
        try:
            p = parse_period(label)
        except HaochaInputError:
            return True
        if p.start <= period.end and p.end >= period.start:
            return True
    return any((data_dir / f"cases.{ext}").exists() for ext in ("parquet", "csv"))


def ingest_if_needed(
    ref: CityReference, period: Period, data_dir: Path | None, inbox: Path | None, profile: Path | None
) -> tuple[Path, str]:
    """Make sure canonical tables of the period exist; ingest the inbox's exports when they do not.

    Returns:
        The data folder and what was done (for the log and the manifest).
    """
    if data_dir is None:
        return resolve_data_dir(ref, period, None), "内置合成数据"
    data_dir = Path(data_dir)
    if data_dir.exists() and has_period(data_dir, period):
        return data_dir, "已有规范表，无需导入"
    if not (inbox and profile):
        raise HaochaInputError(
            f"数据目录中没有统计期 {period.label} 的规范表",
            file=str(data_dir),
            fix="用 --inbox（原始导出目录）与 --profile（数据来源配置）让 haocha run 先导入，"
            "或先运行 haocha ingest",
        )
    files = sorted(p for p in Path(inbox).iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise HaochaInputError("待导入目录中没有文件", file=str(inbox), fix="放入该统计期的原始导出文件")
    ingest.ingest_files(Path(profile), files, ref, period, data_dir)
    return data_dir, f"已导入 {len(files)} 个文件"


def load_data(data_dir: Path, period: Period) -> dict[str, pd.DataFrame]:
    """Every canonical column, through the one loading window (the period and the one before)."""
    return storage.load_window(data_dir, period)


def compute(
    ref: CityReference,
    period: Period,
    data_dir: Path,
    extracted_on: str | None = None,
    *,
    recorder: Recorder | None = None,
    out_dir: Path | None = None,
) -> StageResults:
    """Run quality, tables and anomalies on the period's canonical tables (outputs written when asked).

    Args:
        ref: the city.
        period: the statistical period.
        data_dir: canonical tables.
        extracted_on: 数据提取时间 for the 备注 lines (YYYY-MM-DD), or None to let the tables decide.
        recorder: stage recorder (a silent one when None).
        out_dir: where to write the annex CSV/XLSX, quality and findings outputs (None: nothing written).
    """
    recorder = recorder or Recorder()
    with recorder.stage("load"):
        data = load_data(data_dir, period)
        history = anomalies.load_history(data_dir, period)  # earlier quarters stored beside it, if any
        log.info("异常发现：%s", anomalies.history_note(period, history))
    with recorder.stage("quality"):
        report = quality.run_quality(ref, data, period)
        if out_dir is not None:
            quality.write_outputs(report, Path(out_dir) / QUALITY_SUBDIR)
    with recorder.stage("tables"):
        extraction = date.fromisoformat(extracted_on) if extracted_on else None
        result = tables.build_tables(ref, data, period, extracted_on=extraction)
        if out_dir is not None:
            tables.write_outputs(result, Path(out_dir))
    with recorder.stage("anomalies"):
        findings = anomalies.detect(ref, data, period, history=history)
        problems = anomalies.problems_paragraph(findings, ref, period)
        if out_dir is not None:
            anomalies.write_outputs(findings, Path(out_dir) / ANOMALIES_SUBDIR)
    return StageResults(
        tables=result, quality=report, findings=findings, problems=problems, extracted_on=extracted_on
    )


def load_context(
    city: str,
    period: str,
    data_dir: str | None = None,
    extracted_on: str | None = None,
    narrative_file: str | None = None,
    results_file: str | None = None,
    run_id: str = "",
    issued_on: str | None = None,
) -> BulletinContext:
    """The notebook's one entry point: the stage results turned into a :class:`BulletinContext`.

    The results are precomputed by ``haocha bulletin`` (``results_file``), or computed here when the
    notebook runs on its own.

    Args:
        city: name under ``data/reference/`` or path to a reference folder.
        period: statistical period label.
        data_dir: canonical tables; empty means the built-in synthetic data.
        extracted_on: 数据提取时间 (YYYY-MM-DD) for the 备注 lines; empty lets the tables decide.
        narrative_file: narrative template; empty means the city's ``bulletin.yml``.
        results_file: pickle written by the pipeline (skips recomputation).
        run_id: the pipeline's run id, shown in the page metadata.
        issued_on: date of the 落款 (YYYY-MM-DD); empty means today.
    """
    ref = load_city(city)
    per = parse_period(period)
    if results_file:
        with open(results_file, "rb") as fh:
            results = pickle.load(fh)
    else:
        results = compute(ref, per, resolve_data_dir(ref, per, data_dir), extracted_on)
    return render.build_context(
        ref,
        per,
        results,
        narrative_file=narrative_file,
        run_id=run_id,
        issued_on=date.fromisoformat(issued_on) if issued_on else None,
    )


# --- manifest ---------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_files(data_dir: Path, period: Period, ref: CityReference, narrative: Path | None) -> list[Path]:
    """Files a run reads: the canonical tables it loads, reference data, template and notebook."""
    period = period.with_previous()
    files: list[Path] = []
    for table in ("cases", "evaluations", "rectifications"):
        parts = storage.partitions(data_dir, table)
        if parts:
            for label, folder in parts.items():
                try:
                    p = parse_period(label)
                    keep = p.start <= period.end and p.end >= period.start
                except HaochaInputError:
                    keep = True
                if keep:
                    files.extend(sorted(folder.glob("*.parquet")))
        else:
            files.extend(f for f in (data_dir / f"{table}.parquet", data_dir / f"{table}.csv") if f.exists())
    files.extend(
        sorted(f for f in Path(ref.path).iterdir() if f.is_file() and f.suffix in (".csv", ".yml", ".yaml"))
    )
    if narrative is not None:
        files.append(Path(narrative))
    files.append(NOTEBOOK)
    return list(dict.fromkeys(files))


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the output, and of Python."""
    versions = {"python": platform.python_version()}
    for name in MANIFEST_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "未安装"
    return versions


def _display_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(PROJ_ROOT))
    except ValueError:
        return str(path)


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


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _notebook_failure(err: Exception) -> str:
    """The failing cell's error, as the user reads it."""
    ename = getattr(err, "ename", type(err).__name__)
    evalue = _strip_ansi(str(getattr(err, "evalue", err)))
    count = getattr(err, "exec_count", None)
    tb = [_strip_ansi(line) for line in (getattr(err, "traceback", None) or [])]
    tail = "\n".join(line for line in "\n".join(tb).splitlines()[-12:] if line.strip())
    where = f"第 {count} 个执行单元" if count else "某个单元"
    return f"通报 notebook 在{where}出错：{ename}: {evalue}\n{tail}".rstrip()


@contextmanager
def _stderr_to(path: Path | None) -> Iterator[None]:
    """Send file descriptor 2 (inherited by the kernel process) to ``path``; a no-op when None.

    The kernel prints start-up notices on its stderr; unattended runs keep them in the run log
    rather than in cron's mail.
    """
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def execute_notebook(
    output: Path, parameters: dict[str, Any], interactive: bool, log_file: Path | None = None
) -> None:
    """Execute the bulletin notebook with papermill: typed parameters, the project kernel, explicit cwd.

    Args:
        output: the executed notebook to write.
        parameters: typed values for the ``parameters`` cell (never ``-p`` strings).
        interactive: show papermill's progress bar (a terminal).
        log_file: when not interactive, where the kernel's own stderr goes.
    """
    import papermill as pm

    with _stderr_to(None if interactive else log_file):
        pm.execute_notebook(
            str(NOTEBOOK),
            str(output),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            cwd=str(PROJ_ROOT),
            progress_bar=interactive,
            log_output=False,
        )


def _cell_durations(notebook: Path) -> list[dict]:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    out = []
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("papermill", {})
        if cell.cell_type == "code" and meta.get("duration") is not None:
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            out.append({"cell": i, "seconds": round(float(meta["duration"]), 3), "source": first[:80]})
    return out


def _publish(staging: Path, target: Path, run_id: str) -> None:
    """Swap the finished folder into place: the old outputs are replaced only by complete new ones."""
    old = target.parent / f".{target.name}.old-{run_id}"
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        if old.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _keep_failed(staging: Path, target: Path, run_id: str) -> Path | None:
    if not staging.exists():
        return None
    for previous in target.parent.glob(f".{target.name}.failed-*"):
        shutil.rmtree(previous, ignore_errors=True)
    failed = target.parent / f".{target.name}.failed-{run_id}"
    os.replace(staging, failed)
    return failed


def build_bulletin(
    city: str | Path,
    period: str,
    data_dir: Path | None = None,
    out_dir: Path | None = None,
    extracted_on: str | None = None,
    narrative_file: Path | None = None,
    *,
    ingest: bool = False,
    inbox: Path | None = None,
    profile: Path | None = None,
    interactive: bool = False,
    pdf: bool = True,
) -> RunResult:
    """Produce the bulletin of one city and period into ``out_dir`` (default ``reports/<city>/<period>/``).

    Args:
        city: reference name or folder.
        period: period label, or ``latest`` (the last complete quarter).
        data_dir: canonical tables; None means the built-in synthetic data.
        out_dir: target folder, replaced atomically on success.
        extracted_on: 数据提取时间 (YYYY-MM-DD) for the 备注 lines.
        narrative_file: narrative template; None means the city's ``bulletin.yml``.
        ingest: run the ingest-if-needed stage first (``haocha run``).
        inbox: raw exports to ingest when the period is missing.
        profile: their source profile.
        interactive: print progress per stage (a terminal).
        pdf: also print the PDF (benchmarks of the HTML alone may turn it off).

    Raises:
        BulletinFailed: a stage failed (the failing notebook cell's error included); the previous
            outputs of the period are intact.
        HaochaInputError: bad input (exit status 2 in the CLI).
    """
    ref = load_city(city)
    per = resolve_period(period)
    if extracted_on:
        try:
            date.fromisoformat(str(extracted_on))
        except ValueError as err:
            raise HaochaInputError(
                f"数据提取时间“{extracted_on}”无法识别",
                column="--extracted-on",
                fix="写成 YYYY-MM-DD，如 2023-07-04",
            ) from err
    target = Path(out_dir) if out_dir else REPORTS_DIR / ref.key / per.label
    target = target if target.is_absolute() else Path.cwd() / target
    run_id = new_run_id()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{run_id}"
    staging.mkdir()
    file_log = logging.FileHandler(staging / RUN_LOG, encoding="utf-8")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(file_log)
    log.setLevel(logging.INFO)
    recorder = Recorder(interactive=interactive)
    started = datetime.now()
    t_start = time.perf_counter()
    log.info("运行 %s：城市 %s，统计期 %s，输出 %s", run_id, ref.city_name, per.label, _display_path(target))
    try:
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
        if not extracted_on and (recorded := extraction_date(data_path, per)) is not None:
            extracted_on = recorded.isoformat()  # as recorded by ingest or synth for this data
        narrative = render.narrative_path(ref, narrative_file)
        render.load_narrative(narrative)  # a bad template fails before any work
        results = compute(ref, per, data_path, extracted_on, recorder=recorder, out_dir=staging)
        results_file = staging / RESULTS_PICKLE
        with open(results_file, "wb") as fh:
            pickle.dump(results, fh, protocol=pickle.HIGHEST_PROTOCOL)
        del results
        parameters = {
            "city": str(ref.path) if Path(str(city)).is_dir() else ref.key,
            "period": per.label,
            "data_dir": str(data_path),
            "extracted_on": extracted_on or "",
            "narrative_file": str(narrative),
            "results_file": str(results_file),
            "run_id": run_id,
            "issued_on": started.date().isoformat(),
        }
        notebook_out = staging / "bulletin.ipynb"
        with recorder.stage("notebook"):
            try:
                execute_notebook(notebook_out, parameters, interactive, staging / RUN_LOG)
            except Exception as err:
                if type(err).__name__ == "PapermillExecutionError":
                    raise BulletinFailed(_notebook_failure(err)) from err
                raise
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
                render.html_to_pdf(html, pdf_path, staging)
        manifest = {
            "run_id": run_id,
            "city": ref.key,
            "city_name": ref.city_name,
            "period": per.label,
            "period_range": [per.start.isoformat(), per.end.isoformat()],
            "started_at": started.isoformat(timespec="seconds"),
            "parameters": {k: v for k, v in parameters.items() if k != "results_file"},
            "data_dir": _display_path(data_path),
            "ingest": ingest_note,
            "inputs": {_display_path(f): sha256(f) for f in input_files(data_path, per, ref, narrative)},
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
            if p.is_file() and p.name != RUN_LOG
        }
        if pdf:
            manifest["pdf_pages"] = _pdf_pages(pdf_path)
        (staging / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        log.info("完成：%s（%.1f 秒）", _display_path(target), manifest["total_seconds"])
        log.removeHandler(file_log)
        file_log.close()
        _publish(staging, target, run_id)
        return RunResult(run_id, target, target / "bulletin.html", target / "bulletin.pdf", manifest)
    except BaseException as err:
        log.error("失败：%s", err, exc_info=not isinstance(err, BulletinFailed | HaochaInputError))
        log.removeHandler(file_log)
        file_log.close()
        failed = _keep_failed(staging, target, run_id)
        if isinstance(err, BulletinFailed | HaochaInputError) or not isinstance(err, Exception):
            if failed is not None and isinstance(err, BulletinFailed):
                err.args = (
                    f"{err.args[0]}\n（未改动已有输出；本次运行的中间文件：{_display_path(failed)}）",
                )
            raise
        raise BulletinFailed(f"通报生成失败（{type(err).__name__}）：{err}") from err


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
    data_dir: Path | None,
    out_dir: Path | None,
    extracted_on: str | None,
    narrative_file: Path | None,
    *,
    ingest: bool,
    inbox: Path | None = None,
    profile: Path | None = None,
) -> None:
    """What ``haocha bulletin`` and ``haocha run`` do: run, report, and exit non-zero on failure."""
    interactive = sys.stderr.isatty()
    ref = load_city(city)
    log_dir = (Path(out_dir).parent if out_dir else REPORTS_DIR / ref.key) / "logs"
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
            )
    except BulletinFailed as err:
        print(f"错误：{err}", file=sys.stderr)
        sys.exit(1)
    if interactive:
        total = result.manifest.get("total_seconds", 0)
        print(
            f"通报已生成：{_display_path(result.out_dir)}（{total:.1f} 秒，运行 {result.run_id}）",
            file=sys.stderr,
        )
