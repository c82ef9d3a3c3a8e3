"""Saturating power laws: recipe asymptotes, ensembles, the joint asymptote, data efficiency."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch.laws import FitError, FitOptions, data_efficiency, fit_data_law, fit_ensemble_law, fit_size_law, joint_asymptote
from mixsearch.laws.asymptote import SaturatingPowerFormula, compare_recipes

SIZES = np.array([1.5e8, 3e8, 6e8, 1.2e9, 2.4e9, 4.8e9])


def test_jacobian_matches_finite_differences(jacobian_error) -> None:
    model = SaturatingPowerFormula.for_data(SIZES)
    assert jacobian_error(model, np.array([1.1, -2.0, 0.3]), SIZES[:, None]) < 1e-5


def test_size_law_recovers_the_asymptote_with_an_interval() -> None:
    rng = np.random.default_rng(0)
    N = np.repeat(SIZES, 2)
    loss = (3.2 + 60 / N**0.25) * np.exp(rng.normal(0, 5e-4, N.size))
    law = fit_size_law(N, loss, recipe="regularised", options=FitOptions(bootstrap=30, cv_folds=0))
    E, lo, hi = law.asymptote
    assert E == pytest.approx(3.2, rel=0.02)
    assert lo <= 3.2 <= hi
    assert law.params["alpha"] == pytest.approx(0.25, abs=0.03)
    assert law.extra["recipe"] == "regularised"
    assert law.inverse(float(law.predict(N=1e10).value)) == pytest.approx(1e10, rel=1e-6)
    assert law.inverse(E - 0.01) == np.inf


def test_recipes_rank_by_asymptote() -> None:
    laws = [fit_size_law(SIZES, E + 60 / SIZES**0.25, recipe=name, options=FitOptions(bootstrap=0)) for name, E in (("base", 3.4), ("better", 3.1))]
    assert [row["recipe"] for row in compare_recipes(laws)] == ["better", "base"]


def test_ensemble_law_in_member_count() -> None:
    K = np.arange(1, 9, dtype=float)
    law = fit_ensemble_law(K, 3.3 + 0.2 / K**0.9, N=3e8, options=FitOptions(bootstrap=0))
    assert law.params["E"] == pytest.approx(3.3, rel=1e-3)
    assert law.predict(K=16).extrapolated is True


def test_joint_asymptote_takes_members_then_size_to_infinity() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for n in (1.5e8, 3e8, 6e8, 1.2e9, 2.4e9):
        e_n = 3.0 + 40 / n**0.22  # the K → ∞ loss at member size n
        for k in (1, 2, 3, 4, 6, 8):
            rows.append((n, k, (e_n + 0.3 / k**0.8) * np.exp(rng.normal(0, 2e-4))))
    N, K, loss = np.array(rows).T
    joint = joint_asymptote(N, K, loss, options=FitOptions(bootstrap=10, cv_folds=0))
    assert len(joint.ensembles) == 5
    for ens in joint.ensembles:
        assert ens.params["alpha"] == pytest.approx(0.8, abs=0.05)  # tied and recovered
    E, lo, hi = joint.law.asymptote
    assert E == pytest.approx(3.0, rel=0.03)
    assert lo is not None and lo <= E <= hi
    assert joint.law.predict(N=1e10).value == pytest.approx(3.0 + 40 / 1e10**0.22, rel=0.01)
    assert joint.law.ensemble_law(3e8).predict(K=2).value == pytest.approx(3.0 + 40 / 3e8**0.22 + 0.3 / 2**0.8, rel=2e-3)
    with pytest.raises(ValueError, match="K -> inf"):
        joint.law.predict(N=1e9, K=4)
    with pytest.raises(ValueError, match="no ensemble law"):
        joint.law.ensemble_law(5e8)


def test_joint_asymptote_needs_three_sizes() -> None:
    with pytest.raises(FitError, match=">= 3 member sizes"):
        joint_asymptote([1e8, 1e8, 2e8, 2e8], [1, 2, 1, 2], [3.0, 2.9, 2.8, 2.7])


def test_data_efficiency_inverts_the_data_law() -> None:
    D = np.array([1e9, 2e9, 4e9, 8e9, 16e9])
    law = fit_data_law(D, 3.0 + 900 / D**0.3, options=FitOptions(bootstrap=0))
    reached = 3.0 + 900 / (5.17 * 2e9) ** 0.3  # what the baseline would reach with 5.17x the data
    eff = data_efficiency(law, reached, tokens=2e9)
    assert eff.multiplier == pytest.approx(5.17, rel=1e-4)
    assert data_efficiency(law, 2.9, tokens=2e9).multiplier == np.inf
    with pytest.raises(ValueError, match="tokens"):
        data_efficiency(law, reached, tokens=0)
