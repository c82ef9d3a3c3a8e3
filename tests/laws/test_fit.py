"""The fitting core: gradients, tolerances, bootstrap, held-out error, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from mixsearch.laws.asymptote import SaturatingPowerFormula
from mixsearch.laws.chinchilla import ChinchillaFormula
from mixsearch.laws.fit import FitError, FitOptions, fit_model, huber, huber_objective

from .conftest import chinchilla_runs

DELTA = 1e-3


def test_huber_is_quadratic_inside_delta_and_linear_outside() -> None:
    r = np.array([-0.01, -5e-4, 0.0, 5e-4, 0.01])
    assert np.allclose(huber(r, DELTA), [DELTA * (0.01 - DELTA / 2), 0.5 * 2.5e-7, 0.0, 0.5 * 2.5e-7, DELTA * (0.01 - DELTA / 2)])


def test_objective_gradient_matches_finite_differences() -> None:
    N, D, loss = chinchilla_runs(80, 0.01, seed=4)
    model, x, target = ChinchillaFormula(), np.column_stack([N, D]), np.log(loss)
    theta = np.array([0.4, 5.5, 6.3, 0.31, 0.3])
    _, grad = huber_objective(model, theta, x, target, DELTA)
    numeric = np.empty(5)
    for j in range(5):
        h = 1e-7 * max(1.0, abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        numeric[j] = (huber_objective(model, up, x, target, DELTA)[0] - huber_objective(model, down, x, target, DELTA)[0]) / (2 * h)
    assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-9)


def test_scipy_default_tolerances_stop_early_but_the_fitter_reaches_the_optimum() -> None:
    """The known trap: L-BFGS-B with SciPy's defaults on Σ Huber stops well short of the optimum."""
    N, D, loss = chinchilla_runs(250, 0.01, seed=0)
    model, x, target = ChinchillaFormula(), np.column_stack([N, D]), np.log(loss)
    start = np.array([0.5, 5.0, 5.0, 0.5, 0.5])
    default = minimize(lambda th: huber_objective(model, th, x, target, DELTA), start, jac=True, method="L-BFGS-B")
    fit = fit_model(model, x, loss, FitOptions(bootstrap=0, cv_folds=0), warm_starts=start[None, :])
    assert fit.converged
    assert default.fun > fit.objective * 1.01  # the trap is real on this data
    # Stationary: a much tighter polish from the fitter's answer finds nothing better.
    polish = minimize(lambda th: huber_objective(model, th, x, target, DELTA), fit.theta, jac=True, method="BFGS", options={"gtol": 1e-14, "maxiter": 2000})
    assert polish.fun >= fit.objective * (1 - 1e-9)
    assert fit.grad_norm < 1e-5


def test_bootstrap_is_deterministic_given_the_seed() -> None:
    N, D, loss = chinchilla_runs(60, 0.01, seed=1)
    x = np.column_stack([N, D])
    a = fit_model(ChinchillaFormula(), x, loss, FitOptions(bootstrap=6, cv_folds=0, n_starts=4, seed=5))
    b = fit_model(ChinchillaFormula(), x, loss, FitOptions(bootstrap=6, cv_folds=0, n_starts=4, seed=5))
    c = fit_model(ChinchillaFormula(), x, loss, FitOptions(bootstrap=6, cv_folds=0, n_starts=4, seed=6))
    assert a.bootstrap is not None and a.bootstrap.shape == (6, 5)
    assert np.array_equal(a.bootstrap, b.bootstrap)
    assert not np.allclose(a.bootstrap, c.bootstrap)


def test_leave_one_out_error_is_reported_in_natural_units() -> None:
    x = np.array([1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9])
    rng = np.random.default_rng(0)
    y = (3.0 + 50 / x**0.25) * np.exp(rng.normal(0, 0.004, x.size))
    fit = fit_model(SaturatingPowerFormula.for_data(x), x, y, FitOptions(bootstrap=0, cv_folds=-1))
    assert fit.cv_folds == x.size
    natural_rmse = float(np.sqrt(np.mean((y - fit.predictions) ** 2)))
    assert fit.cv_rmse is not None and fit.cv_rmse > natural_rmse  # held out is harder than in sample


def test_too_few_points_is_a_fit_error() -> None:
    with pytest.raises(FitError, match="cannot determine 5 parameters"):
        fit_model(ChinchillaFormula(), np.array([[1e8, 1e9], [2e8, 2e9]]), np.array([3.0, 2.9]))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"huber_delta": 0}, "huber_delta"), ({"method": "CG"}, "method"), ({"bootstrap": -1}, "bootstrap"), ({"level": 1.5}, "level"), ({"cv_folds": 1}, "cv_folds")],
)
def test_bad_options_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"FitOptions.{field}"):
        FitOptions(**kwargs)


def test_misuse_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="positive observations"):
        fit_model(SaturatingPowerFormula(), np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="x must be"):
        fit_model(SaturatingPowerFormula(), np.ones((3, 1)), np.ones(4))
