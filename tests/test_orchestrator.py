"""The ask -> submit -> tell loop on a cheap analytic evaluator (the orchestrator's own
contract: budgets, failures, retries, interruption and deterministic resume)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from mixsearch.candidate import Candidate, EvaluationError, TrialResult
from mixsearch.execute.local import LocalExecutor
from mixsearch.ledger import DONE, FAILED, Ledger
from mixsearch.orchestrator import Orchestrator, ask_seed, build_context
from mixsearch.propose.base import make_proposer
from mixsearch.study import Budget, Domain, FidelityLadder, ProposerSpec, Rung, Study

OPT = np.array([0.5, 0.3, 0.2])


class BowlEvaluator:
    """Loss = distance to a fixed optimum plus a size term; optional failure injection."""

    def __init__(self, fail_on: dict[int, BaseException] | None = None, nan_on: set[int] | None = None):
        self.calls = 0
        self.fail_on = fail_on or {}
        self.nan_on = nan_on or set()

    def prepare(self):
        pass

    def snapshot_id(self):
        return "bowl-v1"

    def pool(self):
        return None

    def evaluate(self, candidate: Candidate, rung: Rung) -> TrialResult:
        self.calls += 1
        if self.calls in self.fail_on:
            raise self.fail_on[self.calls]
        w = np.asarray(candidate.weights)
        loss = float(np.sum((w - OPT) ** 2) + 1e6 / rung.n_params)
        if self.calls in self.nan_on:
            loss = math.nan
        return TrialResult({"a": loss, "b": loss, "c": loss}, loss, rung.run_cost, 0.01, [(1.0, loss + 1), (2.0, loss)], {"n_params": rung.n_params, "tokens": rung.tokens})


def study(**kw) -> Study:
    base = dict(
        name="orch",
        domains=(Domain("a"), Domain("b"), Domain("c")),
        ladder=FidelityLadder((Rung("s", 1_000_000, 1000), Rung("m", 4_000_000, 1000)), target=Rung("t", 10**8, 10**6)),
        budget=Budget(max_trials=8),
        proposer=ProposerSpec("centre-random", batch_size=2),
        seed=7,
    )
    base.update(kw)
    return Study(**base)


def run(s: Study, url: str, evaluator=None, workers=1) -> tuple[Orchestrator, object]:
    ledger = Ledger(url)
    orch = Orchestrator(s, ledger, evaluator or BowlEvaluator(), LocalExecutor(workers=workers), make_proposer(s.proposer), heartbeat_interval=0.05)
    return orch, orch.run()


def test_runs_to_trial_budget(tmp_path):
    orch, summary = run(study(), f"sqlite:///{tmp_path}/a.sqlite")
    assert summary.counts[DONE] == 8 and summary.stopped_because == "trial budget spent"
    rungs = {t.candidate.rung for t in orch.ledger.trials()}
    assert rungs == {"s", "m"}
    assert summary.recommendation is not None


def test_cost_budget_is_not_exceeded(tmp_path):
    s = study(budget=Budget(max_cost=6 * 1_000_000 * 1000 * 5.5))
    orch, summary = run(s, f"sqlite:///{tmp_path}/a.sqlite")
    assert summary.spent <= s.budget.max_cost
    assert summary.counts[DONE] >= 2


def test_same_seed_same_trials_and_other_seed_differs(tmp_path):
    a, _ = run(study(), f"sqlite:///{tmp_path}/a.sqlite")
    b, _ = run(study(), f"sqlite:///{tmp_path}/b.sqlite")
    c, _ = run(study(seed=8), f"sqlite:///{tmp_path}/c.sqlite")
    ids = lambda o: [t.trial_id for t in o.ledger.trials()]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)


def test_diverged_and_nan_runs_are_failed_and_kept_out_of_history(tmp_path):
    ev = BowlEvaluator(fail_on={2: EvaluationError("diverged: loss=inf at step 3")}, nan_on={4})
    orch, summary = run(study(), f"sqlite:///{tmp_path}/a.sqlite", ev)
    failed = orch.ledger.trials([FAILED])
    assert len(failed) == 2 and summary.counts[DONE] == 6
    assert any("diverged" in t.error for t in failed) and any("non-finite" in t.error for t in failed)
    ctx = build_context(orch.study, orch.ledger, 99)
    assert ctx.history.n == 6 and np.isfinite(ctx.history.objective).all()


def test_crash_is_retried_up_to_max_attempts(tmp_path):
    ev = BowlEvaluator(fail_on={1: RuntimeError("CUDA error: device lost"), 2: RuntimeError("again")})
    orch, summary = run(study(max_attempts=3), f"sqlite:///{tmp_path}/a.sqlite", ev)
    assert summary.counts[DONE] == 8 and summary.counts[FAILED] == 0
    assert max(t.attempts for t in orch.ledger.trials()) == 3


def test_interrupt_then_resume_matches_an_uninterrupted_run(tmp_path):
    reference, _ = run(study(), f"sqlite:///{tmp_path}/ref.sqlite")
    url = f"sqlite:///{tmp_path}/int.sqlite"
    with pytest.raises(KeyboardInterrupt):
        run(study(), url, BowlEvaluator(fail_on={5: KeyboardInterrupt()}))
    ledger = Ledger(url)
    before = {t.trial_id: t.finished for t in ledger.trials([DONE])}
    assert len(before) == 4 and ledger.counts()["running"] == 0  # released, not orphaned
    resumed, summary = run(study(), url)
    after = {t.trial_id: t for t in resumed.ledger.trials()}
    assert summary.counts[DONE] == 8
    assert all(after[tid].finished == fin for tid, fin in before.items())  # not rerun
    assert [t.trial_id for t in reference.ledger.trials()] == list(after)


def test_parallel_workers_finish_each_trial_once(tmp_path):
    class Slow(BowlEvaluator):
        def evaluate(self, candidate, rung):
            time.sleep(0.02)
            return super().evaluate(candidate, rung)

    s = study(budget=Budget(max_trials=12), proposer=ProposerSpec("random", batch_size=4))
    orch, summary = run(s, f"sqlite:///{tmp_path}/a.sqlite", Slow(), workers=4)
    trials = orch.ledger.trials()
    assert summary.counts[DONE] == 12 and len({t.trial_id for t in trials}) == 12
    assert all(t.attempts == 1 for t in trials)


def test_ask_seed_is_stable():
    assert ask_seed(0, 3) == ask_seed(0, 3) and ask_seed(0, 3) != ask_seed(0, 4) != ask_seed(1, 4)


def test_ask_seed_is_a_stored_interface_pinned_by_literal_values():
    """A resumed study re-derives each ask's seed; a change here would make it propose other
    trials than the run it continues. Values computed by mixsearch 0.1.0."""
    assert [ask_seed(0, 0), ask_seed(0, 1), ask_seed(7, 3), ask_seed(123456789, 4002)] == [171340460, 709825519, 523246609, 379659262]


class FixedProposer:
    """Always proposes the same two mixtures at rung s (a proposer that ignores its history)."""

    def propose(self, ctx, q):
        return [Candidate((0.5, 0.3, 0.2), "s", ctx.trial_seed), Candidate((0.2, 0.3, 0.5), "s", ctx.trial_seed)][:q]

    def recommend(self, ctx):
        return None


def test_a_changed_target_does_not_run_a_trial_twice(tmp_path):
    # The target is part of every trial id's context, and the study's definition lets it
    # change: the same candidate then gets another id, but it is still the run that was made.
    url = f"sqlite:///{tmp_path}/a.sqlite"
    first = study(budget=Budget(max_trials=2))
    ledger = Ledger(url)
    ev = BowlEvaluator()
    Orchestrator(first, ledger, ev, LocalExecutor(workers=1), FixedProposer(), heartbeat_interval=0.05).run()
    assert ev.calls == 2
    moved = study(budget=Budget(max_trials=6), ladder=FidelityLadder(first.ladder.rungs, target=Rung("t2", 10**9, 10**7)))
    assert moved.config_hash() != first.config_hash()
    ev2 = BowlEvaluator()
    summary = Orchestrator(moved, ledger, ev2, LocalExecutor(workers=1), FixedProposer(), heartbeat_interval=0.05).run()
    assert ev2.calls == 0 and len(ledger.trials()) == 2
    assert summary.stopped_because == "proposer has nothing left to propose"
    ledger.dispose()
