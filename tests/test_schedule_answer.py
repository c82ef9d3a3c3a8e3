"""Studies with a schedule end to end through the CLI: a continual pre-training study answers
with the critical ratio (interval, basis, laws); a two-phase study's schedule round-trips
through the ledger and the export."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mixsearch.answer import TargetAnswer
from mixsearch.cli import app
from mixsearch.ledger import Ledger
from mixsearch.schedule_answer import CPTAnswer, attach_schedule

from .corpora import write_domains

CPT_STUDY = """
from mixsearch import Budget, ContinualPretraining, Domain, EvaluatorSpec, Objective, ProposerSpec, Study
from mixsearch.evaluate.worlds import default_ladder

study = Study(
    name="cpt-e2e",
    domains=(Domain("general"), Domain("finance")),
    ladder=default_ladder("cpt-finance"),
    objective=Objective(domain_weights={"finance": 1.0}),
    budget=Budget(max_trials=10),
    proposer=ProposerSpec("cmr-search"),
    evaluator=EvaluatorSpec("synthetic", {"world": "cpt-finance"}),
    schedule=ContinualPretraining("finance"),
    seed=1,
)
"""

TWO_PHASE_STUDY = """
from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, ProposerSpec, Rung, Study, TwoPhase

study = Study(
    name="two-phase-e2e",
    domains=(Domain("prose", {prose!r}), Domain("code", {code!r}), Domain("math", {math!r})),
    ladder=FidelityLadder((Rung("xs", n_params=30_000, tokens=4096),), target=Rung("big", n_params=10**8, tokens=10**10)),
    budget=Budget(max_trials=3),
    proposer=ProposerSpec("random"),
    evaluator=EvaluatorSpec("proxy", {{"device": "cpu", "seq_len": 32, "batch_size": 8, "eval_tokens": 1024, "vocab_size": 384,
                                       "max_bytes_per_domain": 40_000, "cache_dir": "cache"}}),
    schedule=TwoPhase(min_switch=0.2, max_switch=0.8),
    seed=4,
)
"""


def invoke(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, f"{args}: {res.output}"
    return res.stdout


def test_a_continual_pretraining_study_answers_with_the_critical_ratio(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("cpt.py").write_text(CPT_STUDY)
    out = invoke("study", "start", "cpt.py", "--quiet")
    assert "critical ratio of finance at 4B (N=500M, T=4B tokens)" in out and "basis: law, extrapolated x2 in T" in out
    doc = json.loads(Path("fits/cpt-e2e.json").read_text())
    rec = doc["recommendation"]
    assert rec["kind"] == "cmr" and rec["basis"] == "law" and rec["law"] == "cmr.surface.general"
    assert rec["lower"] <= rec["ratio"] <= rec["upper"] and rec["level"] == 0.9
    assert abs(rec["ratio"] - 0.379) < 0.05  # the world's true CMR at 4B tokens
    assert rec["weights"]["finance"] == pytest.approx(rec["ratio"], abs=1e-6)
    assert rec["factors"] == {"T": 2.0, "N": 1.0} and rec["loss_general_0"]["from"].startswith("measured")
    assert rec["predicted_domain_loss"]["value"] < rec["predicted_domain_loss"]["upper"]
    assert rec["search"]["weights"]["finance"] == pytest.approx(rec["ratio"], abs=1e-6)  # the proposer recommends the same way
    names = [law["name"] for law in doc["laws"]]
    assert names[:2] == ["cmr.surface.general", "cmr.surface.domain"]
    assert any("asymptote laws: base models at 1 size" in s for s in doc["laws_skipped"])
    assert {"base_loss_general", "base_loss_finance"} <= set(doc["trials"][0])
    # The laws load for a planner, from the export, like any other.
    from mixsearch import laws

    surface = laws.load("fits/cpt-e2e.json", name="cmr.surface.general")
    assert surface.predict(R=rec["ratio"], T=4e9, N=5e8).value == pytest.approx(rec["limit"], abs=1e-6)
    # A resume runs nothing again, and the answer is the same.
    invoke("study", "resume", "cpt-e2e", "--quiet")
    assert json.loads(Path("fits/cpt-e2e.json").read_text())["recommendation"]["ratio"] == rec["ratio"]
    led = Ledger(f"sqlite:///{tmp_path / 'runs' / 'cpt-e2e' / 'ledger.sqlite'}", create=False)
    assert led.counts()["done"] == 10
    led.dispose()
    answer = CPTAnswer.from_export(rec)
    assert answer.ratio == rec["ratio"] and "R = " in answer.line()


def test_a_changed_continual_study_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("cpt.py").write_text(CPT_STUDY.replace("max_trials=10", "max_trials=3"))
    invoke("study", "start", "cpt.py", "--quiet", "--no-export")
    Path("cpt.py").write_text(CPT_STUDY.replace("max_trials=10", "max_trials=3").replace('ContinualPretraining("finance")', 'None'))
    res = CliRunner().invoke(app, ["study", "start", "cpt.py", "--quiet"])
    assert res.exit_code == 2 and "schedule" in res.stderr


def test_a_two_phase_study_round_trips_its_schedule_through_the_ledger_and_the_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doms = write_domains(tmp_path / "text")
    Path("two.py").write_text(TWO_PHASE_STUDY.format(prose=doms[0].source, code=doms[1].source, math=doms[2].source))
    out = invoke("study", "start", "two.py", "--quiet")
    assert "two phases:" in out
    led = Ledger(f"sqlite:///{tmp_path / 'runs' / 'two-phase-e2e' / 'ledger.sqlite'}", create=False)
    trials = led.trials()
    led.dispose()
    assert len(trials) == 3 and all(t.state == "done" and t.candidate.schedule is not None for t in trials)
    assert all(0.2 <= t.candidate.schedule.switch <= 0.8 for t in trials)
    # Each trial trained phase 1 for its share of the steps, then phase 2.
    assert all(t.metrics["switch_step"] == round(t.candidate.schedule.switch * t.metrics["steps"]) for t in trials)
    doc = json.loads(Path("fits/two-phase-e2e.json").read_text())
    rec = doc["recommendation"]
    best = min(trials, key=lambda t: t.objective)
    assert rec["schedule"] == best.candidate.schedule.as_dict(["prose", "code", "math"])
    assert rec["weights"] == pytest.approx(dict(zip(["prose", "code", "math"], best.candidate.weights)))
    assert doc["best_per_rung"]["xs"]["schedule"] == rec["schedule"]
    rows = {r["trial_id"]: r for r in doc["trials"]}
    for t in trials:
        assert rows[t.trial_id]["switch"] == t.candidate.schedule.switch
        assert rows[t.trial_id]["w1_prose"] == t.candidate.schedule.first[0] and rows[t.trial_id]["w2_math"] == t.candidate.schedule.second[2]
    assert doc["study"]["schedule"]["kind"] == "two-phase"
    assert TargetAnswer.from_export(rec).schedule == rec["schedule"]
    # The same study in another folder proposes the same trials (the same seed).
    other = tmp_path / "again"
    other.mkdir()
    monkeypatch.chdir(other)
    Path("two.py").write_text((tmp_path / "two.py").read_text())
    invoke("study", "start", "two.py", "--quiet", "--no-export")
    led = Ledger(f"sqlite:///{other / 'runs' / 'two-phase-e2e' / 'ledger.sqlite'}", create=False)
    assert [t.trial_id for t in led.trials()] == [t.trial_id for t in trials]
    led.dispose()


def test_attach_schedule_finds_the_trial_behind_the_answer():
    done = pd.DataFrame(
        [
            {"w_a": 0.4, "w_b": 0.6, "switch": 0.5, "w1_a": 0.8, "w1_b": 0.2, "w2_a": 0.0, "w2_b": 1.0},
            {"w_a": 0.3, "w_b": 0.7, "switch": 0.5, "w1_a": 0.6, "w1_b": 0.4, "w2_a": 0.0, "w2_b": 1.0},
        ]
    )
    answer = TargetAnswer({"a": 0.3, "b": 0.7}, "the best trial", "observed", {"name": "t"})
    assert attach_schedule(answer, done, ["a", "b"]).schedule == {"first": {"a": 0.6, "b": 0.4}, "second": {"a": 0.0, "b": 1.0}, "switch": 0.5}
    plain = TargetAnswer({"a": 0.3, "b": 0.7}, "x", None, {"name": "t"})
    assert attach_schedule(plain, done.drop(columns=["switch"]), ["a", "b"]).schedule is None
