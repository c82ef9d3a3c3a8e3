"""Held-out Surrogate predictions: the leave-one-out identities and the study-level table."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from mixsearch.propose.fidelity import DTYPE, as_inputs
from mixsearch.propose.surrogate import fit_surrogate
from mixsearch.report.heldout import MIN_TRIALS, loo_predictions, surrogate_loo
from mixsearch.study import Budget, Domain, FidelityLadder, Rung, Study


def bowl(w: np.ndarray, fid: np.ndarray) -> np.ndarray:
    """A smooth objective: distance to an optimum, lower at the higher fidelity."""
    return 3.0 + 2.0 * ((w - np.array([0.5, 0.3, 0.2])) ** 2).sum(axis=1) - 0.4 * fid[:, 0]


def test_leave_one_out_equals_the_posterior_of_the_gp_refitted_without_the_point():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(3), 14)
    fid = rng.integers(0, 2, (14, 1)).astype(float)
    X = as_inputs(w, fid)
    Y = torch.tensor(-bowl(w, fid) + rng.normal(0, 0.01, 14), dtype=DTYPE).unsqueeze(-1)
    torch.manual_seed(0)
    model = fit_surrogate(X, Y, 3, "ar", "identity", 100)
    mean, std = loo_predictions(model)
    for i in (0, 5, 13):
        # The same hyperparameters, conditioned on every point but i (standardised targets as stored).
        keep = torch.arange(14) != i
        other = copy.deepcopy(model)
        other.set_train_data(model.train_inputs[0][keep], model.train_targets[keep], strict=False)
        post = other.posterior(X[i : i + 1], observation_noise=True)
        assert np.isclose(mean[i], post.mean.item(), rtol=1e-6, atol=1e-8)
        assert np.isclose(std[i], post.variance.sqrt().item(), rtol=1e-5, atol=1e-8)


def study_and_trials(n: int, direction: str = "minimize") -> tuple[Study, pd.DataFrame]:
    rng = np.random.default_rng(1)
    w = rng.dirichlet(np.ones(3), n)
    rungs = np.array(["s", "m"])[np.arange(n) % 2]
    fid = (rungs == "m").astype(float)[:, None]
    y = bowl(w, fid) + rng.normal(0, 0.005, n)
    study = Study(
        "h",
        (Domain("a"), Domain("b"), Domain("c")),
        FidelityLadder((Rung("s", 100_000, 10**6), Rung("m", 400_000, 10**6)), Rung("t", 10**8, 10**9)),
        Budget(max_trials=n),
    )
    df = pd.DataFrame({"number": np.arange(1, n + 1), "state": "done", "rung": rungs, "objective": y,
                       "w_a": w[:, 0], "w_b": w[:, 1], "w_c": w[:, 2]})
    return study, df


def test_surrogate_loo_predicts_every_done_trial_and_ranks_them():
    study, df = study_and_trials(24)
    df.loc[3, "state"] = "failed"
    df.loc[3, "objective"] = None
    cv = surrogate_loo(study, df)
    assert list(cv["number"]) == [n for n in df["number"] if n != 4]
    assert np.isfinite(cv["predicted"]).all() and (cv["std"] > 0).all()
    for rung, g in cv.groupby("rung"):
        assert spearmanr(g["observed"], g["predicted"]).statistic > 0.8, rung
    # Far better than predicting the mean: held-out RMSE under a fifth of the objective's spread.
    assert np.sqrt(np.mean((cv["predicted"] - cv["observed"]) ** 2)) < 0.2 * cv["observed"].std()


def test_surrogate_loo_needs_enough_distinct_trials():
    study, df = study_and_trials(MIN_TRIALS - 1)
    assert surrogate_loo(study, df).empty
    study, df = study_and_trials(8)
    df["objective"] = 3.0
    assert surrogate_loo(study, df).empty
