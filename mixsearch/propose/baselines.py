"""Model-free proposers: random Dirichlet, stratified uniform, centre-then-random.

Each is stateless: what it proposes depends only on the context (seed, history, pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixsearch.candidate import Candidate
from mixsearch.propose import simplex
from mixsearch.propose.base import ProposalContext, Recommendation, as_candidates, best_observed


def _rung_for(ctx: ProposalContext, rung: str | None) -> str:
    """The rung a single-fidelity proposer runs at: the named one or the costliest runnable rung."""
    if rung is not None:
        ctx.ladder.rung(rung)  # raises on a bad name
        return rung
    return max(ctx.ladder.rungs, key=lambda r: r.run_cost).name


def _pick_from_pool(ctx: ProposalContext, q: int, rung: str | None, rng: np.random.Generator) -> list[Candidate]:
    """``q`` random pool entries at ``rung`` (any rung when None) not yet observed or pending."""
    assert ctx.pool is not None
    taken = {(tuple(np.round(w, 6)), r) for w, r in zip(ctx.history.weights, ctx.history.rungs)}
    taken |= {(tuple(np.round(w, 6)), r) for w, r in zip(ctx.history.pending_weights, ctx.history.pending_rungs)}
    idx = [
        i
        for i, (w, r) in enumerate(zip(ctx.pool.weights, ctx.pool.rungs))
        if (rung is None or r == rung) and (tuple(np.round(w, 6)), r) not in taken
    ]
    chosen = rng.permutation(idx)[:q] if idx else []
    return as_candidates(ctx.pool.weights[chosen], [ctx.pool.rungs[i] for i in chosen], ctx.trial_seed)


@dataclass
class RandomDirichlet:
    """Mixtures drawn from a (bounded) Dirichlet at one rung.

    Args:
        alpha: Dirichlet concentration.
        rung: Rung to run at; default the costliest runnable rung.
    """

    alpha: float = 1.0
    rung: str | None = None

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        rng = ctx.rng()
        rung = _rung_for(ctx, self.rung)
        if ctx.pool is not None:
            return _pick_from_pool(ctx, q, rung, rng)
        w = simplex.sample(q, ctx.space, rng, self.alpha)
        return as_candidates(w, [rung] * q, ctx.trial_seed)

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return best_observed(ctx)


@dataclass
class UniformStratified:
    """Space-filling mixtures: the batch is spread by a maximin design over Dirichlet draws.

    With ``q`` slots and ``n`` trials already proposed, it draws many feasible
    points and greedily keeps those farthest from everything proposed so far, so
    successive batches stratify the simplex rather than clump.

    Args:
        rung: Rung to run at; default the costliest runnable rung.
        n_raw: Number of raw draws to choose from.
    """

    rung: str | None = None
    n_raw: int = 2048

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        rng = ctx.rng()
        rung = _rung_for(ctx, self.rung)
        if ctx.pool is not None:
            raw = ctx.pool.weights[[i for i, r in enumerate(ctx.pool.rungs) if r == rung]]
        else:
            raw = simplex.sample(self.n_raw, ctx.space, rng)
        seen = np.concatenate([ctx.history.weights, ctx.history.pending_weights], axis=0)
        chosen: list[np.ndarray] = []
        if len(raw) == 0:
            return []
        for _ in range(min(q, len(raw))):
            ref = np.concatenate([seen, np.array(chosen).reshape(-1, raw.shape[1])], axis=0)
            if len(ref) == 0:
                i = int(np.argmin(np.linalg.norm(raw - simplex.centre(ctx.space), axis=1)))
            else:
                d = np.linalg.norm(raw[:, None, :] - ref[None, :, :], axis=2).min(axis=1)
                i = int(np.argmax(d))
            if chosen and np.allclose(raw[i], chosen[-1]):
                break
            chosen.append(raw[i])
        return as_candidates(chosen, [rung] * len(chosen), ctx.trial_seed)

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return best_observed(ctx)


@dataclass
class CentreThenRandom:
    """The centre of the simplex at every rung first, then random Dirichlet mixtures.

    Rungs are cycled so that every rung gets trials; the centre point anchors each
    rung with a reference mixture.

    Args:
        alpha: Dirichlet concentration for the random part.
    """

    alpha: float = 1.0

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        rng = ctx.rng()
        names = [r.name for r in ctx.ladder.rungs]
        h = ctx.history
        failed_w = h.failed_weights if h.failed_weights is not None else np.zeros((0, ctx.space.dim))
        all_rungs = list(h.rungs) + list(h.pending_rungs) + list(h.failed_rungs)
        centre = simplex.centre(ctx.space)
        have_centre = {
            r
            for w, r in zip(np.concatenate([h.weights, h.pending_weights, failed_w]), all_rungs)
            if np.allclose(w, centre, atol=1e-6)
        }
        out_w: list[np.ndarray] = []
        out_r: list[str] = []
        for r in names:
            if len(out_w) < q and r not in have_centre:
                out_w.append(centre)
                out_r.append(r)
        n_before = len(all_rungs)
        while len(out_w) < q:
            out_r.append(names[(n_before + len(out_w)) % len(names)])
            out_w.append(simplex.sample(1, ctx.space, rng, self.alpha)[0])
        return as_candidates(out_w, out_r, ctx.trial_seed)

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return best_observed(ctx)
