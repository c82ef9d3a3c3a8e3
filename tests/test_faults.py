"""Faults: killed studies and workers, diverged runs, full disks, unwritable ledgers.

Processes are really killed (SIGKILL) and disks really fill up (a small tmpfs when
this machine lets us mount one, else a file-size limit on the process).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mixsearch.candidate import Candidate, TrialResult
from mixsearch.jsonfile import write_json
from mixsearch.ledger import DONE, FAILED, PENDING, RUNNING, Ledger, LedgerError

from .conftest import error_lines
from .ledgers import bound

OPT = np.array([0.5, 0.3, 0.2])


# -- a small real table study ---------------------------------------------------------


def write_table_study(folder: Path, name: str = "faulty", trials: int = 40, mixtures: int = 60, max_attempts: int = 3, batch: int = 4) -> Path:
    """A table study (3 domains, fidelities s and m) and its run table, in ``folder``."""
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(3), size=mixtures)
    rows = [
        {"w_a": x[0], "w_b": x[1], "w_c": x[2], "fidelity": label, "cost": cost, "objective": float(((x - OPT) ** 2).sum() + 1 / cost)}
        for label, cost in (("s", 1.0), ("m", 4.0))
        for x in w
    ]
    pd.DataFrame(rows).to_csv(folder / "table.csv", index=False)
    study = folder / f"{name}.py"
    study.write_text(
        textwrap.dedent(
            f"""
            from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, ProposerSpec, Rung, Study
            study = Study(
                name={name!r},
                domains=(Domain("a"), Domain("b"), Domain("c")),
                ladder=FidelityLadder((Rung("s", cost=1.0), Rung("m", cost=4.0)), target=Rung("m", cost=4.0)),
                budget=Budget(max_trials={trials}),
                proposer=ProposerSpec("random", batch_size={batch}),
                evaluator=EvaluatorSpec("table", {{"path": {str(folder / 'table.csv')!r}}}),
                seed=0,
                max_attempts={max_attempts},
            )
            """
        )
    )
    return study


def cli(*args: str, cwd: Path, preexec=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real ``mixsearch`` command in a fresh process."""
    return subprocess.run([sys.executable, "-m", "mixsearch.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- killed at random points, resumed each time ----------------------------------------


@pytest.mark.slow
def test_study_killed_at_20_random_points_loses_nothing_and_runs_nothing_twice(tmp_path):
    rng = np.random.default_rng(20)
    study = write_table_study(tmp_path, name="killme", trials=300, mixtures=320, max_attempts=20)
    url = f"sqlite:///{tmp_path / 'runs' / 'killme' / 'ledger.sqlite'}"
    args = ["study", "start", str(study), "--quiet", "--no-export", "--workers", "2"]
    finished: dict[str, tuple[float, float]] = {}  # trial id -> (finished, objective) when first seen done
    kills = 0
    t_start = time.time()
    while kills < 20:
        before = len(finished)
        proc = subprocess.Popen([sys.executable, "-m", "mixsearch.cli", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Kill at a random point once the run is under way: after a random number of newly
        # finished trials (1-8), then a random delay. Counting trials rather than seconds
        # keeps 20 kills inside the 300-trial budget however fast the machine is.
        wanted = before + int(rng.integers(1, 9))
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline:
            if Path(url[len("sqlite:///") :]).exists():
                try:
                    led = Ledger(url, create=False)
                except LedgerError:  # the study is creating it right now
                    continue
                n_done = led.counts()[DONE]
                led.dispose()
                if n_done >= wanted:
                    break
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0.0, 0.03)))
        assert proc.poll() is None, f"the study finished before kill {kills + 1}: {proc.communicate()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        led = Ledger(url, create=False)
        for t in led.trials([DONE]):
            finished.setdefault(t.trial_id, (t.finished, t.objective))
        led.dispose()
    resumed = cli("study", "resume", "killme", "--quiet", "--no-export", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "trial budget spent" in resumed.stdout

    led = Ledger(url, create=False)
    trials = led.trials()
    assert len(trials) == 300 and all(t.state == DONE for t in trials)  # 0 lost
    assert len({t.trial_id for t in trials}) == 300 and len({t.candidate for t in trials}) == 300
    by_id = {t.trial_id: t for t in trials}
    # 0 run twice: a trial done before a kill kept its result and its finish time.
    assert all((by_id[tid].finished, by_id[tid].objective) == seen for tid, seen in finished.items())
    assert len(finished) >= 20
    led.dispose()

    # The same study run without kills proposes exactly the same trials.
    reference = tmp_path / "reference"
    reference.mkdir()
    ref = cli("study", "start", str(study), "--quiet", "--no-export", "--workers", "2", "--root", str(reference), cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_led = Ledger(f"sqlite:///{reference / 'killme' / 'ledger.sqlite'}", create=False)
    assert {t.trial_id for t in ref_led.trials()} == set(by_id)
    ref_led.dispose()
    assert time.time() - t_start < 400


# -- a worker killed mid-trial ---------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import os, signal, sys, time
    import numpy as np
    from mixsearch.candidate import TrialResult
    from mixsearch.execute.local import LocalExecutor
    from mixsearch.ledger import Ledger
    from mixsearch.orchestrator import Orchestrator
    from mixsearch.propose.base import make_proposer
    from mixsearch.study import Budget, Domain, FidelityLadder, ProposerSpec, Rung, Study

    url, mode, worker_name = sys.argv[1], sys.argv[2], sys.argv[3]

    class Bowl:
        '''Analytic loss. mode "hang": the first trial hangs (to be killed mid-trial);
        mode "poison": the centre mixture kills its own process every time;
        mode "diverge": mixtures with w_a > 0.5 return an infinite loss.'''
        def prepare(self): pass
        def snapshot_id(self): return "bowl"
        def pool(self): return None
        def evaluate(self, candidate, rung):
            w = np.asarray(candidate.weights)
            if mode == "hang":
                print("running", flush=True)
                time.sleep(600)
            if mode == "poison" and np.allclose(w, 1 / 3, atol=1e-5):
                os.kill(os.getpid(), signal.SIGKILL)
            loss = float(np.sum((w - [0.5, 0.3, 0.2]) ** 2) + 1.0)
            if mode == "diverge" and w[0] > 0.5:
                loss = float("inf")
            return TrialResult({"a": loss, "b": loss, "c": loss}, loss, rung.run_cost, 0.0)

    study = Study(
        name="faults",
        domains=(Domain("a"), Domain("b"), Domain("c")),
        ladder=FidelityLadder((Rung("s", 1000, 1000),), target=Rung("t", 10**6, 10**6)),
        budget=Budget(max_trials=int(os.environ.get("TRIALS", "6"))),
        proposer=ProposerSpec(os.environ.get("PROPOSER", "centre-random"), batch_size=2),
        seed=5,
        max_attempts=2,
    )
    orch = Orchestrator(study, Ledger(url), Bowl(), LocalExecutor(), make_proposer(study.proposer), heartbeat_interval=0.1, heartbeat_timeout=float(os.environ.get("HB_TIMEOUT", "120")))
    if worker_name != "-":
        orch.worker = worker_name  # pose as a process on another host: only its heartbeat tells it is dead
    print(orch.run().stopped_because, flush=True)
    """
)


def runner(url: str, mode: str, worker: str = "-", **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER, url, mode, worker], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def test_worker_killed_mid_trial_is_retried_once_its_heartbeat_expires(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    proc = runner(url, "hang", worker="gpu-node-7:4242")
    assert proc.stdout.readline().strip() == "running", proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    led = Ledger(url, create=False)
    (t,) = led.trials([RUNNING])
    assert t.worker == "gpu-node-7:4242" and t.attempts == 1
    # Its heartbeat is fresh: nobody may take it yet...
    assert led.recover(heartbeat_timeout=1.5, max_attempts=2) == []
    time.sleep(1.6)
    # ...once it is stale, the resumed study takes it back and runs it.
    done = runner(url, "ok", HB_TIMEOUT="1.5")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0 and out.strip() == "trial budget spent", err[-2000:]
    t = led.get(t.trial_id)
    assert t.state == DONE and t.attempts == 2
    assert all(x.state == DONE for x in led.trials())
    led.dispose()


def test_a_trial_that_kills_its_worker_every_time_fails_after_max_attempts(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    codes = []
    for _ in range(4):
        proc = runner(url, "poison")
        out, err = proc.communicate(timeout=120)
        codes.append(proc.returncode)
        if proc.returncode == 0:
            break
    assert codes == [-signal.SIGKILL, -signal.SIGKILL, 0], err[-2000:]  # max_attempts=2
    led = Ledger(url, create=False)
    centre = [t for t in led.trials() if np.allclose(t.candidate.weights, 1 / 3, atol=1e-5)]
    assert len(centre) == 1 and centre[0].state == FAILED and "lost 2 time(s)" in centre[0].error
    others = [t for t in led.trials() if t is not centre[0] and t.trial_id != centre[0].trial_id]
    assert len(others) == 5 and all(t.state == DONE for t in others)  # the study went on
    led.dispose()


def test_diverged_runs_are_failed_with_a_reason_and_kept_out_of_the_model(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    proc = runner(url, "diverge", TRIALS="16", PROPOSER="random")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.strip() == "trial budget spent", err[-2000:]
    led = Ledger(url, create=False)
    trials = led.trials()
    failed = [t for t in trials if t.state == FAILED]
    assert len(trials) == 16 and failed, "some random mixtures have w_a > 0.5"
    assert all(t.candidate.weights[0] > 0.5 and "non-finite" in t.error and t.attempts == 1 for t in failed)
    assert all(t.state == DONE and np.isfinite(t.objective) for t in trials if t.candidate.weights[0] <= 0.5)
    from mixsearch.propose.base import History
    from mixsearch.study import Objective

    h = History.from_trials(trials, 3, Objective())
    assert len(h.objective) == 16 - len(failed) and np.isfinite(h.objective).all()
    assert len(h.failed_weights) == len(failed)
    led.dispose()


# -- full disks and unwritable paths ----------------------------------------------------


@contextlib.contextmanager
def small_disk(tmp_path: Path, size_kb: int = 1024):
    """A folder on a filesystem of ``size_kb`` KiB (tmpfs), or skip where mounting is not allowed."""
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()[:120]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the filesystem holding ``folder``; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
    return filler


def test_full_disk_is_a_clear_error_and_the_ledger_stays_whole(tmp_path):
    with small_disk(tmp_path, 512) as disk:
        url = f"sqlite:///{disk / 'ledger.sqlite'}"
        led = bound(Ledger(url))
        led.add([Candidate((0.5, 0.5), "s"), Candidate((0.2, 0.8), "s")], {"s": {}}, ask=0)
        (t,) = led.claim("w")
        filler = fill(disk)
        big = TrialResult({"a": 1.0}, 1.0, 1.0, 1.0, [(float(i), 1.0) for i in range(20000)])
        with pytest.raises(LedgerError, match="disk is full|disk full") as info:
            led.complete(t.trial_id, big, "w")
        assert "\n" not in str(info.value)
        with pytest.raises(LedgerError, match="disk is full|disk full"):
            led.add([Candidate((0.1 + i / 1000, 0.9 - i / 1000), "s") for i in range(500)], {"s": {"pad": "x" * 200}}, ask=1)
        filler.unlink()
        # Nothing half-written: the failed transactions left no trace.
        assert led.counts() == {PENDING: 1, RUNNING: 1, DONE: 0, FAILED: 0}
        assert led.get(t.trial_id).state == RUNNING and led.get(t.trial_id).curve == []
        assert led.complete(t.trial_id, big, "w")  # with room again, the same write succeeds
        led.dispose()
        with sqlite3.connect(disk / "ledger.sqlite") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_full_disk_through_the_cli_then_resume(tmp_path):
    with small_disk(tmp_path, 2048) as disk:
        study = write_table_study(tmp_path, trials=12)
        first = cli("study", "start", str(study), "--quiet", "--no-export", "--root", str(disk), cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        url = f"sqlite:///{disk / 'faulty' / 'ledger.sqlite'}"
        led = Ledger(url, create=False)
        before = {t.trial_id: t.finished for t in led.trials()}
        led.dispose()
        bigger = write_table_study(tmp_path, trials=40)  # same study, larger budget
        filler = fill(disk)
        line = one_error_line(cli("study", "start", str(bigger), "--quiet", "--no-export", "--root", str(disk), cwd=tmp_path))
        assert "disk full" in line and "ledger.sqlite" in line
        filler.unlink()
        resumed = cli("study", "resume", "faulty", "--quiet", "--no-export", "--root", str(disk), cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        led = Ledger(url, create=False)
        after = {t.trial_id: t for t in led.trials()}
        assert len(after) == 40 and all(t.state == DONE for t in after.values())
        assert all(after[tid].finished == fin for tid, fin in before.items())
        led.dispose()


def test_export_on_a_full_disk_leaves_the_old_file_whole(tmp_path):
    with small_disk(tmp_path, 256) as disk:
        out = disk / "fits" / "x.json"
        write_json({"old": True}, out)
        filler = fill(disk)
        with pytest.raises(OSError):
            write_json({"new": "x" * 500_000}, out)
        assert json.loads(out.read_text()) == {"old": True}
        assert sorted(p.name for p in out.parent.iterdir()) == ["x.json"]  # no temp file left
        filler.unlink()


def _limit_file_size() -> None:
    # A file-size limit is a full disk for this process alone (writes fail with EFBIG).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # 40 KiB: room for SQLite's 32 KiB shared-memory file, not for the export.
    resource.setrlimit(resource.RLIMIT_FSIZE, (40 * 1024, 40 * 1024))


def test_export_through_the_cli_on_a_full_disk_is_one_line(tmp_path):
    study = write_table_study(tmp_path, trials=100, mixtures=150)
    assert cli("study", "start", str(study), "--quiet", "--no-export", cwd=tmp_path).returncode == 0
    out = tmp_path / "out" / "faulty.json"
    line = one_error_line(cli("study", "export", "faulty", "--no-laws", "--out", str(out), cwd=tmp_path, preexec=_limit_file_size))
    assert "faulty.json" in line or "File too large" in line
    assert not (tmp_path / "out" / "faulty.json").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # the temp file was removed


@pytest.mark.parametrize(
    "storage",
    ["sqlite:////proc/mixsearch/ledger.sqlite", "sqlite:///{tmp}/afile/ledger.sqlite", "sqlite:///{tmp}"],
    ids=["read-only-filesystem", "path-under-a-file", "a-folder"],
)
def test_unwritable_ledger_path_is_one_line_and_writes_nothing(tmp_path, storage):
    study = write_table_study(tmp_path, trials=4)
    (tmp_path / "afile").write_text("in the way\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_error_line(cli("study", "start", str(study), "--quiet", "--storage", storage.format(tmp=tmp_path), cwd=tmp_path))
    assert "ledger" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/, no fits/


# -- Ctrl-C -------------------------------------------------------------------------------


def _proxy_study(folder: Path) -> Path:
    """A proxy study on tiny text whose trials take a few seconds (many small steps)."""
    from .corpora import write_domains

    domains = write_domains(folder / "text")
    study = folder / "ctrlc.py"
    study.write_text(
        textwrap.dedent(
            f"""
            from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, ProposerSpec, Rung, Study
            study = Study(
                name="ctrlc",
                domains=({', '.join(f'Domain({d.name!r}, {d.source!r})' for d in domains)},),
                ladder=FidelityLadder((Rung("xs", 20_000, 80_000),), target=Rung("t", 10**8, 10**10)),
                budget=Budget(max_trials=3),
                proposer=ProposerSpec("random"),
                evaluator=EvaluatorSpec("proxy", {{"device": "cpu", "seq_len": 32, "batch_size": 8, "eval_tokens": 512,
                                                  "vocab_size": 512, "max_bytes_per_domain": 60_000, "cache_dir": {str(folder / 'cache')!r}}}),
            )
            """
        )
    )
    return study


def _start_interruptible(study: Path, cwd: Path) -> subprocess.Popen:
    """``study start`` in a child whose Ctrl-C is not ignored: a test run in the background
    (``cmd &``, CI runners) inherits SIGINT ignored, and Python, rightly, keeps it so."""
    return subprocess.Popen(
        [sys.executable, "-m", "mixsearch.cli", "study", "start", str(study), "--quiet", "--no-export"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_running(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    path = Path(url[len("sqlite:///") :])
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists():
            try:
                led = Ledger(url, create=False)
                running = led.counts()[RUNNING]
                led.dispose()
                if running:
                    return
            except LedgerError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no trial started: {proc.communicate(timeout=5)}")


@pytest.mark.slow
def test_ctrl_c_stops_the_running_trial_and_gives_it_back(tmp_path):
    study = _proxy_study(tmp_path)
    url = f"sqlite:///{tmp_path / 'runs' / 'ctrlc' / 'ledger.sqlite'}"
    proc = _start_interruptible(study, tmp_path)
    _wait_running(url, proc)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert time.time() - t0 < 20  # stopped at the next step, not at the end of the trial
    assert "interrupted: 1 running trial back to pending" in err and "mixsearch study resume ctrlc" in err
    assert "Traceback" not in err
    led = Ledger(url, create=False)
    trials = led.trials()
    led.dispose()
    assert not [t for t in trials if t.state in (RUNNING, FAILED)]
    back = [t for t in trials if t.state == PENDING]
    assert len(back) == 1 and back[0].attempts == 0  # the interrupted attempt is not counted
    resumed = cli("study", "resume", "ctrlc", "--quiet", "--no-export", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    led = Ledger(url, create=False)
    assert led.counts()[DONE] == 3 and led.get(back[0].trial_id).state == DONE
    led.dispose()


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once(tmp_path):
    study = _proxy_study(tmp_path)
    url = f"sqlite:///{tmp_path / 'runs' / 'ctrlc' / 'ledger.sqlite'}"
    proc = _start_interruptible(study, tmp_path)
    _wait_running(url, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - t0 < 15, err[-2000:]
    led = Ledger(url, create=False)
    assert led.counts()[RUNNING] == 0 and led.counts()[FAILED] == 0
    led.dispose()
