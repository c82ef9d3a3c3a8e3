"""The ledger: trial records, their state machine and their storage (SQLAlchemy).

States: ``pending -> running -> done | failed``; a running trial whose worker died
goes back to ``pending`` (until its attempts run out, then ``failed``). Every state
change is a compare-and-set ``UPDATE ... WHERE state = <expected>``, so several
orchestrators or workers on one ledger never run or finish a trial twice.

SQLite (a file under ``runs/<study>/``) is the default; a PostgreSQL URL serves many
hosts. The schema is versioned in the ``mixsearch_meta`` table.

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
import errno
import json
import math
import os
import random
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mixsearch.candidate import Candidate, TrialResult, trial_id

SCHEMA_VERSION = 1

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATES = (PENDING, RUNNING, DONE, FAILED)

# PostgreSQL advisory lock keys (64-bit, scoped to the database that holds the ledger).
_PG_ASK_LOCK = zlib.crc32(b"mixsearch.ask")
_PG_SCHEMA_LOCK = zlib.crc32(b"mixsearch.schema")
_PG_ADD_LOCK = zlib.crc32(b"mixsearch.add")

_metadata = sa.MetaData()

meta_table = sa.Table(
    "mixsearch_meta",
    _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

trials_table = sa.Table(
    "trials",
    _metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trial_id", sa.String(40), nullable=False, unique=True),
    sa.Column("ask", sa.Integer, nullable=False),
    sa.Column("weights", sa.Text, nullable=False),
    sa.Column("rung", sa.String(128), nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker", sa.String(256)),
    sa.Column("heartbeat", sa.Float),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("cost", sa.Float),
    sa.Column("seconds", sa.Float),
    sa.Column("objective", sa.Float),
    sa.Column("domain_losses", sa.Text),
    sa.Column("curve", sa.Text),
    sa.Column("metrics", sa.Text),
    sa.Column("error", sa.Text),
)


class LedgerError(RuntimeError):
    """A ledger that cannot be opened or written (newer schema, unwritable path, full disk, other study)."""


@dataclass(frozen=True)
class Trial:
    """One row of the ledger.

    Attributes:
        trial_id: Hash of the canonical candidate and its context.
        number: Insertion order (1-based).
        ask: Index of the ask that proposed it.
        candidate: The candidate.
        state: One of ``STATES``.
        attempts: How many times it was claimed.
        result: Results once done.
        error: Reason once failed.
    """

    trial_id: str
    number: int
    ask: int
    candidate: Candidate
    state: str
    attempts: int
    worker: str | None = None
    heartbeat: float | None = None
    created: float | None = None
    started: float | None = None
    finished: float | None = None
    cost: float | None = None
    seconds: float | None = None
    objective: float | None = None
    domain_losses: Mapping[str, float] = field(default_factory=dict)
    curve: Sequence[Sequence[float]] = field(default_factory=list)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


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

    Raises:
        LedgerError: the URL is malformed, the database cannot be reached or
            created, it is not a mixsearch ledger, or its schema is newer than
            this mixsearch.
    """

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        self._finished: dict[str, Trial] = {}
        self.engine = _make_engine(url, create)
        self.dialect = self.engine.dialect.name
        try:
            with self._write("cannot open") if create else self._read("cannot open") as conn:
                if create:
                    if self.dialect == "postgresql":
                        # Several processes may open a new ledger at once; CREATE TABLE is
                        # not race-safe on PostgreSQL, so take a transaction lock first.
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK})
                    _metadata.create_all(conn)
                self._check_schema(conn, create)
        except LedgerError:
            self.engine.dispose()
            raise

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
            raise LedgerError(f"ledger {_safe_url(self.url)}: {what}: {_first_line(exc.orig)}{self._disk_hint()}") from exc

    def _disk_hint(self) -> str:
        """' (disk full: ...)' when the SQLite file's disk is (nearly) full: SQLite often
        reports that only as a generic I/O error."""
        if self.dialect != "sqlite":
            return ""
        path = sa.engine.make_url(self.url).database
        if not path or path == ":memory:":
            return ""
        folder = Path(path).parent
        try:
            st = os.statvfs(folder)
        except OSError:
            return ""
        free = st.f_bavail * st.f_frsize
        return f" (disk full: {free} bytes free in {folder})" if free < 1 << 20 else ""

    # -- schema and study ------------------------------------------------------------

    def _check_schema(self, conn: sa.Connection, create: bool) -> None:
        if not sa.inspect(conn).has_table("mixsearch_meta"):
            raise LedgerError(f"ledger {_safe_url(self.url)}: not a mixsearch ledger (no mixsearch_meta table)")
        row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
        if row is None:
            if not create:
                raise LedgerError(f"ledger {_safe_url(self.url)}: no schema version recorded")
            _insert_ignore(conn, meta_table, [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
            return
        try:
            version = int(row[0])
        except ValueError:
            raise LedgerError(f"ledger {_safe_url(self.url)}: unreadable schema version {row[0]!r}") from None
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {_safe_url(self.url)}: schema version {version} is newer than this mixsearch "
                f"supports ({SCHEMA_VERSION}); upgrade mixsearch"
            )

    def get_meta(self, key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).first()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            updated = conn.execute(sa.update(meta_table).where(meta_table.c.key == key).values(value=value)).rowcount
            if not updated:
                _insert_ignore(conn, meta_table, [{"key": key, "value": value}])

    def bind_study(self, name: str, study_json: Mapping[str, Any], study_file: str | None) -> None:
        """Record which study owns this ledger; refuse a ledger of another study."""
        with self._write() as conn:
            # Claim ownership first (insert-ignore), then read who owns it: race-free
            # when several orchestrators start on a fresh ledger at once.
            _insert_ignore(
                conn,
                meta_table,
                [{"key": "study_name", "value": name}, {"key": "created", "value": str(time.time())}],
            )
            owner = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "study_name")).scalar()
        if owner != name:
            raise LedgerError(f"ledger {_safe_url(self.url)}: belongs to study {owner!r}, not {name!r}")
        self.set_meta("study", json.dumps(study_json, sort_keys=True))
        if study_file is not None:
            self.set_meta("study_file", str(Path(study_file).resolve()))

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
            lock: Any = _PgAdvisoryLock(self.engine, _PG_ASK_LOCK)
        else:
            lock = _FileLock(_sqlite_lock_path(self.url))
        deadline = time.monotonic() + timeout
        with self._translate("ask lock"):
            while not lock.acquire():
                if time.monotonic() > deadline:
                    lock.close()
                    raise LedgerError(f"ledger {_safe_url(self.url)}: ask lock still held by another process after {timeout:.0f} s")
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
        for c in candidates:
            ctx = context(c.rung) if callable(context) else context[c.rung]
            tid = trial_id(c, ctx)
            ids.append(tid)
            rows.setdefault(
                tid,
                {
                    "trial_id": tid,
                    "ask": ask,
                    "weights": json.dumps(list(c.weights)),
                    "rung": c.rung,
                    "seed": c.seed,
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
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_ADD_LOCK})
                _insert_ignore(conn, trials_table, list(rows.values()), key="trial_id")
        return ids

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
            return [_to_trial(r) for r in rows]

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
        values = {
            "state": DONE,
            "finished": time.time(),
            "cost": float(result.cost),
            "seconds": float(result.seconds),
            "objective": float(result.objective),
            "domain_losses": json.dumps({k: float(v) for k, v in result.domain_losses.items()}),
            "curve": json.dumps([list(map(float, p)) for p in result.curve]),
            "metrics": json.dumps(dict(result.metrics), default=str),
            "error": None,
        }
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
        return _to_trial(row)

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
                trial = _to_trial(r)
                if trial.state in (DONE, FAILED):
                    self._finished[trial.trial_id] = trial
            out.append(trial)
        return out

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

    def to_dataframe(self, domains: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per trial: ids, state, rung, costs, objective, ``w_<domain>`` and ``loss_<domain>`` columns.

        Args:
            domains: Domain names in weight order (from the study). Defaults to the
                recorded study's domains, else ``d0, d1, ...``.
        """
        trials = self.trials()
        if domains is None:
            domains = self.study_domains()
        records = []
        for tr in trials:
            names = domains or [f"d{i}" for i in range(len(tr.candidate.weights))]
            rec: dict[str, Any] = {
                "trial_id": tr.trial_id,
                "number": tr.number,
                "ask": tr.ask,
                "state": tr.state,
                "rung": tr.candidate.rung,
                "seed": tr.candidate.seed,
                "attempts": tr.attempts,
                "objective": tr.objective,
                "cost": tr.cost,
                "seconds": tr.seconds,
                "n_params": tr.metrics.get("n_params"),
                "tokens": tr.metrics.get("tokens"),
                "error": tr.error,
                "worker": tr.worker,
                "created": tr.created,
                "finished": tr.finished,
            }
            rec.update({f"w_{d}": w for d, w in zip(names, tr.candidate.weights)})
            rec.update({f"loss_{d}": v for d, v in tr.domain_losses.items()})
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def study_domains(self) -> list[str] | None:
        raw = self.get_meta("study")
        if raw is None:
            return None
        return [d["name"] for d in json.loads(raw).get("domains", [])]

    def dispose(self) -> None:
        self.engine.dispose()


def drop_ledger(url: str) -> None:
    """Delete a ledger: the SQLite file (and its WAL and lock files), or the mixsearch
    tables of a PostgreSQL database. Other tables in that database are left alone.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:":
            for suffix in ("", "-wal", "-shm", "-journal", "-asklock"):
                Path(path + suffix).unlink(missing_ok=True)
        return
    engine = _make_engine(url, create=False)
    try:
        with engine.begin() as conn:
            _metadata.drop_all(conn)
    finally:
        engine.dispose()


class _FileLock:
    """A non-blocking exclusive ``flock`` on a file; the kernel drops it when its holder dies.

    flock locks belong to the open file, so two Ledger objects (or threads) in one
    process exclude each other too, each opening the file on its own.
    """

    _memory_lock = threading.Lock()  # in-memory SQLite: one process, so a thread lock is enough

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        if self.path is None:
            return self._memory_lock.acquire(blocking=False)
        import fcntl

        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def release(self) -> None:
        if self.path is None:
            self._memory_lock.release()
            return
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file drops its flock
            self.fd = None


class _PgAdvisoryLock:
    """A session-level PostgreSQL advisory lock on a connection of its own.

    The server drops it when the session ends, so a killed holder frees it at once.
    """

    def __init__(self, engine: sa.Engine, key: int) -> None:
        self.engine = engine
        self.key = key
        self.conn: sa.Connection | None = None

    def acquire(self) -> bool:
        if self.conn is None:
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return bool(self.conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())

    def release(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self.conn.close()
        except Exception:  # noqa: BLE001 - a connection that cannot unlock must not return to the pool
            self.conn.invalidate()
        self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _sqlite_lock_path(url: str) -> Path | None:
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:":
        return None
    return Path(path + "-asklock")


def _to_trial(row: Mapping[str, Any]) -> Trial:
    cand = Candidate(tuple(json.loads(row["weights"])), row["rung"], int(row["seed"]))
    return Trial(
        trial_id=row["trial_id"],
        number=int(row["number"]),
        ask=int(row["ask"]),
        candidate=cand,
        state=row["state"],
        attempts=int(row["attempts"]),
        worker=row["worker"],
        heartbeat=row["heartbeat"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        cost=row["cost"],
        seconds=row["seconds"],
        objective=row["objective"],
        domain_losses=json.loads(row["domain_losses"]) if row["domain_losses"] else {},
        curve=json.loads(row["curve"]) if row["curve"] else [],
        metrics=json.loads(row["metrics"]) if row["metrics"] else {},
        error=row["error"],
    )


def _insert_ignore(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], key: str = "key") -> None:
    """Insert rows, skipping ones whose unique key exists (race-safe on SQLite and PostgreSQL)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        for r in rows:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(table).values(**r))
            except IntegrityError:
                pass
        return
    conn.execute(insert(table).values(rows).on_conflict_do_nothing(index_elements=[key]))


def _make_engine(url: str, create: bool) -> sa.Engine:
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise LedgerError(f"ledger {url!r}: not an SQLAlchemy URL (e.g. sqlite:///runs/x/ledger.sqlite or postgresql+psycopg://user@host/db): {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, create)
    if parsed.get_backend_name() != "postgresql":
        raise LedgerError(f"ledger {_safe_url(url)}: unsupported database {parsed.get_backend_name()!r}; use sqlite:/// or postgresql+psycopg://")
    try:
        # Fail fast on an unreachable host instead of hanging on connect.
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        hint = " (install psycopg and use postgresql+psycopg://)" if isinstance(exc, ImportError) else ""
        raise LedgerError(f"ledger {_safe_url(url)}: {_first_line(exc)}{hint}") from None


def _sqlite_engine(url: str, path: str | None, create: bool) -> sa.Engine:
    if path and path != ":memory:":
        p = Path(path)
        if create:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LedgerError(f"ledger {url}: cannot create folder {p.parent}: {exc.strerror}") from None
            if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
                raise LedgerError(f"ledger {url}: {p if p.exists() else p.parent} is not writable")
        elif not p.exists():
            raise LedgerError(f"ledger {url}: no such file")
        if p.exists() and p.is_dir():
            raise LedgerError(f"ledger {url}: {p} is a folder, not a database file")
    engine = sa.create_engine(url, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below), so the driver must not.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=60000")
        # WAL lets readers (status, proposers) run beside the writer.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # Writers take the write lock up front and wait for it (busy_timeout); a
        # deferred writer could instead fail at once when its read snapshot is stale.
        immediate = conn.get_execution_options().get("mixsearch_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _safe_url(url: str) -> str:
    """The URL with any password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - best effort for messages only
        return url


def _first_line(exc: BaseException | Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def history_arrays(trials: Sequence[Trial], dim: int, direction: str = "minimize") -> dict[str, np.ndarray | tuple]:
    """Arrays for :class:`mixsearch.propose.base.History` from ledger trials.

    Done trials with a finite objective are observations (oriented smaller-is-better);
    pending and running trials are pending points; failed trials are left out.
    """
    sign = 1.0 if direction == "minimize" else -1.0
    done = [t for t in trials if t.state == DONE and finite(t.objective)]
    pend = [t for t in trials if t.state in (PENDING, RUNNING)]
    failed = [t for t in trials if t.state == FAILED or (t.state == DONE and not finite(t.objective))]
    return {
        "weights": np.array([t.candidate.weights for t in done], dtype=float).reshape(-1, dim),
        "rungs": tuple(t.candidate.rung for t in done),
        "objective": np.array([sign * float(t.objective) for t in done], dtype=float),
        "pending_weights": np.array([t.candidate.weights for t in pend], dtype=float).reshape(-1, dim),
        "pending_rungs": tuple(t.candidate.rung for t in pend),
        "costs": np.array([float(t.cost or 0.0) for t in done], dtype=float),
        "failed_weights": np.array([t.candidate.weights for t in failed], dtype=float).reshape(-1, dim),
        "failed_rungs": tuple(t.candidate.rung for t in failed),
    }
