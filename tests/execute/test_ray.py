"""The Ray executor on a real local Ray cluster (2 CPUs) started by these tests.

Few tests, sharing one cluster: Ray takes several seconds to start on a small machine.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from mixsearch.execute import make_executor  # noqa: E402
from mixsearch.candidate import Candidate, EvaluationError, TrialResult  # noqa: E402
from mixsearch.execute.base import Job  # noqa: E402
from mixsearch.execute.ray import RayExecutor, WorkerLost  # noqa: E402
from mixsearch.ledger import DONE, Ledger  # noqa: E402
from mixsearch.orchestrator import Orchestrator  # noqa: E402
from mixsearch.propose.base import make_proposer  # noqa: E402
from mixsearch.study import Budget, Domain, FidelityLadder, ProposerSpec, Rung, Study  # noqa: E402

OPT = np.array([0.5, 0.3, 0.2])


class MarkedBowl:
    """A bowl-shaped loss that leaves marks in ``folder``: which process prepared,
    which evaluated; and on request crashes its worker process or diverges.

    Args:
        folder: Shared folder for marks (the cluster is on this machine).
        crash_first: SIGKILL the worker process on the very first evaluation of the
            run (once: a marker file remembers it).
        diverge_above: Raise EvaluationError when weights[0] exceeds this.
        sleep_above: Sleep a minute when weights[0] exceeds this (a hung trial).
    """

    def __init__(self, folder: str, crash_first: bool = False, diverge_above: float = 2.0, sleep_above: float = 2.0, pause: float = 0.2):
        self.folder = folder
        self.crash_first = crash_first
        self.diverge_above = diverge_above
        self.sleep_above = sleep_above
        self.pause = pause
        self._prepared = False

    def prepare(self):
        Path(self.folder, f"prepared-{os.getpid()}-{time.time_ns()}").touch()
        self._prepared = True

    def snapshot_id(self):
        return "bowl-v1"

    def pool(self):
        return None

    def evaluate(self, candidate: Candidate, rung: Rung) -> TrialResult:
        assert self._prepared, "prepare() must run on the worker before evaluate()"
        w = np.asarray(candidate.weights)
        if self.crash_first:
            try:
                os.close(os.open(os.path.join(self.folder, "crashed"), os.O_CREAT | os.O_EXCL))
                os.kill(os.getpid(), signal.SIGKILL)  # a worker killed mid-trial
            except FileExistsError:
                pass
        if w[0] > self.sleep_above:
            time.sleep(60)
        if w[0] > self.diverge_above:
            raise EvaluationError(f"diverged: loss=nan at step 3 (w0={w[0]:.2f})")
        time.sleep(self.pause)
        Path(self.folder, f"evaluated-{os.getpid()}-{time.time_ns()}").touch()
        loss = float(np.sum((w - OPT) ** 2) + 1e6 / rung.n_params)
        return TrialResult({"a": loss, "b": loss, "c": loss}, loss, rung.run_cost, self.pause, [], {"pid": os.getpid()})


@pytest.fixture(scope="module")
def cluster():
    # Ray workers cannot import this test module: ship its classes by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def pids(folder: Path, kind: str) -> list[int]:
    return [int(p.name.split("-")[1]) for p in folder.glob(f"{kind}-*")]


def study(**kw) -> Study:
    base = dict(
        name="ray-e2e",
        domains=(Domain("a"), Domain("b"), Domain("c")),
        ladder=FidelityLadder((Rung("s", 1_000_000, 1000), Rung("m", 4_000_000, 1000)), target=Rung("t", 10**8, 10**6)),
        budget=Budget(max_trials=8),
        proposer=ProposerSpec("random", batch_size=4),
        seed=3,
    )
    base.update(kw)
    return Study(**base)


def test_study_runs_end_to_end_on_two_ray_workers(cluster, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    s = study()
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    executor = make_executor("ray", workers=2)
    assert isinstance(executor, RayExecutor) and executor.capacity == 2
    orch = Orchestrator(s, ledger, MarkedBowl(str(marks), crash_first=True), executor, make_proposer(s.proposer), heartbeat_interval=0.1)
    summary = orch.run()
    trials = ledger.trials()
    assert summary.counts[DONE] == 8 and len({t.trial_id for t in trials}) == 8
    # The worker killed mid-trial surfaced as a retryable failure: one trial took two attempts.
    assert sorted(t.attempts for t in trials) == [1] * 7 + [2]
    evaluated = pids(marks, "evaluated")
    assert len(evaluated) == 8 and os.getpid() not in evaluated
    assert len(set(evaluated)) >= 2, "two Ray workers should have shared the trials"
    prepared = pids(marks, "prepared")
    # prepare() ran in every worker process that evaluated, once per process (and the
    # driver prepared its own copy before proposing).
    assert set(evaluated) <= set(prepared)
    assert all(prepared.count(pid) == 1 for pid in set(evaluated))
    assert summary.recommendation is not None
    ledger.dispose()


def test_outcomes_map_to_results_final_errors_and_lost_workers(cluster, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    ex = RayExecutor(workers=2, timeout_s=8)
    ex.start(MarkedBowl(str(marks), diverge_above=0.8, sleep_above=0.95, pause=0.05))
    rung = Rung("s", 10, 10)
    ex.submit([Job("ok", Candidate((0.3, 0.3, 0.4), "s"), rung), Job("ok2", Candidate((0.4, 0.3, 0.3), "s"), rung)])
    ex.submit([Job("diverged", Candidate((0.85, 0.1, 0.05), "s"), rung)])
    ex.submit([Job("hung", Candidate((0.99, 0.005, 0.005), "s"), rung)])
    assert sorted(ex.in_flight()) == ["diverged", "hung", "ok", "ok2"]
    out: dict = {}
    deadline = time.time() + 60
    while len(out) < 4 and time.time() < deadline:
        out.update(dict(ex.poll(0.5)))
    ex.shutdown()
    assert isinstance(out["ok"], TrialResult) and isinstance(out["ok2"], TrialResult)
    assert isinstance(out["diverged"], EvaluationError) and "diverged" in str(out["diverged"])
    assert isinstance(out["hung"], WorkerLost) and "timeout" in str(out["hung"])
    assert ex.in_flight() == []
    assert ex.num_gpus == 0.0  # chosen from the cluster, which has no GPU
    assert ray.is_initialized()  # the executor did not start Ray, so it leaves it running


def test_continual_trials_on_two_ray_workers_share_one_base_model(cluster, tmp_path, tiny_domains):
    """Each worker process continues the base model; the first to need it trains it, the other
    finds it on disk (the file lock and atomic write in mixsearch.proxy.continual)."""
    from mixsearch.evaluate import make_evaluator
    from mixsearch.study import ContinualPretraining, EvaluatorSpec, Objective

    opts = {"device": "cpu", "seq_len": 32, "batch_size": 8, "eval_tokens": 1024, "vocab_size": 512, "max_bytes_per_domain": 60_000, "cache_dir": str(tmp_path / "cache")}
    s = study(
        name="ray-cpt",
        domains=tuple(tiny_domains),
        ladder=FidelityLadder((Rung("T-1k", 50_000, 1024), Rung("T-2k", 50_000, 2048)), target=Rung("T-4k", 50_000, 4096)),
        budget=Budget(max_trials=4),
        objective=Objective(domain_weights={"math": 1.0}),
        proposer=ProposerSpec("cmr-grid", batch_size=2, options={"ratios": [0.2, 0.8]}),
        evaluator=EvaluatorSpec("proxy", opts),
        schedule=ContinualPretraining("math", base_tokens=4096),
    )
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    evaluator = make_evaluator(s)
    summary = Orchestrator(s, ledger, evaluator, make_executor("ray", workers=2), make_proposer(s.proposer), heartbeat_interval=0.1).run()
    trials = ledger.trials()
    assert summary.counts[DONE] == 4
    assert sum(t.metrics["base_seconds"] > 0 for t in trials) == 1  # trained once, in one process
    assert len({tuple(sorted(t.metrics["base_losses"].items())) for t in trials}) == 1
    assert len(list((evaluator.corpus.path / "checkpoints").glob("base-*.pt"))) == 1
    ledger.dispose()
