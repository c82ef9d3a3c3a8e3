"""The BO proposers' space-filling initial design: maximin mixtures spread over the cheap rungs."""

from __future__ import annotations

import numpy as np

from mixsearch import simplex
from mixsearch.candidate import Candidate
from mixsearch.propose.base import ProposalContext, as_candidates
from mixsearch.propose.fidelity import FidelityEncoder
from mixsearch.propose.pool import free_entries


def maximin(raw: np.ndarray, seen: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    """Greedy maximin: ``k`` rows of ``raw`` ``[M, K]`` far from ``seen`` ``[m, K]`` and each other.

    With nothing seen the first pick is a random row, so designs differ across seeds.
    """
    chosen: list[int] = []
    if len(raw) == 0:
        return chosen
    d = np.linalg.norm(raw[:, None, :] - seen[None, :, :], axis=2).min(axis=1) if len(seen) else None
    for _ in range(min(k, len(raw))):
        if d is None:
            i = int(rng.integers(len(raw)))
        else:
            masked = d.copy()
            masked[chosen] = -np.inf
            i = int(np.argmax(masked))
        chosen.append(i)
        di = np.linalg.norm(raw - raw[i], axis=1)
        d = di if d is None else np.minimum(d, di)
    return chosen


def design_size(ctx: ProposalContext, n_init: int | None) -> int:
    """Finished trials before a BO proposer's model takes over: ``n_init``, default ``K + 1``."""
    return n_init if n_init is not None else ctx.space.dim + 1


def initial_design(
    ctx: ProposalContext, enc: FidelityEncoder, q: int, n_init: int, init_target: int, rng: np.random.Generator, n_raw: int = 2048
) -> list[Candidate]:
    """Space-filling mixtures spread over the cheap rungs, plus a few at a runnable target.

    Slot ``j`` of the design (``j`` counts every trial in the ledger) runs at the
    target when the target is runnable and ``j`` is among the last ``init_target``
    of the ``n_init`` slots; otherwise at the cheap rungs in turn, cheapest first.
    Mixtures are chosen by greedy maximin among the pool (pool mode) or many feasible
    draws, away from every mixture already in the ledger.
    """
    h = ctx.history
    failed = h.failed_weights if h.failed_weights is not None else np.zeros((0, ctx.space.dim))
    seen = np.concatenate([h.weights, h.pending_weights, failed], axis=0).reshape(-1, ctx.space.dim)
    start = len(h.rungs) + len(h.pending_rungs) + len(h.failed_rungs)
    cheap = sorted((r for r in enc.runnable if r != enc.target), key=lambda r: enc.costs[r]) or [enc.target]
    slots = []
    for j in range(start, start + q):
        to_target = enc.target_runnable and cheap != [enc.target] and n_init - init_target <= j < n_init
        slots.append(enc.target if to_target else cheap[j % len(cheap)])
    out_w: list[np.ndarray] = []
    out_r: list[str] = []
    for rung in dict.fromkeys(slots):
        k = slots.count(rung)
        if ctx.pool is not None:
            raw, _, _ = free_entries(ctx, rung)
        else:
            raw = simplex.sample(n_raw, ctx.space, rng)
        ref = np.concatenate([seen, np.array(out_w).reshape(-1, ctx.space.dim)], axis=0)
        for i in maximin(raw, ref, k, rng):
            out_w.append(raw[i])
            out_r.append(rung)
    return as_candidates(out_w, out_r, ctx.trial_seed)
