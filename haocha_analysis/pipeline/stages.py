"""The run's data and compute stages: which data, ingest if needed, quality → tables → ledger → anomalies."""

from __future__ import annotations

import logging
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import pandas as pd

from haocha_analysis import quality
from haocha_analysis.analysis import annexes as tables
from haocha_analysis.analysis import anomalies, rectification, rectification_report
from haocha_analysis.bulletin import render
from haocha_analysis.bulletin.render import BulletinContext, StageResults
from haocha_analysis.core import linkage, outputs
from haocha_analysis.core.calendar import add_working_days
from haocha_analysis.core.config import PROJ_ROOT, is_url
from haocha_analysis.core.coverage import Coverage, coverage, require_records
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, parse_period
from haocha_analysis.core.reference import CityReference, load_city
from haocha_analysis.core.settings import as_plain as settings_as_plain
from haocha_analysis.core.settings import for_city as settings_for_city
from haocha_analysis.core.settings import settings_path
from haocha_analysis.engine import EngineOptions, api
from haocha_analysis.ingest import build as ingest
from haocha_analysis.ingest import storage
from haocha_analysis.pipeline.manifest import Recorder
from haocha_analysis.quality.report import QualityCounts, quality_report
from haocha_analysis.synth import generate as synth

log = logging.getLogger("haocha.pipeline")


class BulletinFailed(RuntimeError):
    """A stage failed; the message is what the user reads (Chinese), the previous outputs are intact."""


DEFAULT_ISSUE_LAG_WORKING_DAYS = 5  # 成文日期: working days after the extraction date (city.yml)


QUALITY_SUBDIR = "quality"
ANOMALIES_SUBDIR = "anomalies"
RECTIFICATION_SUBDIR = "rectification"


@dataclass(frozen=True)
class RunSettings:
    """The thresholds of one run: quality's and the detectors' (a city's settings.yml applied)."""

    quality: quality.QualitySettings = field(default_factory=quality.QualitySettings)
    anomalies: anomalies.Settings = field(default_factory=anomalies.Settings)
    file: Path | None = None

    @classmethod
    def for_city(cls, ref: CityReference, settings_file: str | Path | None = None) -> RunSettings:
        """The city's settings.yml (or the file given) applied to the defaults, validated (core.settings)."""
        return cls(
            quality=settings_for_city(quality.QualitySettings, ref.path, "quality", settings_file),
            anomalies=settings_for_city(anomalies.Settings, ref.path, "anomalies", settings_file),
            file=settings_path(ref.path, settings_file),
        )

    def as_dict(self) -> dict:
        """For manifest.json."""
        return {
            "file": str(self.file) if self.file else None,
            "timing": settings_as_plain(self.quality.timing),
            "quality": settings_as_plain(self.quality),
            "anomalies": settings_as_plain(self.anomalies),
        }


# --- data -------------------------------------------------------------------------------------


def resolve_data_dir(ref: CityReference, period: Period, data_dir: str | Path | None) -> Path | str:
    """The canonical tables: the folder or URL given, else the built-in synthetic data (generated once).

    A URL (``--engine dask``) is returned as given: the workers read it, nothing is copied here.
    """
    if data_dir and is_url(data_dir):
        if not data_exists(data_dir):
            raise HaochaInputError(
                "规范表地址不存在或无法访问", file=str(data_dir), fix="检查 --data 的地址与访问凭据"
            )
        return str(data_dir)
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


def data_exists(data_dir: Path | str) -> bool:
    """Whether the data folder, or the folder at a URL, exists (a listing, nothing read)."""
    if is_url(data_dir):
        fs, root = storage.url_root(str(data_dir))
        return fs.isdir(root)
    return Path(data_dir).exists()


def has_period(data_dir: Path | str, period: Period) -> bool:
    """Whether the folder (or URL) holds cases for the period (a partition overlapping it, or flat files)."""
    for label in storage.available_periods(data_dir):
        try:
            p = parse_period(label)
        except HaochaInputError:
            return True
        if p.start <= period.end and p.end >= period.start:
            return True
    if is_url(data_dir):
        fs, root = storage.url_root(str(data_dir))
        return any(fs.isfile(f"{root}/cases.{ext}") for ext in ("parquet", "csv"))
    return any((Path(data_dir) / f"cases.{ext}").exists() for ext in ("parquet", "csv"))


def ingest_if_needed(
    ref: CityReference,
    period: Period,
    data_dir: Path | str | None,
    inbox: Path | None,
    profile: Path | None,
) -> tuple[Path | str, str]:
    """Make sure canonical tables of the period exist; ingest the inbox's exports when they do not.

    Returns:
        The data folder and what was done (for the log and the manifest).
    """
    if data_dir is None:
        return resolve_data_dir(ref, period, None), "内置合成数据"
    if data_exists(data_dir) and has_period(data_dir, period):
        return data_dir, "已有规范表，无需导入"
    if not (inbox and profile):
        raise HaochaInputError(
            f"数据目录中没有统计期 {period.title_cn()} 的规范表",
            file=str(data_dir),
            fix="用 --inbox（原始导出目录）与 --profile（数据来源配置）让 haocha run 先导入，"
            "或先运行 haocha ingest",
        )
    data_dir = Path(data_dir)
    files = sorted(p for p in Path(inbox).iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise HaochaInputError("待导入目录中没有文件", file=str(inbox), fix="放入该统计期的原始导出文件")
    ingest.ingest_files(Path(profile), files, ref, period, data_dir)
    outputs.mark(data_dir, "data")  # the folder is a haocha data folder from now on
    return data_dir, f"已导入 {len(files)} 个文件"


def refuse_ingest_into_url(data_dir: Path | str | None, inbox: Path | None) -> None:
    """``haocha run --inbox`` ingests into a local folder only: into a URL is exit 2, nothing written."""
    if inbox is not None and data_dir is not None and is_url(data_dir):
        raise HaochaInputError(
            "haocha run 不能把 --inbox 中的原始导出导入到地址（URL）",
            file=str(data_dir),
            column="--data",
            fix="先用 haocha ingest 导入到本地目录并上传到对象存储后再用 --data 地址运行，"
            "或 --data 给出本地目录以便 haocha run 导入",
        )


def load_data(data_dir: Path, period: Period) -> dict[str, pd.DataFrame]:
    """Every canonical column, through the one loading window (the period and the one before)."""
    return storage.load_window(data_dir, period)


@dataclass(frozen=True)
class EngineAggregates:
    """What the engine reduced the records to, for the stages that follow (``--engine dask``).

    Attributes:
        tables: the annexes (built from the engine's counts, comparisons included).
        coverage: the period's dates the records cover.
        quality: the quality report's counts.
        findings: the anomaly findings.
        ledger_records: the 差评, the records that judge them and the rectification rows.
    """

    tables: tables.TablesResult
    coverage: Coverage
    quality: QualityCounts
    findings: pd.DataFrame
    ledger_records: dict[str, pd.DataFrame]


def engine_aggregates(
    ref: CityReference,
    period: Period,
    data_dir: Path,
    engine: EngineOptions,
    settings: RunSettings,
    extracted_on: date | None,
    compare: bool,
) -> EngineAggregates:
    """Every record-touching step of a run on the engine, in one session: records → aggregates.

    The steps are submitted together (one thread each), so that a city's tables, quality and
    anomaly tasks run on different workers at once; a progress bar (on a terminal) follows the
    quality step, the longest.

    Raises:
        HaochaInputError: the period holds no record (the tables' refusal is the one reported).
    """
    quiet = replace(engine, progress=False)
    with api.session(engine), ThreadPoolExecutor(4, thread_name_prefix="engine") as steps:
        tables_done = steps.submit(api.tables_result, data_dir, period, ref, quiet, extracted_on, compare)
        quality_done = steps.submit(api.quality_counts, data_dir, period, ref, settings.quality, engine)
        anomalies_done = steps.submit(
            api.anomaly_findings, data_dir, period, ref, anomalies.HISTORY_PERIODS, quiet, settings.anomalies
        )
        ledger_done = steps.submit(api.ledger_records, data_dir, period, quiet)
        result, cov = tables_done.result()
        counts, _ = quality_done.result()
        findings, _, _ = anomalies_done.result()
        records, _ = ledger_done.result()
    return EngineAggregates(result, cov, counts, findings, records)


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
    engine: EngineOptions | None = None,
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
        engine: the engine that reduces the records (None or pandas: loaded in this process; dask:
            :func:`engine_aggregates` on a cluster, every later step unchanged).
    """
    recorder = recorder or Recorder()
    settings = settings or RunSettings()
    extraction = date.fromisoformat(extracted_on) if extracted_on else None
    agg = None
    if engine is not None and engine.engine != "pandas":
        with recorder.stage("engine"):
            agg = engine_aggregates(ref, period, data_dir, engine, settings, extraction, compare)
            cov = agg.coverage
    else:
        with recorder.stage("load"):
            data = load_data(data_dir, period)
            cov = coverage(data, period)
            require_records(cov, data_dir, storage.available_periods(data_dir))
            history = anomalies.load_history(data_dir, period)  # earlier quarters stored beside it, if any
            log.info("异常发现：%s", anomalies.history_note(period, history))
    if cov.partial:
        log.warning("警告：%s", cov.sentence().removeprefix("需要说明的是，"))
    with recorder.stage("quality"):
        if agg is None:
            report = quality.run_quality(ref, data, period, settings.quality)
        else:
            report = quality_report(ref, agg.quality, period, settings.quality)
        report.figures["data_coverage"] = cov.as_dict()  # as haocha quality writes it
        if out_dir is not None:
            outputs.mark(Path(out_dir) / QUALITY_SUBDIR, "quality")
            quality.write_outputs(report, Path(out_dir) / QUALITY_SUBDIR)
    with recorder.stage("tables"):
        if agg is None:
            bases = tables.load_comparison_data(data_dir, period) if compare else {}
            result = tables.build_tables(
                ref, data, period, extracted_on=extraction, compare=compare, history=bases
            )
        else:
            result = agg.tables
        result.headline["data_coverage"] = cov.as_dict()
        if out_dir is not None:
            tables.write_outputs(result, Path(out_dir))
    with recorder.stage("rectification"):  # as of the 数据提取时间 the annexes print
        if agg is None:
            ledger = rectification.ledger_for(ref, data, data_dir, period, result.extracted_on)
        else:
            ledger = rectification.build_ledger(ref, agg.ledger_records, period, result.extracted_on)
        if out_dir is not None:
            rectification_report.write_outputs(ledger, Path(out_dir) / RECTIFICATION_SUBDIR)
    with recorder.stage("anomalies"):
        if agg is None:
            findings = anomalies.detect(ref, data, period, history=history, settings=settings.anomalies)
        else:
            findings = agg.findings
            log.info("异常发现：%s", findings.attrs.get("history_note", ""))
        problems = anomalies.problems_paragraph(findings, ref, period)
        if out_dir is not None:
            outputs.mark(Path(out_dir) / ANOMALIES_SUBDIR, "anomalies")
            anomalies.write_outputs(findings, Path(out_dir) / ANOMALIES_SUBDIR)
    linkage.forget()  # the loaded frames go when the stages are done, not with the cached linkage
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
