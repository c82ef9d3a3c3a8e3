"""The trial loop (claim, submit, tell, heartbeat, recover) and, on top of it, asking.

:class:`TrialLoop` runs a study's pending trials: it claims them from the ledger, submits
them to an executor, records what comes back, keeps heartbeats and picks up orphans. A
:class:`~mixsearch.worker.Worker` is this loop and nothing more. The
:class:`Orchestrator` extends it with asking: when nothing is pending it rebuilds the
proposer's view from the ledger (done trials as observations, pending and running ones as
pending points) and adds what the proposer proposes. A study killed at any moment resumes
where it stopped: nothing proposed is lost and nothing finished runs again.

The loop owns no maths.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from mixsearch.candidate import Candidate, EvaluationError, TrialResult, canonical_weights
from mixsearch.evaluate import Evaluator
from mixsearch.execute.base import Executor, Job
from mixsearch.interrupt import StudyInterrupted, TrialInterrupted, clear_stop, request_stop
from mixsearch.ledger import DONE, FAILED, PENDING, RUNNING, Ledger, Trial, best_done, worker_name
from mixsearch.propose.base import History, ProposalContext, Proposer, Recommendation
from mixsearch.study import ContinualPretraining, Study
from mixsearch.threads import limited


class Progress(Protocol):
    """Receives the study's progress (a Rich display, a log, a test probe)."""

    def update(self, status: "Status") -> None: ...


@dataclass(frozen=True)
class Status:
    """A snapshot of a running study, for progress displays.

    Attributes:
        counts: Trials per state.
        spent: Cost of finished trials (done or failed).
        budget_cost: The cost budget (None when unbounded).
        trials_budget: The trial budget (None when unbounded).
        elapsed: Seconds since start.
        best: Best objective among done trials (study orientation) and its rung.
        last: The last trial finished, with its outcome.
    """

    counts: dict[str, int]
    spent: float
    budget_cost: float | None
    trials_budget: int | None
    elapsed: float
    best: tuple[float, str] | None = None
    last: str | None = None


@dataclass
class RunSummary:
    """What a study run did."""

    counts: dict[str, int]
    spent: float
    elapsed: float
    stopped_because: str
    recommendation: Recommendation | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def ask_seed(study_seed: int, ask: int) -> int:
    """Seed of one ask: a hash of the study seed and the ask index (stable across resumes).

    A stored interface: a change here would make a resumed study propose other trials
    than the run it continues (pinned by literal values in the tests).
    """
    digest = hashlib.sha256(f"{study_seed}:{ask}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def build_context(study: Study, ledger: Ledger, ask: int, pool: Any = None, trials: list[Trial] | None = None, salt: int = 0) -> ProposalContext:
    """The proposer's view of the study at ask ``ask``, rebuilt from the ledger.

    ``salt`` varies the seed when an ask must be repeated (its proposals were all known).
    """
    assert study.space is not None
    history = History.from_trials(trials if trials is not None else ledger.trials(), study.space.dim, study.objective)
    return ProposalContext(
        space=study.space,
        ladder=study.ladder,
        history=history,
        seed=ask_seed(study.seed, ask if salt == 0 else ask * 1000 + salt),
        pool=pool,
        trial_seed=study.seed,
        schedule=study.schedule,
        domains=tuple(study.domain_names),
    )


def trial_context(study: Study, snapshot: str) -> dict[str, dict[str, Any]]:
    """Per rung, what besides the candidate fixes a trial's result (part of its id).

    A continual pre-training study adds its base model (``schedule``): the same candidate
    continued from another base is another trial. (A two-phase candidate carries its phases
    itself: they enter its id through :func:`~mixsearch.candidate.trial_id`.) Studies without a schedule keep the
    context, and so the trial ids, they always had.
    """
    config = study.config_hash()
    out: dict[str, dict[str, Any]] = {r.name: {"config": config, "snapshot": snapshot, "N": r.n_params, "D": r.tokens} for r in study.ladder.rungs}
    if isinstance(study.schedule, ContinualPretraining):
        identity = study.schedule.identity(study.domain_names)
        for ctx in out.values():
            ctx["schedule"] = identity
    return out


class TrialLoop:
    """Runs a study's pending trials until none is left: claim, submit, tell, heartbeat, recover.

    Args:
        study: The validated study.
        ledger: Its ledger.
        evaluator: Turns candidates into results.
        executor: Where evaluations run.
        progress: Optional progress sink.
        heartbeat_interval: Seconds between heartbeats of running trials.
        heartbeat_timeout: Seconds after which another process's running trial is orphaned.
        study_file: The study file, recorded in the ledger so ``resume NAME`` finds it.
        after_tell: Called with the loop after each round of results is recorded (the
            bench scores the recommendation there).
    """

    def __init__(
        self,
        study: Study,
        ledger: Ledger,
        evaluator: Evaluator,
        executor: Executor,
        progress: Progress | None = None,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 120.0,
        study_file: str | None = None,
        after_tell: Callable[["TrialLoop"], None] | None = None,
    ) -> None:
        self.study = study
        self.ledger = ledger
        self.evaluator = evaluator
        self.executor = executor
        self.progress = progress
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.study_file = study_file
        self.after_tell = after_tell
        self.worker = worker_name()
        self.pool: Any = None
        self.interrupted: list[str] = []  # trials that were running when Ctrl-C came
        self._given_back: list[str] = []  # trials released because they were interrupted
        self._context: dict[str, dict[str, Any]] = {}
        self._start = time.time()
        self._last: str | None = None
        self._last_recover = time.monotonic()

    # -- set-up ----------------------------------------------------------------------

    def _prepare(self) -> None:
        self.evaluator.prepare()
        snapshot = self.evaluator.snapshot_id()
        # Refuses a ledger whose trials were run under another definition of the study.
        self.ledger.bind_study(self.study.name, self.study.to_dict(), self.study_file, self.study.definition(snapshot))
        self.ledger.set_meta("snapshot", snapshot)
        self._context = trial_context(self.study, snapshot)
        self._recover()
        self.pool = self.evaluator.pool()

    def _recover(self) -> None:
        self._last_recover = time.monotonic()
        self.ledger.recover(self.heartbeat_timeout, self.study.max_attempts)

    # -- budget ----------------------------------------------------------------------

    def spent(self, trials: list[Trial]) -> tuple[float, float]:
        """(cost of finished trials, cost committed to pending and running ones)."""
        spent = sum(float(t.cost or 0.0) for t in trials if t.state in (DONE, FAILED))
        committed = sum(self.study.ladder.rung(t.candidate.rung).run_cost for t in trials if t.state in (PENDING, RUNNING))
        return spent, committed

    def _stop_reason(self, trials: list[Trial]) -> str | None:
        b = self.study.budget
        finished = sum(t.state in (DONE, FAILED) for t in trials)
        spent, _ = self.spent(trials)
        if b.max_trials is not None and finished >= b.max_trials:
            return "trial budget spent"
        if b.max_cost is not None and spent >= b.max_cost * (1 - 1e-9):
            return "cost budget spent"
        if b.max_seconds is not None and self._trial_seconds(trials) >= b.max_seconds:
            return "time budget spent"
        return None

    def _trial_seconds(self, trials: list[Trial]) -> float:
        return sum(float(t.seconds or 0.0) for t in trials if t.state in (DONE, FAILED))

    # -- the loop --------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Claim, submit and tell until the budget is spent or nothing is left to run."""
        # A stop requested by an earlier loop in this process (Ctrl-C) stays set until then, so
        # trials it left running keep stopping even after a second Ctrl-C cut the wait short.
        clear_stop()
        self._prepare()
        self.executor.start(self.evaluator)
        reason = "finished"
        try:
            while True:
                trials = self.ledger.trials()
                stop = self._stop_reason(trials)
                in_flight = self.executor.in_flight()
                if stop is not None:
                    if not in_flight:
                        reason = stop
                        break
                else:
                    self._fill(trials, in_flight)
                    if not self.executor.in_flight():
                        idle = self._idle_reason()
                        if idle:
                            reason = idle
                            break
                self._report()
                outcomes = self.executor.poll(timeout=self.heartbeat_interval)
                for tid, outcome in outcomes:
                    self._tell(tid, outcome)
                if outcomes and self.after_tell is not None:
                    self.after_tell(self)
                self.ledger.heartbeat(self.executor.in_flight(), self.worker)
                if not outcomes and not self.executor.in_flight():
                    # Another process holds every open trial: wait, then look for orphans.
                    time.sleep(min(self.heartbeat_interval, 1.0))
                    self._recover()
                elif time.monotonic() - self._last_recover > self.heartbeat_timeout / 2:
                    # A peer that died mid-trial leaves orphans; pick them up while busy too.
                    self._recover()
        except KeyboardInterrupt:
            self._interrupt()
            raise StudyInterrupted(self.study.name, self.interrupted) from None
        finally:
            self.executor.shutdown()
        self._report()
        spent, _ = self.spent(self.ledger.trials())
        return RunSummary(self.ledger.counts(), spent, time.time() - self._start, reason, self.recommend())

    def _interrupt(self, wait: float = 30.0) -> None:
        """Ctrl-C: stop running trials at their next step and give them back to pending.

        Trials running in this process see the stop flag and come back interrupted (their
        attempt not counted); one that finishes in the meantime is recorded as done. A
        second Ctrl-C, or ``wait`` seconds, ends the wait: what is still running goes back
        to pending at once (and would be found orphaned anyway, its process gone).
        """
        request_stop()
        # Claimed here but not yet submitted, or already back with the interrupt (the signal
        # reaches worker processes too): running trials of this worker count as well.
        mine = [t.trial_id for t in self.ledger.trials([RUNNING]) if t.worker == self.worker]
        seen = dict.fromkeys([*self._given_back, *self.executor.in_flight(), *mine])
        deadline = time.monotonic() + wait
        try:
            while self.executor.in_flight() and time.monotonic() < deadline:
                for tid, outcome in self.executor.poll(timeout=0.2):
                    self._tell(tid, outcome)
        except KeyboardInterrupt:
            pass
        for tid in dict.fromkeys([*self.executor.in_flight(), *mine]):
            self.ledger.release(tid, self.worker)
        # What the message counts: the trials that are pending again (one that finished in
        # the meantime was recorded as done).
        self.interrupted = [tid for tid in seen if self.ledger.get(tid).state == PENDING]

    def _idle_reason(self) -> str | None:
        """Why the loop should end when nothing runs here: None to keep waiting."""
        counts = self.ledger.counts()
        if counts[PENDING] or counts[RUNNING]:
            return None
        return "no pending trials"

    def _fill(self, trials: list[Trial], in_flight: list[str]) -> None:
        """Claim pending trials up to the executor's capacity."""
        free = self.executor.capacity - len(in_flight)
        if free > 0:
            self._submit(self.ledger.claim(self.worker, limit=free))

    def _submit(self, claimed: list[Trial]) -> None:
        by_rung: dict[str, list[Job]] = {}
        for t in claimed:
            by_rung.setdefault(t.candidate.rung, []).append(Job(t.trial_id, t.candidate, self.study.ladder.rung(t.candidate.rung)))
        for jobs in by_rung.values():
            for i in range(0, len(jobs), self.executor.pack):
                self.executor.submit(jobs[i : i + self.executor.pack])

    def _tell(self, tid: str, outcome: TrialResult | BaseException) -> None:
        if isinstance(outcome, TrialResult) and outcome.finite:
            self.ledger.complete(tid, outcome, self.worker)
            self._last = f"{tid[:8]} done: {outcome.objective:.4g}"
            return
        if isinstance(outcome, TrialResult):
            error, retry, cost = f"non-finite result: objective={outcome.objective}", False, outcome.cost
        elif isinstance(outcome, EvaluationError):
            error, retry, cost = str(outcome), False, 0.0
        elif isinstance(outcome, TrialInterrupted):
            self.ledger.release(tid, self.worker)  # pending again, the attempt not counted
            self._given_back.append(tid)
            self._last = f"{tid[:8]} interrupted"
            return
        elif isinstance(outcome, (KeyboardInterrupt, SystemExit)):
            self.ledger.release(tid, self.worker)
            self._given_back.append(tid)
            raise outcome
        else:
            error, retry, cost = f"{type(outcome).__name__}: {outcome}", True, 0.0
        self.ledger.fail(tid, error.splitlines()[0] if error else "failed", self.worker, retry, self.study.max_attempts, cost)
        self._last = f"{tid[:8]} failed: {error[:80]}"

    # -- reporting -------------------------------------------------------------------

    def status(self) -> Status:
        """The study now, from the ledger."""
        trials = self.ledger.trials()
        spent, _ = self.spent(trials)
        best = best_done(trials, self.study.objective)
        return Status(
            counts=self.ledger.counts(),
            spent=spent,
            budget_cost=self.study.budget.max_cost,
            trials_budget=self.study.budget.max_trials,
            elapsed=time.time() - self._start,
            best=None if best is None else (float(best.objective), best.candidate.rung),  # type: ignore[arg-type]
            last=self._last,
        )

    def _report(self) -> None:
        if self.progress is not None:
            self.progress.update(self.status())

    def recommend(self) -> Recommendation | None:
        """A loop that does not propose recommends nothing."""
        return None


def _candidate_key(c: Candidate) -> tuple[Any, ...]:
    """What makes two candidates the same run within one study definition."""
    return (c.rung, canonical_weights(c.weights), c.seed, repr(c.schedule))


class Orchestrator(TrialLoop):
    """The trial loop plus asking: runs a study until its budget is spent.

    Args:
        study, ledger, evaluator, executor: As for :class:`TrialLoop`.
        proposer: Proposes candidates.
        **kwargs: ``progress``, ``heartbeat_interval``, ``heartbeat_timeout``,
            ``study_file``, ``after_tell`` (see :class:`TrialLoop`).
    """

    # Asks repeated with a salted seed when a proposal only repeats known trials.
    MAX_EMPTY_ASKS = 4

    def __init__(self, study: Study, ledger: Ledger, evaluator: Evaluator, executor: Executor, proposer: Proposer, **kwargs: Any) -> None:
        super().__init__(study, ledger, evaluator, executor, **kwargs)
        self.proposer = proposer
        self._exhausted = False  # the last ask by this process added nothing new

    def _room(self, trials: list[Trial]) -> tuple[int, float]:
        """(trials, cost) that may still be proposed on top of what is finished or in flight."""
        b = self.study.budget
        # Every trial proposed counts against the trial budget, whatever its state.
        n_room = (b.max_trials - len(trials)) if b.max_trials is not None else 10**9
        spent, committed = self.spent(trials)
        cost_room = (b.max_cost - spent - committed) if b.max_cost is not None else math.inf
        return n_room, cost_room

    def _fill(self, trials: list[Trial], in_flight: list[str]) -> None:
        """Claim pending trials up to the executor's capacity, asking for more when none wait."""
        if self.executor.capacity - len(in_flight) <= 0:
            return
        if not any(t.state == PENDING for t in trials):
            self._ask()
        super()._fill(trials, in_flight)

    def _idle_reason(self) -> str | None:
        counts = self.ledger.counts()
        if counts[PENDING] or counts[RUNNING]:
            return None
        stop = self._stop_reason(self.ledger.trials())
        if stop is not None:
            return stop  # peers finished the budget while this process looked for work
        if not self._exhausted:
            # Peers took every trial and finished them before this process could claim
            # one: ask again rather than conclude the proposer is out of ideas.
            return None
        return "proposer has nothing left to propose"

    def _ask(self) -> None:
        # One proposer at a time across every process on this ledger: re-read the
        # ledger under the lock so another orchestrator's fresh proposals count as
        # pending (or fill the queue, so there is nothing to ask for).
        with self.ledger.ask_lock():
            trials = self.ledger.trials()
            if any(t.state == PENDING for t in trials) or self._stop_reason(trials) is not None:
                return
            self._exhausted = not self._ask_locked(trials)

    def _ask_locked(self, trials: list[Trial]) -> bool:
        """Propose and add; True when something new was added."""
        n_room, cost_room = self._room(trials)
        q = min(self.study.proposer.batch_size, n_room)
        if q <= 0 or cost_room <= 0:
            return False
        ask = self.ledger.next_ask()
        known = {t.trial_id for t in trials}
        # The same candidate under another trial id: a trial run before a change the study's
        # definition allows (a new target or rung enters the id's context) is still that run.
        ran = {_candidate_key(t.candidate) for t in trials}
        # A proposal that only repeats known trials adds nothing (the ledger finds them);
        # ask again with a salted seed a few times before concluding nothing is left.
        for salt in range(self.MAX_EMPTY_ASKS):
            ctx = build_context(self.study, self.ledger, ask, self.pool, trials, salt=salt)
            kept, cost = [], 0.0
            with limited("surrogate"):
                proposals = [c for c in self.proposer.propose(ctx, q)[:q] if _candidate_key(c) not in ran]
            if not proposals:
                continue
            for c in proposals:
                c_cost = self.study.ladder.rung(c.rung).run_cost
                if cost + c_cost <= cost_room * (1 + 1e-9):
                    kept.append(c)
                    cost += c_cost
            if not kept:
                return False
            if set(self.ledger.add(kept, self._context, ask)) - known:
                return True
        return False

    def recommend(self) -> Recommendation | None:
        """The proposer's current recommendation, from the ledger."""
        ctx = build_context(self.study, self.ledger, self.ledger.next_ask(), self.pool)
        with limited("surrogate"):
            return self.proposer.recommend(ctx)
