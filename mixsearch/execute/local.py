"""Run evaluations in this process, on a small pool of threads.

PyTorch releases the GIL inside its kernels, so threads are enough to keep several
small proxies (or one GPU) busy; each worker thread takes one job or one pack.
"""

from __future__ import annotations

import concurrent.futures as cf

from mixsearch.evaluate import Evaluator
from mixsearch.execute.base import Job, Outcome, run_pack


class LocalExecutor:
    """Evaluates jobs on ``workers`` threads of this process.

    Args:
        workers: Jobs (or packs) in flight at once.
        pack: Same-rung jobs trained together as one batch (``evaluate_many``).
    """

    def __init__(self, workers: int = 1, pack: int = 1) -> None:
        if workers < 1 or pack < 1:
            raise ValueError("executor: workers and pack must be >= 1")
        self.workers = workers
        self._pack = pack
        self._pool: cf.ThreadPoolExecutor | None = None
        self._evaluator: Evaluator | None = None
        self._futures: dict[cf.Future, list[str]] = {}

    @property
    def capacity(self) -> int:
        return self.workers * self._pack

    @property
    def pack(self) -> int:
        return self._pack

    def start(self, evaluator: Evaluator) -> None:
        self._evaluator = evaluator
        self._pool = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mixsearch-eval")

    def submit(self, jobs: list[Job]) -> None:
        assert self._pool is not None and self._evaluator is not None, "start() first"
        fut = self._pool.submit(run_pack, self._evaluator, list(jobs))
        self._futures[fut] = [j.trial_id for j in jobs]

    def poll(self, timeout: float) -> list[Outcome]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out: list[Outcome] = []
        for fut in done:
            ids = self._futures.pop(fut)
            try:
                out.extend(fut.result())
            except BaseException as exc:  # noqa: BLE001 - report against every job of the pack
                out.extend((tid, exc) for tid in ids)
        return out

    def in_flight(self) -> list[str]:
        return [tid for ids in self._futures.values() for tid in ids]

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._futures.clear()
