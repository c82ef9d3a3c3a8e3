"""Mixtures as inputs of the mixing laws: checking them, the targets' weights, the best mixture.

Shared by :mod:`mixsearch.laws.mixing` (one scale) and :mod:`mixsearch.laws.joint` (every
scale): a mixture is a row of K non-negative weights summing to one (renormalised within
:data:`SUM_TOL`), and the best mixture under a law is found on the bounded simplex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize

SUM_TOL = 0.02  # published tables round weights to 3 decimals; more drift is a wrong column


@dataclass(frozen=True)
class MixtureOptimum:
    """The best mixture under a fitted mixing law.

    Attributes:
        weights: Domain → weight, on the simplex within the bounds.
        value: Predicted total loss at ``weights``.
        lower: Lower end of its interval (``None`` without uncertainty).
        upper: Upper end.
        extrapolated: Whether a weight lies outside the range seen in the fitted runs.
    """

    weights: dict[str, float]
    value: float
    lower: float | None
    upper: float | None
    extrapolated: bool


def mixture_rows(weights: Any, components: Sequence[str]) -> np.ndarray:
    """Mixtures to predict at, as ``[m, K]`` in component order, renormalised to sum to one.

    Args:
        weights: ``{domain: w}`` (missing domains are 0), a ``[K]`` vector or ``[m, K]`` rows.
        components: The K domain names, in column order.

    Raises:
        ValueError: unknown domains, a wrong width, negative weights, rows not summing to 1.
    """
    comps = list(components)
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(comps))
        if unknown:
            raise ValueError(f"weights: unknown domain(s) {', '.join(unknown)}; the law knows {', '.join(comps)}")
        w = np.array([[float(weights.get(c, 0.0)) for c in comps]])
    else:
        w = np.atleast_2d(np.asarray(weights, dtype=float))
    if w.ndim != 2 or w.shape[1] != len(comps):
        raise ValueError(f"weights: expected {len(comps)} components ({', '.join(comps)}), got shape {np.shape(weights)}")
    if not np.all(np.isfinite(w)) or np.any(w < -1e-12):
        raise ValueError("weights: must be non-negative finite numbers")
    sums = w.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > SUM_TOL):
        raise ValueError(f"weights: each mixture must sum to 1, got sums {np.round(sums[np.abs(sums - 1.0) > SUM_TOL][:3], 4).tolist()}")
    return np.clip(w, 0.0, None) / sums[:, None]


def training_mixtures(weights: Any, components: Sequence[str]) -> np.ndarray:
    """The fitted runs' mixtures as ``[n, K]``, checked and renormalised to sum to one.

    Raises:
        ValueError: a wrong width, negative or non-finite weights, a row not summing to 1 (named).
    """
    r = np.atleast_2d(np.asarray(weights, dtype=float))
    if r.shape[1] != len(components):
        raise ValueError(f"weights: expected {len(components)} columns ({', '.join(components)}), got {r.shape[1]}")
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("weights: must be non-negative finite numbers")
    sums = r.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOL)
    if bad.size:
        raise ValueError(f"weights: row {int(bad[0])} sums to {sums[bad[0]]:.4g}, not 1")
    return r / sums[:, None]


def target_weight_map(names: Sequence[str], target_weights: Mapping[str, float] | None) -> dict[str, float]:
    """Each target's weight in the total (default 1), checked against the target names."""
    tw = {t: float((target_weights or {}).get(t, 1.0)) for t in names}
    if target_weights:
        unknown = sorted(set(target_weights) - set(names))
        if unknown:
            raise ValueError(f"target_weights: unknown target(s) {', '.join(unknown)}")
    if sum(tw.values()) <= 0:
        raise ValueError("target_weights: sum to 0")
    return tw


def minimise_on_simplex(
    total: Callable[[np.ndarray], tuple[float, np.ndarray]],
    components: Sequence[str],
    lower: Mapping[str, float] | None = None,
    upper: Mapping[str, float] | None = None,
    n_starts: int = 16,
    seed: int = 0,
) -> np.ndarray:
    """The mixture ``[K]`` minimising ``total`` on the simplex within per-domain bounds.

    SLSQP with the analytic gradient from ``n_starts`` feasible starts (the centre and
    Dirichlet / hit-and-run samples of the bounded simplex).

    Args:
        total: ``r [K] -> (value, gradient [K])``.
        components: The K domain names.
        lower: Domain → lower bound (missing: 0).
        upper: Domain → upper bound (missing: 1).
        n_starts: Starts.
        seed: Seed of the starts.

    Raises:
        ValueError: unknown domains or an empty feasible set.
    """
    from mixsearch import simplex
    from mixsearch.study import SearchSpace

    comps = list(components)
    for label, bounds in (("lower", lower or {}), ("upper", upper or {})):
        unknown = sorted(set(bounds) - set(comps))
        if unknown:
            raise ValueError(f"{label}: unknown domain(s) {', '.join(unknown)}")
    space = SearchSpace(tuple(comps), dict(lower or {}), dict(upper or {}))
    lo, hi = simplex.bounds_arrays(space)
    if lo.sum() > 1 + 1e-9 or hi.sum() < 1 - 1e-9 or np.any(lo > hi):
        raise ValueError("bounds: the bounded simplex is empty")
    rng = np.random.default_rng(seed)
    starts = np.vstack([simplex.centre(space)[None, :], simplex.sample(max(n_starts - 1, 0), space, rng)])
    cons = [{"type": "eq", "fun": lambda r: r.sum() - 1.0, "jac": lambda r: np.ones_like(r)}]
    best_r, best_v = None, np.inf
    for s in starts:
        res = minimize(total, s, jac=True, method="SLSQP", bounds=list(zip(lo, hi)), constraints=cons, options={"ftol": 1e-12, "maxiter": 500})
        r = simplex.project(res.x, space)
        v = total(r)[0]
        if v < best_v:
            best_r, best_v = r, v
    assert best_r is not None
    return best_r


def loss_matrix(losses: Any, n: int) -> tuple[np.ndarray, list[str]]:
    if isinstance(losses, Mapping):
        names = list(losses)
        y = np.column_stack([np.asarray(losses[k], dtype=float).reshape(-1) for k in names])
    else:
        y = np.asarray(losses, dtype=float)
        y = y[:, None] if y.ndim == 1 else y
        names = ["loss"] if y.shape[1] == 1 else [f"target{i}" for i in range(y.shape[1])]
    if y.shape[0] != n:
        raise ValueError(f"losses: expected {n} rows (one per mixture), got {y.shape[0]}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("losses: must be positive finite numbers")
    return y, names


__all__ = ["SUM_TOL", "MixtureOptimum", "loss_matrix", "minimise_on_simplex", "mixture_rows", "target_weight_map", "training_mixtures"]
