"""Privacy on ingest: identity and phone numbers never reach an output.

The evaluator's identity number or mobile becomes ``evaluator_key`` = sha256(salt + number), a one-way
key that still links one person's evaluations within an installation (the salt is configuration:
``HAOCHA_SALT`` or ``.haocha-salt``). Every other kept free-text column (comments, operator, unknown
extra columns) is scrubbed: an identity number or mobile found in it is replaced by a masked token.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
import pandas as pd

# 18-character resident identity number (GB 11643: 17 digits + check digit 0-9 or X).
# Only digits count as neighbours: "ID370302…" or "…1234abc" still hold an identity number, while a
# longer run of digits (a case number) does not.
ID_NUMBER_PATTERN = r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])"
# Mainland mobile: 11 digits starting 13-19, optionally +86 and written 3-4-4 with spaces or dashes.
MOBILE_PATTERN = r"(?<![0-9])(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?![0-9])"
ID_MASK = "[证件号已脱敏]"
MOBILE_MASK = "[手机号已脱敏]"
_ID_RE = re.compile(ID_NUMBER_PATTERN)
_MOBILE_RE = re.compile(MOBILE_PATTERN)
_ANY_PII = f"(?:{ID_NUMBER_PATTERN})|(?:{MOBILE_PATTERN})"
_DIGIT_FOLD = str.maketrans(
    {chr(0xFF10 + i): str(i) for i in range(10)} | {"Ｘ": "X", "ｘ": "x", "＋": "+", "－": "-", "\u3000": " "}
)
# A value that already is a key (lower-case hex, 16-64 characters as the canonical schema allows) is
# kept, so canonical files round-trip; an all-digit value could be an identity number and is hashed.
_HASHED = re.compile(r"^(?=[0-9a-f]*[a-f])[0-9a-f]{16,64}$")


def _normalize_number(value: str) -> str:
    # Full-width digits, spaces and dashes are how the same number comes in different exports.
    s = unicodedata.normalize("NFKC", value).strip().upper()
    return re.sub(r"[\s-]", "", s)


def hash_value(value: str, salt: str) -> str:
    """Salted sha256 hex of one identity/phone number (normalized first)."""
    return hashlib.sha256(f"{salt}:{_normalize_number(value)}".encode()).hexdigest()


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
    hashed_already = distinct.str.fullmatch(_HASHED.pattern).to_numpy(dtype=bool)
    normalized = distinct.str.normalize("NFKC").str.strip().str.upper().str.replace(r"[\s-]", "", regex=True)
    prefix = f"{salt}:"
    keys = np.array(
        [hashlib.sha256((prefix + v).encode()).hexdigest() for v in normalized.tolist()], dtype=object
    )
    keys[hashed_already] = distinct.to_numpy(dtype=object)[hashed_already]
    out = np.where(codes >= 0, keys[np.maximum(codes, 0)], None)
    return pd.Series(out, index=values.index, dtype="str")


def scrub(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Mask identity and phone numbers inside free text.

    Returns:
        The scrubbed column (as strings) and the positions of the rows that were changed.
    """
    text = values if str(values.dtype) == "str" else values.astype("str")
    # Full-width digits (１３８…) are the same number: fold them (and Ｘ, ＋, －) to ASCII before
    # matching; other characters, full-width punctuation included, are left as they were.
    folded = text.str.translate(_DIGIT_FOLD)
    hit = folded.str.contains(_ANY_PII, regex=True, na=False).to_numpy(dtype=bool)
    if not hit.any():
        return text, np.flatnonzero(hit)
    fixed = (
        folded[hit].str.replace(_ID_RE, ID_MASK, regex=True).str.replace(_MOBILE_RE, MOBILE_MASK, regex=True)
    )
    text = text.copy()
    text[hit] = fixed
    return text, np.flatnonzero(hit)


def contains_pii(text: str) -> bool:
    """True when a text holds something shaped like an identity number or a mobile."""
    text = text.translate(_DIGIT_FOLD)
    return bool(_ID_RE.search(text) or _MOBILE_RE.search(text))
