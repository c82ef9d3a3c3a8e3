"""Fitting the joint law of mixture and scale: recovery, identifiability and priors, the form
ladder, leave-one-scale-out, the measured model error, and ``fit_table``'s default."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mixsearch.laws import JointLaw, MixingLaw, fit_joint, fit_table, leave_one_scale_out, load
from mixsearch.laws.joint_law import TOTAL

from .conftest import JOINT_DOMAINS as DOMAINS
from .conftest import JOINT_FAST as FAST
from .conftest import T_A, T_E, TRUTH
from .conftest import joint_runs as runs
from .conftest import joint_truth as truth


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
    w, N, D, y = runs(16, 2e-3, seed=8, curve=30.0)
    law = fit_joint(w, y, DOMAINS, N=N, D=D, form="ye", options=FAST)
    me = law.model_error
    assert me["measured"] is True and me["held_out"] == {"N": 1.6e8, "D": 3.2e9}
    assert me["tau"]["loss"] > 0 and me["coverage"]["loss"] < 1.0  # the law misses what it cannot represent
    x = law._parse({"weights": {"web": 0.2, "code": 0.5, "books": 0.3}, "N": 1.6e10, "D": 3.2e11})[0]
    spread = [np.ptp(np.quantile(law.predictive_log_samples(x, observation=False, model_error=m), [0.05, 0.95], axis=0)) for m in (False, True)]
    assert spread[1] > spread[0]  # and what it misses widens the intervals beyond the runs
    assert "rule" in me
    with pytest.raises(ValueError, match="2 rung"):
        leave_one_scale_out(w[:32], y[:32], DOMAINS, N=N[:32], D=D[:32])


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
