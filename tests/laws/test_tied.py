"""Several curves of one law with shared parameters."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch.laws.asymptote import SaturatingPowerFormula
from mixsearch.laws.fit import FitOptions
from mixsearch.laws.tied import TiedFormula, fit_tied


def test_tied_exponent_is_recovered_across_curves(jacobian_error) -> None:
    rng = np.random.default_rng(2)
    xs, ys = [], []
    for E, A in ((2.0, 30.0), (2.4, 45.0), (3.1, 20.0)):
        x = np.array([1e7, 3e7, 1e8, 3e8])
        xs.append(x)
        ys.append((E + A / x**0.3) * np.exp(rng.normal(0, 1e-4, x.size)))
    base = SaturatingPowerFormula.for_data(np.concatenate(xs))
    fit, model = fit_tied(base, xs, ys, ("alpha",), FitOptions(bootstrap=0, cv_folds=0))
    assert model.names[0] == "alpha" and len(model.names) == 1 + 2 * 3
    assert fit.theta[0] == pytest.approx(0.3, abs=0.01)
    for c, E in enumerate((2.0, 2.4, 3.1)):
        assert base.to_public(model.curve_theta(fit.theta, c))[0] == pytest.approx(E, rel=0.01)
    x = np.column_stack([np.repeat([0, 1, 2], 4), np.concatenate(xs)])
    assert jacobian_error(model, fit.theta, x) < 1e-5


def test_tying_an_unknown_parameter_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        TiedFormula(SaturatingPowerFormula(), 2, ("gamma",))


def test_two_points_per_curve_with_exponent_and_amplitude_shared_fit_exactly() -> None:
    """Each curve alone fits anything, so its own values are poor starts for the shared ones;
    from them the joint fit stalled with floors at their bound (RMSE 0.023 on exact data)."""
    rng = np.random.default_rng(4)
    n = np.array([1e6, 6e7])
    offsets = 2.0 + 0.8 * np.exp(rng.dirichlet(np.ones(3), 12) @ np.array([-1.5, 0.5, 1.0]))
    xs = [n] * len(offsets)
    ys = [e + 30 / n**0.3 for e in offsets]
    base = SaturatingPowerFormula.for_data(np.concatenate(xs))
    fit, model = fit_tied(base, xs, ys, ("alpha", "a"), FitOptions(bootstrap=0, cv_folds=0))
    assert fit.rmse < 1e-5
    # The exponent is not identified by two sizes, but every curve's change between them is.
    change = [np.diff(np.exp(model.value(fit.theta, np.column_stack([[c, c], n]))))[0] for c in range(len(offsets))]
    assert change == pytest.approx([30 * (n[1] ** -0.3 - n[0] ** -0.3)] * len(offsets), rel=1e-4)
