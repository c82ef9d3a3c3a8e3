"""A worker: claims and runs a study's pending trials, and never proposes.

Start one orchestrator (``mixsearch study start``) to propose, and as many workers
(``mixsearch worker STUDY``) as there are machines or GPUs to run trials; they meet
in a shared ledger (PostgreSQL across hosts). Workers use the same claim, heartbeat
and recovery rules as orchestrators, so killing one loses nothing: its trials go
back to pending and someone else runs them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mixsearch.ledger import PENDING, RUNNING, Ledger, Trial
from mixsearch.orchestrator import Orchestrator, RunSummary
from mixsearch.propose.base import Recommendation


class Worker(Orchestrator):
    """The orchestrator loop without the ask: claim pending trials, run them, tell.

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
        super().__init__(study, ledger, evaluator, executor, proposer=None, **kwargs)  # type: ignore[arg-type]
        self.wait = wait
        self.idle_timeout = idle_timeout
        self._idle_since: float | None = None

    def _ask(self, trials: list[Trial]) -> None:
        """Proposing is the orchestrator's job."""

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

    def recommend(self) -> Recommendation | None:
        return None


def run_worker(
    study_path: str | Path,
    storage: str | None = None,
    root: str | Path = "runs",
    executor: str = "local",
    workers: int = 1,
    pack: int = 1,
    address: str | None = None,
    wait: bool = False,
    idle_timeout: float | None = None,
    heartbeat_timeout: float = 120.0,
    progress: Any = None,
) -> RunSummary:
    """Run a worker on the study in ``study_path`` (see :class:`Worker`).

    Returns:
        What the worker saw when it stopped (counts are the whole study's).
    """
    from mixsearch.api import ledger_url, make_executor
    from mixsearch.evaluate import make_evaluator
    from mixsearch.study import load_study

    study = load_study(study_path)
    evaluator = make_evaluator(study)
    ex = make_executor(executor, workers=workers, pack=pack, address=address)
    ledger = Ledger(ledger_url(study, storage, root))
    try:
        worker = Worker(
            study,
            ledger,
            evaluator,
            ex,
            wait=wait,
            idle_timeout=idle_timeout,
            progress=progress,
            heartbeat_timeout=heartbeat_timeout,
            study_file=str(study_path),
        )
        return worker.run()
    finally:
        ledger.dispose()
