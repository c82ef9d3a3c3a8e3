"""The classic single-fidelity peer: a GP over mixtures at one rung, batches by qLogNEI.

Stateless like :class:`~mixsearch.propose.mfbo.MultiFidelityBO`: each call refits from the
context and draws all randomness from ``ctx.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.sampling import manual_seed

from mixsearch import simplex
from mixsearch.candidate import Candidate
from mixsearch.propose.acqopt import best_posterior_mean, greedy_batch, pool_batch, raw_mixtures
from mixsearch.propose.base import ProposalContext, Recommendation, as_candidates, refuse_unused_options, require_positive
from mixsearch.propose.design import design_size, initial_design
from mixsearch.propose.fidelity import DTYPE, FidelityEncoder
from mixsearch.propose.observations import Observations, finite_observations, observed_recommendation, recommendation_candidates
from mixsearch.propose.pool import free_entries, known_trial_test
from mixsearch.propose.posterior import CachedPosteriorGP
from mixsearch.propose.surrogate import check_weight_transform, fit_surrogate


@dataclass
class SingleFidelityBO:
    """The classic peer: a GP over mixtures at one rung, batches by qLogNEI.

    Args:
        rung: Rung to run at; default the target when runnable, else the costliest rung.
        n_init: Trials at that rung before the GP is used; default ``K + 1``.
        weight_transform: ``"identity"`` or ``"log"`` weights in the kernel.
        raw_samples: Feasible draws scored to pick optimiser starts.
        num_restarts: SLSQP starts per batch slot.
        mc_samples: QMC samples for qLogNEI.
        maxiter: SLSQP iterations per start.
        fit_maxiter: L-BFGS-B iterations for the hyperparameters.
    """

    rung: str | None = None
    n_init: int | None = None
    weight_transform: str = "identity"
    raw_samples: int = 256
    num_restarts: int = 4
    mc_samples: int = 128
    maxiter: int = 60
    fit_maxiter: int = 200

    def __post_init__(self) -> None:
        check_weight_transform(self.weight_transform)
        require_positive(self, "raw_samples", "num_restarts", "mc_samples", "maxiter", "fit_maxiter")

    def surrogate_settings(self) -> dict[str, object]:
        """The Surrogate this proposer fits (a single-rung GP has no fidelity kernel)."""
        return {"kind": "ar", "weight_transform": self.weight_transform, "maxiter": self.fit_maxiter}

    def _rung(self, ctx: ProposalContext) -> str:
        names = [r.name for r in ctx.ladder.rungs]
        if self.rung is not None:
            if self.rung not in names:
                raise ValueError(f"rung: {self.rung!r} is not a runnable rung; runnable: {names}")
            return self.rung
        if ctx.ladder.target.name in names:
            return ctx.ladder.target.name
        return max(ctx.ladder.rungs, key=lambda r: r.run_cost).name

    def _data(self, ctx: ProposalContext, rung: str) -> Observations:
        """The finished trials at ``rung``."""
        obs = finite_observations(ctx)
        at = np.array([r == rung for r in obs.rungs], dtype=bool)
        return Observations(obs.weights[at].reshape(-1, ctx.space.dim), (rung,) * int(at.sum()), obs.objective[at])

    def _fit(self, w: np.ndarray, y: np.ndarray) -> CachedPosteriorGP:
        X = torch.tensor(w, dtype=DTYPE)
        Y = torch.tensor(-y, dtype=DTYPE).unsqueeze(-1)
        gp = fit_surrogate(X, Y, w.shape[1], weight_transform=self.weight_transform, maxiter=self.fit_maxiter)
        return CachedPosteriorGP(gp, X)

    def check_mode(self, pool: bool) -> None:
        """Refuse options that do nothing when candidates come from a pool (raw_samples, num_restarts, maxiter)."""
        refuse_unused_options(self, ('raw_samples', 'num_restarts', 'maxiter'), pool)

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        """``q`` mixtures at the rung; fewer only when a pool runs out."""
        rung = self._rung(ctx)
        obs = self._data(ctx, rung)
        w, y = obs.weights, obs.objective
        rng = ctx.rng()
        n_init = design_size(ctx, self.n_init)
        if not obs.can_fit(n_init):
            return initial_design(ctx, _single_rung_encoder(rung), q, n_init, 0, rng)
        h = ctx.history
        pend = [i for i, r in enumerate(h.pending_rungs) if r == rung]
        with manual_seed(ctx.seed):
            model = self._fit(w, y)
            acq = qLogNoisyExpectedImprovement(
                model,
                X_baseline=torch.tensor(w, dtype=DTYPE),
                sampler=SobolQMCNormalSampler(torch.Size([self.mc_samples]), seed=ctx.seed),
                X_pending=torch.tensor(h.pending_weights[pend], dtype=DTYPE) if pend else None,
                prune_baseline=True,
                cache_root=False,
            )
            if ctx.pool is not None:
                weights, _, _ = free_entries(ctx, rung)
                if len(weights) == 0:
                    return []
                picked = pool_batch(acq, torch.tensor(weights, dtype=DTYPE), q)
                return as_candidates(weights[picked], [rung] * len(picked), ctx.trial_seed)
            raw = raw_mixtures(ctx.space, self.raw_samples, rng, w[np.argsort(y)[:8]])
            known = known_trial_test(ctx)
            picks = greedy_batch(acq, ctx.space, _ZERO_FID, ("_",), q, raw, self.num_restarts, self.maxiter, known=lambda w, _: known(w, rung))
        return as_candidates([simplex.project(p, ctx.space) for p, _ in picks], [rung] * len(picks), ctx.trial_seed)

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        """The pool or observed mixture with the best posterior mean at the rung, with its std."""
        rung = self._rung(ctx)
        obs = self._data(ctx, rung)
        if obs.n == 0:
            return None
        if not obs.can_fit(2):
            return observed_recommendation(obs)
        with manual_seed(ctx.seed):
            model = self._fit(obs.weights, obs.objective)
            candidates, optimise = recommendation_candidates(ctx, obs, rung)
            best, mean, std = best_posterior_mean(model, ctx.space, np.zeros(0), candidates, optimise)
        return Recommendation(tuple(float(x) for x in best), -mean, std, rung, extra={"n_fit": obs.n, "proposer": "gp"}, basis="surrogate")


def _single_rung_encoder(rung: str) -> FidelityEncoder:
    return FidelityEncoder((rung,), np.ones((1, 1)), {rung: 1.0}, rung, True)


# A zero-feature encoder lets the simplex helpers optimise over weights alone.
_ZERO_FID = FidelityEncoder(("_",), np.zeros((1, 0)), {"_": 1.0}, "_", True)
