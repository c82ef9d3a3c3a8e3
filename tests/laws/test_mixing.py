"""Data mixing laws: recovery, gradients, predict, optimum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mixsearch.laws import FitOptions, MixingLaw, fit_mixing
from mixsearch.laws.mixing import MixingFormula

DOMAINS = ["web", "code", "books"]
T_WEB = np.array([-1.5, 0.5, 1.0])  # sums to 0, the law's normalisation
T_CODE = np.array([0.8, -2.0, 1.2])


def truth(r: np.ndarray) -> dict[str, np.ndarray]:
    return {"web": 2.0 + 0.8 * np.exp(r @ T_WEB), "code": 3.0 + 0.5 * np.exp(r @ T_CODE)}


@pytest.fixture(scope="module")
def law() -> MixingLaw:
    rng = np.random.default_rng(0)
    r = rng.dirichlet(np.ones(3), 60)
    y = {k: v * np.exp(rng.normal(0, 1e-3, v.size)) for k, v in truth(r).items()}
    return fit_mixing(r, y, DOMAINS, target_weights={"web": 2.0, "code": 1.0}, scale={"N": 1e6, "steps": 1000}, options=FitOptions(bootstrap=20, cv_folds=0))


def test_recovers_known_parameters(law: MixingLaw) -> None:
    p = law.params
    assert p["c[web]"] == pytest.approx(2.0, rel=0.01) and p["k[web]"] == pytest.approx(0.8, rel=0.03)
    assert p["c[code]"] == pytest.approx(3.0, rel=0.01) and p["k[code]"] == pytest.approx(0.5, rel=0.05)
    assert [p[f"t[web,{d}]"] for d in DOMAINS] == pytest.approx(T_WEB.tolist(), abs=0.05)
    assert [p[f"t[code,{d}]"] for d in DOMAINS] == pytest.approx(T_CODE.tolist(), abs=0.08)
    assert law.diagnostics["converged"] and law.diagnostics["bootstrap_resamples"] == 20


def test_jacobian_matches_finite_differences(jacobian_error) -> None:
    r = np.random.default_rng(1).dirichlet(np.ones(3), 12)
    assert jacobian_error(MixingFormula(3), np.array([0.7, -0.2, 0.4, 0.9]), r) < 1e-5


def test_predict_total_domains_and_inputs(law: MixingLaw) -> None:
    w = {"web": 0.2, "code": 0.5, "books": 0.3}
    expected = {k: float(v[0]) for k, v in truth(np.array([[0.2, 0.5, 0.3]])).items()}
    total = law.predict(weights=w)
    assert total.value == pytest.approx((2 * expected["web"] + expected["code"]) / 3, rel=2e-3)
    assert total.lower < total.value < total.upper and total.extrapolated is False
    assert law.predict(weights=[0.2, 0.5, 0.3]).value == total.value
    assert law.predict(weights=w, target="code").value == pytest.approx(expected["code"], rel=2e-3)
    assert law.predict_domains(w)["web"] == pytest.approx(expected["web"], rel=2e-3)
    assert law.predict(weights=w, N=1e6, steps=1000).value == total.value
    rows = law.predict(weights=np.array([[1.0, 0.0, 0.0], [0.3, 0.3, 0.4]]))
    assert rows.value.shape == (2,)


def test_bad_inputs_are_one_line_errors(law: MixingLaw) -> None:
    with pytest.raises(ValueError, match="unknown domain"):
        law.predict(weights={"web": 0.5, "math": 0.5})
    with pytest.raises(ValueError, match="sum to 1"):
        law.predict(weights=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="fitted for N=1e\\+06"):
        law.predict(weights=[0.2, 0.5, 0.3], N=1e9)
    with pytest.raises(ValueError, match="unknown 'math'"):
        law.predict(weights=[0.2, 0.5, 0.3], target="math")
    with pytest.raises(ValueError, match="row 0 sums"):
        fit_mixing([[0.5, 0.9, 0.0]] * 6, [3.0] * 6, DOMAINS)


def test_optimum_matches_a_brute_force_search_within_bounds(law: MixingLaw) -> None:
    opt = law.optimum(upper={"books": 0.2}, lower={"code": 0.1})
    assert sum(opt.weights.values()) == pytest.approx(1.0)
    assert opt.weights["books"] <= 0.2 + 1e-9 and opt.weights["code"] >= 0.1 - 1e-9
    grid = [(a, b, 1 - a - b) for a, b in itertools.product(np.linspace(0, 1, 201), repeat=2) if a + b <= 1 + 1e-12 and 1 - a - b <= 0.2 + 1e-12 and b >= 0.1 - 1e-12]
    brute = law.predict(weights=np.clip(np.array(grid), 0, None)).value.min()
    assert opt.value <= brute + 1e-9
    assert opt.value == pytest.approx(brute, abs=1e-3)
    with pytest.raises(ValueError, match="empty"):
        law.optimum(lower={"web": 0.7, "code": 0.7})
