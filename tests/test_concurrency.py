"""Several processes on one ledger: no trial proposed or run twice, none lost.

Every case runs against SQLite and (with ``MIXSEARCH_TEST_POSTGRES_URL``) PostgreSQL,
with real separate processes that start together and share one ledger.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mixsearch.candidate import Candidate
from mixsearch.execute.local import LocalExecutor
from mixsearch.ledger import DONE, PENDING, Ledger, drop_ledger
from mixsearch.study import Budget, Domain, FidelityLadder, ProposerSpec, Rung, Study
from mixsearch.worker import Worker

from .ledgers import bound

PG_URL = os.environ.get("MIXSEARCH_TEST_POSTGRES_URL")
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=[pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason="MIXSEARCH_TEST_POSTGRES_URL not set")],
    ),
]
N_PROCS = 8
PER_PROC = 200


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    if request.param == "sqlite":
        u = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        assert PG_URL
        drop_ledger(PG_URL)
        u = PG_URL
    Ledger(u).dispose()  # create the schema once, before the crowd arrives
    yield u
    drop_ledger(u)


READY = textwrap.dedent(
    """
    import os, sys, time
    def ready_then_wait(go):
        # Imports are done: say so, then spin until every process is ready and `go` exists.
        open(f"{go}.ready-{os.getpid()}", "w").close()
        while not os.path.exists(go):
            time.sleep(0.005)
    """
)


def start_together(script: str, args: list[list[str]], go: Path, timeout: float) -> list[subprocess.CompletedProcess]:
    """Start one process per argument list; once all have imported what they need,
    release them at once (so they contend), and collect their output."""
    procs = [subprocess.Popen([sys.executable, "-c", READY + script, str(go), *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in args]
    deadline = time.time() + timeout
    while len(list(go.parent.glob(f"{go.name}.ready-*"))) < len(procs):
        if time.time() > deadline or any(p.poll() not in (None, 0) for p in procs):
            for p in procs:
                p.kill()
            pytest.fail("the processes did not get ready: " + "".join(p.communicate()[1][-1000:] for p in procs))
        time.sleep(0.05)
    go.touch()
    done = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a process did not finish within {timeout:.0f} s")
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    for d in done:
        assert d.returncode == 0, d.stderr[-2000:]
    return done


CLAIMER = textwrap.dedent(
    """
    import json
    from mixsearch.candidate import Candidate, TrialResult
    from mixsearch.ledger import Ledger
    go, url, index, per_proc, n_procs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    ledger = Ledger(url)
    name = f"claimer-{index}:{os.getpid()}"
    # This process's own trials plus a quarter of its neighbour's: overlapping adds
    # must be found, not duplicated.
    total = per_proc * n_procs
    mine = list(range(index * per_proc, (index + 1) * per_proc))
    mine += [(i + per_proc) % total for i in mine[: per_proc // 4]]
    cands = [Candidate((1.0 + i, 1.0 + total - i), "s") for i in mine]
    ready_then_wait(go)
    for k in range(0, len(cands), 25):
        ledger.add(cands[k : k + 25], {"s": {"snapshot": "c"}}, ask=index)
    finished = []
    idle = 0
    while idle < 3:
        claimed = ledger.claim(name, limit=1 + index % 3)
        if not claimed:
            idle += 1
            time.sleep(0.05)
            continue
        idle = 0
        for t in claimed:
            obj = float(t.candidate.weights[0])
            assert ledger.complete(t.trial_id, TrialResult({"a": obj}, obj, 1.0, 0.0), name), t.trial_id
            finished.append(t.trial_id)
    print(json.dumps({"name": name, "finished": finished}))
    """
)


@pytest.mark.slow
def test_eight_processes_add_claim_and_complete_200_trials_each(url, tmp_path):
    bound(Ledger(url)).dispose()
    runs = start_together(CLAIMER, [[url, str(i), str(PER_PROC), str(N_PROCS)] for i in range(N_PROCS)], tmp_path / "go", timeout=240)
    finished = [tid for r in runs for tid in json.loads(r.stdout)["finished"]]
    ledger = Ledger(url, create=False)
    trials = ledger.trials()
    assert len(trials) == N_PROCS * PER_PROC  # overlapping adds were found, not duplicated
    assert len(finished) == len(set(finished)) == len(trials)  # each trial finished once, by one process
    assert all(t.state == DONE and t.attempts == 1 for t in trials)
    ledger.dispose()


ORCHESTRATOR = textwrap.dedent(
    """
    import numpy as np
    from mixsearch.candidate import TrialResult
    from mixsearch.execute.local import LocalExecutor
    from mixsearch.ledger import Ledger
    from mixsearch.orchestrator import Orchestrator
    from mixsearch.propose.base import make_proposer
    from mixsearch.study import Budget, Domain, FidelityLadder, ProposerSpec, Rung, Study

    class Bowl:
        def prepare(self): pass
        def snapshot_id(self): return "bowl"
        def pool(self): return None
        def evaluate(self, candidate, rung):
            time.sleep(0.01)
            loss = float(np.sum((np.asarray(candidate.weights) - [0.5, 0.3, 0.2]) ** 2))
            return TrialResult({"a": loss}, loss, rung.run_cost, 0.01, [], {"pid": os.getpid()})

    go, url, trials, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    study = Study(
        name="crowd",
        domains=(Domain("a"), Domain("b"), Domain("c")),
        ladder=FidelityLadder((Rung("s", 1000, 1000),), target=Rung("t", 10**6, 10**6)),
        budget=Budget(max_trials=trials),
        proposer=ProposerSpec("centre-random", batch_size=batch),
        seed=11,
    )
    ledger = Ledger(url)
    orch = Orchestrator(study, ledger, Bowl(), LocalExecutor(workers=1), make_proposer(study.proposer), heartbeat_interval=0.2)
    ready_then_wait(go)
    summary = orch.run()
    print(summary.stopped_because)
    """
)


@pytest.mark.slow
def test_eight_orchestrators_share_one_200_trial_study(url, tmp_path):
    batch = 4
    runs = start_together(ORCHESTRATOR, [[url, "200", str(batch)] for _ in range(N_PROCS)], tmp_path / "go", timeout=240)
    assert all(r.stdout.strip() == "trial budget spent" for r in runs), [r.stdout.strip() for r in runs]
    ledger = Ledger(url, create=False)
    trials = ledger.trials()
    assert len(trials) == 200  # the budget held with eight proposers
    assert all(t.state == DONE and t.attempts == 1 for t in trials)
    assert len({t.candidate for t in trials}) == 200  # no mixture proposed twice
    pids = {t.metrics["pid"] for t in trials}
    assert len(pids) >= 4, "the crowd should have shared the work"
    # Asks were serialised: each ask index belongs to one proposal of at most `batch`
    # trials, and indices run 0, 1, 2, ... with no gaps.
    per_ask = collections.Counter(t.ask for t in trials)
    assert max(per_ask.values()) <= batch and sorted(per_ask) == list(range(len(per_ask)))
    # The centre was proposed once (a second proposer, blind to the first's pending
    # trials, would have proposed it again).
    assert sum(t.candidate.weights == (0.333334, 0.333333, 0.333333) for t in trials) == 1
    ledger.dispose()


class Bowl:
    def __init__(self):
        self.seen = []

    def prepare(self):
        pass

    def snapshot_id(self):
        return "bowl"

    def pool(self):
        return None

    def evaluate(self, candidate, rung):
        from mixsearch.candidate import TrialResult

        self.seen.append(candidate)
        loss = float(sum(candidate.weights[:1]))
        return TrialResult({"a": loss}, loss, rung.run_cost, 0.0)


def test_worker_runs_pending_trials_and_never_proposes(url):
    s = Study(
        name="workers",
        domains=(Domain("a"), Domain("b")),
        ladder=FidelityLadder((Rung("s", 1000, 1000),), target=Rung("t", 10**6, 10**6)),
        budget=Budget(max_trials=50),
        proposer=ProposerSpec("random", batch_size=2),
    )
    ledger = Ledger(url)
    ledger.bind_study(s.name, s.to_dict(), None, s.definition("bowl"))
    config = s.config_hash()
    ids = ledger.add([Candidate((0.1 * i, 1 - 0.1 * i), "s") for i in range(1, 8)], {"s": {"config": config, "snapshot": "bowl", "N": 1000, "D": 1000}}, ask=0)
    ev = Bowl()
    summary = Worker(s, ledger, ev, LocalExecutor(workers=2), heartbeat_interval=0.05).run()
    assert summary.stopped_because == "no pending trials"
    assert [t.trial_id for t in ledger.trials()] == ids  # ran them all, proposed nothing
    assert all(t.state == DONE for t in ledger.trials()) and len(ev.seen) == 7
    # With wait and an idle timeout it waits for work, then gives up.
    t0 = time.time()
    summary = Worker(s, ledger, Bowl(), LocalExecutor(), wait=True, idle_timeout=0.5, heartbeat_interval=0.05).run()
    assert summary.stopped_because.startswith("no pending trials for") and time.time() - t0 >= 0.5
    assert ledger.counts()[PENDING] == 0
    ledger.dispose()
