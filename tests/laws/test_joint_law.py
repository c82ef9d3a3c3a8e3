"""The fitted joint law: predictions with extrapolation factors and model error, targets and the
total, the best mixture at a scale, and its JSON round trip."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from mixsearch.laws import JointLaw, fit_joint, law_from_dict, law_to_dict, load, save

from .conftest import JOINT_DOMAINS as DOMAINS
from .conftest import JOINT_FAST as FAST
from .conftest import joint_runs as runs


@pytest.fixture(scope="module")
def law() -> JointLaw:
    w, N, D, y = runs(24, 1e-3, seed=0)
    return fit_joint(w, y, DOMAINS, N=N, D=D, form="ye", options=FAST)


def test_predict_flags_extrapolation_with_factors(law: JointLaw) -> None:
    w = {"web": 0.2, "code": 0.5, "books": 0.3}
    inside = law.predict(weights=w, N=4e7, D=8e8)
    assert inside.extrapolated is False and inside.factor_N == 1.0 and inside.factor_D == 1.0
    assert inside.lower < inside.value < inside.upper
    beyond = law.predict(weights=w, N=1.6e9, D=1e8)
    assert beyond.extrapolated is True
    assert beyond.factor_N == pytest.approx(10.0) and beyond.factor_D == pytest.approx(2.0)
    rows = law.predict(weights=np.array([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]]), N=[4e7, 1.6e10], D=8e8)
    assert rows.value.shape == (2,) and rows.extrapolated.tolist() == [False, True]
    assert rows.factor_N.tolist() == pytest.approx([1.0, 100.0])
    d = beyond.as_dict()
    assert {"value", "lower", "upper", "extrapolated", "level", "factor_N", "factor_D"} <= set(d)
    # The intervals widen beyond the data by the measured model error (never narrower).
    bare = law.predict(weights=w, N=1.6e10, D=3.2e11)
    assert law.model_error["measured"] is True
    from dataclasses import replace

    unmeasured = replace(law, extra={**law.extra, "model_error": {"measured": False, "reason": "test"}}).predict(weights=w, N=1.6e10, D=3.2e11)
    assert bare.upper - bare.lower >= unmeasured.upper - unmeasured.lower


def test_targets_total_and_optimum() -> None:
    w, N, D, y = runs(20, 1e-3, seed=3)
    other = (2.0 + 0.5 * np.exp(w @ np.array([0.8, -2.0, 1.2]))) * (1 + 30.0 / N**0.3)
    law = fit_joint(w, {"web": y, "code": other}, DOMAINS, N=N, D=D, form="ye", target_weights={"web": 2.0, "code": 1.0}, options=FAST.replace(bootstrap=0), measure_error=False)
    mix = {"web": 0.3, "code": 0.3, "books": 0.4}
    doms = law.predict_domains(mix, N=1e8, D=1e9)
    assert law.predict(weights=mix, N=1e8, D=1e9).value == pytest.approx((2 * doms["web"] + doms["code"]) / 3)
    assert law.predict(weights=mix, N=1e8, D=1e9, target="code").value == pytest.approx(doms["code"])
    opt = law.optimum(N=1e9, D=2e10, upper={"books": 0.5})
    assert sum(opt.weights.values()) == pytest.approx(1.0) and opt.weights["books"] <= 0.5 + 1e-9
    assert opt.N == 1e9 and opt.factor_N == pytest.approx(1e9 / 1.6e8)
    grid = np.array([(a, b, 1 - a - b) for a, b in itertools.product(np.linspace(0, 1, 101), repeat=2) if a + b <= 1 + 1e-12 and 1 - a - b <= 0.5 + 1e-12])
    brute = law.predict(weights=np.clip(grid, 0, None), N=1e9, D=2e10).value.min()
    assert opt.value <= brute + 1e-9 and opt.value == pytest.approx(brute, abs=1e-3)


def test_round_trip_json(law: JointLaw, tmp_path) -> None:
    path = save(law, tmp_path / "joint.json")
    back = load(path)
    assert isinstance(back, JointLaw) and back.params == law.params and back.extra == json.loads(json.dumps(back.extra))
    w = np.array([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]])
    for kw in ({"N": 4e7, "D": 8e8}, {"N": 3e9, "D": 6e10}):
        a, b = law.predict(weights=w, **kw), back.predict(weights=w, **kw)
        assert np.allclose(a.value, b.value, rtol=1e-12) and np.allclose(a.lower, b.lower, rtol=1e-12) and np.allclose(a.upper, b.upper, rtol=1e-12)
        assert a.factor_N.tolist() == b.factor_N.tolist()
    assert law_from_dict(law_to_dict(law)).summary() == law.summary()
    doc = law_to_dict(law)
    doc["extra"]["terms"][0]["part"] = "Z"
    with pytest.raises(ValueError, match="extra.terms.0.part"):
        law_from_dict(doc)


def test_two_rungs_record_an_assumed_model_error_and_the_interval_grows_with_distance() -> None:
    from mixsearch.laws.joint import ASSUMED_MODEL_ERROR

    w, N, D, y = runs(24, 1e-3, seed=4, rungs=((1e7, 2e8), (4e7, 8e8)))
    law = fit_joint(w, y, DOMAINS, N=N, D=D, form="ye", options=FAST)
    me = law.model_error
    assert me["measured"] is False and me["assumed_tau"] == ASSUMED_MODEL_ERROR and "not measured" in me["rule"]
    mix = {"web": 0.2, "code": 0.5, "books": 0.3}
    near, far = (law.predict(weights=mix, N=4e7 * f, D=8e8 * f) for f in (2.0, 100.0))
    rel = lambda p: np.log(p.upper / p.lower)  # noqa: E731
    # The assumed sd is assumed_tau per e-fold: at 100x in both N and D, d = sqrt(2) ln 100.
    assert rel(far) >= 2 * 1.645 * ASSUMED_MODEL_ERROR * np.sqrt(2) * np.log(100.0) * 0.9
    assert rel(far) > 3 * rel(near)
    bare = law.predictive_log_samples(law._parse({"weights": mix, "N": 4e9, "D": 8e10})[0], observation=False, model_error=False)
    assert np.ptp(np.quantile(bare, [0.05, 0.95], axis=0)) < rel(far) / 3
