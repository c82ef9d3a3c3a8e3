"""The critical mixture ratio from a study's own runs: the surface, its closed-form CMR, its
fit on generated runs, the answer's basis and interval, and the surface as a JSON law."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from mixsearch.laws import law_from_dict, law_to_dict
from mixsearch.laws.cmr import surface_value
from mixsearch.laws.cpt import fit_cpt
from mixsearch.laws.cpt_surface import fit_surface, surface_cmr, surface_law
from mixsearch.laws.fit import FitError

N_REF = 5e8
# a1, p1, a0, p0, s, c, kappa: forgetting at R = 1 grows as T^0.35, replay helps as T^0.5.
TRUE = np.array([0.20, 0.35, -0.03, 0.5, 0.8, 0.0, 0.3])
LIMIT = 0.117


def runs(n: int, seed: int, noise: float = 0.004, sizes=(N_REF,), ts=(0.25e9, 0.5e9, 1e9, 2e9)):
    rng = np.random.default_rng(seed)
    R = rng.uniform(0.0, 1.0, n)
    T = rng.choice(ts, n)
    N = rng.choice(sizes, n)
    y = surface_value(TRUE, R, T, N, N_REF) + noise * rng.standard_normal(n)
    return R, T, N, y


def test_the_closed_form_cmr_is_the_largest_feasible_ratio():
    for T in (0.25e9, 1e9, 4e9):
        f = lambda r: float(surface_value(TRUE, np.array([r]), np.array([T]), np.array([N_REF]), N_REF)[0]) - LIMIT  # noqa: E731
        expected = brentq(f, 0.0, 1.0) if f(1.0) > 0 else 1.0
        assert surface_cmr(TRUE, T, N_REF, N_REF, LIMIT) == pytest.approx(expected, abs=1e-9)
    # Edges: pure replay already over the limit, and pure domain data within it.
    over = TRUE.copy()
    over[5] = 1.0
    assert surface_cmr(over, 1e9, N_REF, N_REF, LIMIT) == 0.0
    assert surface_cmr(TRUE, 1e9, N_REF, N_REF, 10.0) == 1.0
    # Rows at once, one CMR each.
    assert surface_cmr(np.stack([TRUE, over]), 1e9, N_REF, N_REF, LIMIT).shape == (2,)


def test_the_surface_is_recovered_from_noisy_runs_and_its_interval_covers_the_truth():
    R, T, N, y = runs(24, seed=0)
    fit = fit_surface(R, T, N, y, noise_floor=0.004, draws=40, seed=1)
    assert fit.fixed_kappa and fit.theta[6] == 0.0  # one base size: the surface is size-free
    truth = surface_cmr(TRUE, 4e9, N_REF, N_REF, LIMIT)
    assert fit.cmr(4e9, N_REF, LIMIT) == pytest.approx(truth, abs=0.04)
    lo, hi = np.percentile(surface_cmr(fit.draws, 4e9, N_REF, N_REF, LIMIT), [5, 95])
    assert lo <= truth <= hi and hi - lo < 0.25
    assert fit.rmse < 0.006


def test_forgetting_that_shrinks_with_size_is_fitted_when_the_runs_vary_n():
    R, T, N, y = runs(40, seed=2, sizes=(1.25e8, 2.5e8, 5e8))
    fit = fit_surface(R, T, N, y, noise_floor=0.004, seed=3)
    assert not fit.fixed_kappa and fit.theta[6] == pytest.approx(0.3, abs=0.15)
    # Beyond the largest size the answer follows kappa: larger models take more domain data.
    assert fit.cmr(2e9, 2e9, LIMIT) > fit.cmr(2e9, 5e8, LIMIT)


def test_too_few_runs_is_a_fit_error():
    R, T, N, y = runs(2, seed=0)
    with pytest.raises(FitError, match="needs 3"):
        fit_surface(R, T, N, y, noise_floor=0.004)


def test_fit_cpt_answers_with_its_basis_factors_and_the_papers_pipeline():
    rng = np.random.default_rng(5)
    R = np.tile(np.linspace(0.1, 0.9, 5), 4)
    T = np.repeat([0.25e9, 0.5e9, 1e9, 2e9], 5)
    N = np.full(R.size, N_REF)
    L0 = 2.34
    lg = L0 + surface_value(TRUE, R, T, N, N_REF) + 0.004 * rng.standard_normal(R.size)
    ld = 2.75 - 0.3 * R + 0.004 * rng.standard_normal(R.size)
    fit = fit_cpt(R, T, N, lg, ld, np.full(R.size, L0), np.full(R.size, 2.75), 4e9, N_REF, tolerance=0.05, draws=30, seed=0)
    truth = surface_cmr(TRUE, 4e9, N_REF, N_REF, 0.05 * L0)
    assert fit.basis == "law" and fit.cmr == pytest.approx(truth, abs=0.05)
    assert fit.lower <= fit.cmr <= fit.upper
    assert fit.factors == {"T": 2.0, "N": 1.0} and fit.limit == pytest.approx(0.05 * L0)
    assert fit.model_error["measured"] and fit.model_error["inflation"] >= 1.0
    # The paper's per-T pipeline: a ratio law at each T (5 ratios), a CMR law over the 4 CMRs.
    assert fit.pipeline is not None and len(fit.pipeline.cmr) == 4
    assert {law.form for law in fit.pipeline.laws} >= {"ratio", "cmr"}
    assert fit.general_loss[0] == pytest.approx(L0 + 0.05 * L0, abs=0.01)  # the answer sits on the tolerance


def test_without_a_surface_the_answer_is_observed_at_the_target_or_none():
    R = np.array([0.2, 0.6])
    T = np.full(2, 1e9)
    N = np.full(2, N_REF)
    lg = np.array([2.40, 2.60])
    out = fit_cpt(R, T, N, lg, lg, np.full(2, 2.34), np.full(2, 2.34), 1e9, N_REF, tolerance=0.05, pipeline=False)
    assert out.basis == "observed" and out.cmr == 0.2 and (out.lower, out.upper) == (0.2, 0.6)
    away = fit_cpt(R, T, N, lg, lg, np.full(2, 2.34), np.full(2, 2.34), 4e9, N_REF, tolerance=0.05, pipeline=False)
    assert away.cmr is None and "no run at the target" in away.reason
    assert fit_cpt([], [], [], [], [], [], [], 4e9, N_REF, 0.05).reason == "no done trials yet"


def test_the_surface_is_a_json_law_that_predicts_the_same():
    R, T, N, y = runs(16, seed=4)
    fit = fit_surface(R, T, N, y, noise_floor=0.004, draws=20)
    law = surface_law(fit, R, T, N, y, "general", 0.9, {"limit": LIMIT})
    doc = law_to_dict(law)
    assert doc["kind"] == "cmr" and doc["form"] == "surface" and doc["objective"]["loss"] == "huber"
    back = law_from_dict(doc)
    p, q = law.predict(R=0.4, T=4e9, N=N_REF), back.predict(R=0.4, T=4e9, N=N_REF)
    assert p.value == pytest.approx(q.value) and p.lower == pytest.approx(q.lower) and p.extrapolated
    with pytest.raises(ValueError, match="R must be in"):
        law.predict(R=1.5, T=1e9, N=N_REF)
