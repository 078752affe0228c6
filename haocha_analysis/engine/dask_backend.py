"""The Dask backend: canonical Parquet from a folder or an fsspec URL, reduced on a cluster.

Locality first. Cases and their evaluations never cross a city, so a city's folder (``city=<key>/``
in a province folder, or a one-city folder itself) is a *locality group*: one task reads its window
(the period and the one before it; values checked as :mod:`haocha_analysis.ingest.storage` checks
them) and runs the reduction on it, exactly as the pandas engine does on the same folder, with no
shuffle. A group larger than ``EngineOptions.group_rows`` (a city larger than a worker) falls back
to ``dask.dataframe``: one task per Parquet file, the rows moved to their case's partition
(:mod:`.partition`), :mod:`.reduce` run per partition and the additive aggregates summed. Either way
only the small aggregates travel back to the client.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import dask
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from haocha_analysis.analysis.anomalies.run import history_periods
from haocha_analysis.analysis.anomalies.settings import Settings
from haocha_analysis.analysis.metrics import NEEDED_COLUMNS
from haocha_analysis.analysis.rectification import NEEDED_COLUMNS as LEDGER_COLUMNS
from haocha_analysis.core.config import BAD_SATISFACTION, local_path
from haocha_analysis.core.coverage import Coverage, coverage
from haocha_analysis.core.errors import HaochaInputError
from haocha_analysis.core.periods import Period, parse_period
from haocha_analysis.core.reference import CityReference, ClosedLoopLimits
from haocha_analysis.core.schemas import DTYPES, coerce
from haocha_analysis.engine import BYTES_PER_ROW, GROUP_ROWS, EngineOptions
from haocha_analysis.engine.pandas_backend import anomaly_findings
from haocha_analysis.engine.partition import (
    GROUP,
    ORDER,
    PART,
    ROWS_PER_FILE_BITS,
    case_groups,
    evaluation_groups,
    in_load_order,
    load_order,
    merge_groups,
    partition_of,
    trimmed,
)
from haocha_analysis.engine.reduce import TableCounts, combine_coverage, combine_table_counts, table_counts
from haocha_analysis.ingest.storage import (
    ORIGIN_COLUMNS,
    available_columns,
    finish_read,
    key_column,
    stored_twice,
    url_partitions,
    url_root,
    window_labels,
)
from haocha_analysis.quality.report import QualityCounts, combine_quality_counts, quality_counts
from haocha_analysis.quality.settings import QualitySettings

# Rows per partition after the shuffle by case when the partition count is not given.
ROWS_PER_PARTITION = 2_000_000
_ID_COLUMNS = {"cases": "case_id", "evaluations": "eval_id", "rectifications": "eval_id"}


# --- the cluster -----------------------------------------------------------------------------------


@contextlib.contextmanager
def cluster(options: EngineOptions) -> Iterator[object]:
    """A ``distributed`` client for the run: the scheduler given, else a local cluster.

    Yields:
        The client (the default scheduler of every computation inside the block).
    """
    from distributed import Client, LocalCluster

    # p2p shuffles log each start and stop at WARNING: not news for a user.
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    address = options.scheduler_address
    if address:
        try:
            client = Client(address, timeout="10s")
        except OSError as err:
            raise HaochaInputError(
                f"无法连接 Dask 调度器 {address}",
                fix="检查 --scheduler 或环境变量 DASK_SCHEDULER_ADDRESS（如 tcp://主机:8786），"
                "或不指定调度器以在本机启动集群",
            ) from err
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=options.workers,
            threads_per_worker=1,
            memory_limit=options.memory_limit,
            dashboard_address=None,
        ) as local,
        Client(local) as client,
    ):
        yield client


def compute(*collections: object, progress: bool = False) -> tuple:
    """Compute on the current client, with a progress bar when asked."""
    if not progress:
        return dask.compute(*collections)
    from distributed import get_client
    from distributed import progress as show

    client = get_client()
    futures = client.compute(list(collections))
    show(futures)
    return tuple(client.gather(futures))


# --- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Files:
    """The Parquet files of one table in the window, in the pandas load order."""

    fs: fsspec.AbstractFileSystem
    paths: list[str]
    labels: int  # period partitions read (>1: ids are read last-wins, as load_tables does)
    source: str


def window_files(url: str, table: str, period: Period) -> Files:
    """The files of ``table`` a load of ``period`` (and the period before it) reads."""
    fs, root = url_root(url)
    base = f"{root}/{table}"
    if fs.isdir(base):
        folders = url_partitions(url, table)
        labels = window_labels(sorted(folders), period.with_previous(), f"{url}/{table}")
        paths = [f for label in labels for f in sorted(fs.glob(f"{folders[label]}/*.parquet"))]
        return Files(fs, paths, len(labels), f"{url}/{table}")
    if fs.isfile(f"{base}.parquet"):
        return Files(fs, [f"{base}.parquet"], 1, f"{url}/{table}.parquet")
    if table == "rectifications":
        return Files(fs, [], 0, f"{url}/{table}")
    raise HaochaInputError(
        f"数据目录中找不到 {table} 表的 Parquet 文件",
        file=str(url),
        fix="dask 引擎读取按统计期分区的 Parquet 规范表（haocha ingest / haocha synth 的输出）；"
        "CSV 规范表请用 --engine pandas，或先用 haocha ingest 转为 Parquet",
    )


def meta(table: str, columns: list[str]) -> pd.DataFrame:
    """The empty frame a file reads to: canonical columns, categories as text, the load order."""
    empty = coerce(pd.DataFrame({c: pd.Series(dtype="object") for c in columns}), table, columns=columns)
    return _plain(empty).assign(**{ORDER: pd.Series(dtype="int64")})


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as text: files' categories differ, the reduction re-encodes them."""
    cats = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    return frame.astype(dict.fromkeys(cats, "str")) if cats else frame


def read_file(
    index: int, files: Files, table: str, wanted: list[str] | None, skip: np.ndarray | None = None
) -> pd.DataFrame:
    """One Parquet file of the window, checked as the pandas load checks it, with its load order.

    (Not named ``columns``: dask would then push its column projection into this reader.)
    ``skip``: the load orders of rows left out (rows stored twice, :func:`stored_twice_orders`).
    """
    columns = wanted
    path = files.paths[index]
    with files.fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        wanted = available_columns(table, columns, parquet.schema_arrow.names, path)
        frame = parquet.read(columns=wanted).to_pandas()
    frame = _plain(finish_read(frame, table, path, columns))
    frame = frame.assign(**{ORDER: load_order(len(frame), index)})
    if skip is not None and len(skip):
        frame = frame[~np.isin(frame[ORDER].to_numpy(), skip)].reset_index(drop=True)
    return frame


def read_table(files: Files, table: str, columns: list[str], skip: np.ndarray | None = None) -> dd.DataFrame:
    """A table of the window as a Dask frame, one partition per file (``skip``: as :func:`read_file`)."""
    empty = meta(table, columns)
    if not files.paths:
        return dd.from_pandas(empty, npartitions=1)
    return dd.from_map(
        read_file, range(len(files.paths)), files=files, table=table, wanted=columns, skip=skip, meta=empty
    )


def row_count(files: Files) -> int:
    """Rows of the files, from their Parquet footers (no data read)."""
    total = 0
    for path in files.paths:
        with files.fs.open(path, "rb") as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


# --- locality groups -------------------------------------------------------------------------------

CITY_PREFIX = "city="


@dataclass(frozen=True)
class Group:
    """A locality group: every record of one city's window (cases with all their evaluations).

    Attributes:
        key: the city key of a province's ``city=<key>`` folder ("" for a one-city folder).
        files: the window's Parquet files per table.
        rows: cases + evaluations rows of the window (from the Parquet footers).
    """

    key: str
    files: dict[str, Files]
    rows: int


def locality_groups(url: str) -> dict[str, str]:
    """City key → folder URL: the ``city=<key>`` folders of a province, else ``{"": url}``."""
    fs, root = url_root(url)
    base = str(url).rstrip("/")
    cities = {}
    if fs.isdir(root):
        for path in fs.ls(root, detail=False):
            name = PurePosixPath(path).name
            if name.startswith(CITY_PREFIX) and fs.isdir(path):
                cities[name.removeprefix(CITY_PREFIX)] = f"{base}/{name}"
    return dict(sorted(cities.items())) or {"": str(url)}


def plan_groups(url: str, period: Period, columns: dict[str, list[str]]) -> list[Group]:
    """The locality groups of a data folder with their window files and sizes."""
    groups = []
    for key, folder in locality_groups(url).items():
        files = {table: window_files(folder, table, period) for table in columns}
        rows = sum(row_count(files[t]) for t in ("cases", "evaluations") if t in files)
        groups.append(Group(key, files, rows))
    return groups


def file_partitions(files: Files) -> np.ndarray:
    """Per file, the index of the period partition (``period=…`` folder) it lies in."""
    folders = [PurePosixPath(path).parent.name for path in files.paths]
    return np.unique(folders, return_inverse=True)[1] if folders else np.zeros(0, dtype=np.int64)


def without_stored_twice(
    frame: pd.DataFrame, files: Files, table: str, read_all: Callable[[], pd.DataFrame] | None
) -> pd.DataFrame:
    """Rows read from ``files`` (load order, with ``ORDER``) less those stored twice, as pandas reads.

    ``read_all``: the same rows with every stored column, when ``frame`` holds only some (None: it
    holds them all). The rule is :func:`haocha_analysis.ingest.storage.stored_twice`.
    """
    if files.labels < 2 or not len(frame):
        return frame
    part = file_partitions(files)[(frame[ORDER].to_numpy() >> ROWS_PER_FILE_BITS).astype(np.int64)]
    drop = stored_twice(frame, table, part, read_all)
    return frame[~drop].reset_index(drop=True) if drop.any() else frame


_KEY_PARTS_META = pd.DataFrame({"h": pd.Series(dtype="uint64"), "p": pd.Series(dtype="int64")})


def _key_parts(frame: pd.DataFrame, table: str, parts: np.ndarray) -> pd.DataFrame:
    """(key hash, period partition) of a file's rows with a key, each pair once."""
    key = frame[key_column(table)]
    has = key.notna().to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            "h": pd.util.hash_pandas_object(key[has], index=False).to_numpy(),
            "p": parts[frame.loc[has, ORDER].to_numpy() >> ROWS_PER_FILE_BITS],
        }
    ).drop_duplicates()


def _rows_with_keys(index: int, files: Files, table: str, hashes: np.ndarray) -> pd.DataFrame:
    """A file's rows, every column, whose key hash is among ``hashes``."""
    frame = read_file(index, files, table, None)
    key = frame[key_column(table)]
    hashed = pd.util.hash_pandas_object(key, index=False).to_numpy()
    return frame[np.isin(hashed, hashes) & key.notna().to_numpy(dtype=bool)]


def stored_twice_orders(files: Files, table: str, progress: bool = False) -> np.ndarray:
    """The load orders of the rows stored twice, for the shuffle fallback (none read whole).

    Two passes, so that only numbers travel: the keys whose hash lies in more than one period
    partition are the candidates; their rows are read back with every column and the one rule
    (:func:`haocha_analysis.ingest.storage.stored_twice`) decides on them.
    """
    none = np.zeros(0, dtype=np.int64)
    if files.labels < 2 or not files.paths:
        return none
    parts = file_partitions(files)
    pairs = read_table(files, table, [key_column(table)]).map_partitions(
        _key_parts, table, parts, meta=_KEY_PARTS_META
    )
    per_key = pairs.drop_duplicates(split_out=True)["h"].value_counts(split_out=True)
    (counted,) = compute(per_key[per_key > 1], progress=progress)
    hashes = np.sort(counted.index.to_numpy(dtype="uint64"))
    if not len(hashes):
        return none
    (found,) = compute(_each_file(_rows_with_keys, files, table, hashes), progress=progress)
    frame = pd.concat(found, ignore_index=True)  # files in load order
    part = parts[frame[ORDER].to_numpy() >> ROWS_PER_FILE_BITS]
    return frame.loc[stored_twice(frame, table, part), ORDER].to_numpy()


def read_group(files: dict[str, Files], columns: dict[str, list[str]]) -> dict[str, pd.DataFrame]:
    """A locality group's tables read whole, in the pandas load order (runs in a worker)."""
    tables = {}
    for table, table_files in files.items():
        n = len(table_files.paths)
        parts = [read_file(i, table_files, table, columns[table]) for i in range(n)]
        frame = pd.concat(parts, ignore_index=True) if parts else meta(table, columns[table])

        def read_all(table=table, table_files=table_files, n=n) -> pd.DataFrame:
            return pd.concat([read_file(i, table_files, table, None) for i in range(n)], ignore_index=True)

        frame = without_stored_twice(frame, table_files, table, read_all)
        tables[table] = in_load_order(frame, None)
    return tables


def _run_group(files: dict[str, Files], columns: dict[str, list[str]], reducer, *args):
    return reducer(read_group(files, columns), *args)


def group_task(group: Group, columns: dict[str, list[str]], reducer, *args) -> object:
    """A delayed ``reducer(tables, *args)`` on the group's records, read where the task runs."""
    return dask.delayed(_run_group, pure=True)(group.files, columns, reducer, *args)


def group_limit(options: EngineOptions) -> int:
    """Rows up to which a locality group is one task: given, else from the workers' memory limit."""
    if options.group_rows is not None:
        return options.group_rows
    from distributed import get_client

    workers = get_client().scheduler_info().get("workers", {}).values()
    limits = [int(w.get("memory_limit") or 0) for w in workers]
    if limits and min(limits) > 0:
        return min(limits) // BYTES_PER_ROW
    return GROUP_ROWS


def compute_groups(tasks: dict[str, list], progress: bool = False) -> dict[str, list]:
    """Compute every group's delayed parts in one graph; the results per group."""
    keys = [key for key, parts in tasks.items() for _ in parts]
    (flat,) = compute([part for parts in tasks.values() for part in parts], progress=progress)
    results: dict[str, list] = {key: [] for key in tasks}
    for key, result in zip(keys, flat, strict=True):
        results[key].append(result)
    return results


# --- partitioning by case --------------------------------------------------------------------------


def _with_group(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    groups = case_groups(frame) if table == "cases" else evaluation_groups(frame)
    return frame.assign(**{GROUP: groups.astype("str")})


def _with_part(frame: pd.DataFrame, merged: dict[str, str], n: int) -> pd.DataFrame:
    return frame.assign(**{PART: partition_of(frame[GROUP], merged, n)})


_HASHED_META = pd.DataFrame({"h_eval": pd.Series(dtype="uint64"), "h_group": pd.Series(dtype="uint64")})
_PAIRS_META = pd.DataFrame({"eval_id": pd.Series(dtype="str"), GROUP: pd.Series(dtype="str")})


def _hashed_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """(eval id hash, group hash) of a partition's evaluations with an id, each pair once."""
    ids = trimmed(frame["eval_id"])
    keep = (ids != "").to_numpy()
    return pd.DataFrame(
        {
            "h_eval": pd.util.hash_pandas_object(ids[keep], index=False).to_numpy(),
            "h_group": pd.util.hash_pandas_object(frame.loc[keep, GROUP], index=False).to_numpy(),
        }
    ).drop_duplicates()


def _candidate_rows(frame: pd.DataFrame, candidates: np.ndarray) -> pd.DataFrame:
    """The (eval_id trimmed, group) rows whose eval id hash is a candidate."""
    ids = trimmed(frame["eval_id"])
    hashed = pd.util.hash_pandas_object(ids, index=False).to_numpy()
    keep = np.isin(hashed, candidates) & (ids != "").to_numpy()
    return pd.DataFrame({"eval_id": ids[keep].to_numpy(), GROUP: frame.loc[keep, GROUP].to_numpy()})


def _shared_eval_ids(evaluations: dd.DataFrame, progress: bool) -> pd.DataFrame:
    """(eval_id, group) of the evaluation ids found under more than one group key (few or none).

    Two passes, so that only numbers are shuffled: the distinct (id hash, group hash) pairs give the
    candidate ids (a hash under two group hashes); the candidates' rows are then read back with
    their texts and the rule is decided on the texts (a hash collision only adds a candidate, which
    the texts then clear).
    """
    pairs = evaluations.map_partitions(
        _hashed_pairs,
        meta=_HASHED_META,
    ).drop_duplicates(split_out=True)
    per_id = pairs["h_eval"].value_counts(split_out=True)
    (counted,) = compute(per_id[per_id > 1], progress=progress)
    candidates = np.sort(counted.index.to_numpy(dtype="uint64"))
    if not len(candidates):
        return _PAIRS_META
    rows = evaluations.map_partitions(
        _candidate_rows,
        candidates,
        meta=_PAIRS_META,
    )
    (found,) = compute(rows, progress=progress)
    found = found.drop_duplicates()
    shared = found.groupby("eval_id")[GROUP].transform("nunique") > 1
    return found.loc[shared].reset_index(drop=True)


def by_case(
    frames: dict[str, dd.DataFrame], n_partitions: int, progress: bool = False
) -> dict[str, dd.DataFrame]:
    """Move every row to its case's partition; the frames come back aligned partition by partition."""
    grouped = {
        table: frame.map_partitions(
            _with_group, table, meta=frame._meta.assign(**{GROUP: pd.Series(dtype="str")})
        )
        for table, frame in frames.items()
    }
    merged = merge_groups(_shared_eval_ids(grouped["evaluations"], progress))
    divisions = list(range(n_partitions + 1))
    out = {}
    for table, frame in grouped.items():
        parted = frame.map_partitions(
            _with_part,
            merged,
            n_partitions,
            meta=frame._meta.assign(**{PART: pd.Series(dtype="int64")}),
        )
        out[table] = parted.set_index(PART, divisions=divisions)
    return out


# --- the tables ------------------------------------------------------------------------------------


def _tables_partition(
    cases: pd.DataFrame,
    evaluations: pd.DataFrame,
    rectifications: pd.DataFrame,
    period: Period,
    last_wins: dict[str, str | None],
    limits: ClosedLoopLimits | None = None,
) -> TableCounts:
    cases = in_load_order(cases.reset_index(drop=True), last_wins["cases"])
    evaluations = in_load_order(evaluations.reset_index(drop=True), last_wins["evaluations"])
    return table_counts(cases, evaluations, rectifications, period, limits)


def _tables_group(
    tables: dict[str, pd.DataFrame], period: Period, limits: ClosedLoopLimits | None
) -> TableCounts:
    return table_counts(tables["cases"], tables["evaluations"], tables["rectifications"], period, limits)


def _table_columns() -> dict[str, list[str]]:
    columns = {table: list(cols) for table, cols in NEEDED_COLUMNS.items()}
    columns["cases"] = [*columns["cases"], "source_system"]
    return columns


def _tables_shuffled(
    group: Group,
    columns: dict[str, list[str]],
    period: Period,
    options: EngineOptions,
    limits: ClosedLoopLimits | None,
) -> list:
    """The fallback for a group larger than a worker: delayed partial counts of a shuffle by case."""
    files = group.files
    # Like the pandas load, nothing is dropped: a key repeated across period partitions is kept in load
    # order, and the linkage rule (core/linkage.py) takes its first row and marks the others.
    last_wins: dict[str, str | None] = dict.fromkeys(files)

    # Rectifications are few (one per handled 差评): read whole, shipped to every partition.
    skip = {t: stored_twice_orders(files[t], t, options.progress) for t in files}
    rect_table = "rectifications"
    (rect,) = compute(read_table(files[rect_table], rect_table, columns[rect_table], skip[rect_table]))
    rect = in_load_order(rect, last_wins["rectifications"])

    frames = {t: read_table(files[t], t, columns[t], skip[t]) for t in ("cases", "evaluations")}
    n = options.partitions or max(1, math.ceil(group.rows / ROWS_PER_PARTITION))
    parted = by_case(frames, n, options.progress)
    rect_shared = dask.delayed(rect, pure=True)
    return [
        dask.delayed(_tables_partition, pure=True)(c, e, rect_shared, period, last_wins, limits)
        for c, e in zip(parted["cases"].to_delayed(), parted["evaluations"].to_delayed(), strict=True)
    ]


def tables_counts_by_group(
    data_url: str,
    period: Period,
    options: EngineOptions,
    limits_of: Callable[[str], ClosedLoopLimits | None] = lambda key: None,
) -> dict[str, TableCounts]:
    """The tables' aggregates of every locality group (city) of a folder, on the current client.

    Args:
        data_url: canonical Parquet tables (a folder, or an fsspec URL such as ``s3://…``); a
            province folder holds one ``city=<key>`` folder per city.
        period: the statistical period.
        options: locality threshold, shuffle partition count and progress display.
        limits_of: a city's 差评 closed-loop limits from its key (default deadlines of the
            rectifications).

    Returns:
        City key ("" for a one-city folder) → its counts.
    """
    columns = _table_columns()
    tasks, limit = {}, group_limit(options)
    for group in plan_groups(data_url, period, columns):
        limits = limits_of(group.key)
        if group.rows <= limit:
            tasks[group.key] = [group_task(group, columns, _tables_group, period, limits)]
        else:
            tasks[group.key] = _tables_shuffled(group, columns, period, options, limits)
    results = compute_groups(tasks, options.progress)
    return {key: combine_table_counts(parts, period) for key, parts in results.items()}


def tables_counts(
    data_url: str, period: Period, options: EngineOptions, limits: ClosedLoopLimits | None = None
) -> TableCounts:
    """The tables' aggregates of a period (all the folder's records), on the current Dask client.

    Args:
        data_url: canonical Parquet tables (a folder, or an fsspec URL such as ``s3://…``).
        period: the statistical period.
        options: locality threshold, shuffle partition count and progress display.
        limits: the city's 差评 closed-loop limits (default deadlines of the rectifications).
    """
    groups = tables_counts_by_group(data_url, period, options, lambda key: limits)
    return combine_table_counts(list(groups.values()), period)


# --- the quality report ----------------------------------------------------------------------------


def _quality_group(
    tables: dict[str, pd.DataFrame], ref: CityReference, period: Period, settings: QualitySettings
) -> tuple[QualityCounts, Coverage]:
    return quality_counts(ref, tables, period, settings), coverage(tables, period)


def _quality_partition(
    cases: pd.DataFrame,
    evaluations: pd.DataFrame,
    ref: CityReference,
    period: Period,
    settings: QualitySettings,
) -> tuple[QualityCounts, Coverage]:
    # The index is the load order: the issues list keeps the first records of the whole window.
    tables = {
        "cases": in_load_order(cases.reset_index(drop=True), None, keep_order=True),
        "evaluations": in_load_order(evaluations.reset_index(drop=True), None, keep_order=True),
    }
    return _quality_group(tables, ref, period, settings)


def _quality_shuffled(
    group: Group,
    columns: dict[str, list[str]],
    ref: CityReference,
    period: Period,
    settings: QualitySettings,
    options: EngineOptions,
) -> list:
    tables = ("cases", "evaluations")
    skip = {t: stored_twice_orders(group.files[t], t, options.progress) for t in tables}
    frames = {t: read_table(group.files[t], t, columns[t], skip[t]) for t in tables}
    n = options.partitions or max(1, math.ceil(group.rows / ROWS_PER_PARTITION))
    parted = by_case(frames, n, options.progress)
    return [
        dask.delayed(_quality_partition, pure=True)(c, e, ref, period, settings)
        for c, e in zip(parted["cases"].to_delayed(), parted["evaluations"].to_delayed(), strict=True)
    ]


def quality_counts_by_group(
    data_url: str,
    period: Period,
    options: EngineOptions,
    refs: Callable[[str], CityReference],
    settings: Callable[[str], QualitySettings],
) -> dict[str, tuple[QualityCounts, Coverage]]:
    """The quality counts and coverage of every locality group (city) of a folder.

    Args:
        data_url: canonical Parquet tables (a folder or an fsspec URL; a province: ``city=<key>``).
        period: the statistical period.
        options: locality threshold, shuffle partition count and progress display.
        refs: a city's reference data from its key ("" for a one-city folder).
        settings: a city's quality thresholds from its key.
    """
    columns = {table: list(DTYPES[table]) for table in ("cases", "evaluations")}
    tasks, limit = {}, group_limit(options)
    for group in plan_groups(data_url, period, columns):
        ref, limits = refs(group.key), settings(group.key)
        if group.rows <= limit:
            tasks[group.key] = [group_task(group, columns, _quality_group, ref, period, limits)]
        else:
            tasks[group.key] = _quality_shuffled(group, columns, ref, period, limits, options)
    results = compute_groups(tasks, options.progress)
    return {
        key: (
            combine_quality_counts([counts for counts, _ in parts], settings(key)),
            combine_coverage([cov for _, cov in parts], period),
        )
        for key, parts in results.items()
    }


# --- the anomaly screening -------------------------------------------------------------------------


def anomalies_by_group(
    data_url: str,
    period: Period,
    options: EngineOptions,
    refs: Callable[[str], CityReference],
    history_n: int,
    settings: Settings | None = None,
) -> dict[str, tuple[pd.DataFrame, Coverage, int]]:
    """The findings of every city of a folder, one task per city (findings, coverage, history periods).

    The detectors compare a unit with its own records (bursts of re-entry, lags, devices) and with
    its peers of the same city (level medians), so the partition is the city: a unit never spans
    partitions and a city's screening runs where the city's folder is read — the same loading and
    detection as the pandas engine, cities in parallel. A city is not split further (no shuffle
    fallback): its window must fit one worker. A folder is read where it is; from an fsspec URL
    (``s3://``, ``memory://`` …) the task first copies the partitions the detection reads (the
    window and the history periods) to a folder of its own. ``settings``: the detectors' thresholds
    (default: each city's own).
    """
    local = local_path(data_url)
    root = str(local) if local is not None else str(data_url)
    find = anomaly_findings if local is not None else _anomaly_findings_from_url
    tasks = {
        key: [dask.delayed(find, pure=True)(folder, refs(key), period, history_n, settings)]
        for key, folder in locality_groups(root).items()
    }
    return {key: parts[0] for key, parts in compute_groups(tasks, options.progress).items()}


def _overlaps_any(label: str, periods: list[Period]) -> bool:
    """Whether a ``period=<label>`` partition may hold records of one of the periods (unknown: yes)."""
    try:
        own = parse_period(label)
    except HaochaInputError:
        return True
    return any(own.start <= p.end and own.end >= p.start for p in periods)


def _anomaly_findings_from_url(
    url: str, ref: CityReference, period: Period, history_n: int, settings: Settings | None
) -> tuple[pd.DataFrame, Coverage, int]:
    """:func:`anomaly_findings` on a city's folder at an fsspec URL, read from a local copy."""
    fs, root = url_root(url)
    wanted = [period.with_previous(), *history_periods(period, history_n)]
    with tempfile.TemporaryDirectory(prefix="haocha-anomalies-") as folder:
        for table in ("cases", "evaluations", "rectifications"):
            base = f"{root}/{table}"
            if fs.isdir(base):
                for path in fs.ls(base, detail=False):
                    name = PurePosixPath(path).name
                    if name.startswith("period=") and _overlaps_any(name.split("=", 1)[1], wanted):
                        target = Path(folder) / table / name
                        target.mkdir(parents=True)
                        for file in fs.glob(f"{path}/*.parquet"):
                            fs.get(file, str(target / PurePosixPath(file).name))
            elif fs.isfile(f"{base}.parquet"):
                fs.get(f"{base}.parquet", str(Path(folder) / f"{table}.parquet"))
        return anomaly_findings(folder, ref, period, history_n, settings)


# --- the 差评 ledger's records ---------------------------------------------------------------------
#
# The ledger reads the 差评 of the period, the records the linkage rule needs to judge them (the
# closure :func:`haocha_analysis.core.linkage.link_some` reads: the evaluations sharing a case id or
# an eval id with them, those sharing an eval id with these, and their cases) and the rectification
# rows with the evaluations they name. A few per cent of a window: each pass filters every file where
# it is read, and only the keys, then the rows, travel; the ledger is then built from them in pandas
# by the one function (:func:`haocha_analysis.analysis.rectification.build_ledger`).


def _keys(ids: pd.Series) -> np.ndarray:
    """The distinct non-blank trimmed ids (as the linkage rule reads them)."""
    keys = trimmed(ids)
    return keys[keys != ""].unique()


def _among(ids: pd.Series, keys: np.ndarray) -> np.ndarray:
    keys_trimmed = trimmed(ids)
    return (keys_trimmed.isin(keys) & (keys_trimmed != "")).to_numpy(dtype=bool, copy=True)


def _read_with_origin(index: int, files: Files, table: str) -> pd.DataFrame:
    """One file, every column (so rows stored twice can be told), its load order and rows' origin.

    The origin is the ``_file`` / ``_row`` pair an ``origin=True`` load adds.
    """
    frame = read_file(index, files, table, None)
    return frame.assign(
        **{
            ORIGIN_COLUMNS[0]: pd.Series(str(files.paths[index]), index=frame.index, dtype="str"),
            ORIGIN_COLUMNS[1]: np.arange(1, len(frame) + 1, dtype=np.int64),
        }
    )


def _bad_keys(index: int, files: Files, period: Period) -> tuple[np.ndarray, np.ndarray, Coverage]:
    """The case ids and eval ids of a file's 差评 made in the period; the file's coverage."""
    frame = read_file(index, files, "evaluations", LEDGER_COLUMNS["evaluations"])
    at = frame["evaluated_at"]
    bad = np.isin(frame["satisfaction"].to_numpy(), BAD_SATISFACTION) & period.contains(at).to_numpy(
        dtype=bool
    )
    picked = frame[bad]
    return _keys(picked["case_id"]), _keys(picked["eval_id"]), coverage({"evaluations": frame}, period)


def _case_coverage(index: int, files: Files, period: Period) -> Coverage:
    return coverage({"cases": read_file(index, files, "cases", ["case_id", "finished_at"])}, period)


def _near_eval_ids(index: int, files: Files, case_keys: np.ndarray, eval_keys: np.ndarray) -> np.ndarray:
    """The eval ids of a file's evaluations sharing a case id or an eval id with a 差评."""
    frame = read_file(index, files, "evaluations", ["eval_id", "case_id"])
    near = _among(frame["case_id"], case_keys) | _among(frame["eval_id"], eval_keys)
    return _keys(frame.loc[near, "eval_id"])


def _near_rows(index: int, files: Files, table: str, case_keys: np.ndarray, eval_keys: np.ndarray):
    """A file's rows the ledger reads: by case id (cases, evaluations) or by eval id (evaluations).

    Every stored column is kept, so that rows stored twice can be told (:func:`_in_order`).
    """
    frame = _read_with_origin(index, files, table)
    near = _among(frame["case_id"], case_keys)
    if table == "evaluations":
        near |= _among(frame["eval_id"], eval_keys)
    return frame[near]


def _union(arrays: list[np.ndarray]) -> np.ndarray:
    if not arrays:
        return np.array([], dtype=object)
    return np.unique(np.concatenate([np.asarray(a, dtype=object) for a in arrays]))


def _each_file(function, files: Files, *args) -> list:
    return [dask.delayed(function, pure=True)(i, files, *args) for i in range(len(files.paths))]


def _in_order(parts: list[pd.DataFrame], table: str, files: Files | None = None) -> pd.DataFrame:
    """The ledger's rows of a table in load order; with ``files``, rows stored twice read once."""
    if not parts:
        empty = meta(table, LEDGER_COLUMNS[table])
        parts = [empty.assign(_file=pd.Series(dtype="str"), _row=pd.Series(dtype="int64"))]
    frame = pd.concat(parts, ignore_index=True).sort_values(ORDER, kind="stable").reset_index(drop=True)
    if files is not None:
        frame = without_stored_twice(frame, files, table, None)
        frame = frame[[*LEDGER_COLUMNS[table], *ORIGIN_COLUMNS, ORDER]]
    return in_load_order(frame, None)


def ledger_records(
    data_url: str, period: Period, options: EngineOptions
) -> tuple[dict[str, pd.DataFrame], Coverage]:
    """The records the 差评 ledger of a period reads, and the period's coverage (current client).

    Every 差评 made in the period (whatever the ledger's date: a later date only drops some), the
    records the linkage rule judges them by, the rectification rows and the evaluations they name,
    each table in the pandas load order with the rows' origin (``_file``, ``_row``) for error
    messages. :func:`~haocha_analysis.analysis.rectification.build_ledger` on these gives the
    ledger it gives on the whole window.

    Args:
        data_url: canonical Parquet tables of one city (a folder or an fsspec URL).
        period: the statistical period.
        options: progress display.
    """
    files = {
        table: window_files(data_url, table, period) for table in ("cases", "evaluations", "rectifications")
    }
    first = (
        _each_file(_bad_keys, files["evaluations"], period),
        _each_file(_case_coverage, files["cases"], period),
        _each_file(_read_with_origin, files["rectifications"], "rectifications"),
    )
    bad, case_cover, rect_parts = compute(*first, progress=options.progress)
    rectifications = _in_order(list(rect_parts), "rectifications", files["rectifications"])
    cov = combine_coverage([c for *_, c in bad] + list(case_cover), period)
    case_keys = _union([cases for cases, _, _ in bad])
    eval_keys = _union([evals for _, evals, _ in bad])
    (second,) = compute(
        _each_file(_near_eval_ids, files["evaluations"], case_keys, eval_keys), progress=options.progress
    )
    eval_keys = _union([eval_keys, *second, _keys(rectifications["eval_id"])])
    (evaluations,) = compute(
        _each_file(_near_rows, files["evaluations"], "evaluations", case_keys, eval_keys),
        progress=options.progress,
    )
    evaluations = _in_order(list(evaluations), "evaluations", files["evaluations"])
    (cases,) = compute(
        _each_file(_near_rows, files["cases"], "cases", _keys(evaluations["case_id"]), np.array([])),
        progress=options.progress,
    )
    tables = {"cases": _in_order(list(cases), "cases", files["cases"]), "evaluations": evaluations}
    return tables | {"rectifications": rectifications}, cov
