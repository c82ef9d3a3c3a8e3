"""What the BO proposers read from a history: finished trials as model inputs, and the
mixtures a recommendation may choose among.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixsearch.propose.base import ProposalContext, Recommendation


@dataclass(frozen=True)
class Observations:
    """Finished trials with finite objectives, as model inputs.

    Attributes:
        weights: ``[n, K]`` mixtures.
        rungs: ``[n]`` rung names.
        objective: ``[n]`` objective values (smaller is better).
    """

    weights: np.ndarray
    rungs: tuple[str, ...]
    objective: np.ndarray

    @property
    def n(self) -> int:
        return int(self.weights.shape[0])

    def can_fit(self, n_min: int) -> bool:
        """Whether there are at least ``n_min`` trials and two distinct objective values
        (a GP fitted to one value has nothing to learn)."""
        return self.n >= n_min and len(set(self.objective.tolist())) >= 2


def finite_observations(ctx: ProposalContext, known_rungs: tuple[str, ...] | None = None) -> Observations:
    """The finished trials a model may be fitted on: NaN or infinite objectives dropped.

    Args:
        ctx: The proposal context.
        known_rungs: When given, trials at any other rung raise.

    Raises:
        ValueError: a trial at a rung outside ``known_rungs``.
    """
    h = ctx.history
    y = np.asarray(h.objective, dtype=float).reshape(-1)
    keep = np.isfinite(y)
    if h.weights.size:
        keep &= np.isfinite(h.weights).all(axis=1)
    rungs = tuple(r for r, k in zip(h.rungs, keep) if k)
    if known_rungs is not None:
        for r in rungs:
            if r not in known_rungs:
                raise ValueError(f"history.rungs: trial at rung {r!r}, which is not in the ladder {list(known_rungs)}")
    return Observations(np.asarray(h.weights, dtype=float)[keep].reshape(-1, ctx.space.dim), rungs, y[keep])


def recommendation_candidates(ctx: ProposalContext, obs: Observations, rung: str) -> tuple[np.ndarray, bool]:
    """Mixtures a recommendation may pick, and whether to optimise beyond them.

    Pool mode: the pool mixtures that exist at ``rung`` (all pool mixtures when none
    does). Continuous mode: every observed mixture, then optimised over the simplex.
    """
    if ctx.pool is not None:
        at = np.array([r == rung for r in ctx.pool.rungs], dtype=bool)
        w = ctx.pool.weights[at] if at.any() else ctx.pool.weights
        return np.unique(np.round(w, 6), axis=0), False
    return np.unique(np.round(obs.weights, 6), axis=0), True


def observed_recommendation(obs: Observations) -> Recommendation:
    """The best observed trial at the rung it ran at, with no std (too few trials for a model)."""
    i = int(np.argmin(obs.objective))
    return Recommendation(tuple(float(x) for x in obs.weights[i]), float(obs.objective[i]), None, obs.rungs[i], basis="observed")
