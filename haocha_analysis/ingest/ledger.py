"""The row ledger: every row read is kept, repaired or rejected, with its reason (ingest_log.json)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from haocha_analysis.ingest.readers import SourceFile

# --- bookkeeping ---------------------------------------------------------------------------------


@dataclass
class _Entry:
    file: int
    table: str
    what: str
    rows: np.ndarray


@dataclass
class _Ledger:
    """Everything counted on the way, per file and table."""

    files: list[SourceFile] = field(default_factory=list)
    info: list[dict[str, Any]] = field(default_factory=list)
    records: dict[tuple[int, str], int] = field(default_factory=dict)
    rejected: list[_Entry] = field(default_factory=list)
    duplicates: list[_Entry] = field(default_factory=list)
    excluded: list[_Entry] = field(default_factory=list)
    repaired: list[_Entry] = field(default_factory=list)

    def add(self, kind: list[_Entry], file: int, table: str, what: str, rows: Iterable[int]) -> None:
        rows = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)
        if len(rows):
            kind.append(_Entry(file, table, what, rows))

    def add_by_file(
        self, kind: list[_Entry], frame: pd.DataFrame, mask: np.ndarray, table: str, what: str
    ) -> None:
        """Record the rows of ``frame`` selected by ``mask``, split by the file they came from."""
        sub = frame.loc[mask, ["_file", "_row"]]
        for file, rows in sub.groupby("_file", sort=True)["_row"]:
            self.add(kind, int(file), table, what, rows.to_numpy())

    def name(self, file: int) -> str:
        """The file (and sheet) a record came from, as messages name it."""
        return self.files[file].name

    def source_column(self, file: int, table: str, canon: str) -> str:
        """The export's own header for a canonical column of a file (the canonical name if unmapped)."""
        sources = self.info[file]["columns"].get(table, {}).get(canon)
        return " / ".join(sources) if sources else canon
