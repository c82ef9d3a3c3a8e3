"""Reading and checking a study file: every bad field gives one line naming it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mixsearch.study import (
    Budget,
    Domain,
    EvaluatorSpec,
    FidelityLadder,
    Objective,
    ProposerSpec,
    Rung,
    SearchSpace,
    Study,
    StudyError,
)
from mixsearch.studyfile import load_study, validate


@pytest.fixture()
def text_dirs(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name in ("a", "b", "c"):
        d = tmp_path / name
        d.mkdir()
        (d / "x.txt").write_text(f"some {name} text\n" * 10)
        out[name] = str(d)
    return out


def make_study(text_dirs: dict[str, str], **changes) -> Study:
    base = Study(
        name="unit",
        domains=tuple(Domain(n, p) for n, p in text_dirs.items()),
        ladder=FidelityLadder((Rung("s", 10_000, 20_000), Rung("m", 40_000, 20_000)), target=Rung("t", 1_000_000, 10_000_000)),
        budget=Budget(max_trials=4),
    )
    return dataclasses.replace(base, **changes)


def test_valid_study_passes(text_dirs):
    s = validate(make_study(text_dirs))
    assert s.space.domains == ("a", "b", "c")
    assert s.ladder.rung("m").flops == 6 * 40_000 * 20_000


BAD = [
    ("name", {"name": "bad name!"}),
    ("domains", {"domains": (Domain("a", "demo:code"),)}),
    ("domains[1].name", {"domains": (Domain("a", "demo:code"), Domain("a", "demo:math"))}),
    ("space.lower", {"space": SearchSpace(("a", "b", "c"), lower={"a": 0.5, "b": 0.4, "c": 0.3})}),
    ("space.upper", {"space": SearchSpace(("a", "b", "c"), upper={"a": 0.2, "b": 0.2, "c": 0.2})}),
    ("space.lower.a", {"space": SearchSpace(("a", "b", "c"), lower={"a": 0.5}, upper={"a": 0.3})}),
    ("space.upper.zz", {"space": SearchSpace(("a", "b", "c"), upper={"zz": 0.3})}),
    ("space.fixed.a", {"space": SearchSpace(("a", "b", "c"), fixed={"a": 1.5})}),
    ("space.domains", {"space": SearchSpace(("b", "a", "c"))}),
    ("ladder.rungs", {"ladder": FidelityLadder((), target=Rung("t", 10, 10))}),
    ("ladder.rungs[1].name", {"ladder": FidelityLadder((Rung("s", 10, 10), Rung("s", 20, 10)), target=Rung("t", 100, 100))}),
    ("ladder.rungs[0].n_params", {"ladder": FidelityLadder((Rung("s", -5, 10),), target=Rung("t", 100, 100))}),
    ("ladder.target.cost", {"ladder": FidelityLadder((Rung("s", 10, 10),), target=Rung("t", 100, 100, cost=-1))}),
    ("objective.direction", {"objective": Objective(direction="down")}),
    ("objective.domain_weights.zz", {"objective": Objective(domain_weights={"zz": 1.0})}),
    ("objective.domain_weights", {"objective": Objective(domain_weights={"a": 0.0})}),
    ("budget", {"budget": Budget()}),
    ("budget.max_trials", {"budget": Budget(max_trials=-3)}),
    ("budget.max_cost", {"budget": Budget(max_cost=-1.0)}),
    ("budget.max_seconds", {"budget": Budget(max_seconds=0)}),
    ("proposer.batch_size", {"proposer": ProposerSpec(batch_size=0)}),
    ("seed", {"seed": -1}),
    ("max_attempts", {"max_attempts": 0}),
    ("storage", {"storage": "runs/x.db"}),
    # Values of the wrong type: one line naming the field, never a traceback.
    ("domains[0].source", {"domains": (Domain("a", 3), Domain("b", "demo:code"))}),
    ("space.lower", {"space": SearchSpace(("a", "b", "c"), lower=[0.1, 0.1, 0.1])}),
    ("space.upper.a", {"space": SearchSpace(("a", "b", "c"), upper={"a": "0.5"})}),
    ("objective.domain_weights", {"objective": Objective(domain_weights=[1.0, 2.0])}),
    ("objective.domain_weights.a", {"objective": Objective(domain_weights={"a": True})}),
    ("objective.metric", {"objective": Objective(metric="")}),
    ("objective.domain_weights", {"objective": Objective(metric="accuracy", domain_weights={"a": 1.0})}),
    ("ladder.rungs[0].n_params", {"ladder": FidelityLadder((Rung("s", 10.5, 10),), target=Rung("t", 100, 100))}),
    ("ladder.rungs[0].cost", {"ladder": FidelityLadder((Rung("s", cost="1"),), target=Rung("t", cost=10.0))}),
    ("budget.max_trials", {"budget": Budget(max_trials=True)}),
    ("budget.max_cost", {"budget": Budget(max_cost=float("inf"))}),
    ("proposer.batch_size", {"proposer": ProposerSpec(batch_size=2.0)}),
    ("proposer.options", {"proposer": ProposerSpec(options=[("n_init", 3)])}),
    ("proposer.name", {"proposer": ProposerSpec(name=None)}),
    ("evaluator.kind", {"evaluator": EvaluatorSpec(kind=3)}),
    ("evaluator.options", {"evaluator": EvaluatorSpec(options="path=x.csv")}),
    ("seed", {"seed": 2**40}),
    ("seed", {"seed": "7"}),
    ("storage", {"storage": 5}),
    # A target must be the scale the answer is for: at or above every rung.
    ("ladder.target.n_params", {"ladder": FidelityLadder((Rung("s", 10_000, 20_000),), target=Rung("t", 5_000, 10**9))}),
    ("ladder.target.tokens", {"ladder": FidelityLadder((Rung("s", 10_000, 20_000),), target=Rung("t", 10**9, 10_000))}),
    ("ladder.target.cost", {"ladder": FidelityLadder((Rung("s", cost=8.0),), target=Rung("t", cost=1.0))}),
    ("ladder.target.name", {"ladder": FidelityLadder((Rung("s", 10_000, 20_000), Rung("m", 40_000, 20_000)), target=Rung("m", 80_000, 10**6))}),
]


@pytest.mark.parametrize("field,change", BAD, ids=[b[0] + f"-{i}" for i, b in enumerate(BAD)])
def test_each_bad_field_is_named(text_dirs, field, change):
    with pytest.raises(StudyError) as info:
        validate(make_study(text_dirs, **change), source="studies/x.py")
    assert info.value.field == field
    line = str(info.value)
    assert "\n" not in line and line.startswith("studies/x.py: " + field + ":")


def test_a_target_may_be_one_of_the_rungs(text_dirs):
    ladder = FidelityLadder((Rung("s", 10_000, 20_000), Rung("m", 40_000, 20_000)), target=Rung("m", 40_000, 20_000))
    assert validate(make_study(text_dirs, ladder=ladder)).ladder.target.name == "m"


def test_load_study_file(tmp_path, text_dirs):
    f = tmp_path / "s.py"
    f.write_text(
        "from mixsearch import *\n"
        f"study = Study(name='f', domains=[Domain('a', {text_dirs['a']!r}), Domain('b', {text_dirs['b']!r})],"
        " ladder=FidelityLadder([Rung('s', 1000, 1000)], target=Rung('t', 10**6, 10**7)), budget=Budget(max_trials=2))\n"
    )
    s = load_study(f)
    assert s.name == "f" and s.space.domains == ("a", "b")
    f.write_text(f.read_text() + "alias = study\n")  # one object under two names is one study
    assert load_study(f).name == "f"
    f.write_text(f.read_text() + "other = Study(name='g', domains=study.domains, ladder=study.ladder, budget=study.budget)\n")
    with pytest.raises(StudyError, match="2 Study objects"):
        load_study(f)


@pytest.mark.parametrize(
    "body,field",
    [
        ("x = 1\n", "study"),
        ("import sys\nsys.exit(0)\n", "file"),
        ("from mixsearch import *\nstudy = Study(name='x', domains=3, ladder=None, budget=None)\n", "file"),
        ("raise RuntimeError('boom')\n", "file"),
        ("from mixsearch import *\nimport this_module_does_not_exist\n", "file"),
    ],
)
def test_load_study_errors(tmp_path, body, field):
    f = tmp_path / "bad.py"
    f.write_text(body)
    with pytest.raises(StudyError) as info:
        load_study(f)
    assert info.value.field == field and str(f) in str(info.value)


def test_missing_file():
    with pytest.raises(StudyError, match="study file not found"):
        load_study("nope/missing.py")


SCHEDULE_BAD = [
    ("schedule", {"schedule": "two-phase"}),
    ("schedule.new_domain", {"schedule": "CPT(new_domain='zz')"}),
    ("schedule.tolerance", {"schedule": "CPT(new_domain='c', tolerance=-0.1)"}),
    ("schedule.relative", {"schedule": "CPT(new_domain='c', relative='yes')"}),
    ("schedule.base_mixture.c", {"schedule": "CPT(new_domain='c', base_mixture={'c': 1.0})"}),
    ("schedule.base_mixture.zz", {"schedule": "CPT(new_domain='c', base_mixture={'zz': 1.0})"}),
    ("schedule.base_mixture", {"schedule": "CPT(new_domain='c', base_mixture={'a': 0.0})"}),
    ("schedule.base_tokens", {"schedule": "CPT(new_domain='c', base_tokens=-5)"}),
    ("schedule.base_tokens_per_param", {"schedule": "CPT(new_domain='c', base_tokens=10, base_tokens_per_param=20)"}),
    ("schedule.min_switch", {"schedule": "TwoPhase(min_switch=0.0)"}),
    ("schedule.max_switch", {"schedule": "TwoPhase(min_switch=0.6, max_switch=0.4)"}),
    ("space", {"schedule": "CPT(new_domain='c')", "space": SearchSpace(("a", "b", "c"), upper={"c": 0.5})}),
    ("ladder.target", {"schedule": "CPT(new_domain='c')", "ladder": FidelityLadder((Rung("s", 10, 10),), target=Rung("t", cost=1e6))}),
]


@pytest.mark.parametrize("field,change", SCHEDULE_BAD, ids=[b[0] + f"-{i}" for i, b in enumerate(SCHEDULE_BAD)])
def test_each_bad_schedule_field_is_named(text_dirs, field, change):
    from mixsearch.study import ContinualPretraining, TwoPhase

    change = dict(change)
    text = change["schedule"]
    change["schedule"] = text if not isinstance(text, str) or not text[0].isupper() else eval(text, {"CPT": ContinualPretraining, "TwoPhase": TwoPhase})
    with pytest.raises(StudyError) as info:
        validate(make_study(text_dirs, **change), source="studies/x.py")
    assert info.value.field == field
    assert "\n" not in str(info.value) and str(info.value).startswith(f"studies/x.py: {field}:")


def test_a_good_schedule_passes(text_dirs):
    from mixsearch.study import ContinualPretraining, TwoPhase

    validate(make_study(text_dirs, schedule=ContinualPretraining("c", base_tokens_per_param=20, base_mixture={"a": 2, "b": 1})))
    validate(make_study(text_dirs, schedule=TwoPhase(0.25, 0.75)))
