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

import hashlib
import json
import logging
import os
import pickle
import platform
import re
import shutil
import sys
import tempfile
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
from haocha_analysis.analysis import anomalies, rectification, rectification_report
from haocha_analysis.bulletin import docx, index, render
from haocha_analysis.bulletin.render import BulletinContext, StageResults
from haocha_analysis.core import outputs
from haocha_analysis.core.calendar import add_working_days
from haocha_analysis.core.config import (
    KERNEL_NAME,
    NOTEBOOKS_DIR,
    PROJ_ROOT,
    REPORTS_DIR,
    SYNTHETIC_DIR,
    reports_path,
)
from haocha_analysis.core.coverage import coverage, require_records
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, parse_period, resolve_period
from haocha_analysis.core.reference import CityReference, load_city
from haocha_analysis.core.rules import RecordTiming
from haocha_analysis.core.settings import apply as apply_settings
from haocha_analysis.core.settings import as_plain as settings_as_plain
from haocha_analysis.core.settings import load_settings, settings_path
from haocha_analysis.ingest import build as ingest
from haocha_analysis.ingest import storage
from haocha_analysis.ingest.storage import extraction_date
from haocha_analysis.pipeline import units
from haocha_analysis.synth import generate as synth

log = logging.getLogger("haocha.pipeline")

NOTEBOOK = NOTEBOOKS_DIR / "bulletin.ipynb"
RESULTS_PICKLE = "_results.pkl"  # hand-over from the stages to the notebook; removed before publishing
MANIFEST = "manifest.json"
RUN_LOG = "run.log"
DEFAULT_ISSUE_LAG_WORKING_DAYS = 5  # 成文日期: working days after the extraction date (city.yml)
# Kernel connection files live in the staging folder (removed with it), one per executed notebook:
# unit reports run several kernels at once in one staging folder.
KERNEL_CONNECTION_GLOB = ".kernel-*.json"
QUALITY_SUBDIR = "quality"
ANOMALIES_SUBDIR = "anomalies"
RECTIFICATION_SUBDIR = "rectification"
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
    "python-docx",
)
STAGE_LABELS = {
    "ingest": "按需导入",
    "synth": "准备内置合成数据",
    "load": "读取规范表",
    "quality": "数据质检",
    "tables": "附件表格",
    "anomalies": "异常发现",
    "rectification": "差评整改台账",
    "notebook": "执行通报 notebook",
    "html": "生成 HTML",
    "pdf": "生成 PDF",
    "docx": "生成 Word 公文",
    "units": "生成单位报告",
}


@dataclass(frozen=True)
class RunSettings:
    """The thresholds of one run: quality's and the detectors' (a city's settings.yml applied)."""

    quality: quality.QualitySettings = field(default_factory=quality.QualitySettings)
    anomalies: anomalies.Settings = field(default_factory=anomalies.Settings)
    file: Path | None = None

    @classmethod
    def for_city(cls, ref: CityReference, settings_file: str | Path | None = None) -> RunSettings:
        """The city's settings.yml (or the file given) applied to the defaults, validated.

        The ``timing`` section (the 5-minute rule, the one clock-skew tolerance) is given to quality
        and to the detectors alike: one clock for both.
        """
        path = settings_path(ref.path, settings_file)
        sections = load_settings(path)
        timing = apply_settings(RecordTiming, sections["timing"], file=path, section="timing")
        shared = {"timing": timing} if sections["timing"] else {}
        return cls(
            quality=apply_settings(
                quality.QualitySettings, {**shared, **sections["quality"]}, file=path, section="quality"
            ),
            anomalies=apply_settings(
                anomalies.Settings, {**shared, **sections["anomalies"]}, file=path, section="anomalies"
            ),
            file=path,
        )

    def as_dict(self) -> dict:
        """For manifest.json."""
        return {
            "file": str(self.file) if self.file else None,
            "timing": settings_as_plain(self.quality.timing),
            "quality": settings_as_plain(self.quality),
            "anomalies": settings_as_plain(self.anomalies),
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
    progress: bool = False  # print one line per finished stage (the CLI: always)
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
            # A terminal gets marks; a pipe, cron or a notebook's ``!haocha`` gets plain lines.
            mark = ("✓ " if record.status == "ok" else "✗ ") if self.interactive else ""
            if self.progress:
                print(mark + line, file=sys.stderr, flush=True)
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


def latest_with_data(data_dir: Path, latest: Period) -> Period:
    """``latest`` for a data folder: the last complete quarter the folder holds, not today's.

    Data ending in 2023Q2 gives 2023Q2 in 2026. A folder without period partitions keeps ``latest``
    (the empty-period check then names what the folder holds).
    """
    held = []
    for label in storage.available_periods(data_dir) if data_dir.exists() else []:
        try:
            p = parse_period(label)
        except HaochaInputError:
            continue
        if p.end <= latest.end:
            held.append(p)
    if not held:
        return latest
    last = max(held, key=lambda p: p.end)
    return parse_period(f"{last.end.year}Q{(last.end.month - 1) // 3 + 1}")


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
    outputs.mark(data_dir, "data")  # the folder is a haocha data folder from now on
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
    compare: bool = False,
    settings: RunSettings | None = None,
) -> StageResults:
    """Run quality, tables and anomalies on the period's canonical tables (outputs written when asked).

    Args:
        ref: the city.
        period: the statistical period.
        data_dir: canonical tables.
        extracted_on: 数据提取时间 for the 备注 lines (YYYY-MM-DD), or None to let the tables decide.
        recorder: stage recorder (a silent one when None).
        compare: 环比/同比: the previous period and the same period a year earlier are loaded too.
        settings: thresholds (defaults when None).
        out_dir: where to write the annex CSV/XLSX, quality and findings outputs (None: nothing written).
    """
    recorder = recorder or Recorder()
    with recorder.stage("load"):
        data = load_data(data_dir, period)
        cov = coverage(data, period)
        require_records(cov, data_dir, storage.available_periods(data_dir))
        if cov.partial:
            log.warning("警告：%s", cov.sentence().removeprefix("需要说明的是，"))
        history = anomalies.load_history(data_dir, period)  # earlier quarters stored beside it, if any
        log.info("异常发现：%s", anomalies.history_note(period, history))
    with recorder.stage("quality"):
        settings = settings or RunSettings()
        report = quality.run_quality(ref, data, period, settings.quality)
        report.figures["data_coverage"] = cov.as_dict()  # as haocha quality writes it
        if out_dir is not None:
            outputs.mark(Path(out_dir) / QUALITY_SUBDIR, "quality")
            quality.write_outputs(report, Path(out_dir) / QUALITY_SUBDIR)
    with recorder.stage("tables"):
        extraction = date.fromisoformat(extracted_on) if extracted_on else None
        bases = {}
        for kind in tables.COMPARISONS if compare else ():
            shifted = period.shifted(kind)
            if shifted is not None and not coverage(base := load_data(data_dir, shifted), shifted).empty:
                bases[shifted.label] = base
        result = tables.build_tables(
            ref, data, period, extracted_on=extraction, compare=compare, history=bases
        )
        result.headline["data_coverage"] = cov.as_dict()
        if out_dir is not None:
            tables.write_outputs(result, Path(out_dir))
    with recorder.stage("rectification"):  # as of the 数据提取时间 the annexes print
        ledger = rectification.ledger_for(ref, data, data_dir, period, result.extracted_on)
        if out_dir is not None:
            rectification_report.write_outputs(ledger, Path(out_dir) / RECTIFICATION_SUBDIR)
    with recorder.stage("anomalies"):
        findings = anomalies.detect(ref, data, period, history=history, settings=settings.anomalies)
        problems = anomalies.problems_paragraph(findings, ref, period)
        if out_dir is not None:
            outputs.mark(Path(out_dir) / ANOMALIES_SUBDIR, "anomalies")
            anomalies.write_outputs(findings, Path(out_dir) / ANOMALIES_SUBDIR)
    return StageResults(
        tables=result,
        quality=report,
        findings=findings,
        problems=problems,
        extracted_on=extracted_on,
        coverage=cov,
        rectification=ledger,
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
    doc_number: str = "",
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
        issued_on: date of the 落款 (YYYY-MM-DD); empty means :func:`default_issue_date`.
        doc_number: 发文字号 (文号) printed above the title; empty prints none.
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
        issued_on=date.fromisoformat(issued_on)
        if issued_on
        else default_issue_date(ref, results.extracted_on),
        doc_number=doc_number,
    )


def default_issue_date(ref: CityReference, extracted_on: str | None) -> date:
    """成文日期 by default: the extraction date plus the city's lag in working days (city.yml).

    ``issue_lag_working_days`` (default 5) in city.yml; without an extraction date, today. A 2023Q2
    bulletin is thus dated in July 2023, not on the day someone re-runs it.
    """
    if not extracted_on:
        return date.today()
    lag = ref.meta.get("issue_lag_working_days", DEFAULT_ISSUE_LAG_WORKING_DAYS)
    if isinstance(lag, bool) or not isinstance(lag, int) or lag < 0:
        raise HaochaInputError(
            f"city.yml 的 issue_lag_working_days 取值“{lag}”无效",
            file=str(ref.path / "city.yml"),
            column="issue_lag_working_days",
            fix="写成不小于 0 的整数（数据提取后第几个工作日成文），如 5",
        )
    return add_working_days(date.fromisoformat(str(extracted_on)), lag)


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


# Notices Jupyter prints on every kernel start or stop that say nothing about the run: dropped.
KERNEL_NOISE = (
    "Kernel is running over TCP without encryption",
    "KeyboardInterrupt caught in kernel",
    "Use IPC transport or launch with kernel manager-provisioned CurveZMQ keys",
)


@contextmanager
def _stderr_to(path: Path | None) -> Iterator[None]:
    """Capture file descriptor 2 (inherited by the kernel process), drop Jupyter's noise, keep the rest.

    What remains goes to ``path`` (the run log of an unattended run) or back to stderr (a terminal).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not any(n in line for n in KERNEL_NOISE))
            if path is not None:  # the log exists even when everything was noise
                with open(path, "a", encoding="utf-8") as log_file:
                    log_file.write(kept)
            elif kept:
                sys.stderr.write(kept)


def execute_notebook(
    output: Path,
    parameters: dict[str, Any],
    interactive: bool,
    log_file: Path | None = None,
    *,
    notebook_path: Path | None = None,
) -> None:
    """Execute a notebook with papermill: typed parameters, the project kernel, explicit cwd.

    The kernel's connection file goes beside ``output`` (the run's staging folder), not into the system
    temporary folder, so that a killed run's file goes with its staging folder.

    Args:
        output: the executed notebook to write.
        parameters: typed values for the ``parameters`` cell (never ``-p`` strings).
        interactive: show papermill's progress bar (a terminal).
        log_file: when not interactive, where the kernel's own stderr goes.
        notebook_path: the notebook to run (default: the bulletin's).
    """
    import papermill as pm
    from traitlets.config import Config

    config = Config()
    config.KernelManager.connection_file = str(Path(output).parent / f".kernel-{Path(output).stem}.json")

    with _stderr_to(None if interactive else log_file):
        pm.execute_notebook(
            str(notebook_path or NOTEBOOK),
            str(output),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            cwd=str(PROJ_ROOT),
            progress_bar=interactive,
            log_output=False,
            config=config,
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


def preflight(
    ref: CityReference,
    period: Period,
    data_dir: Path | None,
    out_dir: Path | None,
    narrative_file: Path | None,
    *,
    ingest: bool = False,
    inbox: Path | None = None,
    profile: Path | None = None,
) -> tuple[Path, Path]:
    """Every check a run makes before it writes anything, so that bad input is exit 2 with nothing written.

    The narrative template (placeholders included), the output folder (``--out``, else
    ``reports/<city>/<period>/``) by the rule of :mod:`haocha_analysis.core.outputs`, and, for
    ``haocha run`` when the period is missing, the data folder it would ingest into.

    Returns:
        The output folder (absolute) and the narrative template.
    """
    narrative = render.narrative_path(ref, narrative_file)
    render.load_narrative(narrative)
    inputs = {
        "--city": ref.path,
        "--data": data_dir if data_dir else SYNTHETIC_DIR / ref.key,
        "--narrative": narrative_file,
        "--inbox": inbox,
        "--profile": profile,
    }
    target = outputs.check_out(
        Path(out_dir) if out_dir else reports_path(ref.key, period.label), "bulletin", inputs
    )
    missing = data_dir is not None and not (Path(data_dir).exists() and has_period(Path(data_dir), period))
    if ingest and missing and inbox and profile:  # haocha run will ingest into --data
        outputs.check_out(
            data_dir, "data", {"--inbox": inbox, "--profile": profile, "--city": ref.path}, option="--data"
        )
    return target, narrative


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
    progress: bool = False,
    issued_on: str | None = None,
    doc_number: str = "",
    compare: bool = False,
    settings_file: Path | None = None,
    unit_level: str | None = None,
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
        interactive: a terminal: progress marks and papermill's progress bar.
        pdf: also print the PDF (benchmarks of the HTML alone may turn it off).
        progress: print a line per finished stage on stderr (the CLI does, terminal or not).
        issued_on: 成文日期 (YYYY-MM-DD); None means the extraction date plus the city's lag.
        doc_number: 发文字号 printed above the title (empty: none).
        compare: 环比/同比 columns in the annexes and a sentence in the bulletin.
        settings_file: thresholds (settings.yml); None means the city's own, if any.
        unit_level: also make a report per unit of this level into ``units/`` (``haocha run``: districts).

    Raises:
        BulletinFailed: a stage failed (the failing notebook cell's error included); the previous
            outputs of the period are intact.
        HaochaInputError: bad input (exit status 2 in the CLI).
    """
    ref = load_city(city)
    per = resolve_period(period)
    if str(period).strip().lower() == "latest" and data_dir is not None:
        per = latest_with_data(Path(data_dir), per)
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
        ref, per, data_dir, out_dir, narrative_file, ingest=ingest, inbox=inbox, profile=profile
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
        results = compute(
            ref,
            per,
            data_path,
            extracted_on,
            recorder=recorder,
            out_dir=staging,
            compare=compare,
            settings=run_settings,
        )
        data_coverage = results.coverage.as_dict() if results.coverage is not None else None
        headline = {
            k: results.tables.headline.get(k)
            for k in ("total_cases", "total_evaluations", "evaluation_rate", "valid_bad_reviews")
        }
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
            "issued_on": issued_on or "",
            "doc_number": doc_number or "",
        }
        notebook_out = staging / "bulletin.ipynb"
        with recorder.stage("notebook"):
            try:
                execute_notebook(notebook_out, parameters, interactive, staging / RUN_LOG)
            except Exception as err:
                if type(err).__name__ == "PapermillExecutionError":
                    raise BulletinFailed(_notebook_failure(err)) from err
                raise
        with recorder.stage("docx"):  # the Word 公文, from the same context as the notebook's
            ctx = load_context(**parameters)
            docx.write_docx(ctx, staging / docx.DOCX_NAME, docx.template_path(ref))
            del ctx
        if unit_level:
            with recorder.stage("units"):  # the same stage results, read by every unit's notebook
                with open(results_file, "rb") as fh:
                    inputs = units.unit_inputs(parameters["city"], per, pickle.load(fh), data_path)
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
            "period_range": [per.start.isoformat(), per.end.isoformat()],
            "started_at": started.isoformat(timespec="seconds"),
            "parameters": {k: v for k, v in parameters.items() if k != "results_file"},
            "data_dir": _display_path(data_path),
            "ingest": ingest_note,
            "data_coverage": data_coverage,
            "settings": run_settings.as_dict(),
            "headline": headline,
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
    data_dir: Path | None = None,
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
) -> None:
    """What ``haocha bulletin`` and ``haocha run`` do: run, report, and exit non-zero on failure."""
    interactive = sys.stderr.isatty()
    ref = load_city(city)
    # Checks first: bad input is exit 2 before anything, the log included, is written.
    target, _ = preflight(
        ref,
        resolve_period(period),
        data_dir,
        out_dir,
        narrative_file,
        ingest=ingest,
        inbox=inbox,
        profile=profile,
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
        f"{manifest.get('city_name', '')} {manifest.get('period', '')} 通报已生成：{result.out_dir}"
        f"（{manifest.get('total_seconds', 0):.1f} 秒，运行 {result.run_id}{figures}）",
        flush=True,
    )
