"""The ``command`` world: the user's own training command, run once per trial.

``EvaluatorSpec("command", {"command": [...]})`` makes each candidate one run of the
user's trainer (a torchtitan, Megatron or nanoGPT script on their cluster; an
instruction-tuning or RL job scored by a benchmark accuracy or a reward). A trial has a
folder of its own, named from the rung and a hash of what fixes its result, so a resumed
study reruns an interrupted trial in the same place::

    <output_dir>/<rung>-<hash>/     hash of (canonical weights, seed, rung N and D, snapshot id)
        candidate.json              what to train: mixture by domain name, rung, seed, paths
        log.txt                     stdout and stderr of every attempt, each after a header line
        status.json                 one entry per attempt: command, pid, exit status, reason
        metrics.json                what the command reports (the default place)

The command sees the trial through placeholders (``{candidate}``, ``{out}``, ...; see
:mod:`mixsearch.evaluate.command_options`) and ``MIXSEARCH_*`` environment variables. It
reports per-domain losses and/or named metrics (accuracy, reward) in the metrics file,
read by :func:`~mixsearch.evaluate.base.result_from_mapping`. A failure is an
EvaluationError (final) or a :class:`CommandInterrupted` (the orchestrator retries it, up
to ``Study.max_attempts``); which is which, and why, is said where :meth:`evaluate`
decides. The process mechanics (process groups, timeouts, a killed study's leftovers) are
in :mod:`mixsearch.evaluate.process`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Mapping, Sequence

from mixsearch.candidate import WEIGHT_DECIMALS, Candidate, EvaluationError, Pool, TrialResult, canonical_weights
from mixsearch.evaluate import process
from mixsearch.evaluate.base import options_digest, result_from_mapping
from mixsearch.evaluate.command_options import RUN_OPTIONS, CommandOptions, absolute, placeholder_names, substitute
from mixsearch.evaluate.process import TERM_GRACE_S, CommandInterrupted
from mixsearch.jsonfile import write_json
from mixsearch.study import Objective, Rung, StudyError

if TYPE_CHECKING:
    from mixsearch.study import Study

__all__ = ["CommandEvaluator", "CommandInterrupted"]

CANDIDATE_SCHEMA = "mixsearch.candidate/v1"
CANDIDATE_FILE = "candidate.json"
LOG_FILE = "log.txt"
STATUS_FILE = "status.json"
LAST_LINE_CHARS = 200

# Signals that come from outside the program rather than from a bug in it: the OOM killer
# (SIGKILL, often for a neighbour's memory use), a scheduler's preemption or an operator
# (SIGTERM, SIGHUP, SIGINT). Retried; a candidate that is OOM-killed every time costs
# max_attempts runs and then stays failed.
RETRY_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
# Launch errors that say the machine is short of something right now (processes, memory,
# open files) or the script is being rewritten (ETXTBSY). Others (ENOENT, EACCES) mean the
# command is wrong, and would be the same next time.
RETRY_ERRNOS = frozenset({errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.ETXTBSY})


class CommandEvaluator:
    """Runs the user's training command once per trial and reads the metrics it writes.

    Construction checks every option and resolves paths against the current directory,
    so the evaluator means the same on a Ray worker whose working directory differs. It
    pickles small.

    Args:
        options: The study's ``evaluator.options`` (see :class:`CommandOptions` and
            ``docs/own-trainer.md``); ``command`` is required.
        study: The study name (``{study}``, and the default ``runs/<study>/trials``).
        domains: Domain names in weight order (the keys of the mixture in candidate.json).
        objective: Turns the reported losses or metrics into the study objective.
        rungs: The runnable rungs, to check that ``{N}`` and ``{D}`` have values.
        term_grace: Seconds between SIGTERM and SIGKILL when a command is stopped.

    Raises:
        ValueError: an unknown option or a bad value, as one line naming the option.
    """

    def __init__(self, options: Mapping[str, Any], study: str, domains: Sequence[str], objective: Objective | None = None, rungs: Sequence[Rung] = (), term_grace: float = TERM_GRACE_S) -> None:
        self.opts = CommandOptions.parse(options, study, rungs)
        self.study = study
        self.domains = tuple(domains)
        self.objective = objective or Objective()
        self.term_grace = float(term_grace)
        self._snapshot: str | None = None

    @classmethod
    def from_study(cls, study: "Study") -> "CommandEvaluator":
        """The command world a study names (a study without a schedule: candidate.json carries one mixture)."""
        if study.schedule is not None:
            raise ValueError(f"schedule: the command evaluator hands your trainer one mixture per trial; a {study.schedule.kind} schedule needs the proxy evaluator (or a package.module:Class evaluator, which receives the whole candidate)")
        return cls(study.evaluator.options, study.name, study.domain_names, study.objective, study.ladder.rungs)

    # -- Evaluator protocol ------------------------------------------------------------

    def prepare(self) -> None:
        """Check that the command's program can be run from here (with ``shell``, the shell finds it).

        Raises:
            StudyError: the program is not found or not executable, naming
                ``evaluator.options.command``.
        """
        program, field = self.opts.command[0], "evaluator.options.command"
        if self.opts.shell or placeholder_names(program):
            return
        if os.sep in program:
            path = absolute(program, self.opts.cwd)
            if not path.is_file():
                raise StudyError(field, f"cannot run {program!r}: no such file (relative to {self.opts.cwd})")
            if not os.access(path, os.X_OK):
                raise StudyError(field, f"cannot run {program!r}: not executable; chmod +x it, or put its interpreter first (sys.executable, then {program!r})")
        elif shutil.which(program, path=self.opts.env.get("PATH", os.environ.get("PATH"))) is None:
            raise StudyError(field, f"cannot run {program!r}: not found on PATH; give its path (for a Python script: sys.executable, then the script)")

    def snapshot_id(self) -> str:
        """A hash of the command, its options and the content of the ``inputs`` files.

        Computed once per evaluator (the driver's value travels to workers with it), so a
        study's trials all use the snapshot the ledger recorded. Options that only say
        where or how long a run goes are left out.
        """
        if self._snapshot is None:
            settings = {k: v for k, v in self.opts.raw.items() if k not in RUN_OPTIONS}
            names = [str(p) for p in self.opts.raw.get("inputs", ())]
            contents = {name: content_hash(path, skip=self.opts.output_dir) for name, path in zip(names, self.opts.inputs)}
            self._snapshot = f"command-{options_digest({'options': settings, 'inputs': contents})}"
        return self._snapshot

    def pool(self) -> Pool | None:
        """Any mixture can be trained: no pool."""
        return None

    def trial_dir(self, candidate: Candidate, rung: Rung) -> Path:
        """The folder of a trial: the same for the same candidate, rung and snapshot.

        The rung's N and D are in the hash besides its name: a rung that keeps its name
        but changes size makes new trials, and they must not share the old folders.
        """
        key = {
            "weights": [f"{w:.{WEIGHT_DECIMALS}f}" for w in canonical_weights(candidate.weights)],
            "seed": candidate.seed,
            "rung": rung.name,
            "N": rung.n_params,
            "D": rung.tokens,
            "snapshot": self.snapshot_id(),
        }
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", rung.name)[:40]
        return self.opts.output_dir / f"{safe}-{options_digest(key)}"

    def evaluate(self, candidate: Candidate, rung: Rung) -> TrialResult:
        """Run the command on one candidate in its trial folder and read its metrics file.

        Raises:
            EvaluationError: a final failure, one line with the reason and the log's path.
            CommandInterrupted: a failure worth another attempt.
        """
        if len(candidate.weights) != len(self.domains):
            raise ValueError(f"candidate has {len(candidate.weights)} weights for {len(self.domains)} domains")
        out = self.trial_dir(candidate, rung)
        out.mkdir(parents=True, exist_ok=True)
        trial = _Attempts(out)
        values = self._values(candidate, rung, out, trial.number)
        metrics_path = Path(values["metrics"])
        notes = trial.settle_earlier()
        if metrics_path.exists():
            metrics_path.unlink()  # an earlier attempt's file must not pass for this one's
            notes.append(f"removed {metrics_path} left by an earlier attempt")
        write_json(self._candidate_doc(candidate, rung, values, trial.number), values["candidate"])
        argv = self.opts.argv(values)

        with open(trial.log_path, "ab") as log:
            offset = trial.begin(log, argv, self.opts.cwd, notes, f"mixsearch {self.study} {out.name}")
            t0 = time.monotonic()
            try:
                proc = process.start(argv, self.opts.cwd, self.opts.environ(values), log)
            except OSError as exc:
                reason = f"cannot start the command {argv[0]!r}: {exc.strerror or exc}; log: {trial.log_path}"
                trial.end(log, "failed to start", reason, reason)
                raise (CommandInterrupted if exc.errno in RETRY_ERRNOS else EvaluationError)(reason) from None
            trial.running(proc.pid)
            try:
                timed_out = process.wait(proc, self.opts.timeout, self.term_grace)
            except BaseException:
                # Ctrl-C in an inline study, or mixsearch exiting: the command goes with it.
                process.stop(proc, self.term_grace)
                summary = f"interrupted after {time.monotonic() - t0:.1f} s: mixsearch stopped, and stopped the command"
                trial.end(log, "interrupted", summary, summary, returncode=proc.returncode)
                raise
            seconds = time.monotonic() - t0
            rc, took = proc.returncode, f"after {seconds:.1f} s"
            where = f"last line: {_last_line(trial.log_path, offset)}; log: {trial.log_path}"
            retry, result, reason = False, None, None
            if timed_out:
                # Final: it would run out of time again.
                state, summary = "timed out", f"timed out after {self.opts.timeout:g} s: its process group was killed"
                reason = f"command timed out after {self.opts.timeout:g} s; log: {trial.log_path}"
            elif rc < 0:
                # Killed from outside: retried. Any other signal (SIGSEGV, SIGABRT, SIGBUS)
                # is a crash of the program itself: final.
                sig, retry = process.signal_name(-rc), -rc in RETRY_SIGNALS
                state, summary = "killed", f"{'killed by' if retry else 'died of'} {sig} {took}"
                hint = " (out of memory, preempted, or stopped by hand?)" if retry else ""
                reason = f"command {summary}{hint}; {where}"
            elif rc != 0:
                # A crash on this candidate usually repeats: final, unless the command says
                # with a status in retry_exit_codes (75, EX_TEMPFAIL, by default) to try again.
                state, summary, retry = "exited", f"exited with status {rc} {took}", rc in self.opts.retry_exit_codes
                reason = f"command {summary}; {where}"
            else:
                # Exit 0 and no readable metrics: the trainer and the study disagree about
                # the file, and a rerun would repeat it: final.
                state, summary = "exited", f"exited with status 0 {took}"
                try:
                    result = self._read_metrics(metrics_path, rung, seconds, trial.log_path, f"{summary} but wrote no metrics file {metrics_path}; {where}")
                except EvaluationError as exc:
                    reason = str(exc)
            trial.end(log, state, summary, reason, returncode=rc, seconds=round(seconds, 3), retry=retry)

        if result is None:
            assert reason is not None
            raise (CommandInterrupted if retry else EvaluationError)(reason)
        metrics = {k: v for k, v in (("n_params", rung.n_params), ("tokens", rung.tokens)) if v is not None}
        metrics.update(result.metrics)
        metrics["trial_dir"] = str(out)
        return TrialResult(result.domain_losses, result.objective, result.cost, result.seconds, result.curve, metrics)

    # -- one trial's pieces ------------------------------------------------------------

    def _values(self, candidate: Candidate, rung: Rung, out: Path, attempt: int) -> dict[str, str]:
        """Placeholder values of a trial (also its ``MIXSEARCH_*`` variables); "" when a rung lacks N or D."""
        values = {
            "out": str(out),
            "seed": str(candidate.seed),
            "N": "" if rung.n_params is None else str(rung.n_params),
            "D": "" if rung.tokens is None else str(rung.tokens),
            "rung": rung.name,
            "study": self.study,
        }
        values["metrics"] = str(absolute(substitute(self.opts.metrics, values), out))
        values["candidate"] = str(out / CANDIDATE_FILE)
        values["attempt"] = str(attempt)
        return values

    def _candidate_doc(self, candidate: Candidate, rung: Rung, values: Mapping[str, str], attempt: int) -> dict[str, Any]:
        return {
            "schema": CANDIDATE_SCHEMA,
            "study": self.study,
            "mixture": dict(zip(self.domains, candidate.weights)),
            "rung": {"name": rung.name, "n_params": rung.n_params, "tokens": rung.tokens, "cost": rung.run_cost},
            "seed": candidate.seed,
            "attempt": attempt,
            "out": values["out"],
            "metrics": values["metrics"],
        }

    def _read_metrics(self, path: Path, rung: Rung, seconds: float, log_path: Path, missing: str) -> TrialResult:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EvaluationError(f"command {missing}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise EvaluationError(f"cannot read the metrics file {path}: {exc}; log: {log_path}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); log: {log_path}") from None
        try:
            return result_from_mapping(doc, self.objective, rung, seconds, str(path))
        except EvaluationError as exc:
            bad = _non_finite(doc)
            hint = f" (non-finite: {', '.join(bad)}; did the run diverge?)" if bad else ""
            raise EvaluationError(f"{exc}{hint}; log: {log_path}") from None


class _Attempts:
    """A trial folder's record of attempts: ``status.json`` (one entry each) and the log's
    header and footer lines. Written atomically, so a killed study leaves it readable."""

    def __init__(self, out: Path) -> None:
        self.log_path, self.status_path = out / LOG_FILE, out / STATUS_FILE
        self.earlier = _read_attempts(self.status_path)
        self.number = len(self.earlier) + 1
        self.entry: dict[str, Any] = {}

    def settle_earlier(self) -> list[str]:
        """Close the attempts a killed study left running (killing what is left of them on
        this host); notes for the log."""
        notes = []
        host = socket.gethostname()
        for entry in self.earlier:
            if entry.get("state") not in ("starting", "running"):
                continue
            note = f"attempt {entry.get('attempt')} did not finish: mixsearch stopped while it ran"
            if entry.get("host") == host and process.kill_leftover(entry.get("pgid"), entry.get("proc_start")):
                note += f"; killed its process group {entry['pgid']}, still running"
            entry.update(state="lost", reason=note)
            notes.append(note)
        return notes

    def begin(self, log: BinaryIO, argv: list[str], cwd: Path, notes: Iterable[str], title: str) -> int:
        """Write the header line (and notes); returns where this attempt's output starts."""
        host = socket.gethostname()
        self.entry = {"attempt": self.number, "state": "starting", "host": host, "worker_pid": os.getpid(), "started": time.time(), "argv": argv, "cwd": str(cwd)}
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.write(f"=== {title} attempt {self.number} at {stamp} on {host}: {shlex.join(argv)}\n".encode())
        log.writelines(f"=== {note}\n".encode() for note in notes)
        log.flush()
        return log.tell()

    def running(self, pid: int) -> None:
        # The process group and its leader's start time let a later attempt kill what a
        # killed study left running, and nothing else.
        self.entry.update(state="running", pid=pid, pgid=pid, proc_start=process.proc_start(pid))
        self._write()

    def end(self, log: BinaryIO, state: str, summary: str, reason: str | None, **fields: Any) -> None:
        self.entry.update(state=state, ended=time.time(), reason=reason, **fields)
        self._write()
        log.write(f"=== attempt {self.number}: {summary}\n".encode())

    def _write(self) -> None:
        write_json({"attempts": [*self.earlier, self.entry]}, self.status_path)


# -- files -------------------------------------------------------------------------------


def content_hash(path: Path, skip: Path | None = None) -> str:
    """A hash of a file's bytes, or of a folder's files (relative names and bytes).

    In a folder, hidden names, ``__pycache__`` and ``*.pyc`` are skipped (Python writes
    them when the trainer runs, which must not change the snapshot), and so is ``skip``
    (the trial output folder, when it lies inside an input folder).
    """
    h = hashlib.sha256()
    if path.is_file():
        _hash_file(h, path)
        return h.hexdigest()[:16]
    skip = skip.resolve() if skip is not None else None
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not _ignored(d) and Path(root, d).resolve() != skip)
        for name in sorted(f for f in files if not _ignored(f)):
            file = Path(root, name)
            h.update(f"{file.relative_to(path).as_posix()}\0".encode())
            _hash_file(h, file)
    return h.hexdigest()[:16]


def _ignored(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.endswith(".pyc")


def _hash_file(h: Any, path: Path) -> None:
    h.update(f"{path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def _read_attempts(path: Path) -> list[dict[str, Any]]:
    """The attempts recorded in a trial's status.json ([] when there is none yet)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # None yet, or unreadable (not from a crash: the file is replaced atomically):
        # start the record again rather than refuse to run the trial.
        return []
    attempts = doc.get("attempts") if isinstance(doc, dict) else None
    return [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []


def _last_line(path: Path, offset: int) -> str:
    """The last non-empty line the command wrote to its log in this attempt."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(max(offset, end - 8192))
        tail = fh.read().decode("utf-8", "replace")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    return lines[-1] if len(lines[-1]) <= LAST_LINE_CHARS else lines[-1][: LAST_LINE_CHARS - 3] + "..."


def _non_finite(doc: Any) -> list[str]:
    """``name=value`` for each non-finite number in a metrics document (top level and one down)."""
    if not isinstance(doc, Mapping):
        return []
    out = []
    for key, value in doc.items():
        for sub, v in value.items() if isinstance(value, Mapping) else [(None, value)]:
            if isinstance(v, float) and not math.isfinite(v):
                out.append(f"{key if sub is None else f'{key}.{sub}'}={v}")
    return out
