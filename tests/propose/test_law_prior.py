"""The joint law as the Surrogate's prior mean: when it applies, what it evaluates, its gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixsearch.evaluate.synthetic import SyntheticEvaluator
from mixsearch.evaluate.worlds import MOVING_RUNGS
from mixsearch.propose.base import History, ProposalContext
from mixsearch.propose.fidelity import DTYPE, FidelityEncoder, as_inputs
from mixsearch.propose.law_prior import LawPrior, fit_law_prior, rung_scales
from mixsearch.propose.mfbo import MultiFidelityBO
from mixsearch.study import FidelityLadder, Rung, SearchSpace

LADDER = FidelityLadder(MOVING_RUNGS[:4], MOVING_RUNGS[-1])
WORLD = SyntheticEvaluator("moving-optimum", noise=0.0)


def history(n: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(6), n)
    rungs = [MOVING_RUNGS[i % 4].name for i in range(n)]
    y = np.array([WORLD.true_objective(x, LADDER.rung(r))[0] for x, r in zip(w, rungs)])
    return w, rungs, y


@pytest.fixture(scope="module")
def prior():
    w, rungs, y = history()
    law = fit_law_prior(w, y, rungs, rung_scales(LADDER))
    assert law is not None
    return LawPrior(law, FidelityEncoder.from_ladder(LADDER), rung_scales(LADDER)), law


def test_it_applies_only_to_losses_at_two_or_more_scales():
    w, rungs, y = history(24)
    scales = rung_scales(LADDER)
    assert fit_law_prior(w, -y, rungs, scales) is None  # an accuracy, oriented to be minimised
    assert fit_law_prior(w[::4], y[::4], rungs[::4], scales) is None  # one rung only
    assert rung_scales(FidelityLadder((Rung("a", cost=1.0),), Rung("b", cost=2.0))) is None


def test_values_are_the_laws_prediction_at_each_inputs_rung_negated(prior):
    lp, law = prior
    enc = FidelityEncoder.from_ladder(LADDER)
    w = np.random.default_rng(5).dirichlet(np.ones(6), 5)
    for rung in ("25M-2B", "400M-8B"):
        X = as_inputs(w, enc.encode([rung] * 5)).numpy()
        r = LADDER.rung(rung)
        np.testing.assert_allclose(lp.values(X), -law.predict(weights=w, N=r.n_params, D=r.tokens).value, rtol=1e-10)


def test_the_gradient_in_the_weights_matches_finite_differences(prior):
    lp, _ = prior
    enc = FidelityEncoder.from_ladder(LADDER)
    w = np.random.default_rng(6).dirichlet(np.ones(6), 3)
    X = as_inputs(w, enc.encode(["100M-0.5B"] * 3)).clone().requires_grad_(True)
    lp(X).sum().backward()
    h = 1e-6
    for j in range(6):
        Xp, Xm = X.detach().clone(), X.detach().clone()
        Xp[:, j] += h
        Xm[:, j] -= h
        fd = (lp.values(Xp.numpy()) - lp.values(Xm.numpy())) / (2 * h)
        np.testing.assert_allclose(X.grad[:, j].numpy(), fd, rtol=2e-3, atol=2e-4)


def test_with_the_prior_the_surrogate_at_the_target_follows_the_law():
    w, rungs, y = history()
    ctx = ProposalContext(SearchSpace(WORLD.domains), LADDER, History(w, tuple(rungs), y, np.zeros((0, 6)), ()), seed=3)
    mix = np.random.default_rng(9).dirichlet(np.ones(6), 20)
    truth = WORLD.true_objective(mix, LADDER.target)
    errors = {}
    for on in (True, False):
        bo = MultiFidelityBO(law_prior=on, fit_maxiter=80)
        enc = bo._encoder(ctx)
        from mixsearch.propose.observations import finite_observations

        model = bo._fit(finite_observations(ctx, enc.names), enc, ctx)
        X = as_inputs(mix, np.repeat(enc.target_features[None, :], 20, axis=0))
        with torch.no_grad():
            mean = -model.posterior(X.to(DTYPE)).mean.squeeze(-1).numpy()
        errors[on] = float(np.mean(np.abs(mean - truth)))
    # At a target 4x beyond the rungs in N and D, the law carries the level; a GP alone reverts to its mean.
    assert errors[True] < 0.5 * errors[False], errors
