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
