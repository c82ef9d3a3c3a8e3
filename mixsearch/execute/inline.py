"""Run each job at once, in the calling thread: the bench's executor (and a debugger's).

Nothing runs in the background, so a study on an inline executor is a plain sequence of
function calls: deterministic and cheap for worlds that answer in microseconds (tables,
synthetic laws).
"""

from __future__ import annotations

from mixsearch.evaluate import Evaluator
from mixsearch.execute.base import Job, Outcome, run_pack


class InlineExecutor:
    """Evaluates each submitted job (or pack) immediately; ``poll`` hands the outcomes back.

    Args:
        capacity: Jobs the orchestrator may hand over per round (a batch of q proposals).
        pack: Same-rung jobs evaluated together (``evaluate_many``).
    """

    def __init__(self, capacity: int = 1, pack: int = 1) -> None:
        if capacity < 1 or pack < 1:
            raise ValueError("executor: capacity and pack must be >= 1")
        self._capacity = capacity
        self._pack = pack
        self._evaluator: Evaluator | None = None
        self._outcomes: list[Outcome] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def pack(self) -> int:
        return self._pack

    def start(self, evaluator: Evaluator) -> None:
        self._evaluator = evaluator

    def submit(self, jobs: list[Job]) -> None:
        assert self._evaluator is not None, "start() first"
        self._outcomes.extend(run_pack(self._evaluator, list(jobs)))

    def poll(self, timeout: float) -> list[Outcome]:
        out, self._outcomes = self._outcomes, []
        return out

    def in_flight(self) -> list[str]:
        return [tid for tid, _ in self._outcomes]

    def shutdown(self) -> None:
        self._outcomes.clear()
