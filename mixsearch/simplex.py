"""Sampling and projecting on the bounded simplex, without rejection sampling.

The feasible set is ``{w : sum(w) = 1, lo <= w <= hi}``. With only lower bounds a
shifted Dirichlet is exact; once an upper bound can bind we sample the polytope by
hit-and-run (BoTorch's sampler), which is uniform in the limit and never rejects.
"""

from __future__ import annotations

import numpy as np
import torch

from mixsearch.study import SearchSpace


def bounds_arrays(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds as arrays of shape ``[K]``."""
    lo, hi = space.bounds()
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


def upper_bounds_bind(space: SearchSpace) -> bool:
    """Whether any upper bound cuts the lower-bounded simplex."""
    lo, hi = bounds_arrays(space)
    slack = 1.0 - lo.sum()
    return bool(np.any(hi < lo + slack - 1e-12))


def centre(space: SearchSpace) -> np.ndarray:
    """A central feasible point ``[K]``: uniform weights projected into the bounds."""
    k = space.dim
    return project(np.full(k, 1.0 / k), space)


def project(w: np.ndarray, space: SearchSpace) -> np.ndarray:
    """Euclidean projection of ``w`` ``[K]`` onto the bounded simplex.

    Solves ``min ||x - w||`` s.t. ``sum x = 1, lo <= x <= hi`` by bisection on the
    shift ``t`` in ``x = clip(w - t, lo, hi)``; exact to 1e-12.
    """
    lo, hi = bounds_arrays(space)
    w = np.asarray(w, dtype=float)
    a, b = (w - hi).min() - 1.0, (w - lo).max() + 1.0
    for _ in range(200):
        t = 0.5 * (a + b)
        s = np.clip(w - t, lo, hi).sum()
        if s > 1.0:
            a = t
        else:
            b = t
        if b - a < 1e-14:
            break
    x = np.clip(w - 0.5 * (a + b), lo, hi)
    # Remove the last float residue on a coordinate with room to move.
    r = 1.0 - x.sum()
    room = (hi - x) if r > 0 else (x - lo)
    j = int(np.argmax(room))
    x[j] += r
    return x


def sample(n: int, space: SearchSpace, rng: np.random.Generator, alpha: float | np.ndarray = 1.0) -> np.ndarray:
    """Draw ``n`` mixtures from the bounded simplex.

    Args:
        n: Number of samples.
        space: The search space.
        rng: Source of randomness (determinism: same seed, same samples).
        alpha: Dirichlet concentration (scalar or ``[K]``); used exactly when no upper
            bound binds. With binding upper bounds the samples are uniform on the polytope.

    Returns:
        ``[n, K]`` mixtures; each row sums to 1 and respects the bounds.
    """
    lo, hi = bounds_arrays(space)
    k = space.dim
    if n <= 0:
        return np.zeros((0, k))
    slack = 1.0 - lo.sum()
    if slack <= 1e-12:
        return np.repeat(lo[None, :], n, axis=0)
    if not upper_bounds_bind(space):
        z = rng.dirichlet(np.broadcast_to(np.asarray(alpha, dtype=float), (k,)), size=n)
        return lo[None, :] + slack * z
    return polytope_samples(n, space, seed=int(rng.integers(0, 2**31 - 1)))


def polytope_samples(n: int, space: SearchSpace, seed: int) -> np.ndarray:
    """Hit-and-run samples ``[n, K]`` from the bounded simplex (BoTorch)."""
    from botorch.utils.sampling import get_polytope_samples

    lo, hi = bounds_arrays(space)
    k = space.dim
    free = np.where(hi - lo > 1e-12)[0]
    out = np.repeat(lo[None, :], n, axis=0).astype(float)
    if free.size == 0:
        return out
    bounds = torch.tensor(np.stack([lo[free], hi[free]]), dtype=torch.double)
    rhs = 1.0 - lo[np.setdiff1d(np.arange(k), free)].sum()
    eq = [(torch.arange(free.size), torch.ones(free.size, dtype=torch.double), float(rhs))]
    x = get_polytope_samples(n, bounds, equality_constraints=eq, seed=seed, n_burnin=200, n_thinning=max(2 * free.size, 8))
    out[:, free] = x.cpu().numpy()
    return np.stack([project(row, space) for row in out])


def simplex_constraints(space: SearchSpace, dtype: torch.dtype = torch.double) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor, float]]]:
    """Box bounds ``[2, K]`` and the sum-to-one equality constraint in BoTorch's format."""
    lo, hi = bounds_arrays(space)
    bounds = torch.tensor(np.stack([lo, hi]), dtype=dtype)
    eq = [(torch.arange(space.dim), torch.ones(space.dim, dtype=dtype), 1.0)]
    return bounds, eq
