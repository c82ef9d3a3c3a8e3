"""The synthetic world: an optimum that shifts with scale, per-domain losses, seeded noise, pool mode."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, Rung, Study
from mixsearch.candidate import Candidate, EvaluationError
from mixsearch.evaluate import make_evaluator
from mixsearch.evaluate.synthetic import SyntheticEvaluator
from mixsearch.evaluate.worlds import SYNTHETIC_RUNGS, SYNTHETIC_WORLDS, default_ladder
from mixsearch.study import Objective, StudyError

SMALL, TARGET = SYNTHETIC_RUNGS[0], SYNTHETIC_RUNGS[-1]


def test_synthetic_optimum_shifts_with_scale():
    o = SyntheticEvaluator("mixing-shift")
    w_small, _ = o.optimum(SMALL)
    w_target, v_target = o.optimum(TARGET)
    span = o.worst(TARGET) - v_target
    assert np.abs(w_small - w_target).sum() > 0.2
    # The small proxy's optimum is good but measurably off at the target: informative, biased.
    regret = o.true_objective(w_small, TARGET)[0] - v_target
    assert 0.01 * span < regret < 0.2 * span
    # The optimum really is optimal: no random mixture beats it.
    x = np.random.default_rng(1).dirichlet(np.ones(6), 5000)
    assert o.true_objective(x, TARGET).min() >= v_target - 1e-9
    # Proxy and target rank mixtures alike, but not identically.
    rho = spearmanr(o.true_objective(x, SMALL), o.true_objective(x, TARGET))[0]
    assert 0.6 < rho < 0.95


def test_static_world_optimum_does_not_shift():
    o = SyntheticEvaluator("mixing-static")
    assert np.abs(o.optimum(SMALL)[0] - o.optimum(TARGET)[0]).sum() < 1e-3


def test_noise_is_deterministic_seeded_and_per_domain():
    o = SyntheticEvaluator("mixing-shift")
    w = tuple(np.full(6, 1 / 6))
    r0 = o.evaluate(Candidate(w, SMALL.name, 0), SMALL)
    assert o.evaluate(Candidate(w, SMALL.name, 0), SMALL).objective == r0.objective
    assert o.evaluate(Candidate(w, SMALL.name, 1), SMALL).objective != r0.objective
    assert set(r0.domain_losses) == set(SYNTHETIC_WORLDS["mixing-shift"].domains)
    assert r0.objective == pytest.approx(np.mean(list(r0.domain_losses.values())))
    assert r0.cost == pytest.approx(6 * 25e6 * 500e6)
    assert abs(r0.objective - o.true_objective(np.array(w), SMALL)[0]) < 0.05
    assert SyntheticEvaluator("mixing-shift", noise=0.0).evaluate(Candidate(w, SMALL.name), SMALL).objective == pytest.approx(o.true_objective(np.array(w), SMALL)[0])


def test_domain_order_follows_the_study():
    world = SYNTHETIC_WORLDS["mixing-shift"].domains
    flipped = tuple(reversed(world))
    a = SyntheticEvaluator("mixing-shift", noise=0.0)
    b = SyntheticEvaluator("mixing-shift", domains=flipped, noise=0.0)
    w = np.random.default_rng(0).dirichlet(np.ones(6))
    ra = a.evaluate(Candidate(tuple(w), SMALL.name), SMALL)
    rb = b.evaluate(Candidate(tuple(w[::-1]), SMALL.name), SMALL)
    for d in world:
        assert ra.domain_losses[d] == pytest.approx(rb.domain_losses[d], rel=1e-5)


def test_pool_mode():
    ladder = default_ladder("mixing-shift")
    o = SyntheticEvaluator("mixing-shift", pool=16, seed=3, rungs=ladder.names)
    pool = o.pool()
    assert pool is not None and pool.weights.shape == (64, 6)
    assert set(pool.rungs) == {"25M", "50M", "100M", "200M"}
    y = o.true_objective(o.pool_mixtures, TARGET)
    assert o.optimum(TARGET)[1] == pytest.approx(y.min())
    with pytest.raises(EvaluationError, match="not in the pool"):
        o.evaluate(Candidate(tuple(np.full(6, 1 / 6)), "25M"), SMALL)


def _study(**options) -> Study:
    return Study(
        name="syn",
        domains=tuple(Domain(d) for d in SYNTHETIC_WORLDS["mixing-shift"].domains),
        ladder=FidelityLadder((Rung("1M", 1_000_000, 20_000_000),), Rung("1B", 1_000_000_000, 20_000_000_000)),
        budget=Budget(max_trials=3),
        evaluator=EvaluatorSpec("synthetic", options),
    )


def test_a_study_names_its_world_and_any_ladder():
    ev = make_evaluator(_study(world="mixing-shift", noise=0.01))
    assert isinstance(ev, SyntheticEvaluator) and ev.pool() is None
    res = ev.evaluate(Candidate(tuple(np.full(6, 1 / 6)), "1M"), Rung("1M", 1_000_000, 20_000_000))
    assert res.finite and res.metrics["n_params"] == 1_000_000
    assert ev.snapshot_id() != make_evaluator(_study(world="mixing-shift", noise=0.02)).snapshot_id()


@pytest.mark.parametrize(
    "options, field, message",
    [
        ({}, "evaluator.options.world", "name the synthetic world"),
        ({"world": "nope"}, "evaluator.options.world", "unknown synthetic world 'nope'"),
        ({"world": "mixing-shift", "noise": -0.1}, "evaluator.options.noise", "must be a number >= 0"),
        ({"world": "mixing-shift", "pool": 1}, "evaluator.options.pool", "must be an integer >= 2"),
        ({"world": "mixing-shift", "seed": "x"}, "evaluator.options.seed", "must be an integer"),
        ({"world": "mixing-shift", "colour": 1}, "evaluator.options.colour", "unknown option of the synthetic evaluator"),
    ],
)
def test_bad_options_name_the_field(options, field, message):
    with pytest.raises(StudyError, match=message) as info:
        make_evaluator(_study(**options), "studies/syn.py")
    assert info.value.field == field and info.value.source == "studies/syn.py"


def test_domains_must_be_the_worlds():
    study = _study(world="mixing-shift")
    wrong = Study(**{**study.__dict__, "domains": tuple(Domain(d) for d in ("a", "b", "c", "d", "e", "f")), "space": None})
    with pytest.raises(StudyError, match="the 'mixing-shift' world has domains web, code"):
        make_evaluator(wrong)
    with pytest.raises(StudyError, match="objective.metric"):
        make_evaluator(Study(**{**study.__dict__, "objective": Objective(metric="accuracy")}))


def test_the_moving_optimum_world_moves_with_tokens_and_with_size():
    from mixsearch.evaluate.worlds import MOVING_RUNGS

    o = SyntheticEvaluator("moving-optimum")
    small_short, small_long, big_short = MOVING_RUNGS[0], MOVING_RUNGS[1], MOVING_RUNGS[2]
    assert small_short.n_params == small_long.n_params and small_short.tokens < small_long.tokens
    w_short, w_long, w_big = (o.optimum(r)[0] for r in (small_short, small_long, big_short))
    assert np.abs(w_short - w_long).sum() > 0.15  # more tokens alone move the optimum
    assert np.abs(w_short - w_big).sum() > 0.15  # a bigger model alone moves it too
    target = MOVING_RUNGS[-1]
    span = o.worst(target) - o.optimum(target)[1]
    assert o.true_objective(w_short, target)[0] - o.optimum(target)[1] > 0.03 * span


def test_the_weak_proxy_world_is_an_accuracy_whose_cheap_rungs_mislead():
    from mixsearch.evaluate.worlds import WEAK_RUNGS

    o = SyntheticEvaluator("weak-proxy", noise=0.0)
    assert o.objective.metric == "accuracy" and o.objective.direction == "maximize"
    x = np.random.default_rng(1).dirichlet(np.ones(5), 3000)
    acc = {r.name: o.true_objective(x, r) for r in WEAK_RUNGS}
    assert all(0.25 < a.min() and a.max() < 0.85 for a in acc.values())  # bounded, like a benchmark score
    assert 0.45 < spearmanr(acc["0.5B"], acc["7B"])[0] < 0.65
    assert 0.55 < spearmanr(acc["3B"], acc["7B"])[0] < 0.75
    best_small, best_target = o.optimum(WEAK_RUNGS[0])[0], o.optimum(WEAK_RUNGS[-1])[0]
    assert np.abs(best_small - best_target).sum() > 0.5
    res = SyntheticEvaluator("weak-proxy").evaluate(Candidate(tuple(np.full(5, 0.2)), "7B"), WEAK_RUNGS[-1])
    assert res.domain_losses == {} and res.objective == res.metrics["accuracy"] and res.finite


def test_a_study_on_an_accuracy_world_must_maximise_its_metric():
    from mixsearch.evaluate.worlds import WEAK_RUNGS

    base = Study(
        name="acc",
        domains=tuple(Domain(d) for d in SYNTHETIC_WORLDS["weak-proxy"].domains),
        ladder=FidelityLadder(WEAK_RUNGS[:2], WEAK_RUNGS[-1]),
        budget=Budget(max_trials=3),
        evaluator=EvaluatorSpec("synthetic", {"world": "weak-proxy"}),
    )
    with pytest.raises(StudyError, match="reports the metric 'accuracy'"):
        make_evaluator(base)
    ok = Study(**{**base.__dict__, "objective": Objective(metric="accuracy", direction="maximize")})
    assert make_evaluator(ok).objective.metric == "accuracy"


def _cpt_study(**over):
    from mixsearch.study import ContinualPretraining

    fields = dict(
        name="cpt",
        domains=(Domain("general"), Domain("finance")),
        ladder=default_ladder("cpt-finance"),
        budget=Budget(max_trials=4),
        objective=Objective(domain_weights={"finance": 1.0}),
        evaluator=EvaluatorSpec("synthetic", {"world": "cpt-finance"}),
        schedule=ContinualPretraining("finance"),
    )
    fields.update(over)
    return Study(**fields)


def test_a_continual_pretraining_trial_reports_its_base_model_once_per_size():
    ev = make_evaluator(_cpt_study())
    rung = default_ladder("cpt-finance").rungs[0]
    a = ev.evaluate(Candidate((0.8, 0.2), rung.name, 0), rung)
    b = ev.evaluate(Candidate((0.1, 0.9), rung.name, 0), rung)
    assert a.metrics["base_losses"] == b.metrics["base_losses"]  # one base model, measured once
    assert a.metrics["base_losses"]["general"] == pytest.approx(2.341, abs=0.02)
    assert b.domain_losses["general"] > a.domain_losses["general"] and b.domain_losses["finance"] < a.domain_losses["finance"]
    assert a.objective == a.domain_losses["finance"]
    assert ev.true_cmr(4e9, 5e8) == pytest.approx(0.379, abs=1e-3)


@pytest.mark.parametrize(
    "over, field",
    [
        ({"schedule": None}, "schedule"),
        ({"schedule": "other-domain"}, "schedule.new_domain"),
        ({"schedule": "own-base"}, "schedule.base_tokens"),
    ],
)
def test_a_continual_pretraining_world_needs_its_schedule(over, field):
    from mixsearch.study import ContinualPretraining

    sch = {None: None, "other-domain": ContinualPretraining("general"), "own-base": ContinualPretraining("finance", base_tokens=10**6)}[over["schedule"]]
    with pytest.raises(StudyError) as info:
        make_evaluator(_cpt_study(schedule=sch))
    assert info.value.field == field


def test_a_mixing_world_refuses_a_schedule():
    from mixsearch.study import TwoPhase

    domains = tuple(Domain(d) for d in SYNTHETIC_WORLDS["mixing-shift"].domains)
    study = Study("s", domains, FidelityLadder(SYNTHETIC_RUNGS[:2], SYNTHETIC_RUNGS[1]), Budget(max_trials=2),
                  evaluator=EvaluatorSpec("synthetic", {"world": "mixing-shift"}), schedule=TwoPhase())
    with pytest.raises(StudyError, match="law of one mixture") as info:
        make_evaluator(study)
    assert info.value.field == "schedule"
