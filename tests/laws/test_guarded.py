"""The joint law on a study's few rungs: published exponents for what the runs cannot determine."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch.laws.fit import FitOptions
from mixsearch.laws.guarded import MIN_DISTINCT, PUBLISHED_EXPONENTS, fit_study_joint

FAST = FitOptions(bootstrap=0, cv_folds=0, n_starts=4)


def runs(sizes, tokens, n=60, seed=0):
    """A mixture-dependent Chinchilla world with known exponents 0.34 and 0.28."""
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(3), n)
    N = rng.choice(sizes, n).astype(float)
    D = rng.choice(tokens, n).astype(float)
    y = 1.8 + 0.3 * np.exp(w @ np.array([-1.0, 0.5, 0.5])) + 400.0 * np.exp(w @ np.array([0.3, -0.2, -0.1])) / N**0.34 + 410.0 / D**0.28
    return w, y, N, D


def test_an_exponent_the_runs_cannot_determine_is_fixed_at_the_published_value_and_recorded():
    w, y, N, D = runs([1e7, 4e7], [2e8, 8e8, 3.2e9])
    law = fit_study_joint(w, {"loss": y}, ["a", "b", "c"], N, D, options=FAST, measure_error=False)
    assert law.extra["exponents"]["alpha"].startswith(f"fixed at {PUBLISHED_EXPONENTS['alpha']}")
    assert f"fewer than {MIN_DISTINCT}" in law.extra["exponents"]["alpha"]
    assert law.params["alpha[loss]"] == pytest.approx(0.34)
    # D varies over three values: beta is fitted (and lands near the truth).
    assert law.extra["exponents"]["beta"] == "fitted" and law.params["beta[loss]"] == pytest.approx(0.28, abs=0.08)
    p = law.predict(weights=[0.2, 0.4, 0.4], N=1.6e8, D=1.28e10).value
    truth = 1.8 + 0.3 * np.exp(-0.2 + 0.4) + 400.0 * np.exp(0.06 - 0.08 - 0.04) / 1.6e8**0.34 + 410.0 / 1.28e10**0.28
    assert p == pytest.approx(truth, rel=0.03)


def test_a_free_fit_that_lands_outside_the_plausible_range_is_refitted_with_the_published_exponent(monkeypatch):
    import mixsearch.laws.guarded as guarded

    w, y, N, D = runs([1e7, 4e7, 1.6e8], [2e8, 8e8, 3.2e9])
    free = fit_study_joint(w, {"loss": y}, ["a", "b", "c"], N, D, options=FAST, measure_error=False)
    assert free.extra["exponents"] == {"alpha": "fitted", "beta": "fitted"}
    # Declare the true exponent implausible: the fit must notice, refit with the published value, and say why.
    monkeypatch.setattr(guarded, "PLAUSIBLE", (0.5, 1.5))
    monkeypatch.setattr(guarded, "PUBLISHED_EXPONENTS", {"alpha": 0.6, "beta": 0.7})
    law = fit_study_joint(w, {"loss": y}, ["a", "b", "c"], N, D, options=FAST, measure_error=False)
    assert "outside 0.5-1.5" in law.extra["exponents"]["alpha"] and law.params["alpha[loss]"] == pytest.approx(0.6)
    assert "outside 0.5-1.5" in law.extra["exponents"]["beta"] and law.params["beta[loss]"] == pytest.approx(0.7)


def test_the_held_out_refit_follows_the_same_rules(monkeypatch):
    # Three sizes and three token counts, one rung each: the full fit frees both exponents,
    # but without the largest rung two sizes remain, so the refit must fix alpha as the
    # study's own law would on those runs (fitted freely it measures another law's error).
    import mixsearch.laws.guarded as guarded

    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(3), 90)
    scale = np.repeat([[1e7, 2e8], [4e7, 8e8], [1.6e8, 3.2e9]], 30, axis=0)
    N, D = scale[:, 0], scale[:, 1]
    y = (1.8 + 0.3 * np.exp(w @ np.array([-1.0, 0.5, 0.5])) + 400.0 * np.exp(w @ np.array([0.3, -0.2, -0.1])) / N**0.34 + 410.0 / D**0.28) * np.exp(rng.normal(0, 2e-3, 90))
    refits = []
    original = guarded._holdout_fit
    monkeypatch.setattr(guarded, "_holdout_fit", lambda *a, **k: refits.append(original(*a, **k)) or refits[-1])
    law = fit_study_joint(w, {"loss": y}, ["a", "b", "c"], N, D, options=FitOptions(bootstrap=8, cv_folds=0, n_starts=4))
    assert law.extra["exponents"] == {"alpha": "fitted", "beta": "fitted"}
    assert law.model_error["measured"] is True
    assert len(refits) == 1 and refits[0].extra["exponents"]["alpha"].startswith("fixed at 0.34")
