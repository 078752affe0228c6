"""The stage recorder (wall, CPU and peak memory of every stage) and what manifest.json records."""

from __future__ import annotations

import hashlib
import logging
import platform
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psutil

from haocha_analysis.core.config import PROJ_ROOT, is_url
from haocha_analysis.core.periods import Period
from haocha_analysis.core.reference import CityReference
from haocha_analysis.ingest import storage
from haocha_analysis.ingest.storage import _overlaps
from haocha_analysis.pipeline.notebook import NOTEBOOK

log = logging.getLogger("haocha.pipeline")

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
    "engine": "Dask 集群计算（附件计数、质检、异常发现、差评台账记录）",
    "quality": "数据质检",
    "tables": "附件表格",
    "anomalies": "异常发现",
    "rectification": "差评整改台账",
    "notebook": "执行通报 notebook",
    "html": "生成 HTML",
    "pdf": "生成 PDF",
    "docx": "生成 Word 公文",
    "units": "生成单位报告",
    "unit-history": "单位报告往期计数（Dask）",
}


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
    """CPU seconds of the process tree: this process, its ended children (a stopped kernel), live ones."""
    own = proc.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for p in proc.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


# --- manifest ---------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# What a filesystem's listing says of a file's content, most telling first: S3's ETag (an MD5 for a
# simple upload), a checksum or MD5 some stores give, else the modification or creation time.
URL_STAMP_KEYS = ("ETag", "etag", "checksum", "md5", "mtime", "LastModified", "last_modified", "created")
CANONICAL_TABLES = ("cases", "evaluations", "rectifications")


def input_records(
    data: Path | str, period: Period, ref: CityReference, narrative: Path | None
) -> dict[str, object]:
    """manifest.json's ``inputs``: each file a run reads → its SHA-256.

    The canonical tables at a URL are not downloaded to be hashed: each is recorded with its size and
    what the filesystem's listing gives (:func:`url_file_records`).
    """
    if not is_url(data):
        return {_display_path(f): sha256(f) for f in input_files(data, period, ref, narrative)}
    records: dict[str, object] = url_file_records(str(data), period)
    records.update({_display_path(f): sha256(f) for f in input_files(None, period, ref, narrative)})
    return records


def url_file_records(url: str, period: Period) -> dict[str, dict]:
    """The canonical files of the loading window at a URL → ``{"size": …, <stamp>: …}`` (no download).

    The stamp is the first of :data:`URL_STAMP_KEYS` the filesystem's ``info`` gives (S3: ``ETag``;
    a local ``file://`` folder or HDFS: ``mtime``; ``memory://``: ``created``).
    """
    fs, root = storage.url_root(url)
    window = period.with_previous()
    records = {}
    for table in CANONICAL_TABLES:
        parts = storage.url_partitions(url, table)
        if parts:
            paths = [
                f
                for label, folder in parts.items()
                if _overlaps(label, window)
                for f in sorted(fs.glob(f"{folder}/*.parquet"))
            ]
        else:
            paths = [f for f in (f"{root}/{table}.parquet", f"{root}/{table}.csv") if fs.isfile(f)]
        for path in paths:
            info = fs.info(path)
            record = {"size": info.get("size")}
            stamp = next((k for k in URL_STAMP_KEYS if info.get(k) is not None), None)
            if stamp is not None:
                record[stamp] = str(info[stamp]).strip('"')
            records[f"{url.rstrip('/')}/{path.removeprefix(root + '/')}"] = record
    return records


def input_files(
    data_dir: Path | None, period: Period, ref: CityReference, narrative: Path | None
) -> list[Path]:
    """Files a run reads: the canonical tables it loads, reference data, template and notebook.

    ``data_dir`` None: the reference files, template and notebook only (the tables are at a URL).
    """
    period = period.with_previous()
    files: list[Path] = []
    for table in CANONICAL_TABLES if data_dir is not None else ():
        parts = storage.partitions(data_dir, table)
        if parts:
            for label, folder in parts.items():
                if _overlaps(label, period):
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


def _display_path(path: Path | str) -> str:
    if is_url(path):
        return str(path)  # a URL as given (Path() would turn s3://b/x into s3:/b/x)
    try:
        return str(Path(path).resolve().relative_to(PROJ_ROOT))
    except ValueError:
        return str(path)
