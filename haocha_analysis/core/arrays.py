"""Vectorised helpers over large id columns (Arrow-backed)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def isin(values: pd.Series, members: pd.Series | pd.Index | Iterable[str]) -> np.ndarray:
    """``values.isin(members)`` for large string columns through Arrow's hash set (missing → False).

    pandas' own isin on Arrow strings converts ``members`` one Python scalar at a time; a categorical
    ``values`` is tested once per category.
    """
    if not isinstance(members, pd.Series | pd.Index):
        members = pd.Series(list(members), dtype="str")
    if len(values) == 0 or len(members) == 0:
        return np.zeros(len(values), dtype=bool)
    if isinstance(values.dtype, pd.CategoricalDtype):
        hit = isin(pd.Series(values.cat.categories).astype("str"), members)
        codes = values.cat.codes.to_numpy()
        return np.where(codes >= 0, hit[np.maximum(codes, 0)], False)
    left = pa.array(pd.Series(values).astype("str"), type=pa.large_string(), from_pandas=True)
    right = pa.array(
        pd.Series(members).dropna().astype("str").unique(), type=pa.large_string(), from_pandas=True
    )
    if isinstance(left, pa.ChunkedArray):
        left = left.combine_chunks()
    return pc.is_in(left, value_set=right, skip_nulls=True).fill_null(False).to_numpy(zero_copy_only=False)


def release_arrow_memory() -> None:
    """Hand the memory Arrow's pool keeps for reuse back to the system.

    Arrow's allocator (mimalloc) keeps freed pages mapped: after the loading window and the linkage
    (hundreds of MB of temporary strings and hashes) a run's process kept ~300 MB more resident through
    every later stage, counted in the run's peak beside the notebook kernel.
    """
    pa.default_memory_pool().release_unused()
