"""One command in a process group of its own: start it, wait with a deadline, stop it, and
kill what a killed parent left behind. The mechanics under the ``command`` world.

A command starts in a new session, so its children share its process group and a stop
reaches all of them (SIGTERM, then SIGKILL after a grace period). On Linux it also dies
with the thread that started it (``PR_SET_PDEATHSIG``): a study killed with ``kill -9``
takes its commands along. Grandchildren do not get that signal; :func:`kill_leftover`
ends them from the process group recorded for the attempt, before the trial runs again.
POSIX only.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

from mixsearch.interrupt import TrialInterrupted, stop_requested

TERM_GRACE_S = 10.0  # between SIGTERM and SIGKILL: time for a trainer to save and exit
POLL_S = 0.2  # the longest pause between looks at a running command

_PROC = Path("/proc")
_PR_SET_PDEATHSIG = 1
try:
    _PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _PRCTL = None


class CommandInterrupted(RuntimeError):
    """The command was stopped by something outside it (a signal it did not ask for, a
    transient launch error, a status it declares retryable, mixsearch exiting): worth
    another attempt, so it is not an EvaluationError."""


def start(argv: Sequence[str], cwd: Path, env: Mapping[str, str], log: BinaryIO) -> subprocess.Popen:
    """Start ``argv`` in a session of its own, stdout and stderr to ``log``, no stdin.

    Raises:
        OSError: the program cannot be started.
    """
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=functools.partial(_die_with_parent, os.getpid()) if _PRCTL is not None else None,
    )


def wait(proc: subprocess.Popen, timeout: float | None, term_grace: float = TERM_GRACE_S) -> bool:
    """Wait for the command; True when it ran past ``timeout`` seconds and was stopped.

    The caller stops the command when this raises.

    Raises:
        TrialInterrupted: the study was interrupted (Ctrl-C: :mod:`mixsearch.interrupt`);
            the trial goes back to pending, its attempt not counted.
        CommandInterrupted: the main thread of this process has ended (an error, or a
            Ctrl-C the study loop did not see) and the interpreter is joining worker
            threads, which would otherwise wait for the command to finish.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.005  # short first looks: a quick command is not held up by the polling
    while not exited(proc):
        if deadline is not None and time.monotonic() >= deadline:
            stop(proc, term_grace)
            return True
        if stop_requested():
            raise TrialInterrupted("interrupted while the command ran; it was stopped")
        if not threading.main_thread().is_alive():
            raise CommandInterrupted("mixsearch is exiting")
        time.sleep(pause)
        pause = min(2 * pause, POLL_S)
    proc.wait()
    return False


def stop(proc: subprocess.Popen, term_grace: float = TERM_GRACE_S) -> None:
    """SIGTERM to the command's process group, then SIGKILL after ``term_grace`` seconds.

    The leader is reaped last: until then its pid holds the group id, so the signals
    cannot reach a process that later took the same number.
    """
    signal_group(proc.pid, signal.SIGTERM)
    end = time.monotonic() + term_grace
    while not exited(proc) and time.monotonic() < end:
        time.sleep(0.02)
    signal_group(proc.pid, signal.SIGKILL)  # children that outlived or ignored SIGTERM
    proc.wait()


def exited(proc: subprocess.Popen) -> bool:
    """Whether the command's leader has exited, without reaping it (see :func:`stop`)."""
    if hasattr(os, "waitid"):
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    return proc.poll() is not None


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pgid``; a group that is gone is no error."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def proc_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), to tell it from a later
    process with the same number; None where there is no /proc (or no such process)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in (...) may hold spaces


def kill_leftover(pgid: Any, started: Any) -> bool:
    """SIGKILL what is left of a process group recorded on this host; True when something was.

    Only a group that is provably the recorded one: its leader is gone (its number stays
    reserved while the group has members) or still has the recorded start time. Where
    there is no /proc to check, nothing is killed.
    """
    if not isinstance(pgid, int) or not isinstance(started, int) or not _PROC.is_dir():
        return False
    now = proc_start(pgid)
    if now is not None and now != started:
        return False  # the number now belongs to another process
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    signal_group(pgid, signal.SIGKILL)
    return True


def signal_name(num: int) -> str:
    """``SIGKILL`` for 9."""
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _die_with_parent(parent: int) -> None:
    """Runs in the child between fork and exec: SIGKILL it when the thread that started it dies."""
    _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before the call above
        os._exit(1)
