"""Ctrl-C for running trials: a stop flag that training loops read at every step.

The main thread receives ``KeyboardInterrupt``; trials run on worker threads (or in a
user's subprocess) that never see it. :func:`request_stop` raises a flag those loops
check between steps; a trial that sees it raises :class:`TrialInterrupted`, which the
study loop records as interrupted (pending again, the attempt not counted), not failed.
"""

from __future__ import annotations

import threading

_STOP = threading.Event()


class TrialInterrupted(RuntimeError):
    """A trial stopped because the study was interrupted (Ctrl-C): it will run again on resume."""


def request_stop() -> None:
    """Ask every running trial in this process to stop at its next step."""
    _STOP.set()


def clear_stop() -> None:
    """Allow trials to run again (a new study loop in the same process)."""
    _STOP.clear()


def stop_requested() -> bool:
    """Whether trials should stop now."""
    return _STOP.is_set()


def check_stop(where: str) -> None:
    """Raise :class:`TrialInterrupted` when a stop was requested (call between steps).

    Args:
        where: What was interrupted, for the message (``"step 12/40"``).
    """
    if _STOP.is_set():
        raise TrialInterrupted(f"interrupted at {where}")


class StudyInterrupted(KeyboardInterrupt):
    """A study loop stopped by Ctrl-C, after giving its running trials back to pending.

    Attributes:
        study: The study's name.
        returned: Ids of the trials that were running and are pending again.
    """

    def __init__(self, study: str, returned: list[str]) -> None:
        super().__init__(study)
        self.study = study
        self.returned = list(returned)
