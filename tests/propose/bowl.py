"""A quadratic bowl on the simplex, histories of it, and the ladders the BO proposer tests share."""

import numpy as np

from mixsearch import simplex
from mixsearch.propose.base import History, ProposalContext
from mixsearch.study import FidelityLadder, Rung, SearchSpace

FAST = dict(raw_samples=48, num_restarts=2, maxiter=30, fit_maxiter=40, candidate_set_size=128, num_mv_samples=8)
SPACE3 = SearchSpace(("a", "b", "c"))
PROXY = FidelityLadder(
    (Rung("s", n_params=1_000_000, tokens=20_000_000), Rung("m", n_params=4_000_000, tokens=80_000_000)),
    Rung("T", n_params=32_000_000, tokens=640_000_000),
)
TABLE = FidelityLadder((Rung("cheap", cost=1.0), Rung("big", cost=16.0)), Rung("big", cost=16.0))
OPTIMUM = np.array([0.6, 0.3, 0.1])


def bowl(w: np.ndarray, rung: str) -> float:
    """A quadratic bowl with its minimiser at OPTIMUM; larger rungs sit lower."""
    offset = {"s": 1.0, "m": 0.5, "T": 0.0, "cheap": 1.0, "big": 0.0}[rung]
    w = np.asarray(w, dtype=float)
    centre = np.resize(OPTIMUM, len(w)) / np.resize(OPTIMUM, len(w)).sum()
    return float(4.0 * ((w - centre) ** 2).sum() + 2.0 + offset)


def history(weights, rungs, objective=None, pending=(), pending_rungs=()) -> History:
    w = np.asarray(weights, dtype=float).reshape(len(rungs), -1)
    y = np.array([bowl(x, r) for x, r in zip(w, rungs)]) if objective is None else np.asarray(objective, dtype=float)
    k = w.shape[1]
    return History(w, tuple(rungs), y, np.asarray(pending, dtype=float).reshape(-1, k), tuple(pending_rungs))


def random_history(space: SearchSpace, ladder: FidelityLadder, n: int, seed: int) -> History:
    rng = np.random.default_rng(seed)
    w = simplex.sample(n, space, rng)
    names = ladder.names
    return history(w, [names[i % len(names)] for i in range(n)])


def ctx(space, ladder, h, seed=0, pool=None) -> ProposalContext:
    return ProposalContext(space, ladder, h, seed, pool)


def feasible(w, space: SearchSpace, tol: float = 1e-6) -> bool:
    lo, hi = simplex.bounds_arrays(space)
    w = np.asarray(w)
    return bool(np.all(w >= -tol) and np.all(w >= lo - tol) and np.all(w <= hi + tol) and abs(w.sum() - 1) <= tol)
