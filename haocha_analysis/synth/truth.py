"""What a generated period is and how its truth is told: shared by the default and realistic models.

The default generator (:mod:`.generate`) and the realistic one (:mod:`.realistic`) both return a
:class:`SynthResult`, draw from :func:`named_rng` streams and describe their injected anomalies
with :func:`build_truth_entries` and the exact record-level totals with :func:`record_level_counts`.
Kept here so that neither generator imports the other to reach them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from haocha_analysis.analysis.anomalies.settings import KINDS
from haocha_analysis.core.config import REPORT_DELAY_LIMIT
from haocha_analysis.core.periods import Period
from haocha_analysis.synth.inject import Injected
from haocha_analysis.synth.records import NA, ONSITE

LIMIT_S = int(REPORT_DELAY_LIMIT.total_seconds())


@dataclass
class SynthResult:
    """Generated canonical tables of one period and their ground truth."""

    tables: dict[str, pd.DataFrame]
    truth: dict
    plan: pd.DataFrame = field(repr=False)
    period: Period | None = None
    seconds: float = 0.0


def named_rng(seed: int, *names: str) -> np.random.Generator:
    """A random stream named by a seed and names (stable across runs and processes)."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(n).encode("utf-8")) for n in names]
    return np.random.default_rng(np.random.SeedSequence(words))


def record_level_counts(rec, cal_end_s: int | None = None) -> dict:
    """Exact record-level totals of the generated data (the quality checks' expected counts)."""
    c, e = rec.cases, rec.evals
    linked = e["case"] >= 0
    fin = c["finished"][np.where(linked, e["case"], 0)]
    case_late = (c["reported"] != NA) & (c["reported"] - c["finished"] > LIMIT_S)
    eval_late = (e["reported"] != NA) & (e["reported"] - e["evaluated"] > LIMIT_S)
    att1 = (e["attempt"] == 1) & linked
    cases_with_first = len(np.unique(e["case"][att1]))
    bad = e["sat"] <= 2
    valid = rec.bad_valid if rec.bad_valid is not None else np.zeros(len(bad), bool)
    onsite = np.isin(e["channel"], ONSITE)
    return {
        "cases": len(c["unit"]),
        "evaluations": len(e["case"]),
        "first_evaluations": int(cases_with_first + (~linked & (e["attempt"] == 1)).sum()),
        "case_first_evaluations": int(cases_with_first),
        "late_reports": {"cases": int(case_late.sum()), "evaluations": int(eval_late.sum())},
        "missing_reported_at": {
            "cases": int((c["reported"] == NA).sum()),
            "evaluations": int((e["reported"] == NA).sum()),
        },
        "duplicate_evaluations": int(att1.sum() - cases_with_first),
        "evals_before_case": int((linked & (e["evaluated"] < fin)).sum()),
        "raw_bad": int(bad.sum()),
        "invalid_bad": int((bad & ~valid).sum()),
        "valid_bad": int((bad & valid).sum()),
        "unlinked_evaluations": int((~linked).sum()),
        "followups": int((e["attempt"] >= 2).sum()),
        "active": int((e["active"] == 1).sum()),
        "system_default": int((e["active"] == 0).sum()),
        "active_unknown": int((e["active"] < 0).sum()),
        "onsite": int(onsite.sum()),
        "cases_without_matter": 0,
    }


def build_truth_entries(
    plan: pd.DataFrame, injected: list[Injected], tables: dict, order: dict
) -> list[dict]:
    """Truth entries of injected anomalies, their row indices mapped to the written ids."""
    case_ids = tables["cases"]["case_id"].to_numpy()
    eval_ids = tables["evaluations"]["eval_id"].to_numpy()
    eval_pos = np.empty(len(order["eval_order"]), dtype=np.int64)
    eval_pos[order["eval_order"]] = np.arange(len(eval_pos))
    unit_ids = plan["unit_id"].to_numpy()
    entries = []
    for a in injected:
        ids = (
            case_ids[order["case_pos"][a.case_rows]]
            if a.table == "cases"
            else eval_ids[eval_pos[a.eval_rows]]
        )
        entries.append(
            truth_entry(a.kind, unit_ids[a.unit], a.table, sorted(ids.tolist()), a.count, a.detail, a.source)
        )
    entries.sort(key=lambda a: (list(KINDS).index(a["kind"]), a["unit_id"]))
    return entries


def truth_entry(kind, unit_id, table, ids, count, detail, source="injected") -> dict:
    """One anomaly of truth.json: its kind, unit, table, record ids, count, detail and source."""
    return {
        "kind": kind,
        "unit_id": str(unit_id),
        "table": table,
        "record_ids": ids,
        "count": int(count if count is not None else len(ids)),
        "detail": detail,
        "source": source,
    }
