"""The ledger: trial records, their state machine and their storage (SQLAlchemy).

States: ``pending -> running -> done | failed``; a running trial whose worker died
goes back to ``pending`` (until its attempts run out, then ``failed``). Every state
change is a compare-and-set ``UPDATE ... WHERE state = <expected>``, so several
orchestrators or workers on one ledger never run or finish a trial twice.

SQLite (a file under ``runs/<study>/``) is the default; a PostgreSQL URL serves many
hosts. The schema is versioned in the ``mixsearch_meta`` table.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from mixsearch.candidate import Candidate, TrialResult, trial_id

SCHEMA_VERSION = 1

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATES = (PENDING, RUNNING, DONE, FAILED)

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
    """A ledger that cannot be opened or written (newer schema, unwritable path, other study)."""


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


class Ledger:
    """Trial storage for one study.

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
        create: Create the schema when the database is new.
    """

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        self.engine = _make_engine(url, create)
        try:
            if create:
                _metadata.create_all(self.engine)
            self._check_schema(create)
        except OperationalError as exc:
            raise LedgerError(f"ledger {_safe_url(url)}: cannot open: {exc.orig}") from exc

    # -- schema and study ------------------------------------------------------------

    def _check_schema(self, create: bool) -> None:
        with self.engine.begin() as conn:
            if not sa.inspect(conn).has_table("mixsearch_meta"):
                raise LedgerError(f"ledger {_safe_url(self.url)}: not a mixsearch ledger (no mixsearch_meta table)")
            row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
            if row is None:
                if not create:
                    raise LedgerError(f"ledger {_safe_url(self.url)}: no schema version recorded")
                _insert_ignore(conn, meta_table, [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
                return
            version = int(row[0])
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {_safe_url(self.url)}: schema version {version} is newer than this mixsearch "
                    f"supports ({SCHEMA_VERSION}); upgrade mixsearch"
                )

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).first()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(sa.update(meta_table).where(meta_table.c.key == key).values(value=value)).rowcount
            if not updated:
                _insert_ignore(conn, meta_table, [{"key": key, "value": value}])

    def bind_study(self, name: str, study_json: Mapping[str, Any], study_file: str | None) -> None:
        """Record which study owns this ledger; refuse a ledger of another study."""
        owner = self.get_meta("study_name")
        if owner is not None and owner != name:
            raise LedgerError(f"ledger {_safe_url(self.url)}: belongs to study {owner!r}, not {name!r}")
        if owner is None:
            self.set_meta("study_name", name)
            self.set_meta("created", str(time.time()))
        self.set_meta("study", json.dumps(study_json, sort_keys=True))
        if study_file is not None:
            self.set_meta("study_file", str(Path(study_file).resolve()))

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
        rows, ids = [], []
        for c in candidates:
            ctx = context(c.rung) if callable(context) else context[c.rung]
            tid = trial_id(c, ctx)
            ids.append(tid)
            rows.append(
                {
                    "trial_id": tid,
                    "ask": ask,
                    "weights": json.dumps(list(c.weights)),
                    "rung": c.rung,
                    "seed": c.seed,
                    "state": PENDING,
                    "attempts": 0,
                    "created": now,
                }
            )
        if rows:
            with self.engine.begin() as conn:
                _insert_ignore(conn, trials_table, rows, key="trial_id")
        return ids

    def claim(self, worker: str, trial_ids: Sequence[str] | None = None, limit: int = 1) -> list[Trial]:
        """Move up to ``limit`` pending trials to running for ``worker`` (compare-and-set).

        Args:
            worker: Claiming worker's name.
            trial_ids: Restrict to these ids; default any pending trial, oldest first.
            limit: Most trials to claim.

        Returns:
            The trials this worker now holds.
        """
        t = trials_table
        q = sa.select(t.c.trial_id).where(t.c.state == PENDING).order_by(t.c.number)
        if trial_ids is not None:
            q = q.where(t.c.trial_id.in_(list(trial_ids)))
        claimed: list[str] = []
        with self.engine.connect() as conn:
            candidates = [r[0] for r in conn.execute(q.limit(max(limit * 4, limit)))]
        for tid in candidates:
            if len(claimed) >= limit:
                break
            now = time.time()
            with self.engine.begin() as conn:
                n = conn.execute(
                    sa.update(t)
                    .where(t.c.trial_id == tid, t.c.state == PENDING)
                    .values(state=RUNNING, worker=worker, heartbeat=now, started=now, attempts=t.c.attempts + 1)
                ).rowcount
            if n == 1:
                claimed.append(tid)
        return [self.get(tid) for tid in claimed]

    def heartbeat(self, trial_ids: Sequence[str], worker: str) -> None:
        """Refresh the heartbeat of running trials held by ``worker``."""
        if not trial_ids:
            return
        t = trials_table
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t)
                .where(t.c.trial_id.in_(list(trial_ids)), t.c.state == RUNNING, t.c.worker == worker)
                .values(heartbeat=time.time())
            )

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
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.c.attempts).where(t.c.trial_id == tid, t.c.state == RUNNING, t.c.worker == worker)).first()
            if row is None:
                return None
            new_state = PENDING if retry and row[0] < max_attempts else FAILED
            values: dict[str, Any] = {"state": new_state, "error": error[:2000]}
            if new_state == FAILED:
                values.update(finished=time.time(), cost=float(cost), objective=None)
            else:
                values.update(worker=None, heartbeat=None)
            n = conn.execute(
                sa.update(t).where(t.c.trial_id == tid, t.c.state == RUNNING, t.c.worker == worker).values(**values)
            ).rowcount
        return new_state if n == 1 else None

    def release(self, tid: str, worker: str) -> bool:
        """Give a running trial back to pending without charging an attempt (Ctrl-C)."""
        t = trials_table
        with self.engine.begin() as conn:
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
        that no longer exists (so a killed local study resumes at once).

        Returns:
            Ids of the trials recovered.
        """
        t = trials_table
        now = time.time()
        host = socket.gethostname()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.trial_id, t.c.worker, t.c.heartbeat, t.c.attempts).where(t.c.state == RUNNING)).all()
        recovered = []
        for tid, worker, beat, attempts in rows:
            dead = False
            if worker and worker.rsplit(":", 1)[0] == host:
                try:
                    dead = not _pid_alive(int(worker.rsplit(":", 1)[1]))
                except ValueError:
                    dead = False
            if dead or beat is None or now - beat > heartbeat_timeout:
                state = PENDING if attempts < max_attempts else FAILED
                values: dict[str, Any] = {"state": state, "worker": None, "heartbeat": None}
                if state == FAILED:
                    values.update(error=f"worker {worker} lost {attempts} time(s)", finished=now, cost=0.0)
                with self.engine.begin() as conn:
                    n = conn.execute(
                        sa.update(t).where(t.c.trial_id == tid, t.c.state == RUNNING, t.c.worker == worker).values(**values)
                    ).rowcount
                if n == 1:
                    recovered.append(tid)
        return recovered

    # -- reads -----------------------------------------------------------------------

    def get(self, tid: str) -> Trial:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(trials_table).where(trials_table.c.trial_id == tid)).mappings().first()
        if row is None:
            raise KeyError(tid)
        return _to_trial(row)

    def trials(self, states: Sequence[str] | None = None) -> list[Trial]:
        """All trials (optionally in ``states``), in insertion order."""
        q = sa.select(trials_table).order_by(trials_table.c.number)
        if states is not None:
            q = q.where(trials_table.c.state.in_(list(states)))
        with self.engine.connect() as conn:
            return [_to_trial(r) for r in conn.execute(q).mappings()]

    def counts(self) -> dict[str, int]:
        """Number of trials in each state."""
        t = trials_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.state, sa.func.count()).group_by(t.c.state)).all()
        out = {s: 0 for s in STATES}
        out.update({s: int(n) for s, n in rows})
        return out

    def next_ask(self) -> int:
        """Index the next ask will carry."""
        with self.engine.connect() as conn:
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
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            p = Path(path)
            if create:
                try:
                    p.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise LedgerError(f"ledger {url}: cannot create folder {p.parent}: {exc.strerror}") from exc
                if p.parent.exists() and not os.access(p.parent, os.W_OK):
                    raise LedgerError(f"ledger {url}: folder {p.parent} is not writable")
            elif not p.exists():
                raise LedgerError(f"ledger {url}: no such file")
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers (status, proposers) run beside the writer.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True)
    except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise LedgerError(f"ledger {_safe_url(url)}: {exc}") from exc


def _safe_url(url: str) -> str:
    """The URL with any password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - best effort for messages only
        return url


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
