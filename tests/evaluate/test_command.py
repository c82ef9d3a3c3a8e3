"""The ``command`` world: the user's own training command, run for real.

Every test runs real subprocesses: small Python trainers written here into ``tmp_path``
(run with ``sys.executable``) that read candidate.json, compute per-domain losses from the
mixture with a known formula, and write metrics.json. Studies are killed with SIGKILL and
resumed through the real ``mixsearch`` command.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mixsearch import api
from mixsearch.candidate import Candidate, EvaluationError
from mixsearch.evaluate import Evaluator, make_evaluator
from mixsearch.evaluate.command import CommandEvaluator, CommandInterrupted
from mixsearch.ledger import DONE, FAILED, Ledger, LedgerError
from mixsearch.study import Budget, Domain, EvaluatorSpec, FidelityLadder, Objective, ProposerSpec, Rung, Study, StudyError

REPO = Path(__file__).resolve().parents[2]
OPT = {"a": 0.5, "b": 0.3, "c": 0.2}
RUNGS = (Rung("s", n_params=1000, tokens=20_000), Rung("m", n_params=4000, tokens=80_000))
TARGET = Rung("t", n_params=10**6, tokens=10**8)

# A trainer with a known answer. Its n-th run (counted in calls.txt beside it) does what
# --plan says at position n: ok, exit3, hang, sigkill (kills itself), exit75, nometrics,
# badjson, nan, noaccuracy; runs past the plan are ok.
TRAIN = textwrap.dedent(
    """
    import argparse, json, os, signal, sys, time
    from pathlib import Path

    OPT = {"a": 0.5, "b": 0.3, "c": 0.2}
    p = argparse.ArgumentParser()
    p.add_argument("candidate")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--plan", default="")
    args = p.parse_args()
    cand = json.loads(Path(args.candidate).read_text())
    calls = Path(__file__).with_name("calls.txt")
    n = sum(line.split()[2] != "end" for line in calls.read_text().splitlines()) if calls.exists() else 0
    with open(calls, "a") as fh:
        fh.write(f"{Path(cand['out']).name} {os.getpid()} {os.getppid()} {time.time()}\\n")
    plan = [x for x in args.plan.split(",") if x]
    mode = plan[n] if n < len(plan) else "ok"
    print(f"run {n}: {mode} on {cand['rung']['name']} seed {cand['seed']}", flush=True)
    if mode == "exit3":
        print("boom: CUDA error (pretend)", flush=True)
        sys.exit(3)
    if mode == "exit75":
        print("the node is draining; try again", flush=True)
        sys.exit(75)
    if mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang":
        time.sleep(600)
    time.sleep(args.sleep)
    w, N = cand["mixture"], cand["rung"]["n_params"]
    losses = {d: 2.0 + 3.0 * (w[d] - OPT[d]) ** 2 + 1000.0 / N for d in w}
    doc = {"domain_losses": losses, "metrics": {"accuracy": 0.9 - sum((w[d] - OPT[d]) ** 2 for d in w)}}
    if mode == "nan":
        doc["domain_losses"]["a"] = float("nan")
    if mode == "noaccuracy":
        del doc["metrics"]
    if mode == "nometrics":
        sys.exit(0)
    text = "{not json" if mode == "badjson" else json.dumps(doc)
    Path(cand["metrics"]).write_text(text)
    with open(calls, "a") as fh:
        fh.write(f"{Path(cand['out']).name} {os.getpid()} end {time.time()}\\n")
    """
)


def expected_losses(weights, n_params: int) -> dict[str, float]:
    return {d: 2.0 + 3.0 * (w - OPT[d]) ** 2 + 1000.0 / n_params for d, w in zip("abc", weights)}


def expected_accuracy(weights) -> float:
    return 0.9 - sum((w - OPT[d]) ** 2 for d, w in zip("abc", weights))


def write_trainer(folder: Path) -> Path:
    script = folder / "train.py"
    script.write_text(TRAIN)
    return script


def command(script: Path, *extra: str) -> list[str]:
    return [sys.executable, str(script), "{candidate}", *extra]


def runs_of(script: Path) -> list[list[str]]:
    """The trainer's calls.txt, one split line per start (``dir pid ppid time``) or end (``dir pid end time``)."""
    calls = script.with_name("calls.txt")
    return [line.split() for line in calls.read_text().splitlines()] if calls.exists() else []


def starts(script: Path) -> list[list[str]]:
    return [r for r in runs_of(script) if r[2] != "end"]


def make_study(name: str = "cmd", trials: int = 6, options: dict | None = None, objective: Objective | None = None, batch: int = 2, max_attempts: int = 3, proposer: str = "random") -> Study:
    return Study(
        name=name,
        domains=(Domain("a"), Domain("b"), Domain("c")),
        ladder=FidelityLadder(RUNGS, TARGET),
        budget=Budget(max_trials=trials),
        objective=objective or Objective(),
        proposer=ProposerSpec(proposer, batch_size=batch),
        evaluator=EvaluatorSpec("command", options or {}),
        seed=0,
        max_attempts=max_attempts,
    )


def write_study(folder: Path, study: Study) -> Path:
    """A study file declaring ``study`` (the CLI and ``run_study`` take files)."""
    obj = study.objective
    path = folder / f"{study.name}.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, Objective, ProposerSpec, Rung, Study
            study = Study(
                name={study.name!r},
                domains=(Domain("a"), Domain("b"), Domain("c")),
                ladder=FidelityLadder({RUNGS!r}, {TARGET!r}),
                budget=Budget(max_trials={study.budget.max_trials}),
                objective=Objective(direction={obj.direction!r}, metric={obj.metric!r}),
                proposer=ProposerSpec({study.proposer.name!r}, batch_size={study.proposer.batch_size}),
                evaluator=EvaluatorSpec("command", {dict(study.evaluator.options)!r}),
                seed={study.seed},
                max_attempts={study.max_attempts},
            )
            """
        )
    )
    return path


def ledger_of(folder: Path, name: str) -> Ledger:
    return Ledger(f"sqlite:///{folder / 'runs' / name / 'ledger.sqlite'}", create=False)


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real ``mixsearch`` command in a fresh process."""
    return subprocess.run([sys.executable, "-m", "mixsearch.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it has stopped running.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def wait_dead(pid: int, seconds: float = 5.0) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


# -- end to end ------------------------------------------------------------------------


def test_a_study_on_the_users_command_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_trainer(tmp_path)
    study = make_study(options={"command": command(script), "inputs": [str(script)], "timeout": 60})
    summary = api.run_study(write_study(tmp_path, study))
    assert summary.stopped_because == "trial budget spent" and summary.counts[DONE] == 6

    led = ledger_of(tmp_path, "cmd")
    trials = led.trials()
    ev = make_evaluator(study)
    assert led.get_meta("snapshot") == ev.snapshot_id()
    for t in trials:
        rung = study.ladder.rung(t.candidate.rung)
        want = expected_losses(t.candidate.weights, rung.n_params)
        assert t.state == DONE and t.attempts == 1
        assert t.domain_losses == pytest.approx(want, abs=1e-9)
        assert t.objective == pytest.approx(np.mean(list(want.values())), abs=1e-9)
        assert t.cost == rung.run_cost and t.metrics["n_params"] == rung.n_params and t.metrics["tokens"] == rung.tokens
        assert t.metrics["accuracy"] == pytest.approx(expected_accuracy(t.candidate.weights))
        # The trial's folder: under runs/<study>/trials, found again from the candidate.
        folder = Path(t.metrics["trial_dir"])
        assert folder == ev.trial_dir(t.candidate, rung) and folder.parent == tmp_path / "runs" / "cmd" / "trials"
        assert folder.name.startswith(f"{rung.name}-")
        cand = json.loads((folder / "candidate.json").read_text())
        assert cand["schema"] == "mixsearch.candidate/v1" and cand["study"] == "cmd"
        assert list(cand["mixture"]) == ["a", "b", "c"] and tuple(cand["mixture"].values()) == t.candidate.weights
        assert cand["rung"] == {"name": rung.name, "n_params": rung.n_params, "tokens": rung.tokens, "cost": rung.run_cost}
        assert cand["seed"] == t.candidate.seed and cand["out"] == str(folder) and cand["metrics"] == str(folder / "metrics.json")
        log = (folder / "log.txt").read_text().splitlines()
        assert log[0].startswith(f"=== mixsearch cmd {folder.name} attempt 1 at ") and log[1].startswith("run ")
        assert log[-1].startswith("=== attempt 1: exited with status 0 after ")
        (attempt,) = json.loads((folder / "status.json").read_text())["attempts"]
        assert attempt["state"] == "exited" and attempt["returncode"] == 0 and attempt["reason"] is None
        assert attempt["argv"] == [sys.executable, str(script), str(folder / "candidate.json")]
    # One run per trial, each in its own folder.
    assert sorted(r[0] for r in starts(script)) == sorted(Path(t.metrics["trial_dir"]).name for t in trials)
    led.dispose()


def test_a_maximised_metric_is_the_objective_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_trainer(tmp_path)
    study = make_study("acc", trials=6, options={"command": command(script)}, objective=Objective(metric="accuracy", direction="maximize"))
    summary = api.run_study(write_study(tmp_path, study))
    led = ledger_of(tmp_path, "acc")
    trials = led.trials()
    assert summary.counts[DONE] == 6
    for t in trials:
        assert t.objective == pytest.approx(expected_accuracy(t.candidate.weights), abs=1e-9)  # as reported, not negated
    # The random proposer runs at the costliest rung and recommends its best: the highest accuracy.
    best = max(trials, key=lambda t: t.objective)
    rec = summary.recommendation
    assert rec is not None and rec.rung == best.candidate.rung
    assert rec.weights == pytest.approx(best.candidate.weights, abs=1e-9)
    led.dispose()


def test_the_example_study_and_trainer_run_end_to_end(tmp_path, monkeypatch):
    # studies/own_trainer.py as shipped, run from a copy of the repository's layout.
    shutil.copytree(REPO / "examples" / "own_trainer", tmp_path / "examples" / "own_trainer")
    (tmp_path / "studies").mkdir()
    shutil.copy(REPO / "studies" / "own_trainer.py", tmp_path / "studies")
    monkeypatch.chdir(tmp_path)
    summary = api.run_study("studies/own_trainer.py", workers=2)
    study = api.load_study("studies/own_trainer.py")
    assert summary.stopped_because == "trial budget spent" and summary.counts[DONE] == study.budget.max_trials
    led = ledger_of(tmp_path, "own-trainer")
    for t in led.trials():
        metrics = json.loads((Path(t.metrics["trial_dir"]) / "metrics.json").read_text())
        assert set(metrics["domain_losses"]) == {"web", "code", "math"}
        assert t.objective == pytest.approx(np.mean(list(metrics["domain_losses"].values())))
        assert 0.5 < t.objective < 4.5 and 0 < t.metrics["accuracy"] < 1 and len(t.curve) > 1
    # The bigger rung learns more: its best trial beats the small rung's best.
    best = {r: min(t.objective for t in led.trials() if t.candidate.rung == r) for r in ("s", "m")}
    assert best["m"] < best["s"]
    assert summary.recommendation is not None
    led.dispose()


# -- failures --------------------------------------------------------------------------


def test_a_failing_and_a_hanging_command_are_recorded_with_reason_and_log_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_trainer(tmp_path)
    study = make_study("fails", trials=5, batch=1, options={"command": command(script, "--plan", "exit3,hang"), "timeout": 1.5})
    t0 = time.time()
    summary = api.run_study(write_study(tmp_path, study))
    assert time.time() - t0 < 30
    assert summary.stopped_because == "trial budget spent"
    assert summary.counts[DONE] == 3 and summary.counts[FAILED] == 2
    led = ledger_of(tmp_path, "fails")
    first, second, *rest = led.trials()
    # Final failures: recorded once, with the reason and the log, never retried.
    assert first.state == FAILED and first.attempts == 1
    assert first.error.startswith("command exited with status 3 after ") and "; last line: boom: CUDA error (pretend); log: " in first.error
    log = Path(first.error.rsplit("; log: ", 1)[1])
    assert log.name == "log.txt" and "boom: CUDA error (pretend)" in log.read_text()
    assert log.read_text().splitlines()[-1].startswith("=== attempt 1: exited with status 3 after ")
    assert second.state == FAILED and second.attempts == 1
    assert second.error.startswith("command timed out after 1.5 s; log: ") and second.error.endswith("log.txt")
    status = json.loads(Path(second.error.rsplit("; log: ", 1)[1]).with_name("status.json").read_text())
    assert status["attempts"][0]["state"] == "timed out" and status["attempts"][0]["returncode"] == -signal.SIGTERM
    assert not pid_alive(int(starts(script)[1][1]))  # the hung trainer was killed, not left running
    assert all(t.state == DONE and t.attempts == 1 for t in rest)
    led.dispose()


def test_a_command_killed_from_outside_or_asking_for_a_retry_runs_again_in_the_same_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_trainer(tmp_path)
    study = make_study("retry", trials=2, batch=1, max_attempts=3, options={"command": command(script, "--plan", "sigkill,exit75")})
    summary = api.run_study(write_study(tmp_path, study))
    assert summary.counts[DONE] == 2
    led = ledger_of(tmp_path, "retry")
    first = led.trials()[0]
    assert first.state == DONE and first.attempts == 3
    folder = Path(first.metrics["trial_dir"])
    assert [r[0] for r in starts(script)][:3] == [folder.name] * 3
    states = [(a["attempt"], a["state"], a["returncode"]) for a in json.loads((folder / "status.json").read_text())["attempts"]]
    assert states == [(1, "killed", -signal.SIGKILL), (2, "exited", 75), (3, "exited", 0)]
    log = (folder / "log.txt").read_text()
    assert [line.split(" attempt ")[1][:1] for line in log.splitlines() if line.startswith("=== mixsearch ")] == ["1", "2", "3"]
    assert "=== attempt 1: killed by SIGKILL after " in log and "=== attempt 2: exited with status 75 after " in log
    led.dispose()


def evaluator(tmp_path: Path, options: dict, **kw) -> CommandEvaluator:
    return CommandEvaluator({"output_dir": str(tmp_path / "trials"), **options}, "unit", ("a", "b", "c"), rungs=RUNGS, **kw)


@pytest.mark.parametrize(
    ("mode", "objective", "message"),
    [
        ("nometrics", None, "command exited with status 0 after {s} but wrote no metrics file {metrics}; last line: run 0: nometrics on s seed 0; log: {log}"),
        ("badjson", None, "{metrics}: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2); log: {log}"),
        ("nan", None, "{metrics}: cannot compute the objective: need losses for each domain, got domain_losses ['a', 'b', 'c'] and metrics ['accuracy'] (non-finite: domain_losses.a=nan; did the run diverge?); log: {log}"),
        ("noaccuracy", Objective(metric="accuracy", direction="maximize"), "{metrics}: cannot compute the objective: need metric 'accuracy', got domain_losses ['a', 'b', 'c'] and metrics []; log: {log}"),
    ],
)
def test_a_missing_or_bad_metrics_file_is_a_final_failure_naming_the_file(tmp_path, mode, objective, message):
    script = write_trainer(tmp_path)
    ev = CommandEvaluator({"command": command(script, "--plan", mode), "output_dir": str(tmp_path / "trials")}, "unit", "abc", objective, RUNGS)
    cand = Candidate((0.2, 0.3, 0.5), "s")
    folder = ev.trial_dir(cand, RUNGS[0])
    with pytest.raises(EvaluationError) as info:
        ev.evaluate(cand, RUNGS[0])
    text = str(info.value)
    seconds = text.split(" after ", 1)[1].split(" ", 1)[0] + " s" if " after " in text else ""
    assert text == message.format(s=seconds, metrics=folder / "metrics.json", log=folder / "log.txt")
    assert "\n" not in text
    (attempt,) = json.loads((folder / "status.json").read_text())["attempts"]
    assert attempt["state"] == "exited" and attempt["returncode"] == 0 and attempt["reason"] == text


def test_a_timeout_kills_the_whole_process_group_even_a_leader_that_ignores_sigterm(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(
        textwrap.dedent(
            """
            import signal, subprocess, sys, time
            from pathlib import Path
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            child = subprocess.Popen(["sleep", "300"])  # a data-loader worker, say
            Path(sys.argv[1]).write_text(f"{child.pid}")
            print("training forever", flush=True)
            time.sleep(300)
            """
        )
    )
    pids = tmp_path / "pids"
    ev = evaluator(tmp_path, {"command": [sys.executable, str(script), str(pids)], "timeout": 1}, term_grace=0.5)
    cand = Candidate((0.2, 0.3, 0.5), "s")
    t0 = time.time()
    with pytest.raises(EvaluationError, match=r"^command timed out after 1 s; log: .*/log\.txt$"):
        ev.evaluate(cand, RUNGS[0])
    assert time.time() - t0 < 6
    status = json.loads((ev.trial_dir(cand, RUNGS[0]) / "status.json").read_text())["attempts"][0]
    assert status["state"] == "timed out" and status["returncode"] == -signal.SIGKILL  # it ignored SIGTERM
    assert wait_dead(int(pids.read_text())) and wait_dead(status["pid"])
    log = (ev.trial_dir(cand, RUNGS[0]) / "log.txt").read_text()
    assert "training forever" in log and "=== attempt 1: timed out after 1 s: its process group was killed" in log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_a_killed_study_takes_its_command_along_and_a_rerun_kills_what_was_left(tmp_path):
    # The trainer's first run starts a helper (a grandchild of mixsearch) and hangs; later runs succeed.
    script = tmp_path / "train.py"
    script.write_text(
        TRAIN.replace(
            'if mode == "hang":',
            textwrap.dedent(
                """
                if mode == "spawn":
                    helper = __import__("subprocess").Popen(["sleep", "300"])
                    Path(__file__).with_name("helper.pid").write_text(str(helper.pid))
                    time.sleep(600)
                if mode == "hang":"""
            ).strip(),
        )
    )
    options = {"command": command(script, "--plan", "spawn"), "output_dir": str(tmp_path / "trials")}
    driver = textwrap.dedent(
        f"""
        from mixsearch.candidate import Candidate
        from mixsearch.evaluate.command import CommandEvaluator
        from mixsearch.study import Rung
        ev = CommandEvaluator({options!r}, "unit", "abc")
        ev.evaluate(Candidate((0.2, 0.3, 0.5), "s"), Rung("s", 1000, 20000))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", driver])
    helper_file = tmp_path / "helper.pid"
    deadline = time.time() + 60
    while not helper_file.exists() and time.time() < deadline:
        time.sleep(0.02)
    helper = int(helper_file.read_text())
    trainer = int(starts(script)[0][1])
    proc.send_signal(signal.SIGKILL)  # kill -9 the study
    proc.wait()
    assert wait_dead(trainer), "the trainer should die with the process that started it"
    assert pid_alive(helper), "its own children are not its direct children: still running"

    ev = CommandEvaluator(options, "unit", "abc")
    cand, rung = Candidate((0.2, 0.3, 0.5), "s"), Rung("s", 1000, 20000)
    result = ev.evaluate(cand, rung)  # the same trial again: same folder
    assert result.objective == pytest.approx(np.mean(list(expected_losses(cand.weights, 1000).values())))
    assert wait_dead(helper), "the rerun kills what the lost attempt left running"
    folder = ev.trial_dir(cand, rung)
    first, second = json.loads((folder / "status.json").read_text())["attempts"]
    assert first["state"] == "lost" and "killed its process group" in first["reason"]
    assert second["state"] == "exited" and second["returncode"] == 0
    assert "=== attempt 1 did not finish: mixsearch stopped while it ran; killed its process group" in (folder / "log.txt").read_text()


# -- resume after kill -9 --------------------------------------------------------------


@pytest.mark.slow
def test_a_study_killed_mid_run_resumes_without_losing_a_trial_or_rerunning_a_finished_one(tmp_path):
    # Two CLI processes (start, then resume) at ~2 s of start-up each: about 10 s.
    script = write_trainer(tmp_path)
    study = make_study("killme", trials=8, batch=2, options={"command": command(script, "--sleep", "0.3"), "timeout": 60})
    path = write_study(tmp_path, study)
    proc = subprocess.Popen([sys.executable, "-m", "mixsearch.cli", "study", "start", str(path), "--quiet", "--no-export", "--workers", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trials_dir = tmp_path / "runs" / "killme" / "trials"
    deadline = time.time() + 90
    while proc.poll() is None and time.time() < deadline and len(list(trials_dir.glob("*/metrics.json"))) < 3:
        time.sleep(0.01)
    assert proc.poll() is None, f"the study finished before the kill: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        led = ledger_of(tmp_path, "killme")
    except LedgerError:
        pytest.fail("the study was killed before it wrote its ledger")
    done_before = {t.trial_id: (t.finished, Path(t.metrics["trial_dir"]).name) for t in led.trials([DONE])}
    led.dispose()
    assert done_before

    resumed = cli("study", "resume", "killme", "--quiet", "--no-export", cwd=tmp_path)
    assert resumed.returncode == 0 and "trial budget spent" in resumed.stdout, resumed.stderr[-2000:]

    led = ledger_of(tmp_path, "killme")
    trials = led.trials()
    assert len(trials) == 8 and all(t.state == DONE for t in trials)  # none lost
    by_id = {t.trial_id: t for t in trials}
    assert all(by_id[tid].finished == fin for tid, (fin, _) in done_before.items())  # kept as they were
    runs: dict[str, int] = {}
    for r in starts(script):
        runs[r[0]] = runs.get(r[0], 0) + 1
    folders = {Path(t.metrics["trial_dir"]).name for t in trials}
    assert set(runs) == folders
    assert all(runs[name] == 1 for _, name in done_before.values())  # a finished trial never runs again
    assert all(n <= 2 for n in runs.values())  # an interrupted one at most once more
    for t in trials:
        want = expected_losses(t.candidate.weights, study.ladder.rung(t.candidate.rung).n_params)
        assert t.domain_losses == pytest.approx(want, abs=1e-9)
    # Every trainer process has ended: the killed study's ones died with it.
    assert all(wait_dead(int(r[1]), 2.0) for r in starts(script))
    led.dispose()


# -- executors -------------------------------------------------------------------------


def test_two_local_workers_run_two_commands_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = write_trainer(tmp_path)
    study = make_study("pair", trials=4, batch=2, options={"command": command(script, "--sleep", "0.8")})
    summary = api.run_study(write_study(tmp_path, study), workers=2)
    assert summary.counts[DONE] == 4
    spans: dict[str, list[float]] = {}
    for folder, _pid, what, stamp in runs_of(script):
        spans.setdefault(folder, []).append(float(stamp))
    intervals = sorted(spans.values())
    overlaps = [a for a, b in zip(intervals, intervals[1:]) if b[0] < a[1]]
    assert overlaps, f"no two commands ran at once: {intervals}"


@pytest.mark.slow
def test_the_ray_executor_runs_a_command_trial(tmp_path, monkeypatch):
    # Starting Ray takes 8-15 s on two shared cores.
    ray = pytest.importorskip("ray")
    from mixsearch.execute import make_executor
    from mixsearch.orchestrator import Orchestrator
    from mixsearch.propose.base import make_proposer

    monkeypatch.chdir(tmp_path)
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - no Ray here is a skip, not a failure
        pytest.skip(f"ray cannot start here: {type(exc).__name__}: {exc}")
    try:
        script = write_trainer(tmp_path)
        study = make_study("on-ray", trials=1, batch=1, options={"command": command(script)})
        evaluator = make_evaluator(study)
        ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
        summary = Orchestrator(study, ledger, evaluator, make_executor("ray", workers=1), make_proposer(study.proposer), heartbeat_interval=0.1).run()
        (t,) = ledger.trials()
        assert summary.counts[DONE] == 1 and t.state == DONE
        assert t.domain_losses == pytest.approx(expected_losses(t.candidate.weights, 4000), abs=1e-9)
        (run,) = starts(script)
        assert int(run[2]) != os.getpid(), "the command's parent is a Ray worker, not this process"
        assert Path(t.metrics["trial_dir"]).parent == tmp_path / "runs" / "on-ray" / "trials"
        ledger.dispose()
    finally:
        ray.shutdown()


# -- options, snapshot, placeholders --------------------------------------------------------


def test_placeholders_and_environment_reach_the_command(tmp_path):
    script = tmp_path / "echo.py"
    script.write_text("import json, os, sys\nprint(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), 'env': {k: v for k, v in os.environ.items() if k.startswith(('MIXSEARCH_', 'MY_'))}}))\n")
    work = tmp_path / "work dir"
    work.mkdir()
    options = {
        "command": [sys.executable, str(script), "{out}", "{metrics}", "--n={N}", "--d={D}", "{rung}", "{seed}", "{study}", "{attempt}", "{{out}}", "${HOME}", '{"lr": 3e-4}'],
        "env": {"MY_RUN": "mix-{rung}-{seed}"},
        "cwd": str(work),
        "metrics": "results/{rung}.json",
    }
    ev = evaluator(tmp_path, options)
    cand, rung = Candidate((0.2, 0.3, 0.5), "m", seed=7), RUNGS[1]
    with pytest.raises(EvaluationError, match="wrote no metrics file"):
        ev.evaluate(cand, rung)
    folder = ev.trial_dir(cand, rung)
    seen = json.loads((folder / "log.txt").read_text().splitlines()[1])
    metrics = str(folder / "results" / "m.json")
    assert seen["argv"] == [str(folder), metrics, "--n=4000", "--d=80000", "m", "7", "unit", "1", "{out}", "${HOME}", '{"lr": 3e-4}']
    assert seen["cwd"] == str(work)
    assert seen["env"].items() >= {
        "MY_RUN": "mix-m-7",
        "MIXSEARCH_CANDIDATE": str(folder / "candidate.json"),
        "MIXSEARCH_OUT": str(folder),
        "MIXSEARCH_METRICS": metrics,
        "MIXSEARCH_SEED": "7",
        "MIXSEARCH_N": "4000",
        "MIXSEARCH_D": "80000",
        "MIXSEARCH_RUNG": "m",
        "MIXSEARCH_STUDY": "unit",
        "MIXSEARCH_ATTEMPT": "1",
    }.items()


def test_a_shell_command_gets_quoted_values(tmp_path):
    out = tmp_path / "trial outputs"  # a space in every path
    script = write_trainer(tmp_path)
    shell = f"cd {tmp_path} && echo starting && {sys.executable} {script} {{candidate}} | tee -a {{out}}/tee.txt"
    ev = CommandEvaluator({"command": shell, "shell": True, "output_dir": str(out)}, "unit", "abc", rungs=RUNGS)
    ev.prepare()
    cand = Candidate((0.2, 0.3, 0.5), "s")
    res = ev.evaluate(cand, RUNGS[0])
    assert res.domain_losses == pytest.approx(expected_losses(cand.weights, 1000))
    folder = ev.trial_dir(cand, RUNGS[0])
    assert "run 0: ok" in (folder / "tee.txt").read_text()
    assert json.loads((folder / "status.json").read_text())["attempts"][0]["argv"][:2] == ["/bin/sh", "-c"]


def test_a_command_given_as_one_string_is_split_like_a_shell_would_without_one(tmp_path):
    script = write_trainer(tmp_path)
    ev = evaluator(tmp_path, {"command": f"{sys.executable} '{script}' {{candidate}} --plan ok"})
    assert ev.opts.command == (sys.executable, str(script), "{candidate}", "--plan", "ok")
    assert ev.evaluate(Candidate((0.2, 0.3, 0.5), "s"), RUNGS[0]).objective > 2


def test_the_snapshot_follows_the_command_and_inputs_not_where_or_how_long_it_runs(tmp_path):
    script = write_trainer(tmp_path)
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "model.py").write_text("WIDTH = 64\n")
    base = {"command": command(script), "inputs": [str(script), str(pkg)]}
    ev = evaluator(tmp_path, base)
    snap = ev.snapshot_id()
    assert snap.startswith("command-") and snap == evaluator(tmp_path, base).snapshot_id()
    # What Python or mixsearch write while trials run changes nothing...
    (pkg / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0\1")
    (pkg / ".git").mkdir()
    assert evaluator(tmp_path, base).snapshot_id() == snap
    inside = evaluator(tmp_path, {**base, "inputs": [str(tmp_path)], "output_dir": str(tmp_path / "trials")})
    before = inside.snapshot_id()
    (tmp_path / "trials" / "s-x").mkdir(parents=True)
    (tmp_path / "trials" / "s-x" / "log.txt").write_text("a trial ran\n")
    assert evaluator(tmp_path, {**base, "inputs": [str(tmp_path)], "output_dir": str(tmp_path / "trials")}).snapshot_id() == before
    # ...nor do where trials go and how long they may run; the command and the inputs do.
    assert evaluator(tmp_path, {**base, "timeout": 5, "retry_exit_codes": [75, 137]}).snapshot_id() == snap
    assert evaluator(tmp_path, {**base, "command": command(script, "--sleep", "0")}).snapshot_id() != snap
    (pkg / "model.py").write_text("WIDTH = 128\n")
    changed = evaluator(tmp_path, base)
    assert changed.snapshot_id() != snap
    # The folder of a trial: stable for a candidate, new for another seed, rung size or snapshot.
    cand = Candidate((0.2, 0.3, 0.5), "s")
    assert ev.trial_dir(cand, RUNGS[0]) == ev.trial_dir(Candidate((0.2000000001, 0.3, 0.5), "s"), RUNGS[0])
    assert ev.trial_dir(cand, RUNGS[0]) != ev.trial_dir(Candidate(cand.weights, "s", seed=1), RUNGS[0])
    assert ev.trial_dir(cand, RUNGS[0]) != ev.trial_dir(cand, Rung("s", 1000, 40_000))
    assert ev.trial_dir(cand, RUNGS[0]) != changed.trial_dir(cand, RUNGS[0])
    assert ev.trial_dir(cand, Rung("1.5B/x y", 10, 10)).name.startswith("1.5B_x_y-")


def test_the_evaluator_meets_the_protocol_and_survives_pickling(tmp_path):
    script = write_trainer(tmp_path)
    ev = evaluator(tmp_path, {"command": command(script), "inputs": [str(script)]})
    assert isinstance(ev, Evaluator) and ev.pool() is None
    ev.prepare()
    ev.prepare()
    snap = ev.snapshot_id()
    clone = pickle.loads(pickle.dumps(ev))
    assert clone.snapshot_id() == snap
    cand = Candidate((0.6, 0.3, 0.1), "s")
    a, b = ev.evaluate(cand, RUNGS[0]), clone.evaluate(cand, RUNGS[0])
    assert a.finite and a.objective == b.objective and a.metrics["trial_dir"] == b.metrics["trial_dir"]
    # The second run went to the same folder as a second attempt.
    assert [x["attempt"] for x in json.loads((Path(a.metrics["trial_dir"]) / "status.json").read_text())["attempts"]] == [1, 2]


def refused(options: dict) -> StudyError:
    with pytest.raises(StudyError) as info:
        make_evaluator(make_study(options=options), "studies/mine.py")
    return info.value


@pytest.mark.parametrize(
    ("options", "field", "text"),
    [
        ({}, "evaluator.options.command", "required: the training command"),
        ({"command": [], "timeout": 3}, "evaluator.options.command", "is empty"),
        ({"command": 7}, "evaluator.options.command", "must be a list of arguments or one string, got int"),
        ({"command": ["python", 3]}, "evaluator.options.command[1]", "must be a string, got 3"),
        ({"command": "python 'train.py"}, "evaluator.options.command", "cannot split"),
        ({"command": ["echo"], "shell": True}, "evaluator.options.command", "with shell: true, give the command as one string"),
        ({"command": "echo", "shell": "yes"}, "evaluator.options.shell", "must be true or false"),
        ({"command": "echo", "timeout": 0}, "evaluator.options.timeout", "must be a positive number of seconds, got 0"),
        ({"command": "echo", "timeout": "30"}, "evaluator.options.timeout", "got '30'"),
        ({"command": "echo", "env": ["A=1"]}, "evaluator.options.env", "must be a mapping of variable names to strings, got list"),
        ({"command": "echo", "env": {"A": 1}}, "evaluator.options.env.A", "must be a string, got 1"),
        ({"command": "echo", "env": {"MIXSEARCH_OUT": "x"}}, "evaluator.options.env.MIXSEARCH_OUT", "mixsearch sets"),
        ({"command": "echo", "inputs": "train.py"}, "evaluator.options.inputs", "must be a list of files or folders, got str"),
        ({"command": "echo", "inputs": ["no/such/train.py"]}, "evaluator.options.inputs[0]", "no such file or folder: 'no/such/train.py'"),
        ({"command": "echo", "cwd": "no/such/folder"}, "evaluator.options.cwd", "no such folder"),
        ({"command": "echo {canidate}"}, "evaluator.options.command", "unknown placeholder {canidate}; known: {candidate}, {out}"),
        ({"command": "echo", "metrics": "{out}/{attempt}.json"}, "evaluator.options.metrics", "unknown placeholder {attempt}"),
        ({"command": "echo", "retry_exit_codes": [0]}, "evaluator.options.retry_exit_codes", "from 1 to 255"),
        ({"command": "echo", "gpus": 8}, "evaluator.options.gpus", "unknown option of the command evaluator; known: command, shell"),
    ],
)
def test_bad_options_are_one_line_naming_the_option_and_the_file(tmp_path, monkeypatch, options, field, text):
    monkeypatch.chdir(tmp_path)
    err = refused(options)
    assert err.field == field and text in err.message
    assert err.line().startswith(f"studies/mine.py: {field}: ") and "\n" not in err.line()


def test_n_and_d_placeholders_need_rungs_that_have_them():
    study = make_study(options={"command": "train --tokens {D}"})
    study = Study(**{**study.__dict__, "ladder": FidelityLadder((Rung("1k-steps", cost=1.0),), Rung("1k-steps", cost=1.0))})
    with pytest.raises(StudyError) as info:
        make_evaluator(study)
    assert info.value.field == "evaluator.options.command" and "uses {D} but rung '1k-steps' has no tokens" in info.value.message
    # Without N and D in the command, such a ladder is fine: candidate.json says null.
    ok = Study(**{**study.__dict__, "evaluator": EvaluatorSpec("command", {"command": "train"})})
    assert isinstance(make_evaluator(ok), CommandEvaluator)


def test_prepare_names_a_program_that_cannot_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("print('hi')\n")
    for cmd, text in (
        (["no-such-trainer-xyz", "{candidate}"], "cannot run 'no-such-trainer-xyz': not found on PATH"),
        (["./train.py"], "cannot run './train.py': not executable"),
        (["./missing.sh"], "cannot run './missing.sh': no such file"),
    ):
        ev = make_evaluator(make_study(options={"command": cmd}))
        with pytest.raises(StudyError) as info:
            ev.prepare()
        assert info.value.field == "evaluator.options.command" and text in info.value.message and "\n" not in str(info.value)
    make_evaluator(make_study(options={"command": [sys.executable, "train.py"]})).prepare()
    make_evaluator(make_study(options={"command": "no-such-trainer-xyz", "shell": True})).prepare()  # the shell looks it up


def test_a_program_that_vanished_after_prepare_is_a_final_failure(tmp_path):
    ev = evaluator(tmp_path, {"command": [str(tmp_path / "gone.sh")]})
    with pytest.raises(EvaluationError, match=r"^cannot start the command '.*gone\.sh': No such file or directory; log: "):
        ev.evaluate(Candidate((0.2, 0.3, 0.5), "s"), RUNGS[0])


def test_retryable_failures_are_not_evaluation_errors(tmp_path):
    # The orchestrator retries any exception but an EvaluationError.
    assert issubclass(CommandInterrupted, Exception) and not issubclass(CommandInterrupted, EvaluationError)
    script = write_trainer(tmp_path)
    ev = evaluator(tmp_path, {"command": command(script, "--plan", "exit75,exit75"), "retry_exit_codes": [75]})
    with pytest.raises(CommandInterrupted, match=r"^command exited with status 75 after .* s; last line: the node is draining; try again; log: "):
        ev.evaluate(Candidate((0.2, 0.3, 0.5), "s"), RUNGS[0])
    final = evaluator(tmp_path, {"command": command(script, "--plan", "exit75,exit75"), "retry_exit_codes": [137]})
    with pytest.raises(EvaluationError, match="status 75"):
        final.evaluate(Candidate((0.2, 0.3, 0.5), "s"), RUNGS[0])


def test_an_earlier_attempts_metrics_never_pass_for_a_later_ones(tmp_path):
    script = write_trainer(tmp_path)
    ev = evaluator(tmp_path, {"command": command(script, "--plan", "ok,nometrics")})
    cand = Candidate((0.2, 0.3, 0.5), "s")
    assert ev.evaluate(cand, RUNGS[0]).finite
    with pytest.raises(EvaluationError, match="wrote no metrics file"):
        ev.evaluate(cand, RUNGS[0])  # the same trial again, in the same folder
    assert f"=== removed {ev.trial_dir(cand, RUNGS[0]) / 'metrics.json'} left by an earlier attempt" in (ev.trial_dir(cand, RUNGS[0]) / "log.txt").read_text()


def test_ctrl_c_stops_a_running_command_and_gives_the_trial_back(tmp_path):
    # What the study loop does on Ctrl-C: raise the stop flag, then wait for running trials.
    from mixsearch.interrupt import TrialInterrupted, clear_stop, request_stop

    script = write_trainer(tmp_path)
    ev = evaluator(tmp_path, {"command": command(script, "--plan", "hang")})
    cand = Candidate((0.2, 0.3, 0.5), "s")
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            ev.evaluate(cand, RUNGS[0])
        except BaseException as exc:  # noqa: BLE001 - the test looks at what came back
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.time() + 30
    while not starts(script) and time.time() < deadline:
        time.sleep(0.02)
    try:
        t0 = time.time()
        request_stop()
        worker.join(timeout=20)
    finally:
        clear_stop()
    assert not worker.is_alive() and time.time() - t0 < 5
    assert len(outcome) == 1 and isinstance(outcome[0], TrialInterrupted)
    assert wait_dead(int(starts(script)[0][1]))
    (attempt,) = json.loads((ev.trial_dir(cand, RUNGS[0]) / "status.json").read_text())["attempts"]
    assert attempt["state"] == "interrupted" and attempt["returncode"] == -signal.SIGTERM
