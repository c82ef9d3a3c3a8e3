"""The Executor interface: where evaluations run (this process, a Ray cluster)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mixsearch.candidate import Candidate, TrialResult
from mixsearch.evaluate import Evaluator
from mixsearch.study import Rung


@dataclass(frozen=True)
class Job:
    """One trial handed to an executor."""

    trial_id: str
    candidate: Candidate
    rung: Rung


Outcome = tuple[str, "TrialResult | BaseException"]


@runtime_checkable
class Executor(Protocol):
    """Runs jobs and hands back outcomes; holds no ledger (the orchestrator tells it)."""

    @property
    def capacity(self) -> int:
        """Most jobs in flight at once."""
        ...

    @property
    def pack(self) -> int:
        """Jobs of the same rung that may share one evaluation (batched proxies)."""
        ...

    def start(self, evaluator: Evaluator) -> None:
        """Get ready to evaluate with ``evaluator``."""
        ...

    def submit(self, jobs: list[Job]) -> None:
        """Start jobs (a pack of same-rung jobs when ``len(jobs) > 1``)."""
        ...

    def poll(self, timeout: float) -> list[Outcome]:
        """Wait up to ``timeout`` seconds; return ``(trial_id, result or exception)`` for finished jobs."""
        ...

    def in_flight(self) -> list[str]:
        """Ids of the jobs still running."""
        ...

    def shutdown(self) -> None:
        """Stop (running jobs are abandoned; the ledger recovers them)."""
        ...


def run_pack(evaluator: Evaluator, jobs: list[Job]) -> list[Outcome]:
    """Evaluate jobs, together when the evaluator can train them as one batch.

    A pack that raises as a whole is retried job by job, so one bad candidate
    does not fail its neighbours.
    """
    many = getattr(evaluator, "evaluate_many", None)
    if len(jobs) > 1 and many is not None:
        try:
            results = many([j.candidate for j in jobs], [j.rung for j in jobs])
            return [(j.trial_id, r) for j, r in zip(jobs, results)]
        except Exception:  # noqa: BLE001 - fall back to one by one, which reports per job
            pass
    out: list[Outcome] = []
    for j in jobs:
        try:
            out.append((j.trial_id, evaluator.evaluate(j.candidate, j.rung)))
        except Exception as exc:  # noqa: BLE001 - the orchestrator records the reason
            out.append((j.trial_id, exc))
    return out
