"""The ledger contract, run against every storage backend: SQLite and PostgreSQL.

PostgreSQL runs when ``MIXSEARCH_TEST_POSTGRES_URL`` names a database the tests may
wipe (``eval "$(bash .ci/postgres.sh)"`` starts a throwaway one); otherwise its cases
are skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import sqlalchemy as sa

from mixsearch.candidate import Candidate, TrialResult
from mixsearch.ledger import DONE, FAILED, PENDING, RUNNING, SCHEMA_VERSION, Ledger, LedgerError, StudyChanged, drop_ledger, worker_name
from mixsearch.propose.base import History
from mixsearch.study import Objective

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
CTX = {"s": {"snapshot": "x", "N": 1, "D": 2}, "m": {"snapshot": "x", "N": 3, "D": 2}}


def backend_url(kind: str, tmp_path) -> str:
    """A fresh, empty ledger location on ``kind``."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'runs' / 'ledger.sqlite'}"
    assert PG_URL
    drop_ledger(PG_URL)
    return PG_URL


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    u = backend_url(request.param, tmp_path)
    yield u
    drop_ledger(u)


@pytest.fixture()
def ledger(url):
    led = bound(Ledger(url))
    yield led
    led.dispose()


def cands(n: int, rung: str = "s") -> list[Candidate]:
    return [Candidate((i + 1.0, n - i + 0.5), rung) for i in range(n)]


def result(obj: float = 1.0) -> TrialResult:
    return TrialResult({"a": obj, "b": obj}, obj, cost=10.0, seconds=0.5, curve=[(1, 2.0), (2, 1.5)], metrics={"n_params": 1, "tokens": 2})


def test_add_is_idempotent_and_keeps_proposal_order(ledger):
    c = cands(5)
    ids = ledger.add(c, CTX, ask=0)
    assert ledger.add(list(reversed(c)), CTX, ask=1) == list(reversed(ids))
    assert len(set(ids)) == 5 and ledger.counts()[PENDING] == 5
    assert [t.trial_id for t in ledger.trials()] == ids  # numbered in proposal order
    assert ledger.next_ask() == 1  # the repeated add inserted nothing


def test_happy_path_and_compare_and_set(ledger):
    (tid,) = ledger.add(cands(1), CTX, 0)
    (t,) = ledger.claim("w1")
    assert (t.trial_id, t.state, t.attempts, t.worker) == (tid, RUNNING, 1, "w1")
    assert ledger.claim("w2") == []
    assert ledger.complete(tid, result(2.0), "w1")
    t = ledger.get(tid)
    assert (t.state, t.objective, t.cost, t.seconds) == (DONE, 2.0, 10.0, 0.5)
    assert t.domain_losses == {"a": 2.0, "b": 2.0} and t.curve == [[1.0, 2.0], [2.0, 1.5]]
    assert t.metrics == {"n_params": 1, "tokens": 2}
    finished = t.finished
    assert not ledger.complete(tid, result(3.0), "w1")
    assert ledger.fail(tid, "late", "w1", retry=True, max_attempts=3) is None
    assert not ledger.release(tid, "w1")
    assert ledger.get(tid).objective == 2.0 and ledger.get(tid).finished == finished


def test_only_the_holder_may_finish(ledger):
    (tid,) = ledger.add(cands(1), CTX, 0)
    ledger.claim("w1")
    assert not ledger.complete(tid, result(), "intruder")
    assert ledger.fail(tid, "x", "intruder", retry=False, max_attempts=1) is None
    assert not ledger.release(tid, "intruder")
    assert ledger.heartbeat([tid], "intruder") == []
    assert ledger.get(tid).state == RUNNING and ledger.get(tid).worker == "w1"


def test_retryable_failures_then_final(ledger):
    (tid,) = ledger.add(cands(1), CTX, 0)
    for _ in range(2):
        ledger.claim("w")
        assert ledger.fail(tid, "worker crashed", "w", retry=True, max_attempts=3) == PENDING
        t = ledger.get(tid)
        assert t.worker is None and t.heartbeat is None
    ledger.claim("w")
    assert ledger.fail(tid, "worker crashed", "w", retry=True, max_attempts=3) == FAILED
    t = ledger.get(tid)
    assert (t.state, t.attempts) == (FAILED, 3) and "crashed" in t.error and t.finished is not None


def test_final_failure_charges_its_cost(ledger):
    (tid,) = ledger.add(cands(1), CTX, 0)
    ledger.claim("w")
    assert ledger.fail(tid, "diverged: loss=nan at step 7", "w", retry=False, max_attempts=3, cost=5.0) == FAILED
    t = ledger.get(tid)
    assert (t.cost, t.objective, t.attempts) == (5.0, None, 1) and t.error.startswith("diverged")


def test_release_does_not_charge_an_attempt(ledger):
    (tid,) = ledger.add(cands(1), CTX, 0)
    ledger.claim("w")
    assert ledger.release(tid, "w")
    t = ledger.get(tid)
    assert (t.state, t.attempts, t.worker) == (PENDING, 0, None)


def test_claim_takes_oldest_first_up_to_limit_and_honours_a_filter(ledger):
    ids = ledger.add(cands(6), CTX, 0)
    got = ledger.claim("a", limit=2)
    assert [t.trial_id for t in got] == ids[:2]
    got = ledger.claim("b", trial_ids=[ids[5], ids[0], ids[4]], limit=5)
    assert [t.trial_id for t in got] == [ids[4], ids[5]]  # ids[0] is already running
    assert ledger.claim("c", limit=0) == []
    assert [t.trial_id for t in ledger.trials([PENDING])] == ids[2:4]


def test_heartbeat_reports_what_is_still_held(ledger):
    ids = ledger.add(cands(2), CTX, 0)
    ledger.claim("elsewhere:1", limit=2)
    before = ledger.get(ids[0]).heartbeat
    time.sleep(0.01)
    assert sorted(ledger.heartbeat(ids, "elsewhere:1")) == sorted(ids)
    assert ledger.get(ids[0]).heartbeat > before
    # A fresh heartbeat keeps a trial from being recovered...
    assert ledger.recover(heartbeat_timeout=60, max_attempts=3) == []
    # ...a stale one does not, and the old holder then sees it is gone.
    assert sorted(ledger.recover(heartbeat_timeout=0, max_attempts=3)) == sorted(ids)
    assert ledger.heartbeat(ids, "elsewhere:1") == []
    assert not ledger.complete(ids[0], result(), "elsewhere:1")
    assert all(ledger.get(i).state == PENDING for i in ids)


def test_recover_frees_a_dead_local_worker_at_once(ledger):
    ids = ledger.add(cands(2), CTX, 0)
    ledger.claim("otherhost:1", trial_ids=[ids[0]])
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = f"{worker_name().rpartition(':')[0]}:{proc.stdout.strip()}"
    ledger.claim(dead, trial_ids=[ids[1]])
    alive = worker_name()
    assert ledger.recover(heartbeat_timeout=3600, max_attempts=3) == [ids[1]]
    assert ledger.get(ids[1]).state == PENDING and ledger.get(ids[0]).state == RUNNING
    (t,) = ledger.claim(alive)
    assert t.trial_id == ids[1] and t.attempts == 2  # the lost attempt counts
    assert ledger.recover(heartbeat_timeout=3600, max_attempts=3) == []  # this process is alive


def test_recover_out_of_attempts_fails_with_a_reason(ledger):
    (tid,) = ledger.add(cands(1), CTX, 0)
    ledger.claim("elsewhere:1")
    assert ledger.recover(heartbeat_timeout=0, max_attempts=1) == [tid]
    t = ledger.get(tid)
    assert t.state == FAILED and "lost 1 time" in t.error and t.cost == 0.0


def test_meta_and_study_binding(url):
    ledger = Ledger(url)
    assert ledger.get_meta("nope") is None
    ledger.set_meta("k", "1")
    ledger.set_meta("k", "2")
    assert ledger.get_meta("k") == "2"
    definition = {"domains": ["a", "b"], "snapshot": "x"}
    ledger.bind_study("one", {"domains": [{"name": "a"}, {"name": "b"}]}, None, definition)
    ledger.bind_study("one", {"domains": [{"name": "a"}, {"name": "b"}]}, None, definition)
    assert ledger.domains == ("a", "b") and ledger.definition() == definition
    with pytest.raises(LedgerError, match="belongs to study 'one'"):
        ledger.bind_study("two", {}, None)
    with pytest.raises(StudyChanged, match=r"domains reordered \(a, b -> b, a\)"):
        ledger.bind_study("one", {}, None, {"domains": ["b", "a"], "snapshot": "x"})
    with pytest.raises(StudyChanged, match="the data changed"):
        ledger.bind_study("one", {}, None, {"domains": ["a", "b"], "snapshot": "y"})
    ledger.dispose()


def test_newer_schema_is_refused_and_reopen_works(url):
    Ledger(url).dispose()
    again = Ledger(url, create=False)
    assert again.counts() == {s: 0 for s in (PENDING, RUNNING, DONE, FAILED)}
    with again.engine.begin() as conn:
        conn.execute(sa.text("UPDATE mixsearch_meta SET value = :v WHERE key = 'schema_version'"), {"v": str(SCHEMA_VERSION + 1)})
    again.dispose()
    with pytest.raises(LedgerError, match="newer than this mixsearch"):
        Ledger(url)


def test_an_empty_database_is_not_a_ledger(url):
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sa.create_engine(url).connect().close()  # an empty SQLite file
    with pytest.raises(LedgerError, match="not a mixsearch ledger"):
        Ledger(url, create=False)


def test_dataframe_and_history(ledger):
    ids = ledger.add([Candidate((0.5, 0.5), "s"), Candidate((0.2, 0.8), "m"), Candidate((0.9, 0.1), "s")], CTX, 0)
    ledger.claim("w", trial_ids=ids[:2], limit=2)
    ledger.complete(ids[0], result(1.5), "w")
    ledger.fail(ids[1], "diverged", "w", retry=False, max_attempts=1)
    df = ledger.to_dataframe()
    assert list(df["state"]) == [DONE, FAILED, PENDING]
    assert df.loc[0, "w_a"] == 0.5 and df.loc[0, "loss_b"] == 1.5
    h = History.from_trials(ledger.trials(), 2, Objective())
    assert h.weights.shape == (1, 2) and h.objective.tolist() == [1.5]
    assert h.pending_weights.tolist() == [[0.9, 0.1]] and h.failed_weights.tolist() == [[0.2, 0.8]]


def test_concurrent_claimers_never_share_a_trial(url):
    """Four threads, each with its own Ledger (own connections), drain 80 trials."""
    setup = bound(Ledger(url))
    ids = setup.add(cands(80), CTX, 0)
    got: dict[str, list[str]] = {}

    def drain(name: str) -> None:
        led = Ledger(url)
        mine = got.setdefault(name, [])
        while claimed := led.claim(name, limit=3):
            for t in claimed:
                assert led.complete(t.trial_id, result(), name)
                mine.append(t.trial_id)
        led.dispose()

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    flat = [tid for v in got.values() for tid in v]
    assert sorted(flat) == sorted(ids)  # each exactly once
    assert all(t.state == DONE and t.attempts == 1 for t in setup.trials())
    setup.dispose()


def test_ask_lock_excludes_other_holders_and_times_out(url):
    a, b = Ledger(url), Ledger(url)
    with a.ask_lock():
        with pytest.raises(LedgerError, match="ask lock still held"):
            with b.ask_lock(timeout=0.3):
                pass
    with b.ask_lock(timeout=5):
        pass
    a.dispose()
    b.dispose()


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from mixsearch.ledger import Ledger
    led = Ledger(sys.argv[1])
    with led.ask_lock():
        print("held", flush=True)
        time.sleep(600)
    """
)


def test_ask_lock_dies_with_its_holder(url):
    Ledger(url).dispose()
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        led = Ledger(url)
        with pytest.raises(LedgerError):
            with led.ask_lock(timeout=0.3):
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with led.ask_lock(timeout=10):  # the kernel / server dropped the dead holder's lock
            pass
        led.dispose()
    finally:
        proc.kill()
        proc.wait()


def test_drop_ledger_removes_it(url):
    Ledger(url).dispose()
    drop_ledger(url)
    with pytest.raises(LedgerError):
        Ledger(url, create=False)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("not a url", "not an SQLAlchemy URL"),
        ("mysql://u@h/db", "unsupported database"),
        ("postgresql+psycopg://nobody:secret@127.0.0.1:1/none", "cannot open"),
    ],
    ids=["garbage", "other-database", "unreachable-postgres"],
)
def test_bad_urls_are_one_clear_error(bad, message):
    t0 = time.time()
    with pytest.raises(LedgerError, match=message) as info:
        Ledger(bad)
    assert "\n" not in str(info.value) and "secret" not in str(info.value)
    assert time.time() - t0 < 15


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not SQLite\n" * 100)
    with pytest.raises(LedgerError, match="not a database"):
        Ledger(f"sqlite:///{path}")
    assert path.read_text().startswith("hello")
