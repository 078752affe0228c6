"""Privacy on ingest: identity and phone numbers never reach an output.

The evaluator's identity number or mobile becomes ``evaluator_key`` = sha256(salt + number), a one-way
key that still links one person's evaluations within an installation (the salt is configuration:
``HAOCHA_SALT`` or ``.haocha-salt``). Every other kept free-text column (comments, operator, unknown
extra columns) is scrubbed: an identity number or mobile found in it is replaced by a masked token.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from haocha_analysis.core.arrays import string_buffers

# Separators people type inside a number: spaces, dashes, dots, slashes (full-width ones are folded
# to these first). Up to three between two digits ("370303 - 19900101").
_SEP = r"[ \t\-–—./_·]{0,3}"
_D = "[0-9]"


def _spaced(*parts: str) -> str:
    """Join character classes with an optional separator between every two of them."""
    return _SEP.join(parts)


# 18-character resident identity number (GB 11643: 17 digits + check digit 0-9 or X), written whole
# or grouped (6-8-4, 3-3-4-4-4 …) with spaces or dashes. Only digits count as neighbours:
# "ID370302…" or "…1234abc" still hold an identity number, while a longer run of digits (a case
# number) does not.
_ID18 = _spaced(*[_D] * 17, "[0-9Xx]")
# 15-digit identity number (issued before 1999): region (6), YYMMDD, sequence (3); the date must be
# a date, so other 15-digit numbers in text are left alone.
_ID15 = _spaced(
    *[_D] * 6,
    _D,
    _D,
    f"(?:0{_SEP}[1-9]|1{_SEP}[0-2])",
    f"(?:0{_SEP}[1-9]|[12]{_SEP}[0-9]|3{_SEP}[01])",
    *[_D] * 3,
)
# A digit right before or after makes it part of a longer number; a separated digit does not (a
# masked neighbour costs nothing, a leaked number does).
_BEFORE = r"(?<![0-9])"
_AFTER = r"(?![0-9])"
ID_NUMBER_PATTERN = f"{_BEFORE}(?:{_ID18}|{_ID15}){_AFTER}"
# Mainland mobile: 11 digits starting 13-19, with any grouping (3-4-4, 3-3-5 …) of spaces, dashes,
# dots or slashes, optionally after +86 / 0086 / (+86).
MOBILE_PATTERN = rf"{_BEFORE}(?:(?:\(?(?:\+|00)?86\)?){_SEP})?" + _spaced("1", "[3-9]", *[_D] * 9) + _AFTER
ID_MASK = "[证件号已脱敏]"
MOBILE_MASK = "[手机号已脱敏]"
_ID_RE = re.compile(ID_NUMBER_PATTERN)
_MOBILE_RE = re.compile(MOBILE_PATTERN)
_ANY_PII = f"(?:{ID_NUMBER_PATTERN})|(?:{MOBILE_PATTERN})"
_DIGIT_FOLD = str.maketrans(
    {chr(0xFF10 + i): str(i) for i in range(10)}
    | {"Ｘ": "X", "ｘ": "x", "＋": "+", "－": "-", "\u3000": " ", "．": ".", "／": "/", "（": "(", "）": ")"}
    | {
        "\u00a0": " ",
        "\u2002": " ",
        "\u2003": " ",
        "\u2009": " ",
        "\u2212": "-",
        "\u2010": "-",
        "\u2011": "-",
    }
)
# A cell can hold a number only when it has 11 digits (of any width) with at most three other
# characters between two of them: a fast pre-filter (Arrow's RE2) before the exact patterns above.
_CANDIDATE = r"[0-9０-９](?:[^0-9０-９]{0,3}[0-9０-９]){10}"
# A value that already is a key (lower-case hex, 16-64 characters as the canonical schema allows) is
# kept, so canonical files round-trip; an all-digit value could be an identity number and is hashed.
_HASHED = re.compile(r"^(?=[0-9a-f]*[a-f])[0-9a-f]{16,64}$")


# Full-width digits, separators and a +86 / 0086 prefix are how one number comes in different exports.
_NUMBER_SEPARATORS = r"[\s\-–—./_·()]"
_COUNTRY_PREFIX = r"^(?:\+|00)?86(?=1[3-9][0-9]{9}$)"


def _normalize_numbers(values: pd.Series) -> pd.Series:
    """One written form per identity/phone number (the one rule :func:`hash_keys` hashes)."""
    text = values.str.normalize("NFKC").str.strip().str.upper()
    return text.str.replace(_NUMBER_SEPARATORS, "", regex=True).str.replace(_COUNTRY_PREFIX, "", regex=True)


def hash_value(value: str, salt: str) -> str:
    """Salted sha256 hex of one identity/phone number (normalized first), as :func:`hash_keys`."""
    return str(hash_keys(pd.Series([value], dtype="str"), salt).iloc[0])


def hash_keys(values: pd.Series, salt: str) -> pd.Series:
    """Turn raw identity/phone numbers into evaluator keys; missing stays missing.

    Normalization is vectorized and hashing runs once per distinct value (``pd.factorize``), not per
    row; :func:`hash_value` gives the same key for one value. Values that already are keys (16-64
    lower-case hex characters, not all digits) are kept as they are.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) == 0:
        return pd.Series(pd.NA, index=values.index, dtype="str")
    distinct = pd.Series(uniques, dtype="str")
    already = distinct.str.fullmatch(_HASHED.pattern).to_numpy(dtype=bool)
    normalized = _normalize_numbers(distinct)
    prefix = f"{salt}:"
    keys = np.array(
        [hashlib.sha256((prefix + v).encode()).hexdigest() for v in normalized.tolist()], dtype=object
    )
    keys[already] = distinct.to_numpy(dtype=object)[already]
    out = np.where(codes >= 0, keys[np.maximum(codes, 0)], None)
    return pd.Series(out, index=values.index, dtype="str")


def _scrub_text(text: str) -> str:
    folded = text.translate(_DIGIT_FOLD)
    if not (_ID_RE.search(folded) or _MOBILE_RE.search(folded)):
        return text
    return _MOBILE_RE.sub(MOBILE_MASK, _ID_RE.sub(ID_MASK, folded))


def scrub(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Mask identity and phone numbers inside free text, in every written form.

    Python runs once per distinct value that could hold a number (11+ digits with at most one
    separator between two of them), never per row. A changed value is folded to ASCII digits and
    separators; untouched values keep their characters.

    Returns:
        The scrubbed column (as strings) and the positions of the rows that were changed.
    """
    text = values if str(values.dtype) == "str" else values.astype("str")
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    if len(uniques) == 0:
        return text, np.zeros(0, dtype=np.int64)
    distinct = pd.Series(uniques, dtype="str")
    candidate = np.flatnonzero(distinct.str.contains(_CANDIDATE, regex=True).to_numpy(dtype=bool))
    changed = {i: s for i in candidate if (s := _scrub_text(uniques[i])) != uniques[i]}
    if not changed:
        return text, np.zeros(0, dtype=np.int64)
    replaced = np.zeros(len(uniques), dtype=bool)
    replaced[list(changed)] = True
    hit = np.flatnonzero(replaced[np.maximum(codes, 0)] & (codes >= 0))
    text = text.copy()
    text.iloc[hit] = [changed[c] for c in codes[hit]]
    return text, hit


def contains_pii(text: str) -> bool:
    """True when a text holds something shaped like an identity number or a mobile."""
    return _scrub_text(text) != text


KEY_LENGTHS = (16, 64)  # an evaluator key: lowercase hexadecimal of 16 to 64 characters
IDENTITY_DIGITS = 18  # all digits of this length is an identity number, though it is hex too
_SCAN_BYTES = 1 << 22  # bytes checked at a time (a few MB of temporaries, whatever the column)


def _hex_rows(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per row of one ``large_string`` chunk: 16–64 bytes, every one of them 0-9 or a-f; its bytes."""
    offsets, data = string_buffers(chunk)
    lengths = np.diff(offsets)  # bytes; a key's bytes are its characters
    key = (lengths >= KEY_LENGTHS[0]) & (lengths <= KEY_LENGTHS[1])
    first, last = int(offsets[0]), int(offsets[-1])
    for start in range(first, last, _SCAN_BYTES):
        block = data[start : min(start + _SCAN_BYTES, last)]
        # uint8 arithmetic wraps: a byte is a digit when b - '0' < 10, a letter a-f when b - 'a' < 6
        outside = np.flatnonzero(((block - np.uint8(48)) >= 10) & ((block - np.uint8(97)) >= 6))
        if len(outside):
            key[np.searchsorted(offsets, outside + start, side="right") - 1] = False
    return key, lengths


def not_a_key(values: pd.Series) -> np.ndarray:
    """Mask of given values that are not evaluator keys (hex of 16-64 characters).

    An all-digit value of 18 characters is hex too, but it is an identity number, never a key.
    Checked on the Arrow bytes in place (a key is ASCII: any byte outside 0-9a-f, a multi-byte
    character included, makes a value not a key), with no regular expression over every row.
    """
    arrow = pa.array(values.astype("str"), type=pa.large_string(), from_pandas=True)
    chunks = arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]
    given = np.zeros(len(values), dtype=bool)
    key = np.zeros(len(values), dtype=bool)
    eighteen = np.zeros(len(values), dtype=bool)
    at = 0
    for chunk in chunks:
        rows = slice(at, at + len(chunk))
        given[rows] = chunk.is_valid().to_numpy(zero_copy_only=False)
        key[rows], lengths = _hex_rows(chunk)
        eighteen[rows] = lengths == IDENTITY_DIGITS
        at += len(chunk)
    eighteen = np.flatnonzero(key & given & eighteen)
    if len(eighteen):
        digits = pc.utf8_is_digit(arrow.take(pa.array(eighteen))).to_numpy(zero_copy_only=False)
        key[eighteen[digits]] = False
    return given & ~key


# Columns that are not free text: keys link records (a scrubbed key would break a link), codes are
# checked against their tables, and evaluator_key must already be a key (checked on load).
NOT_FREE_TEXT = frozenset(
    {
        "case_id",
        "eval_id",
        "unit_id",
        "matter_code",
        "region_code",
        "channel",
        "verdict",
        "follow_up",
        "evaluator_key",
    }
)


def scrub_frame(frame: pd.DataFrame) -> dict[str, int]:
    """Scrub a canonical table in place as it is loaded; return the rows changed per column.

    Every text column except keys and codes is scrubbed with :func:`scrub`.
    """
    changed: dict[str, int] = {}
    for col in frame.columns:
        s = frame[col]
        if col in NOT_FREE_TEXT or not (s.dtype == object or str(s.dtype) in ("str", "string")):
            continue
        cleaned, hit = scrub(s)
        if len(hit):
            frame[col] = cleaned
            changed[col] = len(hit)
    return changed
