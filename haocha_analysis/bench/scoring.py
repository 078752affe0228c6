"""Scoring findings against the synthetic ground truth (truth.json): precision and recall per kind."""

from __future__ import annotations

import numpy as np
import pandas as pd

from haocha_analysis.analysis.anomalies.settings import KINDS

# --- evaluation against ground truth ----------------------------------------------------------


def evaluate(findings: pd.DataFrame, truth: dict) -> pd.DataFrame:
    """Unit-level precision and recall per kind against a ground truth (synth's ``truth.json``).

    A finding is a true positive when the truth lists the same (kind, unit_id). Precision is
    TP/(TP+FP) and recall TP/(TP+FN); undefined ones (no findings, or no truth) are NaN. Pairs the
    truth lists under ``unscored`` (e.g. units the published figures put in the ambiguous band of
    the 主动评价率 limit) count neither way: a finding there is not a false positive, and its absence
    not a false negative.

    Args:
        findings: the findings table.
        truth: {"anomalies": [{"kind", "unit_id", ...}, ...], "unscored": [...]}.

    Returns:
        One row per kind (KINDS order) and a 合计 row: kind, kind_cn, truth, found, tp, fp, fn,
        precision, recall.
    """
    items = truth.get("anomalies", []) if isinstance(truth, dict) else list(truth)
    true_pairs = {(a["kind"], str(a["unit_id"])) for a in items if a.get("unit_id") is not None}
    found_pairs = (
        set(zip(findings["kind"], findings["unit_id"].astype("str"), strict=True)) if len(findings) else set()
    )
    found_pairs -= _unscored_pairs(truth) - true_pairs
    rows = []
    extra = sorted({k for k, _ in true_pairs | found_pairs} - set(KINDS))
    for kind in [*KINDS, *extra]:
        t = {u for k, u in true_pairs if k == kind}
        f = {u for k, u in found_pairs if k == kind}
        rows.append(
            {
                "kind": kind,
                "kind_cn": KINDS.get(kind, kind),
                "truth": len(t),
                "found": len(f),
                "tp": len(t & f),
                "fp": len(f - t),
                "fn": len(t - f),
            }
        )
    out = pd.DataFrame(rows)
    total = out[["truth", "found", "tp", "fp", "fn"]].sum()
    out.loc[len(out)] = {"kind": "all", "kind_cn": "合计", **total.to_dict()}
    out["precision"] = out["tp"] / (out["tp"] + out["fp"]).replace(0, np.nan)
    out["recall"] = out["tp"] / (out["tp"] + out["fn"]).replace(0, np.nan)
    return out


def _unscored_pairs(truth: dict | list) -> set[tuple[str, str]]:
    """(kind, unit_id) pairs the truth lists as not scored (truth["unscored"])."""
    items = truth.get("unscored", []) if isinstance(truth, dict) else []
    return {(a["kind"], str(a["unit_id"])) for a in items if a.get("unit_id") is not None}


def mismatches(findings: pd.DataFrame, truth: dict, kind: str | None = None) -> pd.DataFrame:
    """The false positives and false negatives, unit by unit (for telling truth from detector)."""
    items = truth.get("anomalies", []) if isinstance(truth, dict) else list(truth)
    t = pd.DataFrame(
        [{"kind": a["kind"], "unit_id": str(a["unit_id"])} for a in items], columns=["kind", "unit_id"]
    )
    unscored = _unscored_pairs(truth)
    if unscored and len(findings):
        pairs = pd.Series(list(zip(findings["kind"], findings["unit_id"].astype(str), strict=True)))
        findings = findings[~pairs.isin(unscored).to_numpy()]
    f = findings[["kind", "unit_id", "measure", "expected", "description"]]
    m = t.assign(in_truth=True).merge(f.assign(found=True), on=["kind", "unit_id"], how="outer")
    m = m[m["in_truth"].isna() | m["found"].isna()]
    m["error"] = np.where(m["found"].isna(), "FN", "FP")
    if kind:
        m = m[m["kind"] == kind]
    return m.drop(columns=["in_truth", "found"]).reset_index(drop=True)
