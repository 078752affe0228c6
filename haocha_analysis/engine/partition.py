"""Partitioning records by case, so that the linkage rule holds inside every partition.

The linkage rule (:mod:`haocha_analysis.core.linkage`) relates rows through two keys: the case id
(a case, the evaluations naming it, the first evaluation among them, a repeated case row) and the
evaluation id (a repeated evaluation row, and the last-wins reading of an id stored in two period
partitions). Rows related through either key must meet in one partition:

* every row gets a **group key**: a case its ``case_id``; an evaluation the ``case_id`` it names,
  or its own ``eval_id`` when it names none (ids trimmed, as the rule reads them);
* an ``eval_id`` carried by rows of different group keys (rare: an id reused for two cases) joins
  those groups: :func:`merge_groups` (union-find over the few such ids) maps each group key to one
  representative;
* the partition of a row is a stable hash of its representative key (:func:`partition_of`).

Inside a partition the rows are put back in load order (``ORDER``: the file's position in the
pandas load order, then the row's), which the rule uses for repeated ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Columns the partitioning adds (removed before the reduction).
ORDER = "_order"
GROUP = "_group"
PART = "_part"
# Room for this many rows per file in ORDER (file index in the high bits).
ROWS_PER_FILE_BITS = 40


def trimmed(ids: pd.Series) -> pd.Series:
    """Ids as the linkage rule reads them: trimmed text, blank and missing as empty."""
    return ids.astype("str").str.strip().fillna("")


def load_order(n_rows: int, file_index: int) -> np.ndarray:
    """The ``ORDER`` of a file's rows: its place in the pandas load order."""
    return (np.int64(file_index) << ROWS_PER_FILE_BITS) + np.arange(n_rows, dtype=np.int64)


def case_groups(cases: pd.DataFrame) -> pd.Series:
    """The group key of each case: its trimmed case id."""
    return "c:" + trimmed(cases["case_id"])


def evaluation_groups(evaluations: pd.DataFrame) -> pd.Series:
    """The group key of each evaluation: the case it names, else its own evaluation id."""
    eval_ids = trimmed(evaluations["eval_id"])
    if "case_id" not in evaluations:
        return "e:" + eval_ids
    case_ids = trimmed(evaluations["case_id"])
    return ("c:" + case_ids).where(case_ids != "", "e:" + eval_ids)


def merge_groups(pairs: pd.DataFrame) -> dict[str, str]:
    """Group key → representative, joining the groups that share an evaluation id (union-find).

    Args:
        pairs: distinct (``eval_id`` trimmed, ``GROUP``) rows of the evaluation ids found under more
            than one group key.

    Returns:
        The representative of every group key that is joined to another (others are their own).
    """
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        root = key
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(key, key) != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    for _, groups in pairs.groupby("eval_id", sort=True)[GROUP]:
        keys = sorted(groups)
        first = find(keys[0])
        for key in keys[1:]:
            other = find(key)
            if other != first:
                low, high = sorted((first, other))
                parent[high] = low
                first = low
    return {key: find(key) for key in parent} | {
        key: find(key) for key in pairs[GROUP].unique() if key not in parent
    }


def partition_of(groups: pd.Series, merged: dict[str, str], n_partitions: int) -> pd.Series:
    """The partition number of each row from its group key (stable across processes and runs)."""
    if merged:
        groups = groups.map(lambda key: merged.get(key, key))
    hashed = pd.util.hash_pandas_object(groups, index=False).to_numpy()
    return pd.Series((hashed % np.uint64(n_partitions)).astype(np.int64), index=groups.index, name=PART)


def in_load_order(frame: pd.DataFrame, key: str | None, keep_order: bool = False) -> pd.DataFrame:
    """A partition's rows back in load order, helper columns dropped.

    Args:
        frame: one partition (with ``ORDER``).
        key: when the window spans several period partitions, the id column read last-wins (as
            :func:`haocha_analysis.ingest.storage.load_tables` does); None otherwise.
        keep_order: index the rows by ``ORDER`` (their place in the whole window's load order)
            instead of 0..n-1.
    """
    frame = frame.sort_values(ORDER, kind="stable")
    if key is not None and key in frame:
        frame = frame.drop_duplicates(key, keep="last")
    order = frame[ORDER].to_numpy()
    helpers = [c for c in (ORDER, GROUP, PART) if c in frame]
    frame = frame.drop(columns=helpers).reset_index(drop=True)
    # A shuffle hands text back as the NA-valued "string" dtype: back to the "str" the pandas load
    # reads (checks that treat "str" text, such as blank detection, then see the same values).
    text = [
        c
        for c in frame.columns
        if isinstance(frame[c].dtype, pd.StringDtype) and frame[c].dtype.na_value is pd.NA
    ]
    if text:
        frame = frame.astype(dict.fromkeys(text, "str"))
    if keep_order:
        frame.index = pd.Index(order, dtype="int64")
    return frame
