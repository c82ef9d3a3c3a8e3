"""CMR laws: ratio and increment laws, the feasible set, the critical ratio and its law."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch.laws import CMRLaw, FitError, FitOptions, critical_ratio, feasible_set, fit_cmr, fit_increment_law, fit_ratio_law
from mixsearch.laws.cmr import PowerOffsetFormula, TwoPowerOffsetFormula, general_loss_limit

L_GEN0, L_DOM0 = 2.5, 3.0
RATIOS = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0])
TOKENS = np.array([0.5, 1, 2, 4, 8, 12, 16, 20]) * 1e9


def general_loss(r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """General loss after T tokens at ratio R: grows with both (forgetting)."""
    return L_GEN0 + 0.3 * r**2 * (t / 1e9) ** 0.3 + 0.01 * (t / 1e9) ** 0.5


def domain_loss(r: np.ndarray, t: np.ndarray) -> np.ndarray:
    return L_DOM0 - (0.1 + 0.6 * r**0.5) * (t / 1e9) ** 0.25


def true_cmr(t: float, limit: float) -> float:
    """Solve 0.3 R^2 τ^0.3 + 0.01 τ^0.5 = limit − L0 for R (τ = T / 1e9)."""
    tau = t / 1e9
    return float(np.sqrt((limit - L_GEN0 - 0.01 * tau**0.5) / (0.3 * tau**0.3)))


def test_jacobians_match_finite_differences(jacobian_error) -> None:
    t = TOKENS[:, None]
    assert jacobian_error(PowerOffsetFormula(1e9, (-3.0, 5.0)), np.array([0.3, -0.4, 2.0]), t) < 1e-5
    assert jacobian_error(TwoPowerOffsetFormula(), np.array([0.3, 0.2, -0.1, 0.9, 0.05]), t) < 1e-5
    r = RATIOS[:, None]  # includes R = 0, where R^s log R → 0
    assert jacobian_error(PowerOffsetFormula(), np.array([0.5, 1.5, 2.5]), r) < 1e-5


def test_ratio_law_recovers_its_parameters() -> None:
    rng = np.random.default_rng(0)
    y = 0.7 * RATIOS**1.8 + 2.52 + rng.normal(0, 5e-4, RATIOS.size)
    law = fit_ratio_law(RATIOS, y, "general", T=2e10, options=FitOptions(bootstrap=20, cv_folds=0))
    assert law.params["alpha"] == pytest.approx(0.7, rel=0.03)
    assert law.params["s"] == pytest.approx(1.8, rel=0.05)
    assert law.params["beta"] == pytest.approx(2.52, abs=2e-3)
    assert law.predict(R=0.5).extrapolated is False


def test_increment_laws_recover_their_parameters() -> None:
    dom = fit_increment_law(TOKENS, -0.4 * (TOKENS / 1e9) ** 0.25 + 0.05, "domain", R=0.3, options=FitOptions(bootstrap=0))
    assert [dom.params[k] for k in ("alpha1", "s1", "beta1")] == pytest.approx([-0.4, 0.25, 0.05], rel=1e-3)
    tau = TOKENS / 1e9
    gen = fit_increment_law(TOKENS, 0.02 * tau**0.2 + 0.001 * tau**1.2 - 0.01, "general", R=0.3, options=FitOptions(bootstrap=0))
    assert gen.params["s2"] <= gen.params["s3"]  # the two terms come out ordered
    assert gen.predict(T=30e9).value == pytest.approx(0.02 * 30**0.2 + 0.001 * 30**1.2 - 0.01, rel=0.02)
    with pytest.raises(ValueError, match="T > 0"):
        fit_increment_law([0.0, 1e9, 2e9, 3e9], [0, 1, 2, 3], "domain")


def test_critical_ratio_and_feasible_set_solve_the_ratio_law() -> None:
    law = CMRLaw(name="g", form="ratio", params={"alpha": 0.5, "s": 2.0, "beta": 2.5}, settings={"space": "linear"})
    limit = general_loss_limit(2.5, 0.05)  # 2.625
    assert limit == pytest.approx(2.625)
    assert critical_ratio(law, limit) == pytest.approx(np.sqrt(0.125 / 0.5), abs=1e-8)
    (lo, hi), = feasible_set(law, limit)
    assert lo == 0.0 and hi == pytest.approx(0.5, abs=1e-3)
    assert critical_ratio(law, 4.0) == 1.0  # everything feasible
    assert critical_ratio(law, 2.4) == 0.0  # nothing feasible
    assert general_loss_limit(2.5, 0.05, relative=False) == pytest.approx(2.55)


def test_pipeline_finds_the_critical_ratio_and_fits_its_law() -> None:
    r, t = np.meshgrid(RATIOS, TOKENS, indexing="ij")
    r, t = r.ravel(), t.ravel()
    rng = np.random.default_rng(1)
    r_all = np.concatenate([RATIOS, r])
    t_all = np.concatenate([np.zeros(RATIOS.size), t])
    lg = np.concatenate([np.full(RATIOS.size, L_GEN0), general_loss(r, t) + rng.normal(0, 3e-4, r.size)])
    ld = np.concatenate([np.full(RATIOS.size, L_DOM0), domain_loss(r, t) + rng.normal(0, 3e-4, r.size)])
    res = fit_cmr(r_all, t_all, lg, ld, tolerance=0.05, options=FitOptions(bootstrap=8, cv_folds=0, n_starts=8))
    assert res.limit == pytest.approx(L_GEN0 * 1.05)
    for tv in (2e9, 8e9, 20e9):
        assert res.cmr[tv] == pytest.approx(true_cmr(tv, res.limit), abs=0.02)
    law = res.law("cmr")
    assert law.extra["tolerance"] == 0.05 and law.output["name"] == "critical mixture ratio"
    assert law.predict(T=16e9).value == pytest.approx(true_cmr(16e9, res.limit), abs=0.02)
    assert law.predict(T=40e9).extrapolated is True
    forms = {l.form for l in res.laws}
    assert {"ratio", "increment_domain", "increment_general", "cmr"} <= forms


def test_pipeline_explains_what_it_skipped_and_rejects_bad_tables() -> None:
    r = np.array([0.0, 0.5, 0.0, 0.2, 0.5, 1.0])
    t = np.array([0.0, 0.0, 1e9, 1e9, 1e9, 1e9])
    lg = np.array([2.5, 2.5, 2.51, 2.52, 2.56, 2.7])
    res = fit_cmr(r, t, lg, lg + 0.5, options=FitOptions(bootstrap=0, cv_folds=0))
    assert any("CMR law" in s for s in res.skipped)
    with pytest.raises(KeyError, match="no 'cmr' law"):
        res.law("cmr")
    with pytest.raises(ValueError, match="R: must be in"):
        fit_cmr([1.5], [1e9], [2.5], [3.0], loss_general_0=2.5)
    with pytest.raises(ValueError, match="loss_general_0"):
        fit_cmr([0.1, 0.2], [1e9, 1e9], [2.5, 2.6], [3.0, 3.0])
    with pytest.raises(FitError, match="no CMR law"):
        fit_cmr([0.1, 0.2], [1e9, 1e9], [2.5, 2.6], [3.0, 3.0], loss_general_0=2.5)
