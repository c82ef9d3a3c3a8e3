"""The ledger's storage plumbing: engines, connection pragmas, locks, safe URLs.

:mod:`mixsearch.ledger` keeps the trial state machine; this module knows the backends.
SQLite (a file) is the default, PostgreSQL serves many hosts, and an in-memory SQLite
database serves the bench (never a user's study: nothing would be kept).
"""

from __future__ import annotations

import errno
import os
import threading
import zlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool


class LedgerError(RuntimeError):
    """A ledger that cannot be opened or written (newer schema, unwritable path, full disk, other study)."""


# PostgreSQL advisory lock keys (64-bit, scoped to the database that holds the ledger).
PG_ASK_LOCK = zlib.crc32(b"mixsearch.ask")
PG_SCHEMA_LOCK = zlib.crc32(b"mixsearch.schema")
PG_ADD_LOCK = zlib.crc32(b"mixsearch.add")

# 1: mixsearch 0.1.0. 2: the study definition (meta "definition", "fingerprint", "domains")
# is stored, and trial weights are stored by domain name (schema-1 rows are migrated).
# 3: trials carry a nullable ``schedule`` (a two-phase candidate's phases, JSON by domain
# name); an older ledger gains the column when opened (:func:`add_missing_columns`).
SCHEMA_VERSION = 3


metadata = sa.MetaData()

meta_table = sa.Table(
    "mixsearch_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

trials_table = sa.Table(
    "trials",
    metadata,
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
    sa.Column("schedule", sa.Text),
)

# Columns later schemas added to ``trials``: (name, SQL type), added to an older ledger on open.
ADDED_COLUMNS = (("schedule", "TEXT"),)

MEMORY_URL = "sqlite://"
# Query parameters whose values are secrets (libpq's and common drivers' spellings).
_SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword", "sslkey", "api_key", "apikey", "access_key", "secret_key")


class FileLock:
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


class PgAdvisoryLock:
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


def sqlite_lock_path(url: str) -> Path | None:
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:":
        return None
    return Path(path + "-asklock")


def insert_ignore(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], key: str = "key") -> None:
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


def make_engine(url: str, create: bool, memory: bool = False) -> sa.Engine:
    """An engine for a ledger URL (checked by :func:`check_url`), with the pragmas the ledger needs.

    Args:
        url: SQLite file or PostgreSQL URL.
        create: Create the SQLite file's folder when missing (else the file must exist).
        memory: Allow (and expect) an in-memory SQLite database, shared by every
            connection of the engine.
    """
    parsed = check_url(url, memory)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_engine(url, parsed.database, create)
    try:
        # Fail fast on an unreachable host instead of hanging on connect.
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        hint = " (install psycopg and use postgresql+psycopg://)" if isinstance(exc, ImportError) else ""
        raise LedgerError(f"ledger {safe_url(url)}: {first_line(exc)}{hint}") from None


def sqlite_engine(url: str, path: str | None, create: bool) -> sa.Engine:
    """An SQLite engine: WAL, immediate write transactions, a long busy timeout (one shared
    connection for an in-memory database, whose contents live in that connection)."""
    if path and path != ":memory:":
        p = Path(path)
        if create:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LedgerError(f"ledger {safe_url(url)}: cannot create folder {p.parent}: {exc.strerror}") from None
            if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
                raise LedgerError(f"ledger {safe_url(url)}: {p if p.exists() else p.parent} is not writable")
        elif not p.exists():
            raise LedgerError(f"ledger {safe_url(url)}: no such file")
        if p.exists() and p.is_dir():
            raise LedgerError(f"ledger {safe_url(url)}: {p} is a folder, not a database file")
    if not path or path == ":memory:":
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, poolclass=StaticPool)
    else:
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


def safe_url(url: str) -> str:
    """The URL with every secret hidden: the password, and query values such as ``password=``.

    Never raises: a URL that does not parse is shown only up to its scheme.
    """
    try:
        parsed = sa.engine.make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL may still hold a secret
        scheme, sep, _ = str(url).partition("://")
        return f"{scheme}://***" if sep else "***"
    query = {k: ("***" if k.lower() in _SECRET_KEYS else v) for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


def check_url(url: str, memory: bool = False) -> sa.engine.URL:
    """Parse a ledger URL and refuse what cannot keep a study.

    Args:
        url: The SQLAlchemy URL.
        memory: Allow an in-memory SQLite database (the bench's throwaway ledgers).

    Raises:
        LedgerError: not a URL, an unsupported backend, or an SQLite URL with no file
            (``sqlite://``, ``sqlite:///``, ``:memory:``), which would keep nothing.
    """
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise LedgerError(f"storage: {safe_url(url)!r} is not an SQLAlchemy URL (e.g. sqlite:///runs/x/ledger.sqlite or postgresql+psycopg://user@host/db)") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise LedgerError(f"storage: {safe_url(url)}: unsupported database {backend!r}; use sqlite:///PATH or postgresql+psycopg://")
    if backend == "sqlite" and not memory and (not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file::memory:")):
        raise LedgerError(f"storage: {safe_url(url)!r} names no database file (an empty path, e.g. from an unset variable, or :memory:), so nothing would be kept; give sqlite:///PATH")
    return parsed


def first_line(exc: BaseException | Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__




def disk_hint(url: str) -> str:
    """' (disk full: ...)' when an SQLite file's disk is (nearly) full: SQLite often reports
    that only as a generic I/O error."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return ""
    folder = Path(parsed.database).parent
    try:
        st = os.statvfs(folder)
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize
    return f" (disk full: {free} bytes free in {folder})" if free < 1 << 20 else ""


def add_missing_columns(conn: sa.Connection) -> list[str]:
    """Add the columns of :data:`ADDED_COLUMNS` that an older ledger's ``trials`` lacks.

    Nullable columns only, so every existing row stays valid (NULL: no schedule). Two
    processes opening one old ledger at once may both try: a duplicate column is fine.

    Returns:
        The columns added.
    """
    have = {c["name"] for c in sa.inspect(conn).get_columns("trials")}
    added = []
    for name, sql_type in ADDED_COLUMNS:
        if name in have:
            continue
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"ALTER TABLE trials ADD COLUMN IF NOT EXISTS {name} {sql_type}"))
        else:
            try:
                with conn.begin_nested():
                    conn.execute(sa.text(f"ALTER TABLE trials ADD COLUMN {name} {sql_type}"))
            except sa.exc.OperationalError as exc:
                if "duplicate column" not in str(exc).lower():
                    raise
        added.append(name)
    return added


def check_schema(conn: sa.Connection, url: str, create: bool) -> None:
    """Refuse a database that is not a mixsearch ledger or is newer than this mixsearch;
    record the schema version in a new one."""
    if not sa.inspect(conn).has_table("mixsearch_meta"):
        raise LedgerError(f"ledger {safe_url(url)}: not a mixsearch ledger (no mixsearch_meta table)")
    row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
    if row is None:
        if not create:
            raise LedgerError(f"ledger {safe_url(url)}: no schema version recorded")
        insert_ignore(conn, meta_table, [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
        return
    try:
        version = int(row[0])
    except ValueError:
        raise LedgerError(f"ledger {safe_url(url)}: unreadable schema version {row[0]!r}") from None
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"ledger {safe_url(url)}: schema version {version} is newer than this mixsearch "
            f"supports ({SCHEMA_VERSION}); upgrade mixsearch"
        )


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
    engine = make_engine(url, create=False)
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
    finally:
        engine.dispose()
