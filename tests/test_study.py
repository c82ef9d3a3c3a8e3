"""The Study spec: trial-identity hash, the definition that gives stored results their meaning, the objective."""

from __future__ import annotations

import dataclasses
import math

import pytest

from mixsearch.identity import definition_changes
from mixsearch.study import Budget, Domain, EvaluatorSpec, FidelityLadder, Objective, Rung, SearchSpace, Study


def make_study(**changes) -> Study:
    base = Study(
        name="unit",
        domains=(Domain("a", "demo:code"), Domain("b", "demo:math"), Domain("c", "demo:legal")),
        ladder=FidelityLadder((Rung("s", 10_000, 20_000), Rung("m", 40_000, 20_000)), target=Rung("t", 1_000_000, 10_000_000)),
        budget=Budget(max_trials=4),
    )
    return dataclasses.replace(base, **changes)


def test_config_hash_ignores_budget_but_not_ladder():
    a = make_study()
    assert a.config_hash() == make_study(budget=Budget(max_trials=99)).config_hash()
    other = FidelityLadder((Rung("s", 10_000, 30_000),), target=Rung("t", 10**6, 10**7))
    assert a.config_hash() != make_study(ladder=other).config_hash()


def test_config_hash_is_a_stored_interface():
    """Part of every trial id since mixsearch 0.1.0: pinned so a change cannot slip in."""
    assert make_study().config_hash() == make_study(seed=3, budget=Budget(max_cost=1.0)).config_hash()
    assert len(make_study().config_hash()) == 16


def test_definition_names_what_gives_results_their_meaning():
    d = make_study().definition("snap-1")
    assert d["domains"] == ["a", "b", "c"] and d["snapshot"] == "snap-1" and d["evaluator"] == "proxy"
    assert d["rungs"] == {"s": [10_000, 20_000, None], "m": [40_000, 20_000, None]}
    # The budget, the proposer, the seed and the target may change between runs.
    same = make_study(seed=9, budget=Budget(max_trials=99), ladder=FidelityLadder(make_study().ladder.rungs, Rung("T", 10**9, 10**10)))
    assert definition_changes(d, same.definition("snap-1")) == []


@pytest.mark.parametrize(
    "change, words",
    [
        ({"domains": (Domain("b", "demo:math"), Domain("a", "demo:code"), Domain("c", "demo:legal")), "space": None}, "domains reordered (a, b, c -> b, a, c)"),
        ({"domains": (Domain("a", "demo:code"), Domain("b", "demo:math"), Domain("c", "demo:legal"), Domain("d", "demo:conversation")), "space": None}, "domains added d"),
        ({"space": SearchSpace(("a", "b", "c"), upper={"a": 0.5})}, "the search space"),
        ({"ladder": FidelityLadder((Rung("s", 20_000, 20_000),), target=Rung("t", 10**6, 10**7))}, "rung 's' changed"),
        ({"objective": Objective(domain_weights={"a": 2.0})}, "the objective changed"),
        ({"evaluator": EvaluatorSpec("synthetic", {"world": "mixing-shift"})}, "the world changed"),
    ],
)
def test_definition_changes_say_what_changed(change, words):
    old = make_study().definition("snap-1")
    new = make_study(**change).definition("snap-1")
    assert any(words in c for c in definition_changes(old, new))


def test_a_new_snapshot_is_a_change_and_new_rungs_are_not():
    old = make_study().definition("snap-1")
    assert "the data changed" in definition_changes(old, make_study().definition("snap-2"))[0]
    more = FidelityLadder((*make_study().ladder.rungs, Rung("l", 80_000, 40_000)), target=Rung("t", 10**6, 10**7))
    assert definition_changes(old, make_study(ladder=more).definition("snap-1")) == []


def test_objective_on_losses_or_a_metric_and_one_sign_convention():
    losses = {"a": 2.0, "b": 4.0}
    assert Objective().value(losses) == 3.0
    assert Objective(domain_weights={"a": 3.0, "b": 1.0}).value(losses) == 2.5
    assert math.isnan(Objective(domain_weights={"zz": 1.0}).value(losses))
    acc = Objective(metric="accuracy", direction="maximize")
    assert acc.value(losses, {"accuracy": 0.7}) == 0.7 and math.isnan(acc.value(losses, {}))
    assert acc.to_minimise(0.7) == -0.7 and acc.from_minimise(acc.to_minimise(0.7)) == 0.7
    assert Objective().to_minimise(2.0) == 2.0 and Objective().sign == 1.0
    assert "accuracy" in acc.label and "higher" in acc.label


# -- schedules ----------------------------------------------------------------------------


def test_continual_pretraining_mixes_the_new_domain_into_the_base_mixture():
    from mixsearch.study import ContinualPretraining

    names = ["a", "b", "c"]
    uniform = ContinualPretraining("c")
    assert uniform.base_weights(names) == (0.5, 0.5, 0.0)
    assert uniform.mixture(0.4, names) == pytest.approx((0.3, 0.3, 0.4))
    assert uniform.ratio((0.3, 0.3, 0.4), names) == 0.4
    tilted = ContinualPretraining("a", base_mixture={"b": 3.0, "c": 1.0})
    assert tilted.base_weights(names) == (0.0, 0.75, 0.25)
    # The general loss is averaged with the base mixture's weights; the new domain's is apart.
    assert tilted.general_loss({"a": 9.0, "b": 2.0, "c": 4.0}, names) == pytest.approx(2.5)
    assert ContinualPretraining("c", tolerance=0.1).limit(3.0) == pytest.approx(0.3)
    assert ContinualPretraining("c", tolerance=0.1, relative=False).limit(3.0) == pytest.approx(0.1)
    assert ContinualPretraining("c", base_tokens_per_param=20).base_tokens_for(1000) == 20_000


def test_a_trial_observation_needs_its_base_models_losses():
    from mixsearch.study import ContinualPretraining

    s = ContinualPretraining("c")
    ob = s.observation((0.3, 0.3, 0.4), {"a": 2.0, "b": 4.0, "c": 5.0}, {"base_losses": {"a": 1.0, "b": 3.0, "c": 6.0}}, ["a", "b", "c"])
    assert ob == {"R": 0.4, "loss_general": 3.0, "loss_domain": 5.0, "loss_general_0": 2.0, "loss_domain_0": 6.0}
    assert s.observation((0.3, 0.3, 0.4), {"a": 2.0, "b": 4.0, "c": 5.0}, {}, ["a", "b", "c"]) is None


def test_a_schedule_enters_the_definition_and_a_mixture_studys_definition_is_unchanged():
    from mixsearch.study import ContinualPretraining, TwoPhase

    plain = make_study().definition("snap-1")
    assert "schedule" not in plain  # a mixture study's definition (and fingerprint) is what it was
    cpt = make_study(schedule=ContinualPretraining("c", base_tokens=10**6)).definition("snap-1")
    assert cpt["schedule"]["kind"] == "continual" and cpt["schedule"]["new_domain"] == "c"
    assert cpt["schedule"]["base_mixture"] == [0.5, 0.5, 0.0]
    # The tolerance shapes only the answer: it may change; the base model may not.
    looser = make_study(schedule=ContinualPretraining("c", base_tokens=10**6, tolerance=0.2)).definition("snap-1")
    assert definition_changes(cpt, looser) == []
    other_base = make_study(schedule=ContinualPretraining("c", base_tokens=2 * 10**6)).definition("snap-1")
    assert any("the schedule changed" in c for c in definition_changes(cpt, other_base))
    assert any("the schedule changed" in c for c in definition_changes(plain, cpt))
    two = make_study(schedule=TwoPhase(0.2, 0.8)).definition("snap-1")
    assert two["schedule"] == {"kind": "two-phase", "min_switch": 0.2, "max_switch": 0.8}
    assert make_study(schedule=TwoPhase()).to_dict()["schedule"]["kind"] == "two-phase"
    # The config hash (part of every trial id) does not see the schedule: trial_context does.
    assert make_study(schedule=TwoPhase()).config_hash() == make_study().config_hash()
