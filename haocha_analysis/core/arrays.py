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


# --- whitespace at the ends of strings, read from their bytes ----------------------------------
# The code points Arrow's kernels take for whitespace (utf8_is_space, utf8_trim_whitespace);
# tests/core/test_linkage.py checks the list against Arrow over every code point. A string whose first
# byte is no first byte of theirs does not start with whitespace (nothing to trim there, not blank);
# likewise its last byte at the end. Arrow's exact kernel then runs only on the few others.
ARROW_WHITESPACE = (
    *(0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680),
    *range(0x2000, 0x200B),
    *(0x2028, 0x2029, 0x202F, 0x205F, 0x3000),
)
_FIRST_BYTES = np.zeros(256, dtype=bool)
_FIRST_BYTES[[chr(c).encode()[0] for c in ARROW_WHITESPACE]] = True
_LAST_BYTES = np.zeros(256, dtype=bool)
_LAST_BYTES[[chr(c).encode()[-1] for c in ARROW_WHITESPACE]] = True


def string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A ``large_string`` array's n + 1 offsets and its data bytes, read in place (numpy views).

    The offsets index the data buffer (a slice of an array starts past offset 0); no data buffer
    (every row null or empty) gives no bytes.
    """
    _, offsets, data = values.buffers()
    n = len(values)
    offsets = np.frombuffer(offsets, dtype=np.int64, count=n + 1, offset=values.offset * 8)
    return offsets, np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)


def _ends(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of a ``large_string`` array: non-empty, and its first and last bytes (0 when empty)."""
    offsets, data = string_buffers(values)
    starts, ends = offsets[:-1], offsets[1:]
    filled = ends > starts
    if not filled.any():
        zeros = np.zeros(len(values), dtype=np.uint8)
        return filled, zeros, zeros
    last = len(data) - 1
    first = np.where(filled, data[np.minimum(starts, last)], 0)
    final = np.where(filled, data[np.clip(ends - 1, 0, last)], 0)
    return filled, first, final


def may_need_trim(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether some non-empty string of a ``large_string`` array may begin or end with whitespace."""
    if isinstance(values, pa.ChunkedArray):
        return any(may_need_trim(chunk) for chunk in values.chunks)
    if len(values) == 0:
        return False
    _, first, final = _ends(values)
    return bool(_FIRST_BYTES[first].any() or _LAST_BYTES[final].any())


def blank_strings(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row: missing, empty or whitespace only (Arrow's ``utf8_is_space``), as a numpy mask.

    ``values`` is ``large_string``. Only the strings starting with a byte that may be whitespace are
    given to Arrow's kernel; the others are decided from their first byte.
    """
    if isinstance(values, pa.ChunkedArray):
        parts = [blank_strings(chunk) for chunk in values.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    filled, first, _ = _ends(values)
    blank = ~filled
    maybe = np.flatnonzero(filled & _FIRST_BYTES[first])
    if len(maybe):
        spaces = pc.utf8_is_space(values.take(pa.array(maybe)))
        blank[maybe] = spaces.fill_null(True).to_numpy(zero_copy_only=False)
    if values.null_count:
        blank |= ~values.is_valid().to_numpy(zero_copy_only=False)
    return blank
