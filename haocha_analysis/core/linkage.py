"""The one linkage rule: evaluations to their cases, first evaluations, duplicates.

Every centre — the quality checks, the metrics behind the annexes and the anomaly detectors — calls
:func:`link` and reads its flags; none links records on its own. The rule (docs/metrics.md, "The
linkage rule"), decided once for every edge case:

* **Case ids are keys after trimming**; a blank ``case_id`` names no case.
* **A repeated case_id** (canonical case ids are unique): the first row in load order (earliest
  partition first) is the case; every later row is ``repeated_case`` — reported by quality as a
  duplicate, counted in no table and in no detector.
* **A repeated eval_id**: the first row is the evaluation, every later row is ``repeated_eval`` — a
  duplicate, counted by quality, nowhere else.
* **Linked**: an evaluation whose ``case_id`` names a loaded case (the window is the period plus the
  one before it, so an evaluation of an earlier period's case finds it). The case's unit wins.
* **First evaluation**: among the attempt-1 evaluations naming the same ``case_id`` (found or not),
  the earliest by ``evaluated_at`` (a missing time sorts last), ties broken by the smallest
  ``eval_id``. Every later one is ``duplicate_attempt`` (data contract §4): counted by quality, never
  in a table.
* **Unlinked first**: a first evaluation (or an attempt-1 evaluation without a case id) whose case
  is not loaded: counted in the evaluation tables (区直部门, 镇村, 公共服务), reported as an orphan
  by quality when it names a case id.
* **Before its case**: an evaluation made before its linked case finished stays linked and may be
  the first evaluation; quality and the detectors judge it with one tolerance
  (``core.rules.RecordTiming.clock_skew_tolerance``).
* **Unknown unit**: linkage does not look at units; the tables refuse a unit missing from the
  reference (it has no annex row), quality and the detectors report it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from haocha_analysis.core.arrays import may_need_trim, string_buffers
from haocha_analysis.core.memory import release_unused


@dataclass(frozen=True)
class Linkage:
    """Flags of one linkage of cases and evaluations (arrays aligned with the frames' rows).

    Attributes:
        case_code: per evaluation, an integer code of its trimmed ``case_id``; -1 when blank.
        case_pos: per evaluation, the row (position) of its case in ``cases``; -1 when not linked.
        has_case_id: per evaluation, a non-blank ``case_id``.
        repeated_case: per case row, its ``case_id`` appeared on an earlier row (not the case).
        repeated_eval: per evaluation, its ``eval_id`` appeared on an earlier row.
        first: per evaluation, the first evaluation of its case id (linked or not).
        duplicate_attempt: per evaluation, a later attempt-1 evaluation of a case id.
        attempt_one: per evaluation, attempt 1 (a missing attempt is 1).
    """

    case_code: np.ndarray
    case_pos: np.ndarray
    has_case_id: np.ndarray
    repeated_case: np.ndarray
    repeated_eval: np.ndarray
    first: np.ndarray
    duplicate_attempt: np.ndarray
    attempt_one: np.ndarray

    @property
    def linked(self) -> np.ndarray:
        """Per evaluation: its case is loaded."""
        return self.case_pos >= 0

    @property
    def duplicate(self) -> np.ndarray:
        """Per evaluation: counted nowhere but in quality (a repeated row or a repeated attempt 1)."""
        return self.repeated_eval | self.duplicate_attempt

    @property
    def linked_first(self) -> np.ndarray:
        """Per evaluation: the first evaluation of a loaded case."""
        return self.first & self.linked

    @property
    def unlinked_first(self) -> np.ndarray:
        """Per evaluation: an attempt-1 evaluation that counts but whose case is not loaded."""
        return self.attempt_one & ~self.duplicate & ~self.linked

    @property
    def counted(self) -> np.ndarray:
        """Per evaluation: a row the tables count (not a duplicate of any kind)."""
        return ~self.duplicate


def _keys(series: pd.Series) -> pa.ChunkedArray:
    """Ids as Arrow strings, trimmed; blank and missing become null.

    The chunks the column was loaded in are kept (no copy of the ids): only what needs the bytes of
    the whole column in one buffer (:func:`_contiguous`) joins them.
    """
    values = pa.array(series.astype("str"), type=pa.large_string(), from_pandas=True)
    if not isinstance(values, pa.ChunkedArray):
        values = pa.chunked_array([values], type=pa.large_string())
    if may_need_trim(values):
        values = pc.utf8_trim_whitespace(values)
    if _has_empty(values):
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.large_string()), values)
    return values


def _contiguous(keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The ids as one array (its chunks joined, a copy, when there are several)."""
    if isinstance(keys, pa.Array):
        return keys
    if keys.num_chunks == 1:
        return keys.chunk(0)
    return keys.combine_chunks() if keys.num_chunks else pa.array([], type=keys.type)


def _has_empty(keys: pa.Array | pa.ChunkedArray) -> bool:
    """Whether some valid id is the empty string."""
    if isinstance(keys, pa.ChunkedArray):
        return any(_has_empty(chunk) for chunk in keys.chunks)
    if len(keys) == 0:
        return False
    empty = np.diff(string_buffers(keys)[0]) == 0
    if keys.null_count:
        empty &= keys.is_valid().to_numpy(zero_copy_only=False)
    return bool(empty.any())


# --- exact integer codes of ids, by hashing and sorting ------------------------------------------
# Arrow's hash-table encoding of millions of distinct strings costs ~0.15 µs a row (0.4 s for a
# quarter's eval ids). Instead each id's bytes are hashed to 64 bits with numpy (a few vector
# operations on the fixed-width byte matrix), the hashes are sorted (numpy's SIMD sort), equal hashes
# form a group, and every row of a group is compared with its group's first row as a string: codes
# are exact, never a guess. A true 64-bit collision (two ids, one hash) makes that check fail and the
# column is encoded by Arrow's dictionary encoding instead.
_WORD_MULTIPLIERS = np.array(
    [(0x9E3779B97F4A7C15 * (2 * j + 1) + 0x632BE59BD9B4E019 * j) % 2**64 | 1 for j in range(33)],
    dtype=np.uint64,
)
MAX_HASHED_BYTES = 256  # longer ids (none in practice) are encoded by Arrow
MAX_HASHED_LENGTHS = 64  # distinct byte lengths handled one group each


def _hash_words(matrix: np.ndarray, length: int) -> np.ndarray:
    """64-bit hashes of rows of ``length`` bytes each (a contiguous ``(rows, length)`` uint8 matrix).

    Each row is read as 8-byte words in place (the last one ending at the row's end, overlapping the
    one before when the length is not a multiple of 8): no padded copy of the bytes.
    """
    n = len(matrix)
    if length < 8:  # shorter than a word: padded (8 bytes a row)
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, :length] = matrix
        matrix, length = padded, 8
    flat = matrix.reshape(-1)
    starts = [*range(0, length - 7, 8)]
    if starts[-1] != length - 8:
        starts.append(length - 8)
    hashes = np.full(n, length, dtype=np.uint64)
    hashes *= _WORD_MULTIPLIERS[-1]
    term = np.empty(n, dtype=np.uint64)
    for j, start in enumerate(starts):
        word = np.ndarray((n,), dtype="<u8", buffer=flat, offset=start, strides=(length,))
        np.multiply(word, _WORD_MULTIPLIERS[j], out=term)
        hashes += term
    # spread the high bits down (splitmix64's finaliser), in place
    np.right_shift(hashes, np.uint64(31), out=term)
    hashes ^= term
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    np.right_shift(hashes, np.uint64(29), out=term)
    hashes ^= term
    return hashes


def _byte_rows(keys: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """The bytes of the non-empty ids as a ``(ids, length)`` matrix, when they all have one length.

    Empty rows (null ids) hold no bytes, so the data buffer is exactly the non-empty ids one after
    the other: a reshape, no copy. Returns the matrix and, per row, its row in the matrix (-1: empty).
    """
    keys = _contiguous(keys)
    offsets, data = string_buffers(keys)
    if len(keys) == 0 or not len(data):
        return None
    lengths = np.diff(offsets)
    filled = lengths > 0
    count = int(filled.sum())
    length = int(lengths.max())
    if count == 0 or int(offsets[-1] - offsets[0]) != count * length:  # some other length among them
        return None
    matrix = data[offsets[0] : offsets[-1]].reshape(count, length)
    where = np.cumsum(filled) - 1
    where[~filled] = -1
    return matrix, where


def _hash64(keys: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """A 64-bit hash of each string of a ``large_string`` array (None: ids too long or too varied).

    The hash is a function of the bytes alone (not of the other rows), so two arrays' hashes compare.
    Null rows get some value; callers ignore them. Chunks are hashed one by one (not joined).
    """
    if isinstance(keys, pa.ChunkedArray):
        if keys.num_chunks == 1:
            return _hash64(keys.chunk(0))
        parts = [_hash64(chunk) for chunk in keys.chunks]
        if any(part is None for part in parts):
            return None
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        if (fixed := _byte_rows(keys)) is not None:  # the usual case: every id of one length
            matrix, where = fixed
            hashes = _hash_words(matrix, matrix.shape[1])
            return hashes if len(matrix) == n else hashes[np.maximum(where, 0)]
        lengths = np.diff(string_buffers(keys)[0])
        each = np.unique(lengths[lengths > 0])
        if len(each) > MAX_HASHED_LENGTHS or (len(each) and each[-1] > MAX_HASHED_BYTES):
            return None
        hashes = np.zeros(n, dtype=np.uint64)
        for length in each.tolist():
            rows = np.flatnonzero(lengths == length)
            same = pc.take(keys, pa.array(rows))  # contiguous: its bytes reshape to (rows, length)
            matrix, _ = _byte_rows(same)
            hashes[rows] = _hash_words(matrix, length)
        return hashes


def _same_ids(
    keys: pa.Array | pa.ChunkedArray,
    left: np.ndarray,
    right: np.ndarray,
    others: pa.Array | pa.ChunkedArray | None = None,
) -> bool:
    """Whether the (non-null) ids at positions ``left`` equal those at ``right``, pair by pair.

    ``right`` indexes ``others`` when given (ids of another column), else ``keys``.
    """
    keys = _contiguous(keys)
    others = keys if others is None else _contiguous(others)
    fixed = _byte_rows(keys)
    fixed_others = fixed if others is keys else _byte_rows(others)
    if fixed is not None and fixed_others is not None and fixed[0].shape[1] == fixed_others[0].shape[1]:
        # ids of one length: their bytes compared in place, each row one fixed-width bytes item
        (matrix, where), (other_matrix, other_where) = fixed, fixed_others
        left, right = where[left], other_where[right]
        if (left >= 0).all() and (right >= 0).all():
            width = f"S{matrix.shape[1]}"
            items, other_items = matrix.view(width).ravel(), other_matrix.view(width).ravel()
            return bool((np.take(items, left) == np.take(other_items, right)).all())
        return False  # an empty id beside a non-empty one
    return bool(pc.all(pc.equal(keys.take(pa.array(left)), others.take(pa.array(right)))).as_py())


def _encode_keys(
    keys: pa.Array | pa.ChunkedArray, hashes: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Per row an integer code of its id (-1 for null), equal codes exactly for equal ids.

    Returns:
        The codes and the number of distinct ids (codes run from 0 to that number less one).
    """
    if hashes is None:
        hashes = _hash64(keys)
    codes = np.full(len(keys), -1, dtype=np.int64)
    rows = np.flatnonzero(keys.is_valid().to_numpy(zero_copy_only=False)) if keys.null_count else None
    if hashes is not None:
        given = hashes if rows is None else hashes[rows]
        if len(given) < 2 or (np.diff(np.sort(given)) != 0).all():  # every hash once: every id once
            placed = np.arange(len(given), dtype=np.int64)
            if rows is None:
                return placed, len(given)
            codes[rows] = placed
            return codes, len(given)
        order = np.argsort(given)
        ordered = given[order]
        starts = np.ones(len(ordered), dtype=bool)
        starts[1:] = ordered[1:] != ordered[:-1]
        groups = np.cumsum(starts) - 1
        # Every row that shares its hash with an earlier row in sorted order is compared, as a string,
        # with its group's first row: equal everywhere means one code per id, exactly.
        later = np.flatnonzero(~starts)
        if len(later):
            leaders = np.flatnonzero(starts)[groups[later]]
            at = order if rows is None else rows[order]
            exact = _same_ids(keys, at[later], at[leaders])
        else:
            exact = True
        if exact:
            placed = np.empty(len(order), dtype=np.int64)
            placed[order] = groups
            if rows is None:
                codes = placed
            else:
                codes[rows] = placed
            return codes, int(groups[-1]) + 1 if len(groups) else 0
    encoded = pc.dictionary_encode(_contiguous(keys))  # a 64-bit collision, or ids no hash here handles
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, len(encoded.dictionary)


def link_some(
    cases: pd.DataFrame, evaluations: pd.DataFrame, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`link`'s ``case_pos`` and ``duplicate`` for the evaluations at positions ``rows`` only.

    Exactly what the full linkage gives for those rows, from the records they depend on: the
    evaluations sharing a case id or an eval id with them, the evaluations sharing an eval id with
    those (an earlier row with the same eval id makes a row a repeat, and a repeat is never a case's
    first evaluation), and the cases with their case ids. For a few rows of a large table (the 差评
    of a period) this reads a fraction of the keys :func:`link` encodes.

    Args:
        cases: as for :func:`link`.
        evaluations: as for :func:`link`.
        rows: sorted, distinct positions in ``evaluations``.

    Returns:
        Per row: the position of its case in ``cases`` (-1 when not linked), and whether it is a
        duplicate (a repeated row or a later attempt-1 evaluation of its case).
    """
    rows = np.asarray(rows, dtype=np.int64)
    if (full := _cached_link(cases, evaluations)) is not None:  # the run's linkage: read, not redone
        return full.case_pos[rows], full.duplicate[rows]
    n = len(evaluations)
    eval_case = (
        _keys(evaluations["case_id"])
        if "case_id" in evaluations
        else pa.chunked_array([pa.nulls(n, pa.large_string())])
    )
    eval_id = _keys(evaluations["eval_id"])

    def among(values: pa.Array, keys: pa.Array) -> np.ndarray:
        found = pc.is_in(values, value_set=keys.drop_null(), skip_nulls=True)
        return found.fill_null(False).to_numpy(zero_copy_only=False)

    picked = pa.array(rows, type=pa.int64())
    near = among(eval_case, eval_case.take(picked)) | among(eval_id, eval_id.take(picked))
    near[rows] = True
    near |= among(eval_id, eval_id.filter(pa.array(near)))
    near_rows = np.flatnonzero(near)
    case_rows = np.flatnonzero(among(_keys(cases["case_id"]), eval_case.filter(pa.array(near))))
    sub = link(cases.iloc[case_rows], evaluations.iloc[near_rows])
    at = np.searchsorted(near_rows, rows)
    pos = sub.case_pos[at]
    case_pos = np.full(len(rows), -1, dtype=np.int64)
    case_pos[pos >= 0] = case_rows[pos[pos >= 0]]
    return case_pos, sub.duplicate[at]


def key_positions(keys: pd.Series, ids: pd.Series) -> np.ndarray:
    """Per key, the position of the first row of ``ids`` with the same trimmed id; -1 when none.

    The join of a table keyed by an id (e.g. rectifications by eval_id) onto the table that owns the
    id, by the same trimming as :func:`link`; a blank key matches nothing.
    """
    found = pc.index_in(_keys(keys), value_set=_keys(ids))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _repeated(codes: np.ndarray) -> np.ndarray:
    """Rows whose (non-negative) code appeared on an earlier row."""
    given = np.flatnonzero(codes >= 0)
    out = np.zeros(len(codes), dtype=bool)
    if not len(given):
        return out
    first = np.full(int(codes.max()) + 1, len(codes), dtype=np.int64)
    np.minimum.at(first, codes[given], given)  # each code's first row
    out[given] = first[codes[given]] != given
    return out


# --- one hashing of the ids per run ------------------------------------------------------------
# Quality, the tables, the ledger and the detectors each call :func:`link` on the same loaded frames
# (or on column selections and copies of them, which share the same Arrow buffers), and the loader
# counts repeated keys with the same encoding: the ids are hashed once per run, not once per caller.
# Entries are keyed by the identity of the immutable Arrow buffers they were computed from (each
# entry holds those buffers, so no other array can take their address while it lives) and by the
# content of the small numeric arrays that take part (times, attempt flags), so a changed frame is a
# different key, never a stale hit. Columns held in Python objects (no Arrow buffers) are not cached.
_ENCODINGS: OrderedDict[tuple, tuple[object, _Encoded]] = OrderedDict()
_LINKAGES: OrderedDict[tuple, tuple[object, Linkage]] = OrderedDict()
MAX_ENCODINGS = 6  # the case ids of both tables and the eval ids, with room for a second window
MAX_LINKAGES = 2
_CACHE_LOCK = threading.Lock()  # the linkage encodes columns on several threads at once


def _arrow_fingerprint(series: pd.Series) -> tuple[tuple, object] | None:
    """A key naming the Arrow buffers behind an Arrow-backed column, and the object that holds them."""
    array = series.array
    if not hasattr(array, "__arrow_array__") or series.dtype == object:
        return None
    chunked = array.__arrow_array__()
    if not isinstance(chunked, pa.ChunkedArray):
        return None
    key = (
        str(chunked.type),
        tuple(
            (
                chunk.offset,
                len(chunk),
                tuple((b.address, b.size) if b is not None else None for b in chunk.buffers()),
            )
            for chunk in chunked.chunks
        ),
    )
    return key, chunked


def _digest(values: np.ndarray) -> tuple:
    """A content key of a numeric array (dtype, length, BLAKE2 of the bytes)."""
    values = np.ascontiguousarray(values)
    return (str(values.dtype), len(values), hashlib.blake2b(values.view(np.uint8), digest_size=16).digest())


def _remember(cache: OrderedDict, key: tuple, value: tuple, limit: int) -> None:
    with _CACHE_LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)


def _recall(cache: OrderedDict, key: tuple) -> object | None:
    """The cached value of ``key`` (now the most recently used), or None."""
    with _CACHE_LOCK:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
        return hit


def forget() -> None:
    """Drop the cached encodings and linkages (the pipeline calls this when its stages are done)."""
    with _CACHE_LOCK:
        _ENCODINGS.clear()
        _LINKAGES.clear()
    release_unused()


class _Encoded(NamedTuple):
    """One id column prepared for the rule: hashes of the trimmed ids, codes, distinct ids.

    The trimmed ids themselves are not kept (as large as the column): recomputed when needed.
    """

    hashes: np.ndarray | None
    codes: np.ndarray
    distinct: int


def _encoded(series: pd.Series) -> _Encoded:
    """Per row, an integer code of the trimmed id (-1 when blank), computed once per column."""
    found = _arrow_fingerprint(series)
    if found is not None and (hit := _recall(_ENCODINGS, found[0])) is not None:
        return hit[1]
    keys = _keys(series)
    hashes = _hash64(keys)
    encoded = _Encoded(hashes, *_encode_keys(keys, hashes))
    if found is not None:
        _remember(_ENCODINGS, found[0], (found[1], encoded), MAX_ENCODINGS)
    return encoded


def distinct_ids(series: pd.Series) -> tuple[int, int]:
    """Non-blank trimmed ids and distinct ones among them (the loader's repeated-key count).

    The encoding is the one :func:`link` uses, computed once for both.
    """
    encoded = _encoded(series)
    return int((encoded.codes >= 0).sum()), encoded.distinct


def _codes(cases: pd.Series, others: pd.Series) -> list[np.ndarray]:
    """One integer code per distinct trimmed id across two columns (-1 for blank or missing).

    Equal codes mean equal ids, in either column; the numbering itself carries no meaning. The
    first column's trimmed ids and hashes are reused when the loader prepared them already.
    """
    known = _encoded(cases)
    keys = _keys(others)
    hashes = _hash64(keys)
    case_keys = _keys(cases)
    if known.hashes is not None and hashes is not None:
        found = _codes_among(known, case_keys, keys, hashes)
        if found is not None:
            return [known.codes, found]
    joint = pa.chunked_array([*case_keys.chunks, *keys.chunks], type=pa.large_string())
    if known.hashes is None or hashes is None:
        codes, _ = _encode_keys(joint, None)
    else:
        codes, _ = _encode_keys(joint, np.concatenate([known.hashes, hashes]))
    return [codes[: len(cases)], codes[len(cases) :]]


def _codes_among(
    known: _Encoded, case_keys: pa.Array, keys: pa.Array, hashes: np.ndarray
) -> np.ndarray | None:
    """Per id of ``keys``, the code of the equal case id (``known``'s numbering), -1 when blank.

    Ids no case has are numbered from ``known.distinct`` on. The cases' distinct hashes are sorted and
    the ids' hashes, sorted too, looked up among them; every id found is compared, as bytes, with its
    case's id, so codes are exact. None when two distinct case ids share a hash or a found id differs
    from its case's (a 64-bit collision): the caller encodes both columns together instead.
    """
    valid = known.codes >= 0
    first_row = np.empty(known.distinct, dtype=np.int64)  # one row of each case code
    first_row[known.codes[valid]] = np.flatnonzero(valid)
    case_hashes = known.hashes[first_row]
    by_hash = np.argsort(case_hashes)
    ordered = case_hashes[by_hash]
    if len(ordered) > 1 and not (ordered[1:] != ordered[:-1]).all():
        return None
    rows = np.flatnonzero(keys.is_valid().to_numpy(zero_copy_only=False)) if keys.null_count else None
    wanted = hashes if rows is None else hashes[rows]
    codes = np.full(len(wanted), -1, dtype=np.int64)
    if len(ordered) and len(wanted):
        asked = np.argsort(wanted)  # sorted queries: the search walks the cases' hashes in order
        at = np.searchsorted(ordered, wanted[asked])
        np.minimum(at, len(ordered) - 1, out=at)
        hit = ordered[at] == wanted[asked]
        codes[asked[hit]] = by_hash[at[hit]]
    matched = np.flatnonzero(codes >= 0)
    given = matched if rows is None else rows[matched]
    if len(matched) and not _same_ids(keys, given, first_row[codes[matched]], case_keys):
        return None
    missing = np.flatnonzero(codes < 0)
    if len(missing):  # ids no case has: numbered among themselves, after the cases' codes
        absent = missing if rows is None else rows[missing]
        own, _ = _encode_keys(keys.take(pa.array(absent)), hashes[absent])
        codes[missing] = own + known.distinct
    if rows is None:
        return codes
    out = np.full(len(keys), -1, dtype=np.int64)
    out[rows] = codes
    return out


def link(cases: pd.DataFrame, evaluations: pd.DataFrame) -> Linkage:
    """Apply the linkage rule to canonical cases and evaluations (see the module docstring).

    Args:
        cases: at least ``case_id`` (rows in load order).
        evaluations: at least ``eval_id`` and ``evaluated_at``; ``case_id`` and ``attempt`` when
            present (a missing ``case_id`` column links nothing, a missing ``attempt`` is 1).
    """
    inputs = _link_inputs(cases, evaluations)
    key = _linkage_key(*inputs)
    if key is not None and (hit := _recall(_LINKAGES, key[0])) is not None:
        return hit[1]
    links = _link(*inputs)
    release_unused()  # the hashing's temporary Arrow buffers
    for flags in vars(links).values():
        flags.setflags(write=False)  # shared by every caller: never changed in place
    if key is not None:
        _remember(_LINKAGES, key[0], (key[1], links), MAX_LINKAGES)
    return links


def _cached_link(cases: pd.DataFrame, evaluations: pd.DataFrame) -> Linkage | None:
    """The linkage of these frames if it has been computed already (else None, nothing computed)."""
    key = _linkage_key(*_link_inputs(cases, evaluations))
    hit = _LINKAGES.get(key[0]) if key is not None else None
    return hit[1] if hit is not None else None


def _link_inputs(
    cases: pd.DataFrame, evaluations: pd.DataFrame
) -> tuple[pd.Series, pd.Series, pd.Series, np.ndarray, np.ndarray]:
    """What the rule reads: case ids, evaluations' case ids and eval ids, times, attempt-1 flags."""
    n_eval = len(evaluations)
    eval_case = (
        evaluations["case_id"] if "case_id" in evaluations else pd.Series([None] * n_eval, dtype="str")
    )
    if "attempt" in evaluations:
        attempt_one = evaluations["attempt"].fillna(1).to_numpy(dtype=np.int64) == 1
    else:
        attempt_one = np.ones(n_eval, dtype=bool)
    evaluated_at = evaluations["evaluated_at"].to_numpy(dtype="datetime64[us]")
    return cases["case_id"], eval_case, evaluations["eval_id"], evaluated_at, attempt_one


def _linkage_key(
    case_ids: pd.Series,
    eval_case: pd.Series,
    eval_ids: pd.Series,
    evaluated_at: np.ndarray,
    attempt_one: np.ndarray,
) -> tuple[tuple, object] | None:
    """The cache key of one linkage (None: a column is not Arrow-backed, nothing is cached)."""
    found = [_arrow_fingerprint(s) for s in (case_ids, eval_case, eval_ids)]
    if any(f is None for f in found):
        return None
    key = (*(f[0] for f in found), _digest(evaluated_at.view(np.int64)), _digest(attempt_one))
    return key, [f[1] for f in found]


_LAST = np.iinfo(np.int64).max  # a missing time sorts after every time


def _first_rows(rows: np.ndarray, codes: np.ndarray, times: np.ndarray, eval_ids: pd.Series) -> np.ndarray:
    """Per code, the row first by (time, eval id), missing ones last: ROW_NUMBER() … = 1.

    The earliest time per code is found without sorting; only the codes with several rows at that
    time (rare) are ordered by their eval ids.

    Args:
        rows: positions of the candidate evaluations.
        codes: their case codes (non-negative).
        times: their ``evaluated_at`` (``datetime64[us]``; NaT is missing).
        eval_ids: the eval ids of every evaluation (indexed by ``rows``; trimmed, a blank sorts last).
    """
    if not len(rows):
        return rows
    at = times.view(np.int64).copy()
    at[np.isnat(times)] = _LAST
    earliest = np.full(int(codes.max()) + 1, _LAST, dtype=np.int64)
    np.minimum.at(earliest, codes, at)
    tied = at == earliest[codes]  # at least one row per code
    per_code = np.bincount(codes[tied], minlength=len(earliest))
    alone = tied & (per_code[codes] == 1)
    several = np.flatnonzero(tied & (per_code[codes] > 1))
    if not len(several):
        return rows[alone]
    tied_ids = _keys(eval_ids).take(pa.array(rows[several]))
    window = pa.table({"code": pa.array(codes[several]), "eval_id": tied_ids})
    order = pc.sort_indices(window, sort_keys=[("code", "ascending"), ("eval_id", "ascending")]).to_numpy()
    ordered = codes[several][order]
    row_one = np.ones(len(order), dtype=bool)
    row_one[1:] = ordered[1:] != ordered[:-1]
    return np.concatenate([rows[alone], rows[several[order[row_one]]]])


def _link(
    case_ids: pd.Series,
    eval_case: pd.Series,
    eval_id: pd.Series,
    evaluated_at: np.ndarray,
    attempt_one: np.ndarray,
) -> Linkage:
    n_eval = len(eval_id)
    # The two hashings are independent and Arrow's kernels release the GIL: one per core.
    with ThreadPoolExecutor(2, thread_name_prefix="linkage") as pool:
        by_eval_id = pool.submit(_encoded, eval_id)
        case_codes, eval_codes = _codes(case_ids, eval_case)
        eval_encoded = by_eval_id.result()
    eval_ids = eval_encoded.codes
    repeated_case = _repeated(case_codes)
    repeated_eval = _repeated(eval_ids)

    # The case of a code is its first row.
    n_codes = int(max(case_codes.max(initial=-1), eval_codes.max(initial=-1))) + 1
    lookup = np.full(n_codes + 1, -1, dtype=np.int64)  # last slot: code -1 (no id)
    keep = (case_codes >= 0) & ~repeated_case
    lookup[case_codes[keep]] = np.flatnonzero(keep)
    case_pos = lookup[eval_codes]
    has_case_id = eval_codes >= 0

    # ROW_NUMBER() OVER (PARTITION BY case_id ORDER BY evaluated_at, eval_id) = 1 (nulls sort last).
    candidates = np.flatnonzero(attempt_one & has_case_id & ~repeated_eval)
    first = np.zeros(n_eval, dtype=bool)
    first[_first_rows(candidates, eval_codes[candidates], evaluated_at[candidates], eval_id)] = True
    duplicate_attempt = attempt_one & has_case_id & ~repeated_eval & ~first
    return Linkage(
        case_code=eval_codes,
        case_pos=case_pos,
        has_case_id=has_case_id,
        repeated_case=repeated_case,
        repeated_eval=repeated_eval,
        first=first,
        duplicate_attempt=duplicate_attempt,
        attempt_one=attempt_one,
    )
