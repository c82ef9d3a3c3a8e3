"""Maximising acquisitions over the bounded simplex, at fixed fidelities or in a pool.

Inputs are ``[w_1 .. w_K, s_1 .. s_S]`` (mixture, then fidelity features; S may be
0). Mixtures satisfy ``sum(w) = 1`` and ``lo <= w <= hi`` throughout: starts are
polytope draws from :mod:`mixsearch.simplex` (never rejection samples),
SLSQP keeps the equality constraint, and results are projected back exactly.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import AnalyticAcquisitionFunction
from botorch.models.model import Model
from botorch.optim import optimize_acqf, optimize_acqf_discrete
from botorch.utils.transforms import t_batch_mode_transform
from torch import Tensor

from mixsearch import simplex
from mixsearch.propose.fidelity import DTYPE, FidelityEncoder, as_inputs
from mixsearch.propose.posterior import predict
from mixsearch.study import SearchSpace


def raw_mixtures(space: SearchSpace, n: int, rng: np.random.Generator, anchors: np.ndarray) -> np.ndarray:
    """Feasible mixtures ``[n + a, K]`` to score as optimiser starts.

    Half dense (Dirichlet 1), half sparse (Dirichlet 0.3: mixture optima often
    leave some domains near zero), plus ``anchors`` ``[a, K]`` (good observed mixtures).
    """
    dense = simplex.sample(n - n // 2, space, rng, 1.0)
    sparse = simplex.sample(n // 2, space, rng, 0.3)
    return np.concatenate([dense, sparse, anchors.reshape(-1, space.dim)], axis=0)


def at_fidelity(weights: np.ndarray, fidelity: np.ndarray) -> Tensor:
    """Inputs ``[M, K + S]``: every mixture of ``weights`` ``[M, K]`` at ``fidelity`` ``[S]``."""
    return as_inputs(weights, np.repeat(fidelity.reshape(1, -1), len(weights), axis=0))


def score(acq: AcquisitionFunction, X: Tensor, chunk: int = 1024) -> Tensor:
    """Acquisition values ``[M]`` of ``M`` single points ``X`` ``[M, d]`` (no gradients)."""
    with torch.no_grad():
        return torch.cat([acq(part.unsqueeze(1)) for part in X.split(chunk)])


def polish(
    acq: AcquisitionFunction,
    space: SearchSpace,
    fidelity: np.ndarray,
    starts: Tensor,
    start_values: Tensor,
    maxiter: int,
) -> tuple[Tensor, float]:
    """Run SLSQP from ``starts`` ``[r, K + S]`` with sum = 1, the bounds and the fidelity held.

    Fixed weights (lo = hi) and the fidelity features are fixed features, so SLSQP
    only moves the free weights.

    Returns:
        ``(x [1, K + S], value)``: the better of the polished point and the best start.
    """
    k, s = space.dim, fidelity.shape[0]
    best = int(start_values.argmax())
    lo, hi = simplex.bounds_arrays(space)
    fixed: dict[int, float] = {k + i: float(fidelity[i]) for i in range(s)}
    fixed |= {i: float(lo[i]) for i in range(k) if hi[i] - lo[i] <= 1e-12}
    if len(fixed) - s >= k - 1:
        # At most one free weight: the equality constraint pins it.
        return starts[best : best + 1], float(start_values[best])
    bounds, eq = simplex.simplex_constraints(space)
    fid = torch.tensor(fidelity, dtype=DTYPE)
    bounds = torch.cat([bounds, torch.stack([fid, fid])], dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, _ = optimize_acqf(
            acq,
            bounds=bounds,
            q=1,
            num_restarts=len(starts),
            batch_initial_conditions=starts.unsqueeze(1),
            equality_constraints=eq,
            fixed_features=fixed,
            options={"maxiter": maxiter},
            retry_on_optimization_warning=False,
        )
    w = simplex.project(x.reshape(-1)[:k].detach().cpu().numpy(), space)
    x = at_fidelity(w[None, :], fidelity)
    v = float(score(acq, x)[0])
    if v < float(start_values[best]):
        # SLSQP may end below its best start (after projection); keep the start.
        return starts[best : best + 1], float(start_values[best])
    return x, v


def optimise_on_simplex(
    acq: AcquisitionFunction, space: SearchSpace, fidelity: np.ndarray, raw: np.ndarray, num_restarts: int, maxiter: int
) -> tuple[Tensor, float]:
    """Maximise ``acq`` over mixtures at one fidelity: score ``raw`` ``[M, K]``, polish the best.

    Returns:
        ``(x [1, K + S], value)``.
    """
    X = at_fidelity(raw, fidelity)
    vals = score(acq, X)
    top = vals.topk(min(num_restarts, len(vals))).indices
    return polish(acq, space, fidelity, X[top], vals[top], maxiter)


def greedy_batch(
    acq: AcquisitionFunction,
    space: SearchSpace,
    enc: FidelityEncoder,
    rungs: tuple[str, ...],
    q: int,
    raw: np.ndarray,
    num_restarts: int,
    maxiter: int,
    known: Callable[[np.ndarray, str], bool] | None = None,
) -> list[tuple[np.ndarray, str]]:
    """``q`` (mixture, rung) pairs by sequential greedy maximisation.

    Each slot scores ``raw`` ``[M, K]`` at every rung, polishes the starts of the
    rung with the best score (one SLSQP run per slot instead of one per rung, as
    ``optimize_acqf_mixed`` would do), then adds the pick to the acquisition's
    pending points so the next slot looks elsewhere.

    Args:
        known: ``known(mixture [K], rung)`` is True for a trial the ledger already has. A
            polished pick that is one (on a noisy world the acquisition may value the
            incumbent again, and the ledger would return the old trial instead of a new
            run) is replaced by the best-scoring start that is new.
    """
    base = acq.X_pending
    chosen: list[Tensor] = []
    out: list[tuple[np.ndarray, str]] = []
    for _ in range(q):
        scored = []
        for rung in rungs:
            fidelity = enc.encode([rung])[0]
            X = at_fidelity(raw, fidelity)
            scored.append((score(acq, X), X, rung, fidelity))
        vals, X, rung, fidelity = max(scored, key=lambda t: float(t[0].max()))
        top = vals.topk(min(num_restarts, len(vals))).indices
        x, _ = polish(acq, space, fidelity, X[top], vals[top], maxiter)
        if known is not None:
            taken = [w for w, r in out if r == rung]

            def repeat(row: Tensor) -> bool:
                w = row.reshape(-1)[: space.dim].cpu().numpy()
                return known(w, rung) or any(np.allclose(w, t, atol=1e-6) for t in taken)

            if repeat(x):
                fresh = [i for i in vals.argsort(descending=True).tolist() if not repeat(X[i])]
                if fresh:
                    x = X[fresh[0]].reshape(x.shape)
        chosen.append(x.reshape(1, -1))
        out.append((x.reshape(-1)[: space.dim].cpu().numpy(), rung))
        acq.set_X_pending(torch.cat(([base] if base is not None else []) + chosen, dim=0))
    acq.set_X_pending(base)
    return out


def pool_batch(acq: AcquisitionFunction, choices: Tensor, q: int) -> list[int]:
    """Row indices of ``q`` of ``choices`` ``[P, d]``, by sequential greedy maximisation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        picked, _ = optimize_acqf_discrete(acq, q=min(q, len(choices)), choices=choices, unique=True)
    return [int(torch.isclose(choices, row.unsqueeze(0), atol=1e-12).all(dim=1).nonzero()[0, 0]) for row in picked]


class LowerConfidenceBound(AnalyticAcquisitionFunction):
    """``mean - kappa * std`` (maximising orientation): a pessimistic value of a point."""

    def __init__(self, model: Model, kappa: float) -> None:
        super().__init__(model=model)
        self.kappa = float(kappa)

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: Tensor) -> Tensor:
        mean, sigma = self._mean_and_sigma(X)
        return (mean - self.kappa * sigma).squeeze(-1)  # [b, 1] -> [b]


def best_posterior_mean(
    model: Model,
    space: SearchSpace,
    fidelity: np.ndarray,
    candidates: np.ndarray,
    optimise: bool,
    kappa: float = 0.0,
    num_restarts: int = 4,
    maxiter: int = 100,
) -> tuple[np.ndarray, float, float]:
    """The mixture with the best posterior mean (less ``kappa`` stds) at one fidelity.

    Args:
        model: Fitted Surrogate (maximising orientation).
        space: The search space.
        fidelity: ``[S]`` fidelity features (the target's).
        candidates: ``[M, K]`` mixtures to compare.
        optimise: Also maximise over the simplex, from the best candidates.
        kappa: Standard deviations subtracted: 0 ranks by the mean; > 0 prefers mixtures
            the model is sure of over extrapolated ones.

    Returns:
        ``(weights [K], mean, std)`` in the model's orientation.
    """
    X = at_fidelity(candidates, fidelity)
    mean, std = predict(model, X)
    value = mean - kappa * std
    i = int(np.argmax(value))
    w, v, m, sd = candidates[i], float(value[i]), float(mean[i]), float(std[i])
    if optimise:
        top = torch.tensor(np.argsort(-value)[:num_restarts].copy())
        x, _ = polish(LowerConfidenceBound(model, kappa), space, fidelity, X[top], torch.tensor(value)[top], maxiter)
        m2, sd2 = predict(model, x)
        if m2[0] - kappa * sd2[0] > v:
            w, m, sd = x.reshape(-1)[: space.dim].cpu().numpy(), float(m2[0]), float(sd2[0])
    return np.asarray(w, dtype=float), m, sd
