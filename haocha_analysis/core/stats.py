"""Statistics helpers: Chernoff-style tail bounds for binomial and Poisson counts."""

from __future__ import annotations

import numpy as np

# --- statistics helpers ------------------------------------------------------------------------


def _kl(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Bernoulli KL divergence KL(q || p), elementwise, safe at 0 and 1."""
    q = np.clip(q, 1e-12, 1 - 1e-12)
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))


def binomial_tail_bound(k: np.ndarray, n: np.ndarray, p: np.ndarray, lower: bool) -> np.ndarray:
    """Chernoff–Hoeffding bound on P(X ≤ k) (lower) or P(X ≥ k) (upper), X ~ Binomial(n, p).

    exp(−n·KL(k/n ‖ p)) when k/n is on the tail's side of p, else 1. An upper bound of the exact
    probability, so a finding it supports is at least as significant as stated.
    """
    k, n, p = (np.asarray(x, dtype=float) for x in (k, n, p))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(n > 0, k / np.where(n > 0, n, 1), 0.0)
        bound = np.exp(-n * _kl(q, p))
    side = q < p if lower else q > p
    return np.where(side & (n > 0), bound, 1.0)


def poisson_lower_bound(k: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Chernoff bound on P(X ≤ k), X ~ Poisson(mu): exp(−mu + k − k·ln(k/mu)) for k < mu, else 1."""
    k, mu = np.asarray(k, dtype=float), np.asarray(mu, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        klog = np.where(k > 0, k * np.log(np.where(k > 0, k, 1) / np.where(mu > 0, mu, 1)), 0.0)
        bound = np.exp(-mu + k - klog)
    return np.where((k < mu) & (mu > 0), bound, 1.0)


def binomial_lower_tail(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact P(X ≤ k), X ~ Binomial(n, p), elementwise.

    Sums the probabilities in log space (pmf(j + 1) = pmf(j)·(n − j)/(j + 1)·p/(1 − p)), one unit at a
    time: meant for the few units a rule has already singled out, where the Chernoff bound's slack
    (a factor of about √(2π·n·p·(1 − p))) would decide.
    """
    k, n, p = (np.atleast_1d(np.asarray(x, dtype=float)) for x in np.broadcast_arrays(k, n, p))
    out = np.ones(len(k))
    for i, (ki, ni, pi) in enumerate(zip(k, n, p, strict=True)):
        if ni <= 0 or ki >= ni or pi <= 0:
            continue
        if pi >= 1:
            out[i] = 0.0
            continue
        j = np.arange(int(ki))
        steps = np.log(ni - j) - np.log(j + 1) + np.log(pi / (1 - pi))
        log_pmf = ni * np.log1p(-pi) + np.concatenate([[0.0], np.cumsum(steps)])
        top = log_pmf.max()
        out[i] = min(1.0, float(np.exp(top) * np.exp(log_pmf - top).sum()))
    return out
