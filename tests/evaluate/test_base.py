"""What every world shares: building an evaluator from a study, the user's own Python
evaluator (``EvaluatorSpec("package.module:Class")``) and the reader of reported results.

The user's classes live in a real module written here into ``tmp_path`` and imported by
its dotted path, as a user's package would be.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap

import pytest

from mixsearch import api
from mixsearch.candidate import Candidate, EvaluationError, TrialResult
from mixsearch.evaluate import EVALUATORS, Evaluator, PluginEvaluator, make_evaluator, result_from_mapping
from mixsearch.evaluate.base import check_options, options_digest, split_field
from mixsearch.ledger import DONE, Ledger
from mixsearch.study import Budget, Domain, EvaluatorSpec, FidelityLadder, Objective, ProposerSpec, Rung, Study, StudyError

from ..conftest import error_lines

RUNG = Rung("s", n_params=1000, tokens=20_000)

WORLDS = textwrap.dedent(
    """
    from mixsearch.candidate import TrialResult

    OPT = (0.5, 0.3, 0.2)


    def bowl(weights, scale=1.0):
        return {d: 2.0 + scale * (w - o) ** 2 for d, w, o in zip("abc", weights, OPT)}


    class DictWorld:
        '''Only evaluate(), returning a mapping; options are constructor arguments.'''

        def __init__(self, scale=1.0):
            self.scale = scale

        def evaluate(self, candidate, rung):
            return {"domain_losses": bowl(candidate.weights, self.scale), "reward": -self.scale}


    class ResultWorld:
        '''The whole protocol, returning TrialResults.'''

        prepared = 0

        def prepare(self):
            type(self).prepared += 1

        def snapshot_id(self):
            return "result-world-v2"

        def pool(self):
            return None

        def evaluate(self, candidate, rung):
            losses = bowl(candidate.weights)
            return TrialResult(losses, max(losses.values()), 7.0, 0.5, metrics={"kind": "result"})


    class StudyWorld:
        '''Built from the study: scores an accuracy named by the study's objective.'''

        def __init__(self, metric, study_name):
            self.metric = metric
            self.study_name = study_name

        @classmethod
        def from_study(cls, study):
            return cls(study.objective.metric, study.name)

        def evaluate(self, candidate, rung):
            return {self.metric: 1.0 - sum((w - o) ** 2 for w, o in zip(candidate.weights, OPT)), "cost": 3.0}


    class NoEvaluate:
        def run(self, candidate, rung):
            return {}
    """
)


@pytest.fixture
def worlds(tmp_path, monkeypatch):
    """A module ``userworlds_<n>`` on sys.path (a fresh name per test: imports are cached)."""
    name = f"userworlds_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(WORLDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def study(kind: str, options: dict | None = None, objective: Objective | None = None, name: str = "plug", trials: int = 4) -> Study:
    return Study(
        name=name,
        domains=(Domain("a"), Domain("b"), Domain("c")),
        ladder=FidelityLadder((RUNG,), Rung("t", n_params=10**6, tokens=10**8)),
        budget=Budget(max_trials=trials),
        objective=objective or Objective(),
        proposer=ProposerSpec("random", batch_size=2),
        evaluator=EvaluatorSpec(kind, options or {}),
    )


# -- the user's Python evaluator ---------------------------------------------------------


def test_a_class_with_only_evaluate_returning_a_mapping_is_a_whole_evaluator(worlds):
    ev = make_evaluator(study(f"{worlds}:DictWorld", {"scale": 4.0}))
    assert isinstance(ev, PluginEvaluator) and isinstance(ev, Evaluator)
    ev.prepare()  # nothing to prepare: a no-op
    assert ev.pool() is None
    cand = Candidate((0.2, 0.3, 0.5), "s")
    res = ev.evaluate(cand, RUNG)
    want = {d: 2.0 + 4.0 * (w - o) ** 2 for d, w, o in zip("abc", cand.weights, (0.5, 0.3, 0.2))}
    assert res.domain_losses == pytest.approx(want)
    assert res.objective == pytest.approx(sum(want.values()) / 3)
    assert res.metrics == {"reward": -4.0} and res.cost == RUNG.run_cost and res.seconds >= 0
    # The default snapshot: the class path and its options, stable, and new when they change.
    snap = ev.snapshot_id()
    assert snap == f"plugin-{options_digest({'class': f'{worlds}:DictWorld', 'options': {'scale': 4.0}})}"
    assert make_evaluator(study(f"{worlds}:DictWorld", {"scale": 4.0})).snapshot_id() == snap
    assert make_evaluator(study(f"{worlds}:DictWorld", {"scale": 2.0})).snapshot_id() != snap
    # Executors ship it to workers.
    clone = pickle.loads(pickle.dumps(ev))
    assert clone.snapshot_id() == snap and clone.evaluate(cand, RUNG).objective == res.objective


def test_a_returned_trial_result_is_kept_and_the_protocol_methods_are_the_users(worlds):
    ev = make_evaluator(study(f"{worlds}:ResultWorld"))
    module = sys.modules[worlds]
    ev.prepare()
    assert module.ResultWorld.prepared == 1
    assert ev.snapshot_id() == "result-world-v2"
    res = ev.evaluate(Candidate((0.2, 0.3, 0.5), "s"), RUNG)
    # As returned: its own objective (the worst domain), cost and metrics.
    assert isinstance(res, TrialResult) and res.objective == max(res.domain_losses.values())
    assert res.cost == 7.0 and res.seconds == 0.5 and res.metrics == {"kind": "result"}


def test_a_class_with_from_study_is_built_from_the_study(worlds):
    s = study(f"{worlds}:StudyWorld", objective=Objective(metric="win_rate", direction="maximize"), name="arena")
    ev = make_evaluator(s)
    assert (ev.inner.metric, ev.inner.study_name) == ("win_rate", "arena")
    res = ev.evaluate(Candidate((0.5, 0.3, 0.2), "s"), RUNG)
    assert res.objective == pytest.approx(1.0) and res.metrics == {"win_rate": pytest.approx(1.0)} and res.cost == 3.0


def test_a_study_on_a_python_evaluator_runs_end_to_end_and_maximises_its_metric(worlds, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "arena.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, Objective, ProposerSpec, Rung, Study
            study = Study(
                name="arena",
                domains=(Domain("a"), Domain("b"), Domain("c")),
                ladder=FidelityLadder((Rung("s", 1000, 20000),), Rung("t", 10**6, 10**8)),
                budget=Budget(max_trials=6),
                objective=Objective(metric="win_rate", direction="maximize"),
                proposer=ProposerSpec("random", batch_size=2),
                evaluator=EvaluatorSpec("{worlds}:StudyWorld"),
            )
            """
        )
    )
    summary = api.run_study(path)
    assert summary.counts[DONE] == 6
    led = Ledger(f"sqlite:///{tmp_path / 'runs' / 'arena' / 'ledger.sqlite'}", create=False)
    trials = led.trials()
    for t in trials:
        assert t.objective == pytest.approx(1.0 - sum((w - o) ** 2 for w, o in zip(t.candidate.weights, (0.5, 0.3, 0.2))))
    best = max(trials, key=lambda t: t.objective)
    assert summary.recommendation is not None and summary.recommendation.weights == pytest.approx(best.candidate.weights)
    assert led.get_meta("snapshot").startswith("plugin-")
    led.dispose()


def test_a_mapping_without_the_objective_is_an_evaluation_error_naming_the_class(worlds):
    ev = make_evaluator(study(f"{worlds}:DictWorld", objective=Objective(metric="accuracy", direction="maximize")))
    with pytest.raises(EvaluationError, match=rf"^{worlds}:DictWorld\.evaluate: cannot compute the objective: need metric 'accuracy', got domain_losses \['a', 'b', 'c'\] and metrics \['reward'\]$"):
        ev.evaluate(Candidate((0.2, 0.3, 0.5), "s"), RUNG)


@pytest.mark.parametrize(
    ("kind", "options", "field", "text"),
    [
        ("nosuchpackage_xyz.worlds:World", {}, "evaluator.kind", "cannot load 'nosuchpackage_xyz.worlds:World': ModuleNotFoundError: No module named 'nosuchpackage_xyz'"),
        ("{m}:Missing", {}, "evaluator.kind", "cannot load '{m}:Missing': AttributeError"),
        ("{m}:NoEvaluate", {}, "evaluator.kind", "{m}:NoEvaluate has no evaluate(candidate, rung) method"),
        ("{m}:DictWorld", {"scael": 2.0}, "evaluator.options", "{m}:DictWorld does not take these options"),
        ("trainer", {}, "evaluator.kind", "unknown evaluator 'trainer'; known: proxy, table, synthetic, command or 'package.module:Class'"),
    ],
)
def test_a_bad_evaluator_path_is_one_line_naming_the_field_and_the_file(worlds, kind, options, field, text):
    with pytest.raises(StudyError) as info:
        make_evaluator(study(kind.format(m=worlds), options), "studies/mine.py")
    err = info.value
    assert err.field == field and text.format(m=worlds) in err.message
    assert err.source == "studies/mine.py" and str(err) == err.line() and "\n" not in str(err)


def test_a_bad_evaluator_path_through_the_cli_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(
        textwrap.dedent(
            """
            from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, Rung, Study
            study = Study(
                name="bad",
                domains=(Domain("a"), Domain("b")),
                ladder=FidelityLadder((Rung("s", 1000, 20000),), Rung("s", 1000, 20000)),
                budget=Budget(max_trials=2),
                evaluator=EvaluatorSpec("nosuchpackage_xyz.worlds:World"),
            )
            """
        )
    )
    proc = subprocess.run([sys.executable, "-m", "mixsearch.cli", "study", "start", str(path), "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == f"error: {path}: evaluator.kind: cannot load 'nosuchpackage_xyz.worlds:World': ModuleNotFoundError: No module named 'nosuchpackage_xyz'"
    assert not (tmp_path / "runs").exists()  # nothing written


def test_every_built_in_kind_names_a_class_with_from_study():
    import importlib

    assert set(EVALUATORS) == {"proxy", "table", "synthetic", "command"}
    for kind, path in EVALUATORS.items():
        module, _, attr = path.partition(":")
        assert callable(getattr(getattr(importlib.import_module(module), attr), "from_study")), kind


# -- reading what a trainer reports ------------------------------------------------------


def test_a_results_mapping_gives_losses_metrics_cost_and_curve():
    doc = {"domain_losses": {"a": 2.0, "b": 3.0}, "metrics": {"accuracy": 0.7}, "reward": 1.5, "note": "text", "cost": 12.0, "curve": [[100, 4.0], [200, 3.5]]}
    res = result_from_mapping(doc, Objective(), RUNG, 9.0, "metrics.json")
    assert res.domain_losses == {"a": 2.0, "b": 3.0} and res.objective == 2.5
    assert res.metrics == {"accuracy": 0.7, "reward": 1.5}  # top-level numbers count as metrics
    assert res.cost == 12.0 and res.seconds == 9.0 and res.curve == [(100.0, 4.0), (200.0, 3.5)]
    weighted = result_from_mapping(doc, Objective(domain_weights={"a": 3.0, "b": 1.0}), RUNG, 0.0, "x")
    assert weighted.objective == pytest.approx(2.25)
    # Just an accuracy is enough for a metric objective; the cost defaults to the rung's.
    acc = result_from_mapping({"accuracy": 0.71}, Objective(metric="accuracy", direction="maximize"), RUNG, 1.0, "x")
    assert acc.objective == 0.71 and acc.domain_losses == {} and acc.cost == RUNG.run_cost
    assert result_from_mapping({"seconds": 5, "accuracy": 1}, Objective(metric="accuracy"), RUNG, 1.0, "x").seconds == 5.0


@pytest.mark.parametrize(
    ("doc", "objective", "message"),
    [
        ([1, 2], Objective(), "m.json: expected a JSON object of results, got list"),
        ({"domain_losses": [2.0]}, Objective(), "m.json: domain_losses: expected an object of numbers, got list"),
        ({"domain_losses": {"a": "2.0"}}, Objective(), "m.json: domain_losses.a: expected a number, got '2.0'"),
        ({"metrics": {"acc": True}}, Objective(metric="acc"), "m.json: metrics.acc: expected a number, got True"),
        ({"domain_losses": {"a": 2.0}}, Objective(domain_weights={"b": 1.0}), "m.json: cannot compute the objective: need losses for b, got domain_losses ['a'] and metrics []"),
        ({"accuracy": 0.5, "cost": -1}, Objective(metric="accuracy"), "m.json: cost must be a non-negative number, got -1"),
        ({"accuracy": 0.5, "curve": [[1]]}, Objective(metric="accuracy"), "m.json: curve must be a list of [tokens, loss] pairs"),
    ],
)
def test_a_bad_results_mapping_is_one_line_naming_where(doc, objective, message):
    with pytest.raises(EvaluationError) as info:
        result_from_mapping(doc, objective, RUNG, 0.0, "m.json")
    assert str(info.value) == message


def test_option_checks_and_field_splitting():
    check_options({"path": 1}, ("path", "target"), "table")
    with pytest.raises(ValueError, match=r"^evaluator\.options\.pth: unknown option of the table evaluator; known: path, target$"):
        check_options({"pth": 1}, ("path", "target"), "table")
    assert split_field("evaluator.options.x: bad value", "evaluator.options") == ("evaluator.options.x", "bad value")
    assert split_field("a message with spaces: and a colon", "evaluator.options") == ("evaluator.options", "a message with spaces: and a colon")
    assert options_digest({"b": 1, "a": [1, 2]}) == options_digest({"a": [1, 2], "b": 1}) and len(options_digest({})) == 12
    assert math.isfinite(RUNG.run_cost)
