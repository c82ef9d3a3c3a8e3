"""The answer at the target scale: from the joint law when it can be fitted, never a guess otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixsearch.answer import FAR_BEYOND_N, TargetAnswer, fit_objective_law, sanity_warnings, target_answer
from mixsearch.candidate import Candidate
from mixsearch.evaluate.synthetic import SyntheticEvaluator
from mixsearch.evaluate.worlds import SYNTHETIC_WORLDS
from mixsearch.laws.fit import FitOptions
from mixsearch.study import Budget, Domain, EvaluatorSpec, FidelityLadder, Objective, Rung, SearchSpace, Study

DOMAINS = SYNTHETIC_WORLDS["mixing-shift"].domains
RUNGS = (
    Rung("s", 10_000_000, 200_000_000),
    Rung("s-long", 10_000_000, 800_000_000),
    Rung("m", 40_000_000, 400_000_000),
)
TARGET = Rung("t", 160_000_000, 3_200_000_000)
FAST = FitOptions(bootstrap=12, cv_folds=0, n_starts=4, keep_samples=12, level=0.9)


def study(rungs=RUNGS, target=TARGET, objective=None, space=None) -> Study:
    return Study(
        name="answer",
        domains=tuple(Domain(d) for d in DOMAINS),
        ladder=FidelityLadder(rungs, target),
        budget=Budget(max_trials=10),
        space=space,
        objective=objective or Objective(),
        evaluator=EvaluatorSpec("synthetic", {"world": "mixing-shift", "noise": 0.002}),
    )


def done_trials(s: Study, per_rung: int = 25, seed: int = 0) -> pd.DataFrame:
    """Done trials of ``s`` observed in the synthetic world, as the ledger's table."""
    world = SyntheticEvaluator("mixing-shift", noise=0.002)
    rng = np.random.default_rng(seed)
    rows = []
    for rung in s.ladder.rungs:
        for w in rng.dirichlet(np.ones(len(DOMAINS)), per_rung):
            res = world.evaluate(Candidate(tuple(w), rung.name), rung)
            c = Candidate(tuple(w), rung.name).weights
            rows.append({"state": "done", "rung": rung.name, "objective": res.objective, **{f"w_{d}": x for d, x in zip(DOMAINS, c)}, **{f"loss_{d}": v for d, v in res.domain_losses.items()}})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fitted():
    s = study()
    done = done_trials(s)
    return s, done, fit_objective_law(done, s, FAST)


def test_the_answer_comes_from_the_joint_law_and_says_how_far_it_extrapolates(fitted):
    s, done, law = fitted
    assert not isinstance(law, str), law
    answer = target_answer(done, s, law, fallback=None)
    assert answer.basis == "law" and answer.law == "joint" and answer.mixture_from.startswith("the joint law's optimum")
    assert answer.extrapolated and answer.factors["N"] == pytest.approx(4.0) and answer.factors["D"] == pytest.approx(4.0)
    assert answer.lower < answer.predicted < answer.upper and answer.level == 0.9
    assert sum(answer.weights.values()) == pytest.approx(1.0)
    world = SyntheticEvaluator("mixing-shift", noise=0.0)
    truth = world.true_objective(np.array([answer.weights[d] for d in DOMAINS]), TARGET)[0]
    # Known world: the law's prediction at 4x beyond the data is close to the truth.
    assert abs(answer.predicted - truth) < 0.05 * truth
    assert answer.target == {"name": "t", "N": TARGET.n_params, "D": TARGET.tokens}
    line = answer.line(list(DOMAINS), "mean validation loss", "nats/token")
    assert "basis: law" in line and "x4 in N" in line and "90% interval" in line


def test_the_answer_respects_the_studys_bounds(fitted):
    s, done, law = fitted
    bounded = study(space=SearchSpace(DOMAINS, upper={"web": 0.1}, lower={"math": 0.2}))
    answer = target_answer(done, bounded, law, fallback=None)
    assert answer.weights["web"] <= 0.1 + 1e-6 and answer.weights["math"] >= 0.2 - 1e-6


def test_in_pool_mode_the_answer_is_one_of_the_offered_mixtures(fitted):
    s, done, law = fitted
    pool = np.random.default_rng(3).dirichlet(np.ones(len(DOMAINS)), 40)
    answer = target_answer(done, s, law, fallback=None, pool=pool)
    chosen = np.array([answer.weights[d] for d in DOMAINS])
    assert np.min(np.abs(pool - chosen).max(axis=1)) < 1e-5


def test_without_runs_at_two_scales_there_is_no_predicted_target_loss():
    one = study(rungs=RUNGS[:1])
    done = done_trials(one)
    law = fit_objective_law(done, one, FAST)
    assert isinstance(law, str) and "two or more rungs" in law
    answer = target_answer(done, one, law, fallback={d: 1 / 6 for d in DOMAINS})
    assert answer.predicted is None and answer.basis is None and answer.reason == law
    assert answer.mixture_from == "the random proposer's recommendation"
    assert "no predicted" in answer.line(list(DOMAINS), "mean validation loss", "nats/token")


def test_a_trial_at_the_target_is_an_observed_answer_when_no_law_fits():
    runnable = study(rungs=(Rung("t", 160_000_000, 3_200_000_000),), target=TARGET)
    done = done_trials(runnable, per_rung=5)
    answer = target_answer(done, runnable, fit_objective_law(done, runnable, FAST), fallback=None)
    assert answer.basis == "observed" and answer.predicted == pytest.approx(done["objective"].min())


def test_no_law_for_an_accuracy_or_a_ladder_without_sizes():
    acc = study(objective=Objective(metric="accuracy", direction="maximize"))
    assert "not a loss" in fit_objective_law(done_trials(study(), per_rung=3), acc, FAST)
    costs = study(rungs=(Rung("a", cost=1.0), Rung("b", cost=4.0)), target=Rung("c", cost=16.0))
    assert "n_params and tokens" in fit_objective_law(done_trials(study(), per_rung=3), costs, FAST)


def test_sanity_warnings_for_far_targets_and_repeated_data():
    far = study(target=Rung("huge", int(40_000_000 * FAR_BEYOND_N * 2), 10**12))
    warnings = sanity_warnings(far, {d: 1e9 for d in DOMAINS}, {d: 1 / 6 for d in DOMAINS})
    assert any("200x the largest rung" in w for w in warnings)
    assert any("more than once" in w and "epochs" in w for w in warnings)
    assert sanity_warnings(study(), {d: 1e12 for d in DOMAINS}, {d: 1 / 6 for d in DOMAINS}) == []


def test_the_answer_round_trips_through_the_export(fitted):
    s, done, law = fitted
    answer = target_answer(done, s, law, fallback=None)
    from mixsearch.results import recommendation_dict

    rec = recommendation_dict(answer, None, s, {"s", "m"})
    back = TargetAnswer.from_export(rec)
    assert back.predicted == answer.predicted and back.factors == answer.factors and rec["search"] is None


def test_runs_at_one_d_give_no_predicted_loss_at_another_d_and_say_why():
    one_d = study(rungs=(Rung("s", 10_000_000, 200_000_000), Rung("m", 40_000_000, 200_000_000)))
    done = done_trials(one_d)
    law = fit_objective_law(done, one_d, FAST)
    answer = target_answer(done, one_d, law, fallback=None)
    assert answer.predicted is None and answer.basis is None
    assert "cannot predict at the target" in answer.reason and "one D" in answer.reason


def test_a_runnable_target_no_trial_ran_at_is_named_in_the_warnings(fitted):
    s, done, law = fitted
    runnable = study(rungs=(*RUNGS, TARGET))
    answer = target_answer(done, runnable, law, fallback=None)
    [warning] = [w for w in answer.warnings if "no trial ran there" in w]
    assert "target t can be run" in warning and "(m, s, s-long)" in warning and "ar-power" in warning
    # The same runs without the target on the ladder: nothing to check, no warning.
    assert not any("no trial ran there" in w for w in target_answer(done, s, law, fallback=None).warnings)
    # One trial at the target is a check: the warning goes.
    at_target = pd.concat([done, done.iloc[:1].assign(rung="t")], ignore_index=True)
    assert not any("no trial ran there" in w for w in target_answer(at_target, runnable, law, fallback=None).warnings)
    # Without a law the fallback answer carries it too.
    no_law = target_answer(done, runnable, "no law", fallback={d: 1 / 6 for d in DOMAINS})
    assert any("no trial ran there" in w for w in no_law.warnings)
