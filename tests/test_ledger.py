"""Ledger state machine, identity, concurrency guards and schema versioning (SQLite here;
tests/test_ledger_conformance.py runs the same contract against PostgreSQL too)."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mixsearch.candidate import Candidate, TrialResult
from mixsearch.identity import study_definition
from mixsearch.ledger import DONE, FAILED, PENDING, RUNNING, SCHEMA_VERSION, Ledger, LedgerError, StudyChanged
from mixsearch.propose.base import History
from mixsearch.study import Objective

from .ledgers import bound

CTX = {"s": {"snapshot": "x", "N": 1, "D": 2}, "m": {"snapshot": "x", "N": 3, "D": 2}}


@pytest.fixture()
def ledger(tmp_path):
    led = bound(Ledger(f"sqlite:///{tmp_path / 'runs' / 'l.sqlite'}"))
    yield led
    led.dispose()


def result(obj=1.0):
    return TrialResult({"a": obj, "b": obj}, obj, cost=10.0, seconds=0.5, curve=[(1, 2.0), (2, 1.5)], metrics={"n_params": 1, "tokens": 2})


def test_add_is_idempotent(ledger):
    c = [Candidate((0.5, 0.5), "s"), Candidate((0.2, 0.8), "m")]
    ids = ledger.add(c, CTX, ask=0)
    again = ledger.add(c, CTX, ask=1)
    assert ids == again and len(set(ids)) == 2
    assert ledger.counts()[PENDING] == 2
    assert ledger.next_ask() == 1


def test_state_machine_happy_path(ledger):
    (tid,) = ledger.add([Candidate((0.5, 0.5), "s")], CTX, 0)
    (t,) = ledger.claim("w1")
    assert t.trial_id == tid and t.state == RUNNING and t.attempts == 1
    assert ledger.claim("w2") == []  # nothing left to claim
    assert ledger.complete(tid, result(2.0), "w1")
    t = ledger.get(tid)
    assert t.state == DONE and t.objective == 2.0 and t.domain_losses == {"a": 2.0, "b": 2.0}
    assert t.curve == [[1.0, 2.0], [2.0, 1.5]]
    # A finished trial cannot be finished again, by anyone.
    assert not ledger.complete(tid, result(3.0), "w1")
    assert ledger.get(tid).objective == 2.0


def test_only_holder_completes(ledger):
    (tid,) = ledger.add([Candidate((0.5, 0.5), "s")], CTX, 0)
    ledger.claim("w1")
    assert not ledger.complete(tid, result(), "intruder")
    assert ledger.get(tid).state == RUNNING


def test_retryable_failure_goes_back_to_pending_then_fails(ledger):
    (tid,) = ledger.add([Candidate((0.5, 0.5), "s")], CTX, 0)
    for attempt in (1, 2):
        ledger.claim("w")
        assert ledger.fail(tid, "worker crashed", "w", retry=True, max_attempts=3) == PENDING
    ledger.claim("w")
    assert ledger.fail(tid, "worker crashed", "w", retry=True, max_attempts=3) == FAILED
    t = ledger.get(tid)
    assert t.state == FAILED and t.attempts == 3 and "crashed" in t.error


def test_final_failure(ledger):
    (tid,) = ledger.add([Candidate((0.5, 0.5), "s")], CTX, 0)
    ledger.claim("w")
    assert ledger.fail(tid, "diverged: loss=nan", "w", retry=False, max_attempts=3, cost=5.0) == FAILED
    assert ledger.get(tid).cost == 5.0


def test_release_does_not_charge_an_attempt(ledger):
    (tid,) = ledger.add([Candidate((0.5, 0.5), "s")], CTX, 0)
    ledger.claim("w")
    assert ledger.release(tid, "w")
    t = ledger.get(tid)
    assert t.state == PENDING and t.attempts == 0


def test_recover_stale_heartbeat_and_dead_local_worker(ledger):
    ids = ledger.add([Candidate((0.5, 0.5), "s"), Candidate((0.1, 0.9), "s")], CTX, 0)
    ledger.claim("elsewhere:1", trial_ids=[ids[0]])
    # A process on this host that has exited: its trial is orphaned at once.
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"{os.uname().nodename}:{proc.stdout.strip()}"
    ledger.claim(dead, trial_ids=[ids[1]])
    assert ledger.recover(heartbeat_timeout=3600, max_attempts=3) == [ids[1]]
    assert ledger.get(ids[1]).state == PENDING
    assert ledger.get(ids[0]).state == RUNNING
    # With a zero timeout the remote one is stale too.
    assert ledger.recover(heartbeat_timeout=0, max_attempts=3) == [ids[0]]


def test_recover_out_of_attempts_fails(ledger):
    (tid,) = ledger.add([Candidate((0.5, 0.5), "s")], CTX, 0)
    ledger.claim("elsewhere:1")
    ledger.recover(heartbeat_timeout=0, max_attempts=1)
    t = ledger.get(tid)
    assert t.state == FAILED and "lost" in t.error


def test_dataframe_and_history(ledger):
    ids = ledger.add([Candidate((0.5, 0.5), "s"), Candidate((0.2, 0.8), "m"), Candidate((0.9, 0.1), "s")], CTX, 0)
    ledger.claim("w", trial_ids=ids[:2], limit=2)
    ledger.complete(ids[0], result(1.5), "w")
    ledger.fail(ids[1], "diverged", "w", retry=False, max_attempts=1)
    df = ledger.to_dataframe()
    assert list(df["state"]) == [DONE, FAILED, PENDING]
    assert {"w_a", "w_b", "loss_a", "loss_b", "objective", "cost", "n_params", "tokens"} <= set(df.columns)
    h = History.from_trials(ledger.trials(), 2, Objective())
    assert h.weights.shape == (1, 2) and h.rungs == ("s",) and h.objective.tolist() == [1.5]
    assert h.pending_weights.shape == (1, 2) and h.pending_rungs == ("s",)
    hmax = History.from_trials(ledger.trials(), 2, Objective(direction="maximize"))
    assert hmax.objective.tolist() == [-1.5]


def test_study_binding(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'b.sqlite'}")
    ledger.bind_study("one", {"domains": [{"name": "a"}, {"name": "b"}]}, None, {"domains": ["a", "b"]})
    assert ledger.domains == ("a", "b")
    with pytest.raises(LedgerError, match="belongs to study 'one'"):
        ledger.bind_study("two", {}, None)
    ledger.dispose()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "l.sqlite"
    Ledger(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE mixsearch_meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(LedgerError, match="newer than this mixsearch"):
        Ledger(f"sqlite:///{path}")


def test_unwritable_folder_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("root ignores folder permissions")
        with pytest.raises(LedgerError, match="not writable|cannot"):
            Ledger(f"sqlite:///{ro / 'sub' / 'l.sqlite'}")
    finally:
        ro.chmod(0o700)


def test_open_missing_without_create(tmp_path):
    with pytest.raises(LedgerError, match="no such file"):
        Ledger(f"sqlite:///{tmp_path / 'missing.sqlite'}", create=False)


def test_not_a_ledger(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE x (a int)")
    with pytest.raises(LedgerError, match="not a mixsearch ledger"):
        Ledger(f"sqlite:///{path}", create=False)


FIXTURE_V1 = Path(__file__).resolve().parent / "fixtures" / "ledgers" / "v1.sqlite"
V1_IDS = ["59a3e35bf71482009dc8", "42cc894213adf9c9a5c0", "d99db27aba2b2107b344"]


def test_a_schema_1_ledger_opens_and_reads_by_its_recorded_domains(tmp_path):
    path = tmp_path / "v1.sqlite"
    shutil.copy(FIXTURE_V1, path)
    led = Ledger(f"sqlite:///{path}", create=False)
    try:
        trials = led.trials()
        assert [t.trial_id for t in trials] == V1_IDS
        assert [t.state for t in trials] == [DONE, FAILED, PENDING]
        assert trials[0].candidate.weights == (0.5, 0.3, 0.2) and trials[0].objective == 2.0
        assert list(led.to_dataframe()[["w_a", "w_b", "w_c"]].iloc[0]) == [0.5, 0.3, 0.2]
    finally:
        led.dispose()


def test_a_schema_1_ledger_is_migrated_when_its_study_agrees(tmp_path):
    path = tmp_path / "v1.sqlite"
    shutil.copy(FIXTURE_V1, path)
    led = Ledger(f"sqlite:///{path}")
    legacy = json.loads(led.get_meta("study"))
    definition = {**study_definition(legacy, "bowl-v1")}
    led.bind_study("legacy", legacy, None, definition)
    assert led.get_meta("schema_version") == str(SCHEMA_VERSION) and led.definition() == definition
    assert [t.trial_id for t in led.trials()] == V1_IDS  # ids never change
    led.dispose()
    with sqlite3.connect(path) as conn:
        stored = [json.loads(w) for (w,) in conn.execute("SELECT weights FROM trials ORDER BY number")]
    assert stored[0] == {"a": 0.5, "b": 0.3, "c": 0.2}


def test_a_schema_1_ledger_refuses_a_changed_study(tmp_path):
    path = tmp_path / "v1.sqlite"
    shutil.copy(FIXTURE_V1, path)
    led = Ledger(f"sqlite:///{path}")
    legacy = json.loads(led.get_meta("study"))
    reordered = {**legacy, "domains": [legacy["domains"][1], legacy["domains"][0], legacy["domains"][2]]}
    with pytest.raises(StudyChanged, match=r"domains reordered \(a, b, c -> b, a, c\)"):
        led.bind_study("legacy", reordered, None, study_definition(reordered, "bowl-v1"))
    led.dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM mixsearch_meta WHERE key='schema_version'").fetchone()[0] == "1"


# -- schema 3: a trial's two-phase schedule ------------------------------------------------


def test_a_two_phase_trial_round_trips_through_the_ledger(tmp_path):
    from mixsearch.candidate import Candidate

    led = bound(Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}"), domains=("a", "b", "c"))
    phased = Candidate.phased((1.0, 0.0, 0.0), (0.0, 0.4, 0.6), 0.3, "s", 0)
    plain = Candidate((0.2, 0.3, 0.5), "s", 0)
    ids = led.add([phased, plain], {"s": {"snapshot": "x"}}, ask=0)
    led.dispose()
    again = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}", create=False)  # a new process reading it
    got = {t.trial_id: t.candidate for t in again.trials()}
    assert got[ids[0]] == phased and got[ids[0]].schedule.switch == 0.3
    assert got[ids[1]] == plain and got[ids[1]].schedule is None
    df = again.to_dataframe().set_index("trial_id")
    assert df.loc[ids[0], "switch"] == 0.3 and df.loc[ids[0], "w2_c"] == 0.6 and df.loc[ids[0], "w_a"] == 0.3
    assert math.isnan(df.loc[ids[1], "switch"])
    again.dispose()


def test_a_schema_2_ledger_gains_the_schedule_column_and_keeps_its_trials(tmp_path):
    path = tmp_path / "v2.sqlite"
    led = bound(Ledger(f"sqlite:///{path}"), domains=("a", "b"))
    ids = led.add([Candidate((0.5, 0.5), "s", 0)], {"s": {"snapshot": "x"}}, ask=0)
    led.dispose()
    with sqlite3.connect(path) as conn:  # what mixsearch with schema 2 wrote: no schedule column
        conn.execute("ALTER TABLE trials DROP COLUMN schedule")
        conn.execute("UPDATE mixsearch_meta SET value='2' WHERE key='schema_version'")
    read = Ledger(f"sqlite:///{path}", create=False)
    assert [t.trial_id for t in read.trials()] == ids and read.trials()[0].candidate.schedule is None
    read.dispose()
    with sqlite3.connect(path) as conn:
        assert "schedule" in [r[1] for r in conn.execute("PRAGMA table_info(trials)")]
        assert conn.execute("SELECT value FROM mixsearch_meta WHERE key='schema_version'").fetchone()[0] == "2"  # raised on the next bind
    bound(Ledger(f"sqlite:///{path}"), domains=("a", "b")).dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM mixsearch_meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION) == "3"


def test_the_schema_1_fixture_migrates_to_schema_3(tmp_path):
    path = tmp_path / "v1.sqlite"
    shutil.copy(FIXTURE_V1, path)
    led = Ledger(f"sqlite:///{path}")
    legacy = json.loads(led.get_meta("study"))
    led.bind_study("legacy", legacy, None, study_definition(legacy, "bowl-v1"))
    assert [t.trial_id for t in led.trials()] == V1_IDS and all(t.candidate.schedule is None for t in led.trials())
    assert led.get_meta("schema_version") == "3"
    led.dispose()


def test_a_continual_pretraining_trial_shows_its_base_models_losses(tmp_path):
    led = bound(Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}"))
    (tid,) = led.add([Candidate((0.7, 0.3), "s", 0)], {"s": {}}, ask=0)
    led.claim("w", limit=1)
    led.complete(tid, TrialResult({"a": 2.0, "b": 3.0}, 2.5, 1.0, 0.1, metrics={"base_losses": {"a": 1.9, "b": 3.4}}), "w")
    row = led.to_dataframe().iloc[0]
    assert row["base_loss_a"] == 1.9 and row["base_loss_b"] == 3.4 and row["loss_a"] == 2.0
    led.dispose()
