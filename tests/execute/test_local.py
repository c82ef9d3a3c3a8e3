"""The local executor runs jobs on threads and reports results and exceptions."""

import time

from mixsearch.candidate import Candidate, EvaluationError, TrialResult
from mixsearch.execute.base import Job
from mixsearch.execute.local import LocalExecutor
from mixsearch.study import Rung


class Echo:
    def __init__(self):
        self.packs = []

    def prepare(self):
        pass

    def snapshot_id(self):
        return "echo"

    def pool(self):
        return None

    def evaluate(self, candidate, rung):
        if candidate.weights[0] > 0.9:
            raise EvaluationError("diverged")
        time.sleep(0.01)
        return TrialResult({"a": candidate.weights[0]}, candidate.weights[0], rung.run_cost, 0.01)

    def evaluate_many(self, candidates, rungs):
        self.packs.append(len(candidates))
        return [self.evaluate(c, r) for c, r in zip(candidates, rungs)]


def drain(ex, n):
    out = {}
    deadline = time.time() + 10
    while len(out) < n and time.time() < deadline:
        out.update(dict(ex.poll(0.5)))
    return out


def test_results_and_errors_come_back_per_job():
    ev = Echo()
    ex = LocalExecutor(workers=2)
    ex.start(ev)
    rung = Rung("s", 10, 10)
    ex.submit([Job("ok", Candidate((0.3, 0.7), "s"), rung)])
    ex.submit([Job("bad", Candidate((0.95, 0.05), "s"), rung)])
    out = drain(ex, 2)
    ex.shutdown()
    assert isinstance(out["ok"], TrialResult) and out["ok"].objective == 0.3
    assert isinstance(out["bad"], EvaluationError)


def test_packs_use_evaluate_many_and_fall_back_per_job():
    ev = Echo()
    ex = LocalExecutor(workers=1, pack=3)
    ex.start(ev)
    rung = Rung("s", 10, 10)
    ex.submit([Job(f"j{i}", Candidate((0.1 * (i + 1), 1 - 0.1 * (i + 1)), "s"), rung) for i in range(3)])
    assert len(drain(ex, 3)) == 3 and ev.packs == [3]
    # A pack with one diverging job: the batch raises, the fallback reports per job.
    ex.submit([Job("x", Candidate((0.2, 0.8), "s"), rung), Job("y", Candidate((0.99, 0.01), "s"), rung)])
    out = drain(ex, 2)
    ex.shutdown()
    assert isinstance(out["x"], TrialResult) and isinstance(out["y"], EvaluationError)
    assert ex.capacity == 3
