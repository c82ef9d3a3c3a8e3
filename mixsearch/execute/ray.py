"""Run evaluations as Ray tasks, on a local Ray instance or a cluster.

Each job (or pack of same-rung jobs) is one Ray task that reserves ``num_cpus`` and
``num_gpus``. The evaluator is put in the object store once; on each worker process
its ``prepare()`` runs before the first trial there (serialised per node by a file
lock, so the first process builds the on-disk corpus cache and the others find it).

Ray never retries a task here (``max_retries=0``): the orchestrator owns retries,
so every attempt is counted in the ledger. A worker or node that dies mid-trial
comes back as :class:`WorkerLost` (retryable, up to ``Study.max_attempts``); an
:class:`~mixsearch.candidate.EvaluationError` raised on the worker (a diverged run)
comes back as itself (final).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import time
import uuid
from typing import Any, Iterator

from mixsearch.candidate import EvaluationError
from mixsearch.evaluate import Evaluator
from mixsearch.execute.base import Job, Outcome, run_pack


class WorkerLost(RuntimeError):
    """The Ray worker or node running a trial died, or the trial ran past its time limit (retryable)."""


# Evaluators already prepared in this worker process, by executor token. Ray reuses
# worker processes between tasks, so ``prepare()`` runs once per process, not per trial.
_PREPARED: dict[str, Evaluator] = {}


@contextlib.contextmanager
def _node_lock(token: str) -> Iterator[None]:
    """An exclusive lock shared by every worker process of this node for ``token``."""
    import fcntl

    path = os.path.join(tempfile.gettempdir(), f"mixsearch-prepare-{token}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def prepared(evaluator: Evaluator, token: str) -> Evaluator:
    """This process's prepared copy of ``evaluator`` (prepared on first use)."""
    ev = _PREPARED.get(token)
    if ev is None:
        with _node_lock(token):
            evaluator.prepare()
        _PREPARED.clear()  # one study per worker process at a time: drop older evaluators
        _PREPARED[token] = ev = evaluator
    return ev


def _portable(outcome: Any) -> Any:
    """An outcome that survives pickling back to the driver (some exceptions do not)."""
    if not isinstance(outcome, BaseException):
        return outcome
    try:
        pickle.loads(pickle.dumps(outcome))
        return outcome
    except Exception:  # noqa: BLE001 - keep the reason, lose the type
        cls = EvaluationError if isinstance(outcome, EvaluationError) else RuntimeError
        return cls(f"{type(outcome).__name__}: {outcome}")


def evaluate_pack(evaluator: Evaluator, token: str, jobs: list[Job]) -> list[Outcome]:
    """The Ray task body: prepare once per process, then evaluate the pack."""
    outcomes = run_pack(prepared(evaluator, token), jobs)
    return [(tid, _portable(o)) for tid, o in outcomes]


def lost_reason(exc: BaseException) -> BaseException:
    """The outcome to record for a Ray error raised by ``ray.get``.

    A task whose body raised (``RayTaskError``) reports its cause: an
    EvaluationError stays final, anything else becomes WorkerLost. System errors
    (worker crashed, node died, out of memory, object lost) become WorkerLost.
    """
    from ray.exceptions import RayTaskError

    cause = exc.cause if isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None else exc
    if isinstance(cause, EvaluationError):
        return cause
    text = str(cause).strip().splitlines()
    return WorkerLost(f"ray worker lost: {type(cause).__name__}: {text[0] if text else ''}".rstrip(": "))


class RayExecutor:
    """Evaluates jobs as Ray tasks.

    Args:
        address: Ray cluster address (``"auto"``, ``"host:port"``, ``"ray://host:10001"``);
            None connects to ``RAY_ADDRESS`` or a running local instance, else starts one.
            Ignored when Ray is already initialised in this process.
        workers: Tasks in flight at once.
        pack: Same-rung jobs evaluated together in one task (``evaluate_many``).
        num_cpus: CPUs each task reserves.
        num_gpus: GPUs each task reserves (1 for one proxy per GPU, 0.5 to share a GPU
            between two, 0 on CPU). None: 1 when the cluster has GPUs, else 0.
        timeout_s: Seconds after which a running task is cancelled and reported as
            WorkerLost (retryable); None waits forever.
        init_options: Extra keyword arguments for ``ray.init`` when this executor starts Ray.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int = 1,
        pack: int = 1,
        num_cpus: float = 1.0,
        num_gpus: float | None = None,
        timeout_s: float | None = None,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        if workers < 1 or pack < 1:
            raise ValueError("executor: workers and pack must be >= 1")
        if num_cpus < 0 or (num_gpus is not None and num_gpus < 0):
            raise ValueError("executor: num_cpus and num_gpus must be >= 0")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("executor: timeout_s must be positive")
        self.address = address
        self.workers = workers
        self._pack = pack
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.timeout_s = timeout_s
        self.init_options = dict(init_options or {})
        self._owns_ray = False
        self._token = ""
        self._evaluator_ref: Any = None
        self._task: Any = None
        self._refs: dict[Any, tuple[list[str], float]] = {}

    @property
    def capacity(self) -> int:
        return self.workers * self._pack

    @property
    def pack(self) -> int:
        return self._pack

    def start(self, evaluator: Evaluator) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ValueError("executor: ray is not installed; pip install 'mixsearch[ray]'") from exc
        if not ray.is_initialized():
            options = {"include_dashboard": False, **self.init_options}
            try:
                ray.init(address=self.address, **options)
            except ConnectionError as exc:
                raise ValueError(f"executor: cannot reach Ray cluster at {self.address!r}: {exc}") from None
            self._owns_ray = True
        if self.num_gpus is None:
            self.num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        # A fresh token per start: a resumed study re-prepares (its data may have changed).
        self._token = uuid.uuid4().hex[:16]
        self._evaluator_ref = ray.put(evaluator)
        self._task = ray.remote(evaluate_pack).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0, name="mixsearch.evaluate"
        )

    def submit(self, jobs: list[Job]) -> None:
        assert self._task is not None, "start() first"
        ref = self._task.remote(self._evaluator_ref, self._token, list(jobs))
        self._refs[ref] = ([j.trial_id for j in jobs], time.monotonic())

    def poll(self, timeout: float) -> list[Outcome]:
        if not self._refs:
            return []
        import ray

        refs = list(self._refs)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            # Collect everything else that is ready too, without waiting.
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        out: list[Outcome] = []
        for ref in ready:
            ids, _ = self._refs.pop(ref)
            try:
                out.extend(ray.get(ref))
            except ray.exceptions.RayError as exc:
                reason = lost_reason(exc)
                out.extend((tid, reason) for tid in ids)
        out.extend(self._expire())
        return out

    def _expire(self) -> list[Outcome]:
        """Cancel tasks that ran past ``timeout_s`` and report them lost."""
        if self.timeout_s is None:
            return []
        import ray

        now = time.monotonic()
        out: list[Outcome] = []
        for ref, (ids, started) in list(self._refs.items()):
            if now - started > self.timeout_s:
                ray.cancel(ref, force=True)
                del self._refs[ref]
                out.extend((tid, WorkerLost(f"ray task ran past timeout_s={self.timeout_s:g} s; cancelled")) for tid in ids)
        return out

    def in_flight(self) -> list[str]:
        return [tid for ids, _ in self._refs.values() for tid in ids]

    def shutdown(self) -> None:
        if self._refs:
            import ray

            for ref in self._refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            self._refs.clear()
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False
