"""The joint law of mixture and scale: recovery, gradients, predict with factors, identifiability,
leave-one-scale-out, JSON round trip, old law files, and ``fit_table``'s default."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

from mixsearch.laws import FitOptions, JointLaw, MixingLaw, fit_joint, fit_table, law_from_dict, law_to_dict, leave_one_scale_out, load, load_all, save
from mixsearch.laws.joint import TOTAL, JointFormula, Term, term_values

DOMAINS = ["web", "code", "books"]
T_E = np.array([-1.5, 0.5, 1.0])  # sums to 0, the law's normalisation
T_A = np.array([0.6, -0.4, -0.2])
TRUTH = {"c": 1.5, "kE": 0.8, "kA": 60.0, "B": 250.0, "alpha": 0.3, "beta": 0.3}
# Five rungs, three sizes and three token counts: both exponents identified.
RUNGS = [(1e7, 2e8), (1e7, 3.2e9), (4e7, 8e8), (1.6e8, 2e8), (1.6e8, 3.2e9)]
FAST = FitOptions(bootstrap=6, keep_samples=6, cv_folds=0, n_starts=4)


def truth(w: np.ndarray, N: np.ndarray | float, D: np.ndarray | float, curve: float = 0.0) -> np.ndarray:
    """The Chinchilla-mixing world the "ye" form can represent exactly (``curve`` adds a second N power it cannot)."""
    t = TRUTH
    return t["c"] + t["kE"] * np.exp(w @ T_E) + t["kA"] * np.exp(w @ T_A) / N ** t["alpha"] + t["B"] / D ** t["beta"] + curve * 40.0 / N**0.6


def runs(per_rung: int, noise: float, seed: int, rungs=RUNGS, curve: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(3), per_rung * len(rungs))
    N = np.repeat([r[0] for r in rungs], per_rung)
    D = np.repeat([r[1] for r in rungs], per_rung)
    y = truth(w, N, D, curve) * np.exp(rng.normal(0.0, noise, N.size))
    return w, N, D, y


@pytest.fixture(scope="module")
def law() -> JointLaw:
    w, N, D, y = runs(24, 1e-3, seed=0)
    return fit_joint(w, y, DOMAINS, N=N, D=D, form="ye", options=FAST)


def test_recovers_known_parameters(law: JointLaw) -> None:
    p = law.params
    assert law.kind == "joint" and law.extra["preset"] == "ye"
    assert p["alpha[loss]"] == pytest.approx(TRUTH["alpha"], abs=0.02)
    assert p["beta[loss]"] == pytest.approx(TRUTH["beta"], abs=0.02)
    assert p["c[loss]"] == pytest.approx(TRUTH["c"], rel=0.03)
    assert p["E1.k[loss]"] == pytest.approx(TRUTH["kE"], rel=0.05)
    assert [p[f"E1.t[loss,{d}]"] for d in DOMAINS] == pytest.approx(T_E.tolist(), abs=0.05)
    assert [p[f"A.t[loss,{d}]"] for d in DOMAINS] == pytest.approx(T_A.tolist(), abs=0.1)
    assert p["A.k[loss]"] == pytest.approx(TRUTH["kA"], rel=0.3)
    assert p["B[loss]"] == pytest.approx(TRUTH["B"], rel=0.3)
    assert law.diagnostics["converged"] and law.diagnostics["bootstrap_resamples"] == 6
    # Away from the data the law must still be the truth: 6x beyond in N and D.
    w = np.random.default_rng(9).dirichlet(np.ones(3), 5)
    assert law.predict(weights=w, N=1e9, D=2e10).value == pytest.approx(truth(w, 1e9, 2e10), rel=5e-3)


def test_jacobian_matches_finite_differences(jacobian_error) -> None:
    rng = np.random.default_rng(1)
    w = rng.dirichlet(np.ones(4), 30)
    x = np.column_stack([w, np.exp(rng.uniform(14, 19, 30)), np.exp(rng.uniform(19, 23, 30))])
    terms = [Term("c", "E", "const"), Term("E1", "E", "both"), Term("E2", "E", "log"), Term("E3", "E", "linear"), Term("A", "A", "log"), Term("B", "B", "fixed")]
    formula = JointFormula.for_data(4, terms, 0.01, x, fixed={"B": 300.0, "beta": 0.3})
    theta = rng.normal(0.0, 0.3, len(formula.names))
    assert jacobian_error(formula, theta, x) < 1e-5
    # The public parameters evaluate to the same law, and the coordinates round-trip.
    public = formula.to_public(theta[None, :])
    assert np.log(term_values(public, terms, w, np.log(x[:, 4]), np.log(x[:, 5]), 0.01).sum(axis=0)[0]) == pytest.approx(formula.value(theta, x), abs=1e-12)
    assert formula.internal(formula.natural(theta)) == pytest.approx(theta, abs=1e-12)


def test_log_share_exponents_are_bounded_in_natural_units() -> None:
    """Internal u are scaled natural u: the box bounds must mean -1 <= u <= 0 on the raw log shares."""
    rng = np.random.default_rng(2)
    w = rng.dirichlet(np.ones(3), 40)
    x = np.column_stack([w, np.full(40, 1e7), np.full(40, 1e9)])
    formula = JointFormula.for_data(3, [Term("c", "E", "const"), Term("E1", "E", "log")], 0.01, x)
    lo = np.array([b[0] for b in formula.bounds()][2:])
    hi = np.array([b[1] for b in formula.bounds()][2:])
    theta = np.zeros(len(formula.names))
    theta[2:] = lo
    assert formula.natural(theta)[2:] == pytest.approx([-1.0] * 3)
    theta[2:] = hi
    assert formula.natural(theta)[2:] == pytest.approx([0.0] * 3)


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


def test_one_d_without_priors_is_refused_beyond_it_and_priors_fix_the_term() -> None:
    w, N, _, y = runs(24, 1e-3, seed=4, rungs=[(1e7, 1e9), (4e7, 1e9), (1.6e8, 1e9)])
    bare = fit_joint(w, y, DOMAINS, N=N, D=1e9, form="ye", options=FAST.replace(bootstrap=0))
    assert "D term is not identified" in bare.extra["identifiability"]["D"]
    assert not any(t.part == "B" for t in bare.terms)
    bare.predict(weights=[0.2, 0.5, 0.3], N=1e9, D=1e9)  # at the runs' D: fine
    with pytest.raises(ValueError, match="fitted at D=1e\\+09 only"):
        bare.predict(weights=[0.2, 0.5, 0.3], N=1e9, D=2e10)
    assert bare.model_error["measured"] is True and bare.model_error["held_out"] == {"N": 1.6e8, "D": 1e9}  # three sizes: checkable
    fixed = fit_joint(w, y, DOMAINS, N=N, D=1e9, form="ye", priors={"B": 250.0, "beta": 0.3}, options=FAST.replace(bootstrap=0), measure_error=False)
    assert fixed.extra["fixed"] == {"beta": 0.3, "B": 250.0} and fixed.params["B[loss]"] == 250.0
    mix = np.array([0.2, 0.5, 0.3])
    assert fixed.predict(weights=mix, N=4e7, D=2e10).value == pytest.approx(float(truth(mix[None], 4e7, 2e10)[0]), rel=3e-3)


def test_bad_inputs_are_one_line_errors(law: JointLaw) -> None:
    w, N, D, y = runs(6, 1e-3, seed=5)
    with pytest.raises(ValueError, match="not both"):
        fit_joint(w, y, DOMAINS, N=N, D=D, steps=D)
    with pytest.raises(ValueError, match="priors: unknown gamma"):
        fit_joint(w, y, DOMAINS, N=N, D=D, priors={"gamma": 1.0})
    with pytest.raises(ValueError, match="A is fitted"):
        fit_joint(w, y, DOMAINS, N=N, D=D, priors={"A": 3.0})
    with pytest.raises(ValueError, match="unknown 'moore'"):
        fit_joint(w, y, DOMAINS, N=N, D=D, form="moore")
    with pytest.raises(ValueError, match="missing input\\(s\\) N"):
        law.predict(weights=[0.2, 0.5, 0.3], D=1e9)
    with pytest.raises(ValueError, match="unknown input\\(s\\) steps"):
        law.predict(weights=[0.2, 0.5, 0.3], N=1e8, D=1e9, steps=10)
    with pytest.raises(ValueError, match="unknown 'math'"):
        law.predict(weights=[0.2, 0.5, 0.3], N=1e8, D=1e9, target="math")


def test_auto_form_takes_the_richest_the_runs_support() -> None:
    # K = 3 with B and beta: "ll" has 14 parameters, "log" 11, "log-c" 9; auto needs 3 runs per parameter.
    for per_rung, preset in ((6, "log-c"), (7, "log"), (9, "ll")):
        w, N, D, y = runs(per_rung, 1e-3, seed=6)
        law = fit_joint(w, y, DOMAINS, N=N, D=D, options=FAST.replace(bootstrap=0), measure_error=False)
        assert law.extra["preset"] == preset and f"{5 * per_rung} runs" in law.extra["preset_reason"]


def test_leave_one_scale_out_holds_out_the_largest_rung() -> None:
    w, N, D, y = runs(24, 1e-3, seed=7)
    held = leave_one_scale_out(w, y, DOMAINS, N=N, D=D, form="ye", options=FAST)
    assert held.held_out == {"N": 1.6e8, "D": 3.2e9} and held.level == 0.9
    # The corner rung lies inside the others' box (factors 1), log-distance ln 4 from (4e7, 8e8) in both N and D.
    assert held.factor_N == 1.0 and held.factor_D == 1.0
    assert held.distance == pytest.approx(np.hypot(np.log(4.0), np.log(4.0)))
    obs, lo, hi = held.observed["loss"], held.lower["loss"], held.upper["loss"]
    assert obs.size == 24 and held.coverage["loss"] == pytest.approx(np.mean((obs >= lo) & (obs <= hi)))
    assert held.rmse_log["loss"] < 0.01  # well specified: the law extrapolates to the rung
    assert held.coverage[TOTAL] == held.coverage["loss"]
    # tau is the smallest model error that covers `level` of the held-out runs (Gaussian intervals).
    z = 1.6448536269514722
    err = np.log(obs) - np.log(held.predicted["loss"])
    widened = np.sqrt(held.spread["loss"] ** 2 + (held.tau["loss"] * held.distance) ** 2)
    assert np.mean(np.abs(err) <= z * widened + 1e-12) >= 0.9
    summary = held.summary()
    assert json.dumps(summary) and summary["n_runs"] == 24


def test_model_error_is_measured_and_widens_intervals_on_a_misspecified_world() -> None:
    w, N, D, y = runs(16, 2e-3, seed=8, curve=1.0)
    law = fit_joint(w, y, DOMAINS, N=N, D=D, form="ye", options=FAST)
    me = law.model_error
    assert me["measured"] is True and me["held_out"] == {"N": 1.6e8, "D": 3.2e9}
    assert me["tau"]["loss"] > 0 and me["coverage"]["loss"] < 0.9  # the law misses what it cannot represent
    assert "rule" in me
    with pytest.raises(ValueError, match="2 rung"):
        leave_one_scale_out(w[:32], y[:32], DOMAINS, N=N[:32], D=D[:32])


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


def test_old_law_files_load_and_predict_the_same() -> None:
    expected = json.loads((FIXTURES / "predictions_v1.json").read_text())
    for fname, rows in expected.items():
        laws = load_all(FIXTURES / fname)
        assert [law.name for law in laws] == [r["name"] for r in rows]
        for law, row in zip(laws, rows):
            p = law.predict(**row["inputs"])
            q = law.predict(observation=True, **row["inputs"])
            for got, want in ((p.value, row["value"]), (p.lower, row["lower"]), (p.upper, row["upper"]), (q.lower, row["observation_lower"]), (q.upper, row["observation_upper"])):
                assert (got is None) == (want is None), law.name
                if want is not None:
                    assert np.allclose(got, want, rtol=1e-12, atol=0), law.name
            assert np.asarray(p.extrapolated).tolist() == row["extrapolated"], law.name
    assert isinstance(load(FIXTURES / "mixing_v1.json"), MixingLaw)


def test_fit_table_fits_the_joint_law_by_default_on_a_multi_scale_table(tmp_path) -> None:
    w, N, D, y = runs(12, 1e-3, seed=9)
    df = pd.DataFrame({"w_web": w[:, 0], "w_code": w[:, 1], "w_books": w[:, 2], "N": N, "D": D, "loss": y})
    table = tmp_path / "runs.csv"
    df.to_csv(table, index=False)
    quick = {"bootstrap": 0, "cv_folds": 0, "n_starts": 4}
    joint = fit_table(table, "mixing", out=tmp_path / "runs.json", **quick)
    assert isinstance(joint, JointLaw) and joint.name == "runs" and joint.d_input == "D"
    assert isinstance(load(tmp_path / "runs.json"), JointLaw)
    assert joint.predict(weights={"web": 0.5, "code": 0.5}, N=1e9, D=2e10).extrapolated is True
    with pytest.raises(ValueError, match="pipeline='nested'"):
        fit_table(table, "mixing", pipeline="joint", target_N=1e9, **quick)
    # The nested pipeline follows each mixture across sizes: the same 12 mixtures at three N.
    pool = np.random.default_rng(9).dirichlet(np.ones(3), 12)
    wn, nn = np.tile(pool, (3, 1)), np.repeat([1e7, 4e7, 1.6e8], 12)
    nested_table = tmp_path / "sizes.csv"
    pd.DataFrame({"w_web": wn[:, 0], "w_code": wn[:, 1], "w_books": wn[:, 2], "N": nn, "loss": truth(wn, nn, 8e8)}).to_csv(nested_table, index=False)
    assert isinstance(fit_table(nested_table, "mixing", **quick), JointLaw)
    nested = fit_table(nested_table, "mixing", pipeline="nested", **quick)
    assert isinstance(nested, MixingLaw) and nested.extra["scale"]["N"] == 1.6e8
    assert isinstance(fit_table(nested_table, "mixing", target_N=1e9, **quick), MixingLaw)  # target_N: the nested pipeline, as before
    steps = df.drop(columns="D").assign(steps=D / 1e4)
    steps.to_csv(table, index=False)
    on_steps = fit_table(table, "mixing", form="ye", **quick)
    assert on_steps.d_input == "steps" and on_steps.predict(weights=[0.2, 0.5, 0.3], N=1e8, steps=1e6).factor_D == pytest.approx(1e6 / 3.2e5)
    df[df["N"] == 1e7].drop(columns=["N", "D"]).to_csv(table, index=False)
    assert isinstance(fit_table(table, "mixing", **quick), MixingLaw)  # one scale: the plain mixing law
