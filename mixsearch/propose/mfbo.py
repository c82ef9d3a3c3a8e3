"""Multi-fidelity Bayesian optimisation over the mixture simplex.

:class:`MultiFidelityBO` fits one Surrogate over (mixture, fidelity) to every
finished trial and picks (mixture, rung) pairs by a cost-aware multi-fidelity
acquisition: information about the maximum of the objective *at the target scale*
per unit of cost (MF-GIBBON by default, in the manner of ADMIRE-BayesOpt). Cheap
rungs are chosen while they are informative about the target; the target (when it
is runnable) once only it can settle the question.

It is stateless: each call refits from the context and draws all randomness from
``ctx.seed``, so the same context gives the same proposals. Its peer at one rung is
:class:`~mixsearch.propose.gp.SingleFidelityBO`; both read the history through
:mod:`mixsearch.propose.observations` and start from :mod:`mixsearch.propose.design`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.cost_aware import InverseCostWeightedUtility
from botorch.acquisition.max_value_entropy_search import (
    qMultiFidelityLowerBoundMaxValueEntropy,
    qMultiFidelityMaxValueEntropy,
)
from botorch.acquisition.utils import project_to_target_fidelity
from botorch.utils.sampling import manual_seed
from torch import Tensor

from mixsearch import simplex
from mixsearch.candidate import Candidate
from mixsearch.propose.acqopt import (
    best_posterior_mean,
    greedy_batch,
    pool_batch,
    raw_mixtures,
)
from mixsearch.propose.base import (
    ProposalContext,
    Recommendation,
    as_candidates,
    refuse_unused_options,
    require_positive,
)
from mixsearch.propose.design import design_size, initial_design
from mixsearch.propose.fidelity import DTYPE, FidelityEncoder, as_inputs
from mixsearch.propose.law_prior import LawPrior, fit_law_prior, rung_scales
from mixsearch.propose.observations import (
    Observations,
    finite_observations,
    observed_recommendation,
    recommendation_candidates,
)
from mixsearch.propose.pool import free_entries, known_trial_test
from mixsearch.propose.posterior import CachedPosteriorGP
from mixsearch.propose.surrogate import (
    check_kernel,
    check_weight_transform,
    fit_surrogate,
)
from mixsearch.propose.target_check import check_due
from mixsearch.study import Rung

ACQUISITIONS = ("gibbon", "mes")


def pending_inputs(ctx: ProposalContext, enc: FidelityEncoder) -> Tensor | None:
    """``[m, K + S]`` inputs of pending trials (None when there are none)."""
    h = ctx.history
    keep = [i for i, r in enumerate(h.pending_rungs) if r in enc.names]
    if not keep:
        return None
    w = np.asarray(h.pending_weights, dtype=float)[keep]
    return as_inputs(w, enc.encode([h.pending_rungs[i] for i in keep]))


# ---------------------------------------------------------------------------
# The proposers


CostModel = Mapping[str, float] | Callable[[Rung], float] | None


@dataclass
class MultiFidelityBO:
    """Cost-aware multi-fidelity BO over the mixture simplex.

    Args:
        n_init: Finished trials before the model is used; default ``K + 1``.
        init_target: Initial-design trials at the target when it is runnable. Default 0:
            the acquisition decides when a target run is worth its cost (on the RegMix
            table and the synthetic oracle, forcing one early target run cost more than it
            taught; see docs/BENCHMARKS.md).
        acquisition: ``"gibbon"`` (MF-GIBBON, batches by its determinant term, no
            fantasies) or ``"mes"`` (MF-MES; pending points by fantasies).
        kernel: Surrogate kernel, see :mod:`mixsearch.propose.surrogate`.
        weight_transform: ``"log"`` (default) or ``"identity"`` weights in the kernel.
            Log weights (``log(w + 0.01)``) make a change from 1 % to 10 % of a domain nearly
            as large as one from 10 % to 100 %, the power-law response to a domain's share
            that published runs show; on the RegMix table they cut the cost to 1 % regret
            about 5x (docs/BENCHMARKS.md).
        raw_samples: Feasible draws scored to pick optimiser starts.
        num_restarts: SLSQP starts per rung and batch slot.
        num_mv_samples: Max-value samples at the target.
        num_fantasies: Fantasies for pending points (``"mes"`` only).
        candidate_set_size: Mixtures (projected to the target) max values are drawn over.
        maxiter: SLSQP iterations per start.
        fit_maxiter: L-BFGS-B iterations for the hyperparameters.
        cost_model: Per-rung costs overriding ``rung.run_cost`` (mapping or callable).
        recommend_kappa: The recommendation maximises ``mean - kappa * std`` at the target.
        proxy_allowance: Off (None) by default. When set, the cheap rungs may spend this
            many target-run costs per target trial before the next proposal is a check at the
            target, the acquisition's best target run (see
            :mod:`mixsearch.propose.target_check`): a hedge that guarantees target evidence in
            proportion to proxy spend. On the weak-proxy world it did not help with the
            default kernel (docs/BENCHMARKS.md), so it is not the default.
        law_prior: Off by default. When on, the joint law of mixture and scale, refitted
            on the trials at each ask, is the Surrogate's prior mean (the GP models its
            residuals). It applies when every rung has N and D, the objective is a loss,
            and the trials span two or more (N, D); otherwise the Surrogate has its usual
            mean. Measured side by side it did not win (a tie on the RegMix table, slower
            to 5 % on the synthetic pool, slower to 5 % and 1 % on the continuous world, and
            no seed of five within 5 % on the moving-optimum world, where three were without
            it) and made each proposal 3-7x slower (docs/BENCHMARKS.md). The answer at the
            target comes from the joint law either way (:mod:`mixsearch.answer`).
    """

    n_init: int | None = None
    init_target: int = 0
    acquisition: str = "gibbon"
    kernel: str = "ar"
    weight_transform: str = "log"
    raw_samples: int = 256
    num_restarts: int = 4
    num_mv_samples: int = 16
    num_fantasies: int = 8
    candidate_set_size: int = 1024
    maxiter: int = 60
    fit_maxiter: int = 200
    cost_model: CostModel = None
    recommend_kappa: float = 0.0
    proxy_allowance: float | None = None
    law_prior: bool = False

    def __post_init__(self) -> None:
        if self.acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition: unknown acquisition {self.acquisition!r}; known: {', '.join(ACQUISITIONS)}")
        check_kernel(self.kernel)
        check_weight_transform(self.weight_transform)
        if self.n_init is not None and self.n_init < 2:
            raise ValueError(f"n_init: must be >= 2, got {self.n_init!r}")
        if self.init_target < 0:
            raise ValueError(f"init_target: must be >= 0, got {self.init_target!r}")
        if self.proxy_allowance is not None and not self.proxy_allowance > 0:
            raise ValueError(f"proxy_allowance: must be a positive number of target-run costs or None, got {self.proxy_allowance!r}")
        require_positive(self, "raw_samples", "num_restarts", "num_mv_samples", "num_fantasies", "candidate_set_size", "maxiter", "fit_maxiter")

    # -- shared pieces ------------------------------------------------------

    def surrogate_settings(self) -> dict[str, object]:
        """The Surrogate this proposer fits: ``kind``, ``weight_transform``, ``maxiter`` (for reports)."""
        return {"kind": self.kernel, "weight_transform": self.weight_transform, "maxiter": self.fit_maxiter}

    def _encoder(self, ctx: ProposalContext) -> FidelityEncoder:
        return FidelityEncoder.from_ladder(ctx.ladder, self.cost_model)

    def _fit(self, obs: Observations, enc: FidelityEncoder, ctx: ProposalContext) -> CachedPosteriorGP:
        X = as_inputs(obs.weights, enc.encode(obs.rungs))
        Y = torch.tensor(-obs.objective, dtype=DTYPE).unsqueeze(-1)
        prior = self._law_prior(obs, enc, ctx)
        if prior is not None:
            # The GP models what the law misses: its data are the residuals from the law.
            Y = Y - torch.as_tensor(prior.values(X.numpy()), dtype=DTYPE).unsqueeze(-1)
        gp = fit_surrogate(X, Y, obs.weights.shape[1], self.kernel, self.weight_transform, self.fit_maxiter)
        return CachedPosteriorGP(gp, X, prior)

    def _law_prior(self, obs: Observations, enc: FidelityEncoder, ctx: ProposalContext) -> LawPrior | None:
        """The joint law fitted on the trials, as the prior mean; None when off or not fittable."""
        if not self.law_prior:
            return None
        scales = rung_scales(ctx.ladder)
        if scales is None:
            return None
        law = fit_law_prior(obs.weights, obs.objective, obs.rungs, scales)
        return None if law is None else LawPrior(law, enc, scales)

    def _acquisition(
        self, model: CachedPosteriorGP, enc: FidelityEncoder, ctx: ProposalContext, mixtures: np.ndarray, chosen: list[Candidate]
    ) -> AcquisitionFunction:
        k = ctx.space.dim
        target = {k + i: float(v) for i, v in enumerate(enc.target_features)}

        def project(X: Tensor) -> Tensor:
            return project_to_target_fidelity(X, target_fidelities=target, d=k + enc.n_features)

        cand = as_inputs(mixtures, np.repeat(enc.target_features[None, :], len(mixtures), axis=0))
        utility = InverseCostWeightedUtility(cost_model=enc.cost_model(k))
        cls = qMultiFidelityLowerBoundMaxValueEntropy if self.acquisition == "gibbon" else qMultiFidelityMaxValueEntropy
        acq = cls(
            model,
            candidate_set=cand,
            num_mv_samples=self.num_mv_samples,
            num_fantasies=self.num_fantasies,
            cost_aware_utility=utility,
            project=project,
        )
        pending = [p for p in (pending_inputs(ctx, enc), _as_inputs(chosen, enc)) if p is not None]
        acq.set_X_pending(torch.cat(pending) if pending else None)
        return acq

    # -- Proposer protocol --------------------------------------------------

    def check_mode(self, pool: bool) -> None:
        """Refuse options that do nothing when candidates come from a pool (raw_samples, num_restarts, maxiter, candidate_set_size)."""
        refuse_unused_options(self, ('raw_samples', 'num_restarts', 'maxiter', 'candidate_set_size'), pool)

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        """``q`` (mixture, rung) candidates; fewer only when a pool runs out."""
        enc = self._encoder(ctx)
        obs = finite_observations(ctx, enc.names)
        rng = ctx.rng()
        n_init = design_size(ctx, self.n_init)
        if not obs.can_fit(n_init):
            return initial_design(ctx, enc, q, n_init, self.init_target, rng)
        with manual_seed(ctx.seed):
            model = self._fit(obs, enc, ctx)
            checks = self._target_check(ctx, enc, model, obs, rng) if check_due(ctx, enc, self.proxy_allowance) else []
            if len(checks) == q:
                return checks
            if ctx.pool is not None:
                return checks + self._propose_pool(ctx, enc, model, q - len(checks), checks)
            return checks + self._propose_continuous(ctx, enc, model, obs, q - len(checks), rng, checks)

    def _target_check(self, ctx: ProposalContext, enc: FidelityEncoder, model: CachedPosteriorGP, obs: Observations, rng: np.random.Generator) -> list[Candidate]:
        """One run at the target: the acquisition's best target run (none when the pool has none left).

        The acquisition, not the posterior mean, picks it: a check where the proxies already
        put the optimum tells the Surrogate little about where they disagree with the target.
        """
        if ctx.pool is not None:
            return self._propose_pool(ctx, enc, model, 1, [], rungs=(enc.target,))
        return self._propose_continuous(ctx, enc, model, obs, 1, rng, [], rungs=(enc.target,))

    def _propose_pool(
        self, ctx: ProposalContext, enc: FidelityEncoder, model: CachedPosteriorGP, q: int, chosen: list[Candidate], rungs: tuple[str, ...] | None = None
    ) -> list[Candidate]:
        assert ctx.pool is not None
        weights, rungs, _ = free_entries(ctx, rungs or enc.runnable)
        keep = [i for i, (w, r) in enumerate(zip(weights, rungs)) if not _among(w, r, chosen)]
        weights, rungs = weights[keep], [rungs[i] for i in keep]
        if len(weights) == 0:
            return []
        mixtures = np.unique(np.round(ctx.pool.weights, 6), axis=0)
        acq = self._acquisition(model, enc, ctx, mixtures, chosen)
        choices = as_inputs(weights, enc.encode(rungs))
        picked = pool_batch(acq, choices, q)
        return as_candidates(weights[picked], [rungs[i] for i in picked], ctx.trial_seed)

    def _propose_continuous(
        self,
        ctx: ProposalContext,
        enc: FidelityEncoder,
        model: CachedPosteriorGP,
        obs: Observations,
        q: int,
        rng: np.random.Generator,
        chosen: list[Candidate],
        rungs: tuple[str, ...] | None = None,
    ) -> list[Candidate]:
        mixtures = np.concatenate([simplex.sample(self.candidate_set_size, ctx.space, rng), obs.weights])
        acq = self._acquisition(model, enc, ctx, mixtures, chosen)
        anchors = obs.weights[np.argsort(obs.objective)[:8]]
        raw = raw_mixtures(ctx.space, self.raw_samples, rng, anchors)
        known = known_trial_test(ctx)
        picks = greedy_batch(
            acq, ctx.space, enc, rungs or enc.runnable, q, raw, self.num_restarts, self.maxiter,
            known=lambda w, r: known(w, r) or _among(simplex.project(w, ctx.space), r, chosen),
        )
        return as_candidates([simplex.project(w, ctx.space) for w, _ in picks], [r for _, r in picks], ctx.trial_seed)

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        """The mixture with the best posterior mean at the target, with its std."""
        enc = self._encoder(ctx)
        obs = finite_observations(ctx, enc.names)
        if obs.n == 0:
            return None
        if not obs.can_fit(2):
            return observed_recommendation(obs)
        with manual_seed(ctx.seed):
            model = self._fit(obs, enc, ctx)
            candidates, optimise = recommendation_candidates(ctx, obs, enc.target)
            w, mean, std = best_posterior_mean(model, ctx.space, enc.target_features, candidates, optimise, self.recommend_kappa)
        return Recommendation(
            tuple(float(x) for x in w), -mean, std, enc.target, extra={"n_fit": obs.n, "proposer": "mfbo"}, basis="surrogate"
        )


def _among(weights: np.ndarray, rung: str, chosen: list[Candidate]) -> bool:
    """Whether (``weights`` [K], ``rung``) is one of the candidates already ``chosen`` this ask."""
    return any(c.rung == rung and np.allclose(weights, c.weights, atol=1e-6) for c in chosen)


def _as_inputs(chosen: list[Candidate], enc: FidelityEncoder) -> torch.Tensor | None:
    """``[c, K + S]`` inputs of candidates chosen this ask (None when there are none)."""
    if not chosen:
        return None
    return as_inputs(np.array([c.weights for c in chosen], dtype=float), enc.encode([c.rung for c in chosen]))
