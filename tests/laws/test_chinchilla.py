"""Chinchilla law: recovery, gradients, compute-optimal allocation, predict."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from mixsearch.laws import ChinchillaLaw, FitError, FitOptions, fit_chinchilla
from mixsearch.laws.chinchilla import ChinchillaFormula

from .conftest import CHINCHILLA_TRUTH, chinchilla_runs


@pytest.fixture(scope="module")
def noisy_law() -> ChinchillaLaw:
    N, D, loss = chinchilla_runs(250, 0.003, seed=2)
    return fit_chinchilla(N, D, loss, FitOptions(bootstrap=40, cv_folds=0))


def test_recovers_known_parameters_from_noisy_runs(noisy_law: ChinchillaLaw) -> None:
    p = noisy_law.params
    assert list(p) == ["E", "A", "B", "alpha", "beta"]
    assert p["E"] == pytest.approx(CHINCHILLA_TRUTH["E"], rel=0.02)
    assert p["alpha"] == pytest.approx(CHINCHILLA_TRUTH["alpha"], abs=0.01)
    assert p["beta"] == pytest.approx(CHINCHILLA_TRUTH["beta"], abs=0.01)
    assert p["A"] == pytest.approx(CHINCHILLA_TRUTH["A"], rel=0.15)
    assert p["B"] == pytest.approx(CHINCHILLA_TRUTH["B"], rel=0.15)
    for name, (lo, hi) in noisy_law.intervals.items():
        assert lo <= CHINCHILLA_TRUTH[name] <= hi, name
    assert noisy_law.diagnostics["converged"]


def test_recovers_exact_parameters_without_noise() -> None:
    N, D, loss = chinchilla_runs(60, 0.0, seed=3)
    law = fit_chinchilla(N, D, loss, FitOptions(bootstrap=0, cv_folds=0))
    for name, value in CHINCHILLA_TRUTH.items():
        assert law.params[name] == pytest.approx(value, rel=1e-4), name


def test_jacobian_matches_finite_differences(jacobian_error) -> None:
    N, D, _ = chinchilla_runs(30, 0.0, seed=0)
    assert jacobian_error(ChinchillaFormula(), np.array([0.5, 6.0, 6.0, 0.34, 0.28]), np.column_stack([N, D])) < 1e-5


def test_compute_optimal_allocation_minimises_loss_on_the_budget(noisy_law: ChinchillaLaw) -> None:
    flops = 5.76e23
    opt = noisy_law.compute_optimal(flops)
    assert 6 * opt.N * opt.D == pytest.approx(flops, rel=1e-9)
    # Brute force along the budget line 6·N·D = C.
    loss_at = lambda log_n: float(noisy_law.predict(N=np.exp(log_n), D=flops / (6 * np.exp(log_n))).value)  # noqa: E731
    best = minimize_scalar(loss_at, bounds=(np.log(1e8), np.log(1e13)), method="bounded", options={"xatol": 1e-10})
    assert opt.N == pytest.approx(np.exp(best.x), rel=1e-4)
    assert opt.loss == pytest.approx(best.fun, rel=1e-9)
    assert opt.tokens_per_param == pytest.approx(opt.D / opt.N)
    assert opt.N_interval is not None and opt.N_interval[0] <= opt.N <= opt.N_interval[1]
    many = noisy_law.compute_optimal(np.array([1e21, 1e22]))
    assert many.N.shape == (2,) and many.N[1] > many.N[0]


def test_predict_scalars_arrays_intervals_and_extrapolation(noisy_law: ChinchillaLaw) -> None:
    inside = noisy_law.predict(N=1e9, D=1e10)
    assert isinstance(inside.value, float) and inside.extrapolated is False
    assert inside.lower < inside.value < inside.upper
    far = noisy_law.predict(N=7e10, D=1.4e12)
    assert far.extrapolated is True
    assert far.upper - far.lower > inside.upper - inside.lower  # wider away from the data
    noisy_obs = noisy_law.predict(N=1e9, D=1e10, observation=True)
    assert noisy_obs.upper - noisy_obs.lower > inside.upper - inside.lower
    arr = noisy_law.predict(N=np.array([1e8, 1e9, 1e11]), D=1e10)
    assert arr.value.shape == (3,) and arr.extrapolated.tolist() == [False, False, True]


def test_bad_inputs_name_the_field(noisy_law: ChinchillaLaw) -> None:
    with pytest.raises(ValueError, match="^N: must be positive"):
        noisy_law.predict(N=-1.0, D=1e10)
    with pytest.raises(ValueError, match="missing input"):
        noisy_law.predict(N=1e9)
    with pytest.raises(ValueError, match="unknown input"):
        noisy_law.predict(N=1e9, D=1e10, K=2)
    with pytest.raises(ValueError, match="same length"):
        fit_chinchilla([1e8, 2e8], [1e9], [3.0, 2.9])
    with pytest.raises(ValueError, match="^loss: must be positive"):
        fit_chinchilla([1e8] * 6, [1e9] * 6, [3.0, 2.9, 0.0, 1, 1, 1])
    with pytest.raises(FitError):
        fit_chinchilla([1e8, 2e8, 3e8], [1e9, 2e9, 3e9], [3.0, 2.9, 2.8])
