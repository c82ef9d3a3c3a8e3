"""A worker: claims and runs a study's pending trials, and never proposes.

Start one orchestrator (``mixsearch study start``) to propose, and as many workers
(``mixsearch worker STUDY``) as there are machines or GPUs to run trials; they meet
in a shared ledger (PostgreSQL across hosts). Workers use the same claim, heartbeat
and recovery rules as orchestrators, so killing one loses nothing: its trials go
back to pending and someone else runs them.
"""

from __future__ import annotations

import time
from typing import Any

from mixsearch.ledger import PENDING, RUNNING, Ledger, Trial
from mixsearch.orchestrator import TrialLoop


class Worker(TrialLoop):
    """The trial loop with a wait: claim pending trials, run them, tell; never propose.

    Args:
        study: The validated study.
        ledger: Its ledger (shared with the orchestrator).
        evaluator: Turns candidates into results.
        executor: Where evaluations run.
        wait: Keep waiting for new pending trials until the study's budget is spent
            (else stop as soon as nothing is pending or running).
        idle_timeout: With ``wait``, give up after this many seconds without work.
        **kwargs: ``progress``, ``heartbeat_interval``, ``heartbeat_timeout``, ``study_file``.
    """

    def __init__(self, study: Any, ledger: Ledger, evaluator: Any, executor: Any, wait: bool = False, idle_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(study, ledger, evaluator, executor, **kwargs)
        self.wait = wait
        self.idle_timeout = idle_timeout
        self._idle_since: float | None = None

    def _idle_reason(self) -> str | None:
        counts = self.ledger.counts()
        if counts[PENDING]:
            self._idle_since = None
            return None
        now = time.monotonic()
        self._idle_since = self._idle_since or now
        if counts[RUNNING] and not self.wait:
            return None  # a peer's trial may come back as an orphan: stay to pick it up
        if not self.wait:
            return "no pending trials"
        if self.idle_timeout is not None and now - self._idle_since > self.idle_timeout:
            return f"no pending trials for {self.idle_timeout:g} s"
        return None  # the loop sleeps a little and looks for orphans before asking again

    def _submit(self, claimed: list[Trial]) -> None:
        if claimed:
            self._idle_since = None
        super()._submit(claimed)
