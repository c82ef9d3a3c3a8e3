"""Pool helpers every proposer shares: which (mixture, rung) pairs of a finite pool are still free.

In pool mode (tables, pooled synthetic worlds) a proposer may only pick pool entries that
are not yet observed, pending or failed: the ledger would find such a trial rather than
run it again. Keys use canonical weights, as trial ids do, so a pool row and the trial
made from it compare equal even when rounding moves a weight by 1e-6.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mixsearch import simplex
from mixsearch.candidate import Candidate, canonical_weights
from mixsearch.propose.base import ProposalContext, as_candidates

PoolKey = tuple[tuple[float, ...], str]


def pool_key(w: np.ndarray, rung: str) -> PoolKey:
    """The key of one (mixture, rung) pair: canonical weights and the rung name."""
    return canonical_weights(np.asarray(w, dtype=float).tolist()), rung


def taken(ctx: ProposalContext) -> set[PoolKey]:
    """Keys of every observed, pending or failed trial."""
    h = ctx.history
    keys = {pool_key(w, r) for w, r in zip(h.weights, h.rungs)}
    keys |= {pool_key(w, r) for w, r in zip(h.pending_weights, h.pending_rungs)}
    if h.failed_weights is not None:
        keys |= {pool_key(w, r) for w, r in zip(h.failed_weights, h.failed_rungs)}
    return keys


def known_trial_test(ctx: ProposalContext) -> Callable[[np.ndarray, str], bool]:
    """``test(mixture [K], rung)``: whether a continuous pick is a trial the ledger already has
    (:func:`taken`), after the projection onto the space every candidate goes through.

    A candidate equal to one of these is the same trial (the ledger finds it instead of
    running it again), so a proposer that wants something new must avoid them.
    """
    used = taken(ctx)
    return lambda w, rung: pool_key(simplex.project(w, ctx.space), rung) in used


def free_indices(ctx: ProposalContext, rungs: str | tuple[str, ...] | None) -> np.ndarray:
    """Indices ``[P']`` of pool entries at ``rungs`` (one name, several, or any when None) not yet taken."""
    assert ctx.pool is not None
    wanted = (rungs,) if isinstance(rungs, str) else rungs
    used = taken(ctx)
    idx = [i for i, (w, r) in enumerate(zip(ctx.pool.weights, ctx.pool.rungs)) if (wanted is None or r in wanted) and pool_key(w, r) not in used]
    return np.asarray(idx, dtype=int)


def free_entries(ctx: ProposalContext, rungs: str | tuple[str, ...] | None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Free pool entries: ``(weights [P', K], rung names [P'], pool row indices [P'])``."""
    assert ctx.pool is not None
    idx = free_indices(ctx, rungs)
    return ctx.pool.weights[idx].reshape(-1, ctx.space.dim), [ctx.pool.rungs[i] for i in idx], idx


def nearest_free(ctx: ProposalContext, weights: np.ndarray, rung: str) -> list[Candidate]:
    """Map continuous proposals ``[q, K]`` to the nearest free pool entries at ``rung``.

    Each proposal takes the nearest (Euclidean) entry not already taken by the history or
    by an earlier proposal of the same batch; fewer come back if the pool runs out.
    """
    assert ctx.pool is not None
    free = list(free_indices(ctx, rung))
    chosen: list[int] = []
    for w in np.atleast_2d(weights):
        if not free:
            break
        d = np.linalg.norm(ctx.pool.weights[free] - w[None, :], axis=1)
        chosen.append(free.pop(int(np.argmin(d))))
    return as_candidates(ctx.pool.weights[chosen], [ctx.pool.rungs[i] for i in chosen], ctx.trial_seed)


def random_free(ctx: ProposalContext, q: int, rung: str | None, rng: np.random.Generator) -> list[Candidate]:
    """``q`` random free pool entries at ``rung`` (any rung when None)."""
    assert ctx.pool is not None
    idx = free_indices(ctx, rung)
    chosen = rng.permutation(idx)[:q] if idx.size else np.zeros(0, dtype=int)
    return as_candidates(ctx.pool.weights[chosen], [ctx.pool.rungs[i] for i in chosen], ctx.trial_seed)
