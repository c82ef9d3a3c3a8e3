"""The ledger: trial records, their state machine and their storage (SQLAlchemy).

States: ``pending -> running -> done | failed``; a running trial whose worker died
goes back to ``pending`` (until its attempts run out, then ``failed``). Every state
change is a compare-and-set ``UPDATE ... WHERE state = <expected>``, so several
orchestrators or workers on one ledger never run or finish a trial twice.

SQLite (a file under ``runs/<study>/``) is the default; a PostgreSQL URL serves many
hosts; engines, locks and URL checks live in :mod:`mixsearch.storage`, the trial record
and its row codec in :mod:`mixsearch.trial`. The schema is versioned in the
``mixsearch_meta`` table.

Concurrency, per backend:

- SQLite: every write transaction starts with ``BEGIN IMMEDIATE``, so it holds the
  database's single write lock from its first statement (a deferred transaction that
  reads then writes can fail at once with "database is locked" when another process
  wrote in between; an immediate one waits its turn). Readers never block (WAL).
- PostgreSQL: ``claim`` picks rows with ``SELECT ... FOR UPDATE SKIP LOCKED``, so
  workers never queue on each other's rows; ``add`` takes a transaction advisory
  lock so two concurrent inserts cannot deadlock on the unique index.
- Both: :meth:`Ledger.ask_lock` serialises proposing across processes (an advisory
  lock on PostgreSQL, an ``flock`` on a file beside the SQLite database), so two
  orchestrators never propose from the same history at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import pandas as pd
import sqlalchemy as sa

from mixsearch.candidate import Candidate, TrialResult, trial_id
from mixsearch.identity import definition_changes, fingerprint, study_definition
from mixsearch.storage import (
    MEMORY_URL,
    PG_ADD_LOCK,
    PG_ASK_LOCK,
    PG_SCHEMA_LOCK,
    SCHEMA_VERSION,  # noqa: F401 - part of the ledger's public surface
    FileLock,
    LedgerError,
    PgAdvisoryLock,
    add_missing_columns,
    check_schema,
    disk_hint,
    drop_ledger,  # noqa: F401 - part of the ledger's public surface
    first_line,
    insert_ignore,
    make_engine,
    meta_table,
    metadata,
    safe_url,
    sqlite_lock_path,
    trials_table,
)
from mixsearch.trial import (  # noqa: F401 - states, Trial, finite and best_done are part of the ledger's public surface
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    STATES,
    Trial,
    best_done,
    finite,
    migrate_positional_weights,
    candidate_columns,
    result_columns,
    row_to_trial,
    trials_frame,
)


def worker_name() -> str:
    """``host:pid``: identifies the process that claims a trial (used to spot dead ones)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def default_url(study_name: str, root: str | Path = "runs") -> str:
    """The default SQLite URL ``sqlite:///<root>/<study>/ledger.sqlite``."""
    return f"sqlite:///{Path(root) / study_name / 'ledger.sqlite'}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _local_worker_dead(worker: str | None, host: str) -> bool:
    """Whether ``worker`` (``host:pid``) was a process on this host that no longer exists."""
    if not worker or ":" not in worker:
        return False
    w_host, _, pid = worker.rpartition(":")
    if w_host != host:
        return False
    try:
        return not _pid_alive(int(pid))
    except ValueError:
        return False


class Ledger:
    """Trial storage for one study.

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
        create: Create the schema when the database is new.
        memory: Allow an in-memory SQLite URL (see :meth:`in_memory`); a study's own
            ledger must keep its trials, so by default such a URL is refused.

    Raises:
        LedgerError: the URL is malformed or keeps nothing, the database cannot be
            reached or created, it is not a mixsearch ledger, or its schema is newer
            than this mixsearch.
    """

    def __init__(self, url: str, create: bool = True, memory: bool = False) -> None:
        self.url = url
        self._finished: dict[str, Trial] = {}
        self._domains: tuple[str, ...] | None = None
        self.engine = make_engine(url, create, memory)
        self.dialect = self.engine.dialect.name
        try:
            with self._write("cannot open") if create else self._read("cannot open") as conn:
                if create:
                    if self.dialect == "postgresql":
                        # Several processes may open a new ledger at once; CREATE TABLE is
                        # not race-safe on PostgreSQL, so take a transaction lock first.
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_SCHEMA_LOCK})
                    metadata.create_all(conn)
                check_schema(conn, self.url, create)
            self._migrate_columns()
        except LedgerError:
            self.engine.dispose()
            raise

    def _migrate_columns(self) -> None:
        """Give a ledger of an older schema the trial columns added since (nullable: old rows keep
        their meaning). The schema version is raised when a study is next bound to it."""
        with self._read("cannot open") as conn:
            have = {c["name"] for c in sa.inspect(conn).get_columns("trials")}
        if {c.name for c in trials_table.columns} <= have:
            return
        with self._write("cannot migrate") as conn:
            add_missing_columns(conn)

    @classmethod
    def in_memory(cls) -> "Ledger":
        """A throwaway ledger in memory (the bench's): nothing is kept after :meth:`dispose`."""
        return cls(MEMORY_URL, memory=True)

    # -- transactions ----------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self, what: str = "cannot write") -> Iterator[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); database errors become LedgerError."""
        with self._translate(what), self.engine.connect() as conn:
            conn.execution_options(mixsearch_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self, what: str = "cannot read") -> Iterator[sa.Connection]:
        """A read-only connection; database errors become LedgerError."""
        with self._translate(what), self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as exc:
            raise LedgerError(f"ledger {safe_url(self.url)}: {what}: {first_line(exc.orig)}{disk_hint(self.url)}") from exc

    # -- schema and study ------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).first()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            updated = conn.execute(sa.update(meta_table).where(meta_table.c.key == key).values(value=value)).rowcount
            if not updated:
                insert_ignore(conn, meta_table, [{"key": key, "value": value}])

    def bind_study(self, name: str, study_json: Mapping[str, Any], study_file: str | None, definition: Mapping[str, Any] | None = None) -> None:
        """Record which study owns this ledger and what its results mean; refuse anything else.

        Args:
            name: The study's name.
            study_json: ``Study.to_dict()`` (kept for reports and exports).
            study_file: The study file, so ``resume NAME`` finds it.
            definition: ``Study.definition(snapshot)``: what gives the stored results
                their meaning. A ledger that holds another definition is refused with the
                reason; a ledger from before definitions were stored (schema 1) is
                migrated when its recorded study agrees.

        Raises:
            LedgerError: the ledger belongs to another study.
            StudyChanged: the study's definition differs from the one its trials were run under.
        """
        with self._write() as conn:
            # Claim ownership first (insert-ignore), then read who owns it: race-free
            # when several orchestrators start on a fresh ledger at once.
            insert_ignore(
                conn,
                meta_table,
                [{"key": "study_name", "value": name}, {"key": "created", "value": str(time.time())}],
            )
            owner = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "study_name")).scalar()
        if owner != name:
            raise LedgerError(f"ledger {safe_url(self.url)}: belongs to study {owner!r}, not {name!r}")
        if definition is not None:
            self._bind_definition(name, dict(definition))
        self.set_meta("study", json.dumps(study_json, sort_keys=True))
        if study_file is not None:
            self.set_meta("study_file", str(Path(study_file).resolve()))

    def _bind_definition(self, name: str, definition: dict[str, Any]) -> None:
        stored = self.definition()
        if stored is None:
            legacy = self.get_meta("study")
            if legacy is not None and self.counts_total():
                # A schema-1 ledger: its definition is the one its recorded study implies.
                stored = study_definition(json.loads(legacy), self.get_meta("snapshot"))
        if stored is not None:
            changes = definition_changes(stored, definition)
            if changes:
                raise StudyChanged(name, self.url, changes)
        merged = dict(definition)
        if stored is not None and ("rungs" in stored or "rungs" in definition):
            # Rungs may be added between runs; keep every rung a stored trial refers to.
            merged["rungs"] = {**stored.get("rungs", {}), **definition.get("rungs", {})}
        domains = list(definition["domains"])
        with self._write() as conn:
            migrate_positional_weights(conn, domains)
            for key, value in (("definition", json.dumps(merged, sort_keys=True)), ("fingerprint", fingerprint(merged)), ("domains", json.dumps(domains)), ("schema_version", str(SCHEMA_VERSION))):
                if not conn.execute(sa.update(meta_table).where(meta_table.c.key == key).values(value=value)).rowcount:
                    insert_ignore(conn, meta_table, [{"key": key, "value": value}])
        self._domains = tuple(domains)

    def definition(self) -> dict[str, Any] | None:
        """The study definition the stored trials were run under (None before one was bound)."""
        raw = self.get_meta("definition")
        return None if raw is None else json.loads(raw)

    @property
    def domains(self) -> tuple[str, ...] | None:
        """The bound study's domain names: the keys weights are stored under."""
        if self._domains is None:
            raw = self.get_meta("domains")
            if raw is not None:
                self._domains = tuple(json.loads(raw))
        return self._domains

    def legacy_domains(self) -> list[str] | None:
        """Domain order of a schema-1 ledger, whose rows store weights by position."""
        raw = self.get_meta("study")
        return None if raw is None else [d["name"] for d in json.loads(raw).get("domains", [])]

    # -- proposing -------------------------------------------------------------------

    @contextlib.contextmanager
    def ask_lock(self, timeout: float = 600.0, poll: float = 0.05) -> Iterator[None]:
        """Hold the study's ask lock: one proposer at a time across every process.

        The holder re-reads the ledger, proposes and adds its candidates, then
        releases; the next holder then sees those candidates as pending points. A
        holder that dies releases the lock with it (the lock belongs to its
        database session, or to its open file).

        Args:
            timeout: Seconds to wait for the lock.
            poll: Seconds between attempts (jittered).

        Raises:
            LedgerError: the lock was not free within ``timeout``.
        """
        if self.dialect == "postgresql":
            lock: Any = PgAdvisoryLock(self.engine, PG_ASK_LOCK)
        else:
            lock = FileLock(sqlite_lock_path(self.url))
        deadline = time.monotonic() + timeout
        with self._translate("ask lock"):
            while not lock.acquire():
                if time.monotonic() > deadline:
                    lock.close()
                    raise LedgerError(f"ledger {safe_url(self.url)}: ask lock still held by another process after {timeout:.0f} s")
                time.sleep(poll * (0.5 + random.random()))
        try:
            yield
        finally:
            lock.release()

    # -- writes ----------------------------------------------------------------------

    def add(self, candidates: Iterable[Candidate], context: Mapping[str, Any] | Any, ask: int) -> list[str]:
        """Insert candidates as pending trials; existing ids are found, not duplicated.

        Args:
            candidates: Candidates to add.
            context: Mapping rung name -> context dict (what besides the candidate fixes
                the result), or a callable ``rung -> dict``.
            ask: Index of the ask that proposed them.

        Returns:
            The trial ids, in order, including ones that already existed.
        """
        now = time.time()
        rows: dict[str, dict[str, Any]] = {}
        ids = []
        domains = self.domains
        if domains is None:
            raise LedgerError(f"ledger {safe_url(self.url)}: no study is bound to it yet (bind_study with its definition first); weights are stored by domain name")
        for c in candidates:
            if len(c.weights) != len(domains):
                raise LedgerError(f"ledger {safe_url(self.url)}: a candidate has {len(c.weights)} weights for the study's {len(domains)} domains")
            ctx = context(c.rung) if callable(context) else context[c.rung]
            tid = trial_id(c, ctx)
            ids.append(tid)
            rows.setdefault(
                tid,
                {
                    "trial_id": tid,
                    "ask": ask,
                    **candidate_columns(c, domains),
                    "state": PENDING,
                    "attempts": 0,
                    "created": now,
                },
            )
        if rows:
            with self._write() as conn:
                if self.dialect == "postgresql":
                    # Two concurrent inserts of overlapping sets in different orders would
                    # deadlock on the unique index; adds are rare, so serialise them.
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_ADD_LOCK})
                insert_ignore(conn, trials_table, list(rows.values()), key="trial_id")
        return ids

    def import_done(self, finished: Sequence[tuple[Candidate, TrialResult]], context: Mapping[str, Any]) -> int:
        """Insert trials that already ran elsewhere (a fork) as done, with their results.

        Args:
            finished: ``(candidate, result)`` pairs.
            context: Mapping rung name -> context dict (part of each new trial id).

        Returns:
            The number of trials inserted (a repeated candidate is inserted once).
        """
        domains = self.domains
        if domains is None:
            raise LedgerError(f"ledger {safe_url(self.url)}: no study is bound to it yet")
        now = time.time()
        rows: dict[str, dict[str, Any]] = {}
        for c, r in finished:
            tid = trial_id(c, context[c.rung])
            rows.setdefault(tid, {
                "trial_id": tid, "ask": 0, **candidate_columns(c, domains),
                "state": DONE, "attempts": 0, "created": now, "finished": now, **result_columns(r),
            })
        if rows:
            with self._write() as conn:
                insert_ignore(conn, trials_table, list(rows.values()), key="trial_id")
        return len(rows)

    def claim(self, worker: str, trial_ids: Sequence[str] | None = None, limit: int = 1) -> list[Trial]:
        """Move up to ``limit`` pending trials to running for ``worker``, oldest first.

        One transaction: pick pending rows (locking them, skipping rows another
        claimer holds, on PostgreSQL), then compare-and-set them to running.

        Args:
            worker: Claiming worker's name.
            trial_ids: Restrict to these ids; default any pending trial.
            limit: Most trials to claim.

        Returns:
            The trials this worker now holds.
        """
        if limit < 1:
            return []
        t = trials_table
        q = sa.select(t.c.trial_id).where(t.c.state == PENDING).order_by(t.c.number).limit(limit)
        if trial_ids is not None:
            q = q.where(t.c.trial_id.in_(list(trial_ids)))
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        now = time.time()
        with self._write() as conn:
            picked = list(conn.execute(q).scalars())
            if not picked:
                return []
            conn.execute(
                sa.update(t)
                .where(t.c.trial_id.in_(picked), t.c.state == PENDING)
                .values(state=RUNNING, worker=worker, heartbeat=now, started=now, attempts=t.c.attempts + 1)
            )
            rows = conn.execute(
                sa.select(t).where(t.c.trial_id.in_(picked), t.c.state == RUNNING, t.c.worker == worker).order_by(t.c.number)
            ).mappings()
            return [row_to_trial(r, self._read_order()) for r in rows]

    def heartbeat(self, trial_ids: Sequence[str], worker: str) -> list[str]:
        """Refresh the heartbeat of running trials held by ``worker``.

        Returns:
            The ids of ``trial_ids`` that ``worker`` still holds (a trial missing here
            was recovered by another process and its result will be dropped).
        """
        if not trial_ids:
            return []
        t = trials_table
        with self._write() as conn:
            held = t.c.trial_id.in_(list(trial_ids)), t.c.state == RUNNING, t.c.worker == worker
            conn.execute(sa.update(t).where(*held).values(heartbeat=time.time()))
            return list(conn.execute(sa.select(t.c.trial_id).where(*held)).scalars())

    def complete(self, tid: str, result: TrialResult, worker: str) -> bool:
        """Record a finished trial. Only the worker holding it may finish it.

        Returns:
            True if this call moved it to done; False if it was not (or no longer)
            running for ``worker`` (then the result is dropped: someone else owns it).
        """
        t = trials_table
        values = {"state": DONE, "finished": time.time(), **result_columns(result)}
        with self._write() as conn:
            n = conn.execute(
                sa.update(t).where(t.c.trial_id == tid, t.c.state == RUNNING, t.c.worker == worker).values(**values)
            ).rowcount
        return n == 1

    def fail(self, tid: str, error: str, worker: str, retry: bool, max_attempts: int, cost: float = 0.0) -> str | None:
        """Record a failed attempt.

        Args:
            tid: Trial id.
            error: One-line reason.
            worker: The worker holding it.
            retry: Whether the failure is worth retrying (worker crash) or final
                (diverged run, bad data).
            max_attempts: Attempts allowed before the trial stays failed.
            cost: Cost spent by the failed attempt (charged to the budget when final).

        Returns:
            The new state, or None if the worker no longer held the trial.
        """
        t = trials_table
        held = (t.c.trial_id == tid, t.c.state == RUNNING, t.c.worker == worker)
        with self._write() as conn:
            q = sa.select(t.c.attempts).where(*held)
            if self.dialect == "postgresql":
                q = q.with_for_update()
            row = conn.execute(q).first()
            if row is None:
                return None
            new_state = PENDING if retry and row[0] < max_attempts else FAILED
            values: dict[str, Any] = {"state": new_state, "error": error[:2000]}
            if new_state == FAILED:
                values.update(finished=time.time(), cost=float(cost), objective=None)
            else:
                values.update(worker=None, heartbeat=None)
            n = conn.execute(sa.update(t).where(*held).values(**values)).rowcount
        return new_state if n == 1 else None

    def release(self, tid: str, worker: str) -> bool:
        """Give a running trial back to pending without charging an attempt (Ctrl-C)."""
        t = trials_table
        with self._write() as conn:
            n = conn.execute(
                sa.update(t)
                .where(t.c.trial_id == tid, t.c.state == RUNNING, t.c.worker == worker)
                .values(state=PENDING, worker=None, heartbeat=None, attempts=t.c.attempts - 1)
            ).rowcount
        return n == 1

    def recover(self, heartbeat_timeout: float, max_attempts: int) -> list[str]:
        """Return orphaned running trials to pending (or failed when out of attempts).

        A running trial is orphaned when its heartbeat is older than
        ``heartbeat_timeout`` seconds, or when its worker was a process on this host
        that no longer exists (so a killed local study resumes at once). The update
        is a compare-and-set on the heartbeat it saw, so a worker that heartbeats in
        the meantime keeps its trial.

        Returns:
            Ids of the trials recovered.
        """
        t = trials_table
        now = time.time()
        host = socket.gethostname()
        with self._read() as conn:
            rows = conn.execute(sa.select(t.c.trial_id, t.c.worker, t.c.heartbeat, t.c.attempts).where(t.c.state == RUNNING)).all()
        recovered = []
        for tid, worker, beat, attempts in rows:
            if not (_local_worker_dead(worker, host) or beat is None or now - beat > heartbeat_timeout):
                continue
            state = PENDING if attempts < max_attempts else FAILED
            values: dict[str, Any] = {"state": state, "worker": None, "heartbeat": None}
            if state == FAILED:
                values.update(error=f"worker {worker} lost {attempts} time(s)", finished=now, cost=0.0)
            same = [t.c.trial_id == tid, t.c.state == RUNNING]
            same.append(t.c.worker.is_(None) if worker is None else t.c.worker == worker)
            same.append(t.c.heartbeat.is_(None) if beat is None else t.c.heartbeat == beat)
            with self._write() as conn:
                n = conn.execute(sa.update(t).where(*same).values(**values)).rowcount
            if n == 1:
                recovered.append(tid)
        return recovered

    # -- reads -----------------------------------------------------------------------

    def get(self, tid: str) -> Trial:
        with self._read() as conn:
            row = conn.execute(sa.select(trials_table).where(trials_table.c.trial_id == tid)).mappings().first()
        if row is None:
            raise KeyError(tid)
        return row_to_trial(row, self._read_order())

    def trials(self, states: Sequence[str] | None = None) -> list[Trial]:
        """All trials (optionally in ``states``), in insertion order."""
        q = sa.select(trials_table).order_by(trials_table.c.number)
        if states is not None:
            q = q.where(trials_table.c.state.in_(list(states)))
        with self._read() as conn:
            rows = conn.execute(q).mappings().all()
        out = []
        for r in rows:
            # A done or failed row never changes again: parse it once per Ledger object
            # (the orchestrator re-reads the whole ledger on every ask).
            trial = self._finished.get(r["trial_id"]) if r["state"] in (DONE, FAILED) else None
            if trial is None:
                trial = row_to_trial(r, self._read_order())
                if trial.state in (DONE, FAILED):
                    self._finished[trial.trial_id] = trial
            out.append(trial)
        return out

    def _read_order(self) -> Sequence[str] | None:
        """The domain order weights are read in: the bound study's, else a schema-1 ledger's."""
        return self.domains or self.legacy_domains()

    def counts_total(self) -> int:
        """Number of trials in the ledger."""
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(trials_table)).scalar() or 0)

    def counts(self) -> dict[str, int]:
        """Number of trials in each state."""
        t = trials_table
        with self._read() as conn:
            rows = conn.execute(sa.select(t.c.state, sa.func.count()).group_by(t.c.state)).all()
        out = {s: 0 for s in STATES}
        out.update({s: int(n) for s, n in rows})
        return out

    def next_ask(self) -> int:
        """Index the next ask will carry."""
        with self._read() as conn:
            value = conn.execute(sa.select(sa.func.max(trials_table.c.ask))).scalar()
        return 0 if value is None else int(value) + 1

    def to_dataframe(self) -> pd.DataFrame:
        """One row per trial (:func:`~mixsearch.trial.trials_frame`), weight columns named
        as the ledger stored them, never by a study file's current order."""
        return trials_frame(self.trials(), self._read_order())

    def dispose(self) -> None:
        self.engine.dispose()


class StudyChanged(LedgerError):
    """A study file whose definition differs from the one its ledger's trials were run under."""

    def __init__(self, name: str, url: str, changes: Sequence[str]) -> None:
        self.changes = list(changes)
        super().__init__(
            f"study {name!r} changed since its trials were run ({'; '.join(changes)}): its stored results would be "
            f"mislabelled or mixed (ledger {safe_url(url)}). Give the study a new name, or continue with "
            f"'mixsearch study start FILE --fork NEW' to copy the compatible trials into a new study"
        )
