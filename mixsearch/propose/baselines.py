"""Model-free proposers (random Dirichlet, stratified uniform, centre-then-random) and the
rung a single-fidelity peer runs at.

Each proposer is stateless: what it proposes depends only on the context (seed, history,
pool). In pool mode (table oracles) a proposer only picks pool entries that are not yet
observed, pending or failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mixsearch import simplex
from mixsearch.candidate import Candidate
from mixsearch.propose.base import (
    ProposalContext,
    Recommendation,
    as_candidates,
    best_observed,
    refuse_unused_options,
)
from mixsearch.propose.pool import free_indices, nearest_free, random_free


def target_rung(ctx: ProposalContext, rung: str | None = None) -> str:
    """The rung a single-fidelity proposer runs at.

    The named rung if given; else the target when it is runnable; else the costliest
    runnable rung (the target is then only extrapolated to).

    Raises:
        KeyError: ``rung`` names no rung of the ladder.
    """
    if rung is not None:
        ctx.ladder.rung(rung)  # raises on a bad name
        return rung
    names = ctx.ladder.names
    if ctx.ladder.target.name in names:
        return ctx.ladder.target.name
    return max(ctx.ladder.rungs, key=lambda r: r.run_cost).name


@dataclass
class RandomDirichlet:
    """Mixtures drawn from a (bounded) Dirichlet at one rung.

    In a two-phase study each candidate draws both phases' mixtures this way and its switch
    point uniformly in ``[min_switch, max_switch]``.

    Args:
        alpha: Dirichlet concentration.
        rung: Rung to run at; default the target (or the costliest runnable rung).
    """

    schedules: ClassVar[tuple[str | None, ...]] = (None, "two-phase")
    alpha: float = 1.0
    rung: str | None = None

    def check_mode(self, pool: bool) -> None:
        """Refuse options that do nothing when candidates come from a pool (alpha)."""
        refuse_unused_options(self, ('alpha',), pool)
    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        rng = ctx.rng()
        rung = target_rung(ctx, self.rung)
        if ctx.pool is not None:
            return random_free(ctx, q, rung, rng)
        if ctx.schedule is not None and ctx.schedule.kind == "two-phase":
            first, second = simplex.sample(q, ctx.space, rng, self.alpha), simplex.sample(q, ctx.space, rng, self.alpha)
            switch = rng.uniform(ctx.schedule.min_switch, ctx.schedule.max_switch, size=q)  # type: ignore[union-attr]
            return [Candidate.phased(a, b, float(s), rung, ctx.trial_seed) for a, b, s in zip(first, second, switch)]
        w = simplex.sample(q, ctx.space, rng, self.alpha)
        return as_candidates(w, [rung] * q, ctx.trial_seed)

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return best_observed(ctx)


@dataclass
class UniformStratified:
    """Space-filling mixtures: the batch is spread by a maximin design over Dirichlet draws.

    With ``q`` slots and ``n`` trials already proposed, it draws many feasible points (or
    takes the free pool entries) and greedily keeps those farthest from everything
    proposed so far, so successive batches stratify the simplex rather than clump. The
    first point of an empty study is the draw nearest the centre (a random free entry in
    pool mode, where the design would otherwise ignore the seed).

    Args:
        rung: Rung to run at; default the target (or the costliest runnable rung).
        n_raw: Number of raw draws to choose from.
    """

    rung: str | None = None
    n_raw: int = 2048

    def check_mode(self, pool: bool) -> None:
        """Refuse options that do nothing when candidates come from a pool (n_raw)."""
        refuse_unused_options(self, ('n_raw',), pool)
    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        rng = ctx.rng()
        rung = target_rung(ctx, self.rung)
        if ctx.pool is not None:
            raw = ctx.pool.weights[free_indices(ctx, rung)]
        else:
            raw = simplex.sample(self.n_raw, ctx.space, rng)
        if len(raw) == 0:
            return []
        h = ctx.history
        failed = h.failed_weights if h.failed_weights is not None else np.zeros((0, ctx.space.dim))
        ref = np.concatenate([h.weights, h.pending_weights, failed], axis=0)
        # Distance of every raw point to its nearest reference point, updated as we pick.
        dmin = np.linalg.norm(raw[:, None, :] - ref[None, :, :], axis=2).min(axis=1) if len(ref) else None
        chosen: list[int] = []
        for _ in range(min(q, len(raw))):
            if dmin is None and ctx.pool is not None:
                i = int(rng.integers(len(raw)))  # a seeded start, so seeds differ on a pool
            elif dmin is None:
                i = int(np.argmin(np.linalg.norm(raw - simplex.centre(ctx.space), axis=1)))
            else:
                i = int(np.argmax(dmin))
                if dmin[i] <= 1e-9:
                    break  # everything left repeats a known point
            chosen.append(i)
            d_new = np.linalg.norm(raw - raw[i], axis=1)
            dmin = d_new if dmin is None else np.minimum(dmin, d_new)
        return as_candidates(raw[chosen], [rung] * len(chosen), ctx.trial_seed)

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return best_observed(ctx)


@dataclass
class CentreThenRandom:
    """The centre of the simplex at every rung first, then random Dirichlet mixtures.

    Rungs are cycled so that every rung gets trials; the centre point anchors each rung
    with a reference mixture. In pool mode the centre becomes the free pool entry nearest
    to it and the random mixtures random free pool entries.

    Args:
        alpha: Dirichlet concentration for the random part.
    """

    alpha: float = 1.0

    def check_mode(self, pool: bool) -> None:
        """Refuse options that do nothing when candidates come from a pool (alpha)."""
        refuse_unused_options(self, ('alpha',), pool)
    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        rng = ctx.rng()
        names = [r.name for r in ctx.ladder.rungs]
        h = ctx.history
        centre = simplex.centre(ctx.space)
        all_rungs = list(h.rungs) + list(h.pending_rungs) + list(h.failed_rungs)
        out: list[Candidate] = []
        if ctx.pool is None:
            failed_w = h.failed_weights if h.failed_weights is not None else np.zeros((0, ctx.space.dim))
            have_centre = {
                r for w, r in zip(np.concatenate([h.weights, h.pending_weights, failed_w]), all_rungs) if np.allclose(w, centre, atol=1e-6)
            }
            for r in names:
                if len(out) < q and r not in have_centre:
                    out += as_candidates([centre], [r], ctx.trial_seed)
        else:
            # The first trial at a rung is its centre proxy (the nearest pool entry).
            seen = set(all_rungs)
            for r in names:
                if len(out) < q and r not in seen:
                    out += nearest_free(ctx, centre[None, :], r)
        # Random trials take the rungs in turn; an exhausted pool rung passes to the next.
        slot = len(all_rungs) + len(out)
        for _ in range(4 * q * len(names)):
            if len(out) >= q:
                break
            r = names[slot % len(names)]
            slot += 1
            if ctx.pool is None:
                out += as_candidates(simplex.sample(1, ctx.space, rng, self.alpha), [r], ctx.trial_seed)
            else:
                # Offer the pool minus what this batch already picked.
                picked = {(c.weights, c.rung) for c in out}
                cands = [c for c in random_free(ctx, q, r, rng) if (c.weights, c.rung) not in picked]
                out += cands[:1]
        return out

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return best_observed(ctx)
